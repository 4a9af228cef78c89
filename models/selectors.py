"""Frame selectors: score ``T`` candidate frames and choose ``K`` of them.

Every selector is a plain ``nn.Module`` with the same two calls:

* ``scores(frames, timestamps) -> (T,)``: how much each frame is worth showing the VLM;
* ``select(frames, timestamps, k) -> (K,)``: the chosen frame indices, ascending in time.

``frames`` are ``uint8`` ``(T, 3, H, W)`` RGB and ``timestamps`` are seconds ``(T,)``.
"""

from __future__ import annotations

import torch
from torch import nn


def check_budget(k: int, num_frames: int) -> None:
    """Raises a clear error when the frame budget cannot be met."""
    if k < 1:
        raise ValueError(f"frame budget K must be >= 1, got {k}")
    if k > num_frames:
        raise ValueError(
            f"frame budget K={k} exceeds the {num_frames} frames available; "
            "lower the budget or decode at a higher fps"
        )


def uniform_indices(num_frames: int, k: int) -> torch.Tensor:
    """Centre frame of each of ``k`` equal-length bins over ``num_frames`` frames."""
    check_budget(k, num_frames)
    return ((torch.arange(k, dtype=torch.float64) + 0.5) * num_frames / k).floor().long()


class FrameSelector(nn.Module):
    """Base class: subclasses implement :meth:`scores`; :meth:`select` takes the top ``k``."""

    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        """Per-frame importance, shape ``(T,)``; higher is more worth showing."""
        raise NotImplementedError

    def select(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int) -> torch.Tensor:
        """Indices of the ``k`` best-scoring frames, sorted in time order."""
        check_budget(k, frames.shape[0])
        return self.scores(frames, timestamps).topk(k).indices.sort().values

    def forward(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int) -> torch.Tensor:
        return self.select(frames, timestamps, k)


class UniformSelector(FrameSelector):
    """Evenly spaced frames: the baseline every other selector must beat."""

    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        return torch.zeros(frames.shape[0])

    def select(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int) -> torch.Tensor:
        return uniform_indices(frames.shape[0], k)
