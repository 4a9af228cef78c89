"""Selector speed and boundary benchmark: ``python -m trainer bench [--frames 300] [--size 128]``.

Everything is printed from one run, so the speed ratios are comparable even on a noisy machine.

On one synthetic video it prints the direct cross-correlation formula against the FFT version
on the same frame pairs, with their ratio; how many frames/s decoding manages (the physical
limit of any selector that reads pixels); the frames/s of every selector; and the
``python -m trainer select --selector xcorr`` command on the same video, stage by stage
(decode, select, write), against decoding.

It then compares boundary detection with PySceneDetect's ``ContentDetector`` on ``--f1_videos``
more synthetic videos, generated with the same settings. The true boundaries are the start and
end times of the events. Pans, flicker and hard cuts are distractors, so flagging one is a false
positive. Our selectors predict a boundary at every local maximum of their scores above
``mean + PEAK_THRESHOLD * std``. The table gives boundary precision, recall and F1 within
``--tolerance`` seconds, with end-to-end frames/s. PySceneDetect is optional
(``pip install -e '.[bench]'``); without it, its row is skipped.

Last, and by default, it compares shot-boundary detection on ``--real_videos`` real-footage
videos (:mod:`data.footage`: verified shots of clips that the ``bench`` extra's packages ship,
cut together with hard cuts, cross-fades and fades to black of 0.24 to 2 s; built once and
cached). Here every transition is a true boundary, and the shots between them (dancing, camera
moves, people and vehicles passing close to the camera) are the negatives. A prediction matches
a transition if it lies within ``--tolerance`` of its interval (:func:`match_pairs`). The rows,
one entry each in :func:`real_footage_methods`: PySceneDetect's ``ContentDetector`` and
``AdaptiveDetector``, TransNetV2 (:mod:`models.transnet`, threshold 0.5), and every selector
whose score means "differs from the previous frame" (:func:`boundary_selectors` and the colour
cross-correlation of ``select``'s ``xcorr``). The table gives precision, recall, F1, recall per
kind of transition, frames/s end to end (each method pays for decoding: ours at ``--size``,
:mod:`models.change`'s at 64 px, TransNetV2 at the native size, PySceneDetect its own), and
recall per transition length.
``--real_videos 0`` skips it; without the packages it says how to install them and is skipped.
The defaults (3 videos, 1713 frames) keep the whole run under 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from data.decode import decode_video
from data.footage import FootageConfig, MissingFootageError
from data.schema import VideoSample, load_annotations
from data.synthetic import SyntheticConfig, generate_dataset
from models.selectors import FrameAveragingSelector, FrameSelector, RandomSelector, UniformSelector
from models.xcorr import direct_similarity, normalize_frames, xcorr_fft
from trainer.benchmarks.boundary_methods import (
    PEAK_THRESHOLD,
    timed,
    add_threads_argument,
    apply_threads,
    boundary_selectors,
    count_matches,
    precision_recall_f1,
    real_footage_report,
    scenedetect_method,
    selector_boundaries,
)
from trainer.cli_helpers import check_minimums, command_parser, parse_command

# The boundary videos use a different root seed from the speed video (seed 0), so they are
# different videos made with the same settings.
BOUNDARY_SEED = 1
# The real-footage videos of the default run (data.footage): 3 videos of 12 shots, about 68 s and
# 33 transitions in all, so that the whole run stays under 5 minutes on 2 CPU cores.
REAL_VIDEOS = 3
REAL_SEGMENTS = 12
def true_boundaries(sample: VideoSample) -> list[float]:
    """Every event start and end time of ``sample``, sorted. Distractors are not boundaries."""
    return sorted(t for e in sample.events for t in (e.start, e.end))


def benchmark_config(num_frames: int, size: int, num_videos: int, seed: int) -> SyntheticConfig:
    """Synthetic videos of ``num_frames`` frames at 10 fps with every distractor on.

    Event lengths and counts shrink so that short test videos still fit their events.
    """
    fps = 10.0
    duration = num_frames / fps
    event_len = min(3.0, duration / 2 - 0.5)
    return SyntheticConfig(num_videos=num_videos, min_duration=duration, max_duration=duration, fps=fps, size=size,
                           min_events=1, max_events=max(1, min(3, int(duration // 4))),
                           min_event_len=min(1.5, event_len), max_event_len=event_len,
                           pan_prob=1.0, flicker_prob=1.0, cut_prob=1.0, seed=seed)  # fmt: skip


def learned_selectors() -> dict[str, FrameSelector]:
    """Selectors with networks, untrained (speed does not depend on the weights).

    The encoder is the tiny random SmolVLM built locally (nothing is downloaded), so the
    embedding and importance rows measure the pipeline, not a real SigLIP tower; for those,
    benchmark with the real checkpoint on the hardware you train on.
    """
    from transformers.utils import logging as hf_logging

    from models.encoders import EmbeddingSelector, FrameEncoder
    from models.importance import FrameImportanceModel, ImportanceSelector
    from models.scene import SceneBoundaryModel, SceneBoundarySelector
    from models.tiny import build_tiny_smolvlm

    hf_logging.disable_progress_bar()  # the tiny model's save/load bars would interleave with the table
    with tempfile.TemporaryDirectory() as tmp:
        encoder = FrameEncoder(str(build_tiny_smolvlm(tmp)), pooling="mean_max")
    features = encoder(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)).shape[1]
    return {
        "embedding (tiny SmolVLM tower)": EmbeddingSelector(encoder),
        "scene-boundary BiLSTM": SceneBoundarySelector(SceneBoundaryModel()),
        "learned importance (tiny tower)": ImportanceSelector(FrameImportanceModel(feature_dim=features), encoder),
    }


def speed_report(sample: VideoSample, size: int, direct_pairs: int, k: int) -> None:
    """Prints cross-correlation direct vs FFT, decoding speed and every selector's speed on one video."""
    decode_s, video = timed(lambda: decode_video(sample.video), repeat=2)
    frames, stamps = video.frames, video.timestamps
    t = len(frames)
    print(f"video: {t} frames of {size}x{size}, torch threads: {torch.get_num_threads()}")
    print(f"decode: {t / decode_s:10.1f} frames/s  (physical limit)")

    # Direct formula vs FFT on the same consecutive pairs. The direct cost is per pair, so the
    # full-video direct time is extrapolated from a few pairs (the research notes report 398 s).
    x = normalize_frames(frames[: direct_pairs + 1], size=size).double()[:, 0]
    direct_s, direct = timed(lambda: [direct_similarity(x[i], x[i + 1]) for i in range(direct_pairs)])
    fft_s, fast = timed(lambda: xcorr_fft(x[:-1], x[1:]), repeat=5)
    err = max(abs(float(d) - float(f)) for d, f in zip(direct, fast))
    per_pair_direct = direct_s / direct_pairs
    per_pair_fft = fft_s / direct_pairs
    print(
        f"cross-correlation per pair: direct {per_pair_direct * 1e3:9.2f} ms, FFT {per_pair_fft * 1e3:7.3f} ms, "
        f"ratio {per_pair_direct / per_pair_fft:8.0f}x, max |diff| {err:.1e}"
    )
    print(f"direct formula over the whole video (extrapolated): {per_pair_direct * (t - 1):8.1f} s")

    selectors = {
        "uniform": UniformSelector(),
        "random": RandomSelector(),
        "frame-averaging": FrameAveragingSelector(),
        **boundary_selectors(size),
        **learned_selectors(),
    }
    print(f"selectors (K={k}), scoring only, frames already decoded:")
    for name, selector in selectors.items():
        seconds, _ = timed(lambda: selector.choose(frames, stamps, k), repeat=2)
        note = "  < decode cost" if seconds < decode_s else ""
        print(f"  {name:40s} {t / seconds:12.1f} frames/s{note}")
    select_command_report(sample.video, size, t, decode_s, k)


