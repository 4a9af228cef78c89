"""Decoders: from per-frame scores (and optional pairwise dissimilarities) to K frame indices.

Every decoder has ``decode(scores, k, pairwise=None) -> LongTensor (k,)`` with indices sorted
ascending; ``needs_pairwise`` says whether it uses the ``(T, T)`` matrix.
"""

from __future__ import annotations

import torch


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


class Decoder:
    """Base class of decoders (the type selectors accept, so configs can pick one by ``class_path``)."""

    needs_pairwise = False

    def decode(self, scores: torch.Tensor, k: int, pairwise: torch.Tensor | None = None) -> torch.Tensor:
        """``k`` distinct frame indices, ascending."""
        raise NotImplementedError


class TopKDecoder(Decoder):
    """The K highest-scoring frames."""

    needs_pairwise = False

    def decode(self, scores: torch.Tensor, k: int, pairwise: torch.Tensor | None = None) -> torch.Tensor:
        check_budget(k, scores.shape[0])
        return scores.topk(k).indices.sort().values


def _descending_order(scores: torch.Tensor) -> torch.Tensor:
    """Frame indices from best to worst score; equal scores keep time order, so ties are deterministic."""
    return torch.sort(scores, descending=True, stable=True).indices


class ThresholdDecoder(Decoder):
    """Frames whose score clears a threshold, topped up with evenly spaced frames.

    Frames scoring above the threshold are "peaks". With more than K peaks the K highest win.
    With fewer, we start from the K uniform frames (bin centres, as in
    :func:`models.selectors.uniform_indices`), let each peak replace the uniform frame nearest
    to it, and keep the rest, so a video with no peaks falls back to exactly uniform sampling
    and the filler frames stay spread over the parts of the video the peaks leave uncovered.

    Args:
        threshold: The cut-off. If ``relative``, in standard deviations above the mean score
            (``mean + threshold * std``); otherwise an absolute score.
        relative: Whether ``threshold`` is relative to the score distribution of this video.
            Relative thresholds are robust to selectors whose score scale varies across videos.
    """

    needs_pairwise = False

    def __init__(self, threshold: float = 1.0, relative: bool = True) -> None:
        self.threshold = threshold
        self.relative = relative

    def cutoff(self, scores: torch.Tensor) -> float:
        """The score a frame must exceed to be a peak."""
        if not self.relative:
            return float(self.threshold)
        scores = scores.double()
        # Population std (correction=0) so a single-frame video has std 0 instead of NaN.
        return float(scores.mean() + self.threshold * scores.std(correction=0))

    def decode(self, scores: torch.Tensor, k: int, pairwise: torch.Tensor | None = None) -> torch.Tensor:
        num_frames = scores.shape[0]
        check_budget(k, num_frames)
        order = _descending_order(scores)
        num_peaks = int((scores > self.cutoff(scores)).sum())
        if num_peaks >= k:
            # Every peak outscores every non-peak, so the first k in score order are the k best peaks.
            return order[:k].sort().values

        peaks = order[:num_peaks].sort().values.tolist()
        centres = uniform_indices(num_frames, k).tolist()
        # Each peak takes the place of the nearest uniform frame not yet replaced (earlier on ties).
        for peak in peaks:
            nearest = min(centres, key=lambda c: (abs(c - peak), c))
            centres.remove(nearest)
        # The leftover centres are never peaks (a peak on a centre replaces that very centre), but
        # fall back to the nearest free frame anyway so the k indices are distinct by construction.
        chosen = set(peaks)
        for centre in centres:
            free = min((t for t in range(num_frames) if t not in chosen), key=lambda t: (abs(t - centre), t))
            chosen.add(free)
        return torch.tensor(sorted(chosen), dtype=torch.long, device=scores.device)


