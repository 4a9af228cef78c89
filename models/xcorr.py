"""Normalised cross-correlation between frames, and a selector that scores frames by it.

The measure follows the project's research notes. Each frame ``F`` is standardised,
``F~ = (F - mu) / (sigma + eps)`` with ``mu`` and ``sigma`` over the frame's pixels (per channel
in per-channel mode), and two frames are compared at every relative shift ``(m, n)``::

    Corr(F_i, F_j)[m, n] = sum_h sum_w F~_i[h, w] * F~_j[h + m, w + n]

with ``F~_j`` zero outside the frame (linear, not circular, correlation). The similarity is
the best shift's correlation, normalised one of two ways:

* ``norm="hw"``: ``sim = max_{m,n} Corr / (H * W)``;
* ``norm="frobenius"``: ``sim = max_{m,n} Corr / (||F~_i||_F * ||F~_j||_F)``;

and ``diff = 1 - sim``. Because of the standardisation, a brightness/contrast change
``a * F + b`` (``a > 0``) leaves ``diff`` at 0, so flicker does not look like a scene change;
because of the max over shifts, a camera pan costs only the content that slides out of view
(with ``norm="hw"`` the best-shift correlation is about ``(H - |m|)(W - |n|) / (H W)``). A hard
cut to unrelated content gives ``diff`` near 1. Two consequences of the formula worth knowing:
a constant frame (or channel) standardises to all zeros, so its ``sim`` with anything is 0
and its ``diff`` is 1; and ``sim`` of a frame with itself is ``sigma^2 / (sigma + eps)^2``,
a hair under 1, which is why :func:`pairwise_diffs` writes its diagonal as exactly 0.

:func:`xcorr_direct` is the formula written out (slow; the reference for tests and
benchmarks). :func:`xcorr_fft` computes the same thing through zero-padded real FFTs, and
:func:`consecutive_diffs` / :func:`pairwise_diffs` transform every frame once and reuse the
spectra for all the pairs they need.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.decoders import Decoder
from models.selectors import FrameSelector

NORMS = ("hw", "frobenius")

# ITU-R BT.601 luma weights for R, G, B.
LUMA_601 = (0.299, 0.587, 0.114)


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def _check_max_shift(max_shift: int | None) -> None:
    if max_shift is not None and (isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0):
        raise ValueError(f"max_shift must be None or an int >= 0, got {max_shift!r}")


def _shift_limits(height: int, width: int, max_shift: int | None) -> tuple[int, int]:
    """Largest |m| and |n| considered: every shift with any overlap, capped by ``max_shift``."""
    if max_shift is None:
        return height - 1, width - 1
    return min(max_shift, height - 1), min(max_shift, width - 1)


def _fast_size(n: int) -> int:
    """Smallest integer >= ``n`` whose prime factors are 2, 3 and 5 (quick FFT lengths)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _padded_size(height: int, width: int, max_shift: int | None) -> tuple[int, int]:
    """FFT size at which the product of spectra gives the linear correlation for every allowed shift.

    The inverse FFT returns a circular correlation of the zero-padded frames: padded length
    ``P`` makes shift ``m`` share its output index with ``m - P`` and ``m + P``. With
    ``P >= H + Mh`` every such alias of an allowed shift (``|m| <= Mh``) is at least ``H`` away,
    has no overlap and adds zero. Without ``max_shift`` that is the usual ``2H - 1``; a small
    ``max_shift`` needs much less padding, which is where most of the FFT cost goes.
    """
    mh, mw = _shift_limits(height, width, max_shift)
    return _fast_size(height + mh), _fast_size(width + mw)


