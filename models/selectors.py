"""Frame selectors: score ``T`` candidate frames and choose ``K`` of them.

Every selector is a plain ``nn.Module`` with three calls (and :meth:`FrameSelector.choose`):

* ``scores(frames, timestamps, k=None) -> (T,)``: how much each frame is worth showing the VLM
  when ``k`` frames will be shown (only budget-aware selectors, the importance model, use ``k``);
* ``pairwise(frames, timestamps) -> (T, T) | None``: optional dissimilarity of any two frames,
  used by decoders that reward novelty between consecutive chosen frames;
* ``select(frames, timestamps, k) -> (K,)``: the chosen frame indices, ascending in time. By
  default the selector's ``decoder`` (see :mod:`models.decoders`) turns ``scores(..., k)`` and,
  when the decoder needs them, the pairwise terms into indices;
* ``choose(frames, timestamps, k) -> (indices, shown frames, their times)``: what the VLM is
  shown, from one selection (the selected frames, except for a selector that makes frames).

``frames`` are ``uint8`` ``(T, 3, H, W)`` RGB and ``timestamps`` are seconds ``(T,)``.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

from models.decoders import Decoder, TopKDecoder, check_budget, uniform_indices

__all__ = [
    "FrameSelector", "UniformSelector", "RandomSelector", "PixelDiffSelector", "OpticalFlowSelector",
    "FrameAveragingSelector", "horn_schunck", "check_budget", "uniform_indices",
]  # fmt: skip


class FrameSelector(nn.Module):
    """Base class: subclasses implement :meth:`scores`; :meth:`select` applies the decoder.

    Args:
        decoder: Turns scores into K indices (default: top-k), see :mod:`models.decoders`.
    """

    # The frames shown to the VLM are candidate frames (their cached embeddings can stand in for
    # them); False for a selector that makes new frames.
    shows_candidates = True
    # Whether scores and selections read the pixels; False for a selector that needs only the
    # frame times (it then accepts frames=None, and a run can skip decoding: data's decode-free epochs).
    reads_pixels = True

    def __init__(self, decoder: Decoder | None = None) -> None:
        super().__init__()
        self.decoder = decoder if decoder is not None else TopKDecoder()

    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Per-frame importance, shape ``(T,)``; higher is more worth showing.

        Args:
            frames: ``uint8 (T, 3, H, W)``.
            timestamps: Seconds ``(T,)``.
            k: The frame budget the scores are for; ``None``: the selector's default. Only a
                budget-aware selector's scores depend on it.
        """
        raise NotImplementedError

    def pairwise(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor | None:
        """Dissimilarity of every pair of frames ``(T, T)``, or ``None`` if this selector has none."""
        return None

    def select(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int) -> torch.Tensor:
        """Indices of ``k`` frames, sorted in time order."""
        check_budget(k, frames.shape[0])
        scores = self.scores(frames, timestamps, k)
        pairwise = self.pairwise(frames, timestamps) if getattr(self.decoder, "needs_pairwise", False) else None
        return self.decoder.decode(scores, k, pairwise=pairwise)

    @property
    def picks_from_scores(self) -> bool:
        """Whether this selector's K frames are its decoder's pick from its per-frame scores alone
        (``select`` and ``choose`` as here, a decoder that needs no pairwise matrix): then stored
        scores choose exactly what the frames would (:meth:`select_from_scores`)."""
        cls = type(self)
        return (cls.select is FrameSelector.select and cls.choose is FrameSelector.choose
                and not getattr(self.decoder, "needs_pairwise", False))  # fmt: skip

    def select_from_scores(self, scores: torch.Tensor, k: int) -> torch.Tensor:
        """:meth:`select` from this selector's scores ``(T,)`` computed before (for a selector that
        :attr:`picks_from_scores`): the decoder's K indices, sorted in time order."""
        check_budget(k, scores.shape[0])
        return self.decoder.decode(scores, k)

    def choose(
        self, frames: torch.Tensor, timestamps: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Indices, frames to show the VLM and their timestamps, from one selection.

        By default the shown frames are the selected ones; a selector that makes new frames
        (:class:`FrameAveragingSelector`) overrides this.
        """
        idx = self.select(frames, timestamps, k).cpu()
        return idx, None if frames is None else frames[idx], timestamps[idx]


class UniformSelector(FrameSelector):
    """Evenly spaced frames: the baseline every other selector must beat. Reads no pixels."""

    reads_pixels = False

    def scores(self, frames: torch.Tensor | None, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        return torch.zeros(len(timestamps))

    def select(self, frames: torch.Tensor | None, timestamps: torch.Tensor, k: int) -> torch.Tensor:
        return uniform_indices(len(timestamps), k)


def _small_gray(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``uint8 (T,3,H,W)`` -> float ``(T,1,size,size)`` luma in [0, 1] (area-averaged, so noise is damped)."""
    x = frames.float() / 255.0
    luma = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    return nn.functional.interpolate(luma, size=(size, size), mode="area")


def _first_like_second(diffs: torch.Tensor) -> torch.Tensor:
    """Frame 0 has no predecessor; give it its successor's change so it is neither forced in nor out."""
    if diffs.numel() > 1:
        diffs[0] = diffs[1]
    return diffs


class RandomSelector(FrameSelector):
    """K frames drawn uniformly at random, reproducibly.

    Args:
        seed: Root seed; the draw also depends on the video's frame times (so on its frame
            count), never on its pixels: videos of other lengths or frame rates get other draws,
            a rerun on any machine the same ones. Two videos with the same frame times share a draw.
    """

    reads_pixels = False

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    def _generator(self, timestamps: torch.Tensor) -> torch.Generator:
        # Frame times come from the container, bit for bit on every machine; pixels pass through
        # arithmetic that may not (a seed drawn from them once moved this baseline from CPU to CPU).
        millis = torch.round(timestamps.detach().double().cpu() * 1000).long().tolist()
        digest = hashlib.sha256(json.dumps([self.seed, millis]).encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))

    def scores(self, frames: torch.Tensor | None, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        return torch.rand(len(timestamps), generator=self._generator(timestamps))

    def select(self, frames: torch.Tensor | None, timestamps: torch.Tensor, k: int) -> torch.Tensor:
        check_budget(k, len(timestamps))
        return torch.randperm(len(timestamps), generator=self._generator(timestamps))[:k].sort().values


class PixelDiffSelector(FrameSelector):
    """Frames that differ most from their predecessor in raw pixels (L1 or L2).

    Args:
        p: 1 for mean absolute difference, 2 for root-mean-square difference.
        size: Working resolution (frames are area-downsampled to ``size x size`` grey first).
        decoder: Scores-to-indices decoder.
    """

    def __init__(self, p: int = 1, size: int = 64, decoder: Decoder | None = None) -> None:
        super().__init__(decoder)
        if p not in (1, 2):
            raise ValueError(f"PixelDiffSelector.p must be 1 or 2, got {p}")
        self.p = p
        self.size = size

    def _flat(self, frames: torch.Tensor) -> torch.Tensor:
        return _small_gray(frames, self.size).flatten(1)

    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        x = self._flat(frames)
        d = (x[1:] - x[:-1]).abs().pow(self.p).mean(1).pow(1.0 / self.p)
        return _first_like_second(torch.cat([d[:1], d]))

    def pairwise(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        x = self._flat(frames)
        return torch.cdist(x, x, p=float(self.p)) / x.shape[1] ** (1.0 / self.p)


def horn_schunck(prev: torch.Tensor, nxt: torch.Tensor, alpha: float = 0.05, iterations: int = 60) -> torch.Tensor:
    """Dense optical flow between frame pairs by Horn-Schunck, batched.

    Args:
        prev: ``(B, 1, H, W)`` float frames in [0, 1].
        nxt: Next frames, same shape.
        alpha: Smoothness weight (larger: smoother flow).
        iterations: Jacobi iterations.

    Returns:
        Flow ``(B, 2, H, W)`` in pixels per frame (u: x, v: y).
    """
    kx = torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]).view(1, 1, 2, 2) * 0.25
    ky = torch.tensor([[-1.0, -1.0], [1.0, 1.0]]).view(1, 1, 2, 2) * 0.25
    kt = torch.ones(1, 1, 2, 2) * 0.25
    pad = lambda x: nn.functional.pad(x, (0, 1, 0, 1), mode="replicate")  # noqa: E731
    ix = nn.functional.conv2d(pad(prev), kx) + nn.functional.conv2d(pad(nxt), kx)
    iy = nn.functional.conv2d(pad(prev), ky) + nn.functional.conv2d(pad(nxt), ky)
    it = nn.functional.conv2d(pad(nxt), kt) - nn.functional.conv2d(pad(prev), kt)
    avg = torch.tensor([[1, 2, 1], [2, 0, 2], [1, 2, 1]], dtype=torch.float32).view(1, 1, 3, 3) / 12.0
    u = torch.zeros_like(prev)
    v = torch.zeros_like(prev)
    denom = alpha**2 + ix**2 + iy**2
    for _ in range(iterations):
        u_bar = nn.functional.conv2d(nn.functional.pad(u, (1, 1, 1, 1), mode="replicate"), avg)
        v_bar = nn.functional.conv2d(nn.functional.pad(v, (1, 1, 1, 1), mode="replicate"), avg)
        common = (ix * u_bar + iy * v_bar + it) / denom
        u = u_bar - ix * common
        v = v_bar - iy * common
    return torch.cat([u, v], dim=1)


class OpticalFlowSelector(FrameSelector):
    """Frames with the most motion: mean optical-flow magnitude from the previous frame.

    Flow is Horn-Schunck in torch (no OpenCV needed), at a low working resolution.

    Args:
        size: Working resolution.
        alpha: Horn-Schunck smoothness weight.
        iterations: Horn-Schunck iterations.
        decoder: Scores-to-indices decoder.
    """

    def __init__(self, size: int = 48, alpha: float = 0.05, iterations: int = 60, decoder: Decoder | None = None) -> None:
        super().__init__(decoder)
        self.size = size
        self.alpha = alpha
        self.iterations = iterations

    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        if frames.shape[0] < 2:
            return torch.zeros(frames.shape[0])
        x = _small_gray(frames, self.size)
        flow = horn_schunck(x[:-1], x[1:], self.alpha, self.iterations)
        # Pixels per frame at the working size -> fraction of the frame width, resolution-free.
        magnitude = flow.norm(dim=1).mean((1, 2)) / self.size
        return _first_like_second(torch.cat([magnitude[:1], magnitude]))


class FrameAveragingSelector(FrameSelector):
    """SmolVLM-style temporal pooling: K frames, each the average of one of K equal time bins.

    Unlike the other selectors this makes new frames: :meth:`choose` (and :meth:`gather`) return
    the bin averages with the bins' mean timestamps. :meth:`select` returns each bin's centre
    frame, so index-based metrics still apply; it and :meth:`shown_times` need only the frame
    times, so a run whose bin averages' image embeddings are cached needs no pixels.
    """

    shows_candidates = False

    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        return torch.zeros(len(timestamps))

    def select(self, frames: torch.Tensor | None, timestamps: torch.Tensor, k: int) -> torch.Tensor:
        return uniform_indices(len(timestamps), k)

    @staticmethod
    def _bins(count: int, k: int) -> list[tuple[int, int]]:
        check_budget(k, count)
        edges = (torch.arange(k + 1, dtype=torch.float64) * count / k).floor().long().tolist()
        return list(zip(edges[:-1], edges[1:]))

    def shown_times(self, timestamps: torch.Tensor, k: int) -> torch.Tensor:
        """The times of the K frames :meth:`choose` makes: each bin's mean timestamp."""
        return torch.stack([timestamps[a:b].mean() for a, b in self._bins(len(timestamps), k)])

    def choose(
        self, frames: torch.Tensor, timestamps: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pooled = [frames[a:b].float().mean(0).round().to(torch.uint8) for a, b in self._bins(frames.shape[0], k)]
        return uniform_indices(frames.shape[0], k), torch.stack(pooled), self.shown_times(timestamps, k)