class BinMaxDecoder(Decoder):
    """The best-scoring frame of each of K contiguous, equal-length time bins.

    Bin ``i`` covers frames ``floor(i*T/K) .. floor((i+1)*T/K) - 1``, the same bins uniform sampling
    uses, so the result keeps uniform's temporal coverage while letting the scores move each frame
    within its bin. Ties go to the earliest frame of the bin.
    """

    needs_pairwise = False

    def decode(self, scores: torch.Tensor, k: int, pairwise: torch.Tensor | None = None) -> torch.Tensor:
        num_frames = scores.shape[0]
        check_budget(k, num_frames)
        # Integer arithmetic for the edges: float division can put a frame in the wrong bin.
        edges = [i * num_frames // k for i in range(k + 1)]
        # k <= T makes every bin non-empty; argmax returns the first maximum, hence earliest on ties.
        picks = [start + int(scores[start:stop].argmax()) for start, stop in zip(edges[:-1], edges[1:])]
        return torch.tensor(picks, dtype=torch.long, device=scores.device)


class NoveltyDPDecoder(Decoder):
    """The exact "N best of T" dynamic program: good frames that also differ from their neighbours.

    Chooses ``c_1 < ... < c_K`` with ``c_{i+1} - c_i >= min_gap`` maximising::

        unary_weight * sum_i scores[c_i] + pairwise_weight * sum_{i<K} pairwise[c_i, c_{i+1}]

    Only consecutive chosen frames interact, so the optimum decomposes: with ``best[n][j]`` the value
    of the best n-frame sequence ending at frame ``j``,
    ``best[n][j] = unary(j) + max_{i <= j - min_gap} (best[n-1][i] + pw(i, j))``. Each step is one
    masked ``(T, T)`` max, so decoding is ``O(K * T^2)`` work in ``O(K)`` torch ops. Top-k cannot do
    this: it happily picks K near-identical frames from one salient shot.

    Args:
        unary_weight: Weight of the per-frame scores.
        pairwise_weight: Weight of the dissimilarity between consecutive chosen frames.
        min_gap: Smallest allowed index distance between consecutive chosen frames (1 = any
            distinct frames). Larger gaps force spread even when ``pairwise`` is absent.

    Ties are broken deterministically (towards earlier frames at each step).
    """

    def __init__(self, unary_weight: float = 1.0, pairwise_weight: float = 1.0, min_gap: int = 1) -> None:
        if min_gap < 1:
            raise ValueError(f"min_gap must be >= 1 (chosen frames are distinct), got {min_gap}")
        self.unary_weight = unary_weight
        self.pairwise_weight = pairwise_weight
        self.min_gap = min_gap

    @property
    def needs_pairwise(self) -> bool:
        # With no pairwise term the (T, T) matrix is not worth computing (O(T^2) FFTs for xcorr).
        return self.pairwise_weight != 0

    def decode(self, scores: torch.Tensor, k: int, pairwise: torch.Tensor | None = None) -> torch.Tensor:
        num_frames = scores.shape[0]
        check_budget(k, num_frames)
        if (k - 1) * self.min_gap + 1 > num_frames:
            raise ValueError(
                f"cannot choose K={k} frames at least min_gap={self.min_gap} apart from {num_frames} frames "
                f"(needs at least {(k - 1) * self.min_gap + 1}); lower the budget or min_gap"
            )
        if pairwise is None:
            # No novelty signal: the DP reduces to the best k scores subject to the gap.
            pairwise = torch.zeros(num_frames, num_frames, device=scores.device)
        elif pairwise.shape != (num_frames, num_frames):
            raise ValueError(
                f"pairwise must have shape ({num_frames}, {num_frames}) to match the scores, "
                f"got {tuple(pairwise.shape)}"
            )

        # float64 so sums of many terms compare exactly enough for deterministic ties.
        unary = self.unary_weight * scores.double()
        # Transition value pw(i -> j), with rows = previous frame i and columns = next frame j;
        # transitions that violate the gap get -inf so the max never takes them.
        frames = torch.arange(num_frames, device=scores.device)
        allowed = frames[None, :] - frames[:, None] >= self.min_gap
        transition = (self.pairwise_weight * pairwise.double()).masked_fill(~allowed, float("-inf"))

        best = unary  # best[j]: best 1-frame sequence ending at j
        back_pointers = []
        for _ in range(k - 1):
            # argmax returns the first maximum: on ties the earliest previous frame wins.
            value, previous = (best[:, None] + transition).max(dim=0)
            best = unary + value  # -inf where no n-frame sequence can end at j
            back_pointers.append(previous)

        last = int(best.argmax())
        picks = [last]
        for previous in reversed(back_pointers):
            last = int(previous[last])
            picks.append(last)
        return torch.tensor(picks[::-1], dtype=torch.long, device=scores.device)