def select_command_report(video: str, size: int, frames: int, decode_s: float, k: int) -> None:
    """Prints ``python -m trainer select --selector xcorr`` on the same video, stage by stage, against decoding.

    The command runs in this process (``--workers 0``: no worker start-up in the figure) on every
    frame (``--fps native``) at the video's size, twice; the faster run is shown (the first one
    also pays for importing matplotlib and PIL).
    """
    import contextlib
    import io

    from trainer.tools.select import main as select_main

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(2):
            argv = ["--video", video, "-k", str(k), "--selector", "xcorr", "--fps", "native", "--frame_size",
                    str(size), "--workers", "0", "--output", tmp, "--overwrite"]  # fmt: skip
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                runs.append(select_main(argv)["totals"])
    totals = min(runs, key=lambda r: r["wall_seconds"])
    per_second = {stage: frames / totals[f"{stage}_seconds"] for stage in ("decode", "select", "write", "wall")}
    print(f"python -m trainer select --selector xcorr -k {k} --fps native on this video ({frames} frames, in-process):")
    print(f"  decode (as above)                        {frames / decode_s:12.1f} frames/s")
    print(f"  decode inside select                     {per_second['decode']:12.1f} frames/s")
    print(f"  select: xcorr scores + choose            {per_second['select']:12.1f} frames/s"
          f"  ({per_second['select'] / per_second['decode']:.1f}x decoding)")  # fmt: skip
    print(f"  write: frames.json, {k} JPEGs, score PNG   {per_second['write']:12.1f} frames/s")
    print(f"  end to end, one video                    {per_second['wall']:12.1f} frames/s")