def xcorr_direct(a: torch.Tensor, b: torch.Tensor, max_shift: int | None = None) -> torch.Tensor:
    """The correlation map, straight from the definition (reference implementation).

    ``out[m + Mh, n + Mw] = sum_{h,w} a[h, w] * b[h + m, w + n]`` over the pixels where both
    are inside the frame, for ``|m| <= Mh`` and ``|n| <= Mw``, where ``Mh = H - 1`` and
    ``Mw = W - 1`` (every shift with any overlap) unless ``max_shift`` caps them. Loops over
    shifts in Python, so it is slow: ``O(H W)`` work for each of ``(2H - 1)(2W - 1)`` shifts.

    Args:
        a: Standardised frame ``(H, W)``; computed in float64.
        b: Standardised frame ``(H, W)``, same shape.
        max_shift: Largest ``|m|`` and ``|n|`` considered, or ``None`` for all shifts.

    Returns:
        The full map ``(2 Mh + 1, 2 Mw + 1)`` in float64; the centre is shift ``(0, 0)``.
        Take ``.max()`` and divide by the norm for the similarity (see :func:`direct_similarity`).
    """
    _check_max_shift(max_shift)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"xcorr_direct expects two (H, W) frames of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.double(), b.double()
    height, width = a.shape
    mh, mw = _shift_limits(height, width, max_shift)
    out = torch.empty(2 * mh + 1, 2 * mw + 1, dtype=torch.float64)
    for m in range(-mh, mh + 1):
        # Rows h of a pair with rows h + m of b; keep the h where both exist.
        a_rows, b_rows = (slice(0, height - m), slice(m, height)) if m >= 0 else (slice(-m, height), slice(0, height + m))
        for n in range(-mw, mw + 1):
            a_cols, b_cols = (slice(0, width - n), slice(n, width)) if n >= 0 else (slice(-n, width), slice(0, width + n))
            out[m + mh, n + mw] = (a[a_rows, a_cols] * b[b_rows, b_cols]).sum()
    return out


