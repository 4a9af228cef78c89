"""Selection-quality metrics that need no VLM: event recall@K and temporal coverage."""

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