def boundary_report(root: Path, num_videos: int, num_frames: int, size: int, tolerance: float) -> None:
    """Prints boundary precision/recall/F1 and end-to-end frames/s, for PySceneDetect and our selectors."""
    cfg = benchmark_config(num_frames, size, num_videos=num_videos, seed=BOUNDARY_SEED)
    samples = load_annotations(generate_dataset(root, cfg, splits={"all": 1.0}, progress=False)["all"])
    selectors = boundary_selectors(size)
    scenedetect_boundaries, scenedetect_settings = scenedetect_method() or (None, None)
    scenedetect_name = "PySceneDetect ContentDetector"

    # Per method: [matches, predictions, seconds], pooled over all videos, so precision, recall
    # and F1 are micro-averages.
    methods = ([scenedetect_name] if scenedetect_boundaries else []) + list(selectors)
    totals = {name: [0, 0, 0.0] for name in methods}

    def add(name: str, predicted: list[float], truth: list[float], seconds: float) -> None:
        totals[name][0] += count_matches(predicted, truth, tolerance)
        totals[name][1] += len(predicted)
        totals[name][2] += seconds

    num_true = total_frames = 0
    for sample in samples:
        truth = true_boundaries(sample)
        num_true += len(truth)
        decode_s, video = timed(lambda: decode_video(sample.video))
        total_frames += len(video)
        if scenedetect_boundaries:
            seconds, predicted = timed(lambda: scenedetect_boundaries(sample.video))  # decodes the file itself
            add(scenedetect_name, predicted, truth, seconds)
        for name, selector in selectors.items():
            seconds, predicted = timed(lambda: selector_boundaries(selector, video.frames, video.timestamps))
            add(name, predicted, truth, decode_s + seconds)  # each selector pays for decoding too

    print(
        f"boundary detection on {len(samples)} other synthetic videos (seed {BOUNDARY_SEED}, same settings, "
        f"every distractor on), {num_true} true boundaries:"
    )
    print(
        "  truth: every event start and end; pan/flicker/cut distractors are not boundaries "
        "(flagging one is a false positive)"
    )
    print(f"  match: greedy one-to-one within {tolerance:g} s; precision/recall/F1 pooled over all videos")
    print(
        f"  ours: local maxima of scores above ThresholdDecoder(threshold={PEAK_THRESHOLD}).cutoff "
        f"= mean + {PEAK_THRESHOLD} std per video, at the decoded frame timestamps"
    )
    if scenedetect_settings:
        print(f"  {scenedetect_settings}")
    else:
        print("  PySceneDetect: skipped, not installed (install it with: pip install -e '.[bench]')")
    print("  frames/s is end to end, decoding included: PySceneDetect decodes with OpenCV itself, ours with PyAV")
    print(f"  {'method':36s} {'precision':>9s} {'recall':>7s} {'F1':>7s} {'frames/s':>10s}")
    for name, (matches, num_pred, seconds) in totals.items():
        precision, recall, f1 = precision_recall_f1(matches, num_pred, num_true)
        print(f"  {name:36s} {precision:9.3f} {recall:7.3f} {f1:7.3f} {total_frames / seconds:10.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("bench", __doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per synthetic video")
    parser.add_argument("--size", type=int, default=128, help="video side and cross-correlation working size")
    parser.add_argument("--direct_pairs", "--direct-pairs", type=int, default=3, help="pairs timed with the direct formula")
    parser.add_argument("--k", type=int, default=8, help="frame budget for the selectors")
    parser.add_argument("--f1_videos", "--f1-videos", type=int, default=8, help="synthetic videos for the boundary comparison")
    parser.add_argument("--tolerance", type=float, default=0.5, help="boundary matching tolerance in seconds")
    parser.add_argument("--real_videos", "--real-videos", type=int, default=REAL_VIDEOS,
                        help="real-footage videos for the boundary comparison (0 skips it)")  # fmt: skip
    parser.add_argument("--real_segments", "--real-segments", type=int, default=REAL_SEGMENTS, help="shots per real-footage video")
    add_threads_argument(parser)
    args = parse_command(parser, argv)
    check_minimums(parser, args, f1_videos=1, tolerance=0, real_videos=0, real_segments=2)
    apply_threads(parser, args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = benchmark_config(args.frames, args.size, num_videos=1, seed=0)
        paths = generate_dataset(Path(tmp) / "speed", cfg, splits={"all": 1.0}, progress=False)
        speed_report(load_annotations(paths["all"])[0], args.size, args.direct_pairs, args.k)
        boundary_report(Path(tmp) / "boundaries", args.f1_videos, args.frames, args.size, args.tolerance)
    if args.real_videos:
        footage = FootageConfig(num_videos=args.real_videos, segments_per_video=args.real_segments)
        try:
            real_footage_report(footage, args.size, args.tolerance)
        except MissingFootageError as err:
            print(f"real-footage boundary detection: skipped ({err})")


if __name__ == "__main__":
    main()