def direct_similarity(a: torch.Tensor, b: torch.Tensor, max_shift: int | None = None, norm: str = "hw") -> torch.Tensor:
    """``sim`` of two standardised frames via :func:`xcorr_direct` (reference for :func:`xcorr_fft`).

    Args:
        a: ``(H, W)`` or ``(C, H, W)`` standardised frame; with channels, each channel is
            correlated on its own and the per-channel similarities are averaged.
        b: Same shape as ``a``.
        max_shift: Largest ``|m|`` and ``|n|`` considered, or ``None`` for all shifts.
        norm: ``"hw"`` or ``"frobenius"``.

    Returns:
        A float64 scalar.
    """
    _check_norm(norm)
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise ValueError(f"expected two (H, W) or (C, H, W) frames of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.ndim == 2:
        a, b = a[None], b[None]
    sims = []
    for a_c, b_c in zip(a.double(), b.double()):
        best = xcorr_direct(a_c, b_c, max_shift).max()
        denom = a_c.numel() if norm == "hw" else (a_c.norm() * b_c.norm()).clamp_min(torch.finfo(torch.float64).tiny)
        sims.append(best / denom)
    return torch.stack(sims).mean()


def _spectra(frames: torch.Tensor, padded: tuple[int, int]) -> torch.Tensor:
    """Real 2D FFT of every frame, zero-padded to ``padded`` so products give linear correlation."""
    return torch.fft.rfft2(frames, s=padded)


def _correlation_maps(spec_a: torch.Tensor, spec_b: torch.Tensor, height: int, width: int, max_shift: int | None) -> torch.Tensor:
    """Correlation maps from spectra, cut to the allowed shifts, in :func:`xcorr_direct`'s layout.

    ``irfft2(conj(A) * B)[m, n] = sum_{h,w} a[h, w] b[h + m, w + n]`` with indices taken modulo
    the padded size; the padding (see :func:`_padded_size`) keeps every allowed shift free of
    aliases, and negative shifts simply sit at the end of each axis.
    """
    padded = _padded_size(height, width, max_shift)  # same size the spectra were taken at
    corr = torch.fft.irfft2(spec_a.conj() * spec_b, s=padded)
    mh, mw = _shift_limits(height, width, max_shift)
    # Shifts -Mh..Mh (-Mw..Mw) in order; negative ones wrap to the end of each padded axis.
    rows = torch.arange(-mh, mh + 1, device=corr.device) % padded[0]
    cols = torch.arange(-mw, mw + 1, device=corr.device) % padded[1]
    return corr.index_select(-2, rows).index_select(-1, cols)


def correlation_map_fft(a: torch.Tensor, b: torch.Tensor, max_shift: int | None = None) -> torch.Tensor:
    """The correlation maps of :func:`xcorr_direct`, for a batch, through FFTs.

    Args:
        a: ``(B, H, W)`` or ``(B, C, H, W)`` float frames.
        b: Same shape as ``a``.
        max_shift: Largest ``|m|`` and ``|n|`` kept, or ``None`` for all shifts.

    Returns:
        ``(B, [C,] 2 Mh + 1, 2 Mw + 1)``; index ``[..., m + Mh, n + Mw]`` is shift ``(m, n)``.
    """
    _check_max_shift(max_shift)
    if a.shape != b.shape or a.ndim not in (3, 4):
        raise ValueError(f"expected two (B, [C,] H, W) batches of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    height, width = a.shape[-2:]
    padded = _padded_size(height, width, max_shift)
    return _correlation_maps(_spectra(a, padded), _spectra(b, padded), height, width, max_shift)


def _similarity_from_spectra(
    spec_a: torch.Tensor,
    spec_b: torch.Tensor,
    norm_a: torch.Tensor,
    norm_b: torch.Tensor,
    height: int,
    width: int,
    max_shift: int | None,
    norm: str,
) -> torch.Tensor:
    """``sim`` for paired spectra ``(B, C, ...)``: best shift per channel, normalised, averaged over channels."""
    corr = _correlation_maps(spec_a, spec_b, height, width, max_shift)
    best = corr.flatten(-2).amax(-1)  # (B, C): each channel takes its own best shift
    if norm == "hw":
        sim = best / (height * width)
    else:
        sim = best / (norm_a * norm_b).clamp_min(torch.finfo(best.dtype).tiny)
    return sim.mean(-1)


def _as_bchw(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        return x
    raise ValueError(f"{name} must be (B, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")


def xcorr_fft(a: torch.Tensor, b: torch.Tensor, max_shift: int | None = None, norm: str = "hw") -> torch.Tensor:
    """``sim`` of each pair ``(a[i], b[i])`` of standardised frames, via zero-padded FFTs.

    Equals :func:`direct_similarity` up to float rounding. Frames are zero-padded to at least
    ``2H - 1`` by ``2W - 1`` (``H + max_shift`` by ``W + max_shift`` when shifts are capped),
    rounded up to a 2-3-5-smooth size for speed, so the FFT product gives the linear
    correlation, not the circular one.

    Args:
        a: ``(B, H, W)`` or ``(B, C, H, W)`` standardised float frames (see :func:`normalize_frames`).
        b: Same shape as ``a``.
        max_shift: Only shifts with ``|m| <= max_shift`` and ``|n| <= max_shift`` compete for the
            max; ``None`` allows every shift with any overlap.
        norm: ``"hw"`` divides the best correlation by ``H * W``; ``"frobenius"`` by
            ``||a[i]||_F * ||b[i]||_F``.

    Returns:
        ``(B,)`` similarities. With channels, each channel is correlated on its own, takes its
        own best shift, and the per-channel similarities are averaged.
    """
    _check_norm(norm)
    _check_max_shift(max_shift)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = _as_bchw(a, "a"), _as_bchw(b, "b")
    height, width = a.shape[-2:]
    padded = _padded_size(height, width, max_shift)
    return _similarity_from_spectra(
        _spectra(a, padded),
        _spectra(b, padded),
        a.flatten(-2).norm(dim=-1),
        b.flatten(-2).norm(dim=-1),
        height,
        width,
        max_shift,
        norm,
    )


def standardize(frames: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``(F - mu) / (sigma + eps)`` per frame and channel, with ``mu``, ``sigma`` over the last two axes.

    ``sigma`` is the population standard deviation, so a non-constant standardised frame has
    ``||F~||_F^2`` just under ``H * W`` and ``norm="hw"`` gives a self-similarity of about 1.

    Args:
        frames: Float frames ``(..., H, W)``.
        eps: Keeps constant frames finite (they become all zeros).
    """
    mean = frames.mean(dim=(-2, -1), keepdim=True)
    std = frames.std(dim=(-2, -1), keepdim=True, correction=0)
    return (frames - mean) / (std + eps)


def normalize_frames(
    frames: torch.Tensor, size: int = 128, grayscale: bool = True, eps: float = 1e-6, chunk: int = 64
) -> torch.Tensor:
    """Video frames to standardised working-resolution frames for correlation.

    Args:
        frames: ``uint8`` ``(T, 3, H, W)`` RGB (float in ``[0, 255]`` also works). Pixels are
            scaled to ``[0, 1]`` first, so ``eps`` is relative to that range.
        size: Working resolution: frames are resized (bilinear, antialiased) to ``size x size``;
            the aspect ratio is not kept, as only the same-size comparison matters.
        grayscale: Reduce to ITU-R BT.601 luma (one channel); otherwise keep R, G, B and
            standardise each channel on its own.
        eps: Added to the standard deviation (see :func:`standardize`).
        chunk: Frames converted at a time, so memory stays bounded for long high-res videos.

    Returns:
        float32 ``(T, C, size, size)`` with ``C = 1`` (grayscale) or 3, on ``frames``' device.
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (T, 3, H, W) RGB, got shape {tuple(frames.shape)}")
    luma = torch.tensor(LUMA_601, device=frames.device).view(1, 3, 1, 1)
    out = []
    for start in range(0, frames.shape[0], chunk):
        x = frames[start : start + chunk].float() / 255.0
        if grayscale:
            # Luma before resizing: both are linear, and resizing one channel is a third of the work.
            x = (x * luma).sum(dim=1, keepdim=True)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(standardize(x, eps))
    if not out:
        return torch.empty(0, 1 if grayscale else 3, size, size, device=frames.device)
    return torch.cat(out)


def _prepare(frames: torch.Tensor, size: int, grayscale: bool, eps: float) -> torch.Tensor:
    """uint8 video frames are normalised here; float frames are taken as already standardised."""
    if frames.dtype == torch.uint8:
        return normalize_frames(frames, size=size, grayscale=grayscale, eps=eps)
    if not frames.is_floating_point():
        raise ValueError(f"frames must be uint8 video frames or standardised float frames, got {frames.dtype}")
    return _as_bchw(frames, "frames")


def consecutive_diffs(
    frames: torch.Tensor,
    max_shift: int | None = None,
    norm: str = "hw",
    size: int = 128,
    grayscale: bool = True,
    eps: float = 1e-6,
    chunk: int = 64,
) -> torch.Tensor:
    """``diff[t] = 1 - sim(F_{t-1}, F_t)``: how much each frame changes from the one before.

    Each frame is transformed once; neighbouring spectra are multiplied in chunks of
    ``chunk`` frames (the last spectrum of a chunk carries over to the next one).

    Args:
        frames: ``uint8`` ``(T, 3, H, W)`` video frames, standardised here with
            :func:`normalize_frames` (``size``, ``grayscale``, ``eps``), or float frames
            ``(T, H, W)`` / ``(T, C, H, W)`` that are already standardised, used as they are.
        max_shift: Largest shift considered (see :func:`xcorr_fft`).
        norm: ``"hw"`` or ``"frobenius"``.
        size: Working resolution for uint8 input.
        grayscale: Luma (True) or per-channel (False) for uint8 input.
        eps: Standardisation epsilon for uint8 input.
        chunk: Frames transformed at a time; bounds memory.

    Returns:
        float32 ``(T,)``. ``diff[0] = 0``: the first frame has no predecessor, so there is no
        evidence of change.
    """
    _check_norm(norm)
    _check_max_shift(max_shift)
    x = _prepare(frames, size, grayscale, eps)
    num_frames, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    diffs = torch.zeros(num_frames, dtype=torch.float32, device=x.device)
    if num_frames < 2:
        return diffs
    padded = _padded_size(height, width, max_shift)
    norms = x.flatten(-2).norm(dim=-1)  # (T, C)
    prev_spec = None
    for start in range(0, num_frames, chunk):
        spec = _spectra(x[start : start + chunk], padded)
        if prev_spec is not None:
            spec = torch.cat([prev_spec, spec])
            lo = start - 1
        else:
            lo = start
        # Pairs (lo, lo + 1), ..., within this chunk (plus the carried frame).
        hi = lo + spec.shape[0]
        sims = _similarity_from_spectra(
            spec[:-1], spec[1:], norms[lo : hi - 1], norms[lo + 1 : hi], height, width, max_shift, norm
        )
        diffs[lo + 1 : hi] = 1.0 - sims.float()
        prev_spec = spec[-1:]
    return diffs


def _check_offsets(offsets) -> list[int]:
    offsets = list(offsets)
    if not offsets or any(isinstance(o, bool) or not isinstance(o, int) or o < 1 for o in offsets):
        raise ValueError(f"offsets must be a non-empty list of ints >= 1, got {offsets!r}")
    return offsets


def offset_diffs(
    frames: torch.Tensor,
    offsets: list[int] | tuple[int, ...],
    max_shift: int | None = None,
    norm: str = "hw",
    size: int = 128,
    grayscale: bool = True,
    eps: float = 1e-6,
    chunk: int = 64,
) -> torch.Tensor:
    """``diff[i, t] = 1 - sim(F_{t - o}, F_t)`` with ``o = offsets[i]``: change from the frame ``o`` back.

    The same formula as :func:`consecutive_diffs` (offset 1 gives its values, up to float
    rounding), for several offsets at once: each frame is transformed once, and the spectra of
    the last ``max(offsets)`` frames carry over from one chunk of ``chunk`` frames to the next,
    so memory stays bounded however long the video.

    Args:
        frames: As for :func:`consecutive_diffs`.
        offsets: Frame distances, each an int >= 1.
        max_shift: Largest shift considered (see :func:`xcorr_fft`).
        norm: ``"hw"`` or ``"frobenius"``.
        size: Working resolution for uint8 input.
        grayscale: Luma (True) or per-channel (False) for uint8 input.
        eps: Standardisation epsilon for uint8 input.
        chunk: Frames transformed at a time; bounds memory.

    Returns:
        float32 ``(len(offsets), T)``; ``diff[i, t] = 0`` for ``t < offsets[i]``, where there is
        no frame that far back.
    """
    offsets = _check_offsets(offsets)
    _check_norm(norm)
    _check_max_shift(max_shift)
    x = _prepare(frames, size, grayscale, eps)
    num_frames, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    out = torch.zeros(len(offsets), num_frames, dtype=torch.float32, device=x.device)
    padded = _padded_size(height, width, max_shift)
    norms = x.flatten(-2).norm(dim=-1)  # (T, C)
    reach = max(offsets)
    kept = None  # spectra of the (up to) `reach` frames just before this chunk
    for start in range(0, num_frames, chunk):
        spec = _spectra(x[start : start + chunk], padded)
        stop = start + spec.shape[0]
        if kept is not None:
            spec = torch.cat([kept, spec])
        first = stop - spec.shape[0]  # frame index of spec[0]
        for i, offset in enumerate(offsets):
            lo = max(start, offset)  # first frame of this chunk with a frame `offset` back
            if lo >= stop:
                continue
            sims = _similarity_from_spectra(
                spec[lo - offset - first : stop - offset - first],
                spec[lo - first : stop - first],
                norms[lo - offset : stop - offset],
                norms[lo:stop],
                height,
                width,
                max_shift,
                norm,
            )
            out[i, lo:stop] = 1.0 - sims.float()
        kept = spec[-reach:]
    return out


def pairwise_diffs(
    frames: torch.Tensor,
    max_shift: int | None = None,
    norm: str = "hw",
    size: int = 128,
    grayscale: bool = True,
    eps: float = 1e-6,
    chunk: int = 64,
) -> torch.Tensor:
    """``D[i, j] = 1 - sim(F_i, F_j)`` for every pair of frames.

    Each frame is transformed once; the ``T (T - 1) / 2`` pairs ``i < j`` are then correlated
    ``chunk`` at a time, so the working memory is a fixed number of padded maps however long
    the video (the spectra themselves take about ``T * C * 2 size^2`` complex numbers). Cost
    grows as ``T^2``: one inverse FFT per pair, about 1 ms per pair at 128 x 128 with all shifts
    on two CPU cores (300 frames: ~40 s); ``max_shift=8`` shrinks the padding and makes it
    ~15x cheaper.

    Args:
        frames: As for :func:`consecutive_diffs`.
        max_shift: Largest shift considered (see :func:`xcorr_fft`).
        norm: ``"hw"`` or ``"frobenius"``.
        size: Working resolution for uint8 input.
        grayscale: Luma (True) or per-channel (False) for uint8 input.
        eps: Standardisation epsilon for uint8 input.
        chunk: Pairs correlated at a time; bounds memory.

    Returns:
        float32 ``(T, T)``, symmetric, with an exactly zero diagonal.
    """
    _check_norm(norm)
    _check_max_shift(max_shift)
    x = _prepare(frames, size, grayscale, eps)
    num_frames, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    out = torch.zeros(num_frames, num_frames, dtype=torch.float32, device=x.device)
    if num_frames < 2:
        return out
    spec = _spectra(x, _padded_size(height, width, max_shift))
    norms = x.flatten(-2).norm(dim=-1)
    rows, cols = torch.triu_indices(num_frames, num_frames, offset=1, device=x.device)
    for start in range(0, rows.numel(), chunk):
        i, j = rows[start : start + chunk], cols[start : start + chunk]
        sims = _similarity_from_spectra(spec[i], spec[j], norms[i], norms[j], height, width, max_shift, norm)
        out[i, j] = 1.0 - sims.float()
    return out + out.T


class CrossCorrelationSelector(FrameSelector):
    """Scores each frame by how much it differs from the previous one under normalised cross-correlation.

    A scene cut scores high; brightness flicker (removed by the per-frame standardisation)
    and camera pans (absorbed by the max over shifts) score low. No learned parameters.
    :meth:`scores` is cheap (one FFT per frame); :meth:`pairwise`, used only by decoders that
    need it, costs one inverse FFT per pair of frames, so cap ``max_shift`` for long videos.

    Args:
        size: Working resolution; frames are resized to ``size x size`` before correlating.
        grayscale: Correlate BT.601 luma (True) or each RGB channel, averaging their similarities (False).
        max_shift: Largest shift in pixels, at working resolution, that may align two frames;
            ``None`` allows every shift with any overlap.
        norm: ``"hw"`` (best correlation over ``H * W``) or ``"frobenius"`` (over the product of
            the frames' Frobenius norms).
        eps: Added to each frame's standard deviation before dividing.
        decoder: Turns scores into K indices (default: top-k).
    """

    def __init__(
        self,
        size: int = 128,
        grayscale: bool = True,
        max_shift: int | None = None,
        norm: str = "hw",
        eps: float = 1e-6,
        decoder: Decoder | None = None,
    ) -> None:
        super().__init__(decoder)
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an int >= 8, got {size!r}")
        _check_max_shift(max_shift)
        _check_norm(norm)
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.size = size
        self.grayscale = grayscale
        self.max_shift = max_shift
        self.norm = norm
        self.eps = eps

    def _normalized(self, frames: torch.Tensor) -> torch.Tensor:
        return normalize_frames(frames, size=self.size, grayscale=self.grayscale, eps=self.eps)

    @torch.no_grad()
    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """``1 - sim(F_{t-1}, F_t)`` per frame; the first frame scores 0."""
        return consecutive_diffs(self._normalized(frames), max_shift=self.max_shift, norm=self.norm)

    @torch.no_grad()
    def pairwise(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        """``1 - sim(F_i, F_j)`` for every pair, ``(T, T)``."""
        return pairwise_diffs(self._normalized(frames), max_shift=self.max_shift, norm=self.norm)

    def extra_repr(self) -> str:
        return f"size={self.size}, grayscale={self.grayscale}, max_shift={self.max_shift}, norm={self.norm!r}"
