"""Selection-quality metrics that need no VLM (event recall@K, temporal coverage) and paired comparisons."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _bounds(event) -> tuple[float, float]:
    return (event["start"], event["end"]) if isinstance(event, dict) else (event.start, event.end)


def event_hits(times: torch.Tensor, events: Sequence) -> torch.Tensor:
    """Per event, whether at least one chosen frame time lies inside it (``start <= t <= end``).

    Args:
        times: Chosen frame times in seconds, ``(K,)`` or ``(G, K)`` for G subsets.
        events: Ground-truth events (dicts or objects with ``start``/``end``).

    Returns:
        Bool tensor ``(E,)`` or ``(G, E)``.
    """
    bounds = torch.tensor([_bounds(e) for e in events], dtype=torch.float64).reshape(-1, 2)
    t = times.double().unsqueeze(-1)  # (..., K, 1)
    inside = (t >= bounds[:, 0]) & (t <= bounds[:, 1])  # (..., K, E)
    return inside.any(dim=-2)


def event_recall(times: torch.Tensor, events: Sequence) -> torch.Tensor:
    """Fraction of ground-truth events with at least one chosen frame (recall@K); ``(G,)`` for ``(G, K)`` times."""
    if not events:
        raise ValueError("event recall is undefined for a video without events")
    return event_hits(times, events).double().mean(-1)


def temporal_coverage(times: torch.Tensor, duration: float) -> torch.Tensor:
    """1 minus the largest stretch of the video (edges included) with no chosen frame, over its duration.

    1.0 would mean frames everywhere; uniform sampling of K frames gives about ``1 - 1/K``.
    """
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    t = times.double().sort(dim=-1).values.clamp(0.0, duration)
    edges = torch.cat([torch.zeros_like(t[..., :1]), t, torch.full_like(t[..., :1], duration)], dim=-1)
    return 1.0 - (edges[..., 1:] - edges[..., :-1]).max(dim=-1).values / duration


def paired_bootstrap_ci(
    a: Sequence[float], b: Sequence[float], level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of the paired differences ``a - b`` and its percentile-bootstrap confidence interval.

    The pairs (one per video) are resampled with replacement, so the interval reflects how much
    the mean difference depends on which videos were drawn; pairing removes the variation that
    both selectors share (hard videos are hard for both).

    Args:
        a: Per-video values of one selector.
        b: The same videos' values of the other, in the same order.
        level: Coverage of the interval, e.g. 0.95.
        resamples: Bootstrap resamples.
        seed: Seed of the resampling (the interval is reproducible).

    Returns:
        ``(mean difference, lower bound, upper bound)``.

    Raises:
        ValueError: If the sequences differ in length or are empty, or ``level`` is not in (0, 1).
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired values need two equally long, non-empty sequences, got {len(a)} and {len(b)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    diff = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    means = torch.cat([  # in chunks: resamples x videos indices at once would not fit for a whole split
        diff[torch.randint(0, len(diff), (min(1000, resamples - start), len(diff)), generator=generator)].mean(dim=1)
        for start in range(0, resamples, 1000)
    ])
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return diff.mean().item(), low, high
