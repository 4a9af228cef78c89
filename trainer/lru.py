"""A size-capped least-recently-used map, for per-video values the trainer would otherwise recompute.

``functools.lru_cache`` needs hashable arguments; these values are computed from a batch's frame
tensors but keyed by the video's id, so the map is kept by hand.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """At most ``max_size`` entries; a lookup past the cap evicts the one used longest ago.

    Args:
        max_size: Entries kept (0: keep nothing, compute every time).
    """

    def __init__(self, max_size: int) -> None:
        if max_size < 0:
            raise ValueError(f"cache size must be >= 0, got {max_size}")
        self.max_size = max_size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, compute: Callable[[], V]) -> V:
        """The value stored under ``key``, or ``compute()``'s, stored (and the oldest entry evicted)."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = compute()
        if self.max_size > 0:
            self._entries[key] = value
            if len(self._entries) > self.max_size:
                self._entries.popitem(last=False)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
