"""``python -m trainer select``: the K frames of your own videos that a selector picks.

::

    python -m trainer select --video a.mp4 b.mkv -k 8 --selector xcorr --output outputs/select
    python -m trainer select --folder ~/videos --recursive -k 8 --from exports/NAME --output outputs/select
    python -m trainer select --video a.mp4 --from checkpoints/smoke_rl/last.ckpt --output outputs/select

``--selector`` is a baseline's short name (:data:`models.baselines.BASELINES`: uniform, random,
pixel_l1, pixel_l2, flow, averaging, xcorr, xcorr_gray, xcorr_adaptive, shot_boundary, transnet), a
selector class path of this project, or ``learned``: the selector of ``--from``, which is a Lightning checkpoint, an export
folder (``python -m trainer export``) or a Hub id of one (read by :func:`trainer.loading.load_trained`
under its one trust rule). With ``--from`` the default is ``learned``, without it ``xcorr``.

Videos are decoded at ``--fps`` candidate frames per second with ``--frame_size`` pixels on the
longest edge (``data.fps`` / ``data.frame_size`` of the configs, with their defaults; each frame
keeps its true presentation time), in ``--workers`` DataLoader processes while the main process
runs the selector. ``--output`` then holds::

    summary.jsonl           one JSON line per video, written as each finishes: status (ok / skipped
                            and why), the chosen times, the seconds spent decoding, selecting, writing
    run.json                the run's settings and, at the end, its totals (frames/s of each stage)
    NAME/frames.json        the chosen frames: indices, true timestamps, scores, files; every
                            candidate's time and score; the selector (class path, init args,
                            decoder, source) and the decode settings
    NAME/frame_RR_TTTT.TTTs.jpg
                            each chosen frame (rank RR, at T seconds): as decoded for the selector
                            (``--frame_size``), or with ``--jpeg_size native`` (or N pixels on the
                            longest edge) decoded again from the file, only those K frames
                            converted, at the same times
    NAME/selection.png      the score curve over time, the chosen frames marked, and a filmstrip

``NAME`` is the video's file name without its suffix, made safe by :func:`data.outputs.safe_names`:
a name that had to change (a separator or control character, leading dots, over 100 bytes,
``run.json`` or ``summary.jsonl``) or that two videos share (``a/clip.mp4``, ``b/clip.mp4``)
gets ``-`` and 8 hex digits of the sha256 of the video's absolute path; ``summary.jsonl`` keeps
each video's path as given (``video``) beside its ``output`` name. A video's folder is built
beside its final place and renamed into it when complete, and each summary line is flushed to
disk before the next video starts, so a crash or a later bad file never costs what was already
written; ``--resume`` continues such a run (the same settings), skipping every video with a
line in ``summary.jsonl`` and removing what a killed write left. Unreadable files, files with no
frames and videos with fewer than K candidate frames are skipped and listed with the reason;
``--fail_fast`` stops at the first one instead. A run in which no video could be used exits
with status 1 and the first reasons; an ``--output`` that is a file or cannot be written is
refused (status 2) before any model loads.
"""

from __future__ import annotations

from argparse import ArgumentTypeError

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentParser

from data.atomic import write_atomic
from data.decode import decode_video
from models.baselines import BASELINES
from models.decoders import check_budget
from models.selectors import FrameSelector
from trainer.cli_helpers import build_selector, command_parser, parse_command, resolve_device
from trainer.loading import LoadError, TrainedSelector, load_trained
from trainer.plots import plot_selection
from trainer.tools.video_files import (
    RUN_FILE,
    SUMMARY_FILE,
    VideoRun,
    add_input_arguments,
    check_input_arguments,
    selector_record,
    start_output,
)

log = logging.getLogger(__name__)

FRAMES_FILE = "frames.json"
PLOT_FILE = "selection.png"


# --------------------------------------------------------------------------------------- selection
def choose_with_scores(
    selector: FrameSelector, frames: torch.Tensor, timestamps: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(indices, shown frames, their times, every candidate's score)`` of one selection.

    Equal to ``selector.choose`` plus ``selector.scores(..., k)`` (tested for every baseline and a
    importance model), but where the selector picks frames by decoding its own scores, as most do,
    the scores are computed once instead of twice: scoring is the expensive part.

    Raises:
        ValueError: ``k`` is not in ``1..T``.
    """
    check_budget(k, frames.shape[0])
    inner = selector.inner if isinstance(selector, TrainedSelector) else selector
    with torch.no_grad():
        scores = inner.scores(frames, timestamps, k)
        if type(inner).select is FrameSelector.select and type(inner).choose is FrameSelector.choose:
            pairwise = inner.pairwise(frames, timestamps) if getattr(inner.decoder, "needs_pairwise", False) else None
            idx = inner.decoder.decode(scores, k, pairwise=pairwise).cpu()
            shown, times = frames[idx], timestamps[idx]
        else:  # a selector with its own rule (uniform, frame averaging): its scores are for show only
            idx, shown, times = inner.choose(frames, timestamps, k)
    return idx, shown, times, scores.detach().double().cpu()


def make_selector(name: str, source: str | None) -> tuple[FrameSelector, dict[str, Any], Any]:
    """``(selector, its frames.json record, the loaded trained result or None)`` for ``--selector``/``--from``."""
    if name == "learned":
        if source is None:
            raise ValueError("--selector learned needs --from CKPT_OR_EXPORT_OR_HUB_ID")
        trained = load_trained(source)
        return trained.selector.eval(), selector_record(name, trained.selector, source, trained.kind), trained
    if source is not None:
        raise ValueError(f"--from is the trained selector's source; --selector {name} does not read it (use learned)")
    selector = build_selector(name, None).eval()
    return selector, selector_record(name, selector), None


# --------------------------------------------------------------------------------------- outputs
def frame_file(rank: int, seconds: float) -> str:
    """JPEG name of the ``rank``-th chosen frame (in time order), shown at ``seconds``."""
    return f"frame_{rank:02d}_{seconds:08.3f}s.jpg"


def write_selection(
    folder: Path,
    video: Path,
    item: dict[str, Any],
    chosen: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    selector: dict[str, Any],
    decode: dict[str, Any],
    k: int,
    plot: bool = True,
    jpegs: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Writes one video's ``frames.json``, JPEGs and PNG into ``folder`` (built aside, renamed in whole).

    Args:
        jpegs: The frames to write as JPEG (default: the shown frames of ``chosen``, as decoded).

    Returns:
        The ``frames.json`` payload.
    """
    from PIL import Image

    idx, shown, times, scores = chosen
    jpegs = shown if jpegs is None else jpegs
    stamps = item["timestamps"]
    files = [frame_file(rank, float(t)) for rank, t in enumerate(times)]
    payload = {
        "video": str(video),
        "duration": round(float(item["duration"]), 6),
        "native_fps": round(float(item["native_fps"]), 6),
        "candidates": len(stamps),
        "k": k,
        "indices": [int(i) for i in idx],
        "timestamps": [round(float(t), 6) for t in times],
        "scores": [float(scores[i]) for i in idx],
        "files": files,
        "jpeg_size": list(jpegs.shape[-1:-3:-1]),  # width, height
        "selector": selector,
        "decode": decode,
        "candidate_timestamps": [round(float(t), 6) for t in stamps],
        "candidate_scores": [float(s) for s in scores],
    }

    def build(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / FRAMES_FILE).write_text(json.dumps(payload, indent=1) + "\n")
        for name, frame in zip(files, jpegs):
            Image.fromarray(frame.permute(1, 2, 0).contiguous().numpy()).save(tmp / name, format="JPEG", quality=92)
        if plot:
            rows = [(selector["name"], scores, idx, shown)]
            plot_selection(tmp / PLOT_FILE, video.name, stamps, float(item["duration"]), rows, k)

    write_atomic(folder, build)
    return payload


def redecoded_frames(path: Path, idx: torch.Tensor, times: torch.Tensor, decode: dict[str, Any],
                     size: int | None) -> torch.Tensor:  # fmt: skip
    """The chosen frames ``idx`` decoded again from ``path`` with the same ``decode`` settings (fps,
    max_frames) but ``size`` pixels on the longest edge (``None``: native), only those converted.

    Raises:
        RuntimeError: If the file gives other times for those frames than the first decode did.
    """
    wanted = sorted(set(idx.tolist()))
    video = decode_video(path, fps=decode["fps"], size=size, max_frames=decode["max_frames"], keep=wanted)
    pos = {i: n for n, i in enumerate(wanted)}
    order = [pos[int(i)] for i in idx]
    if not torch.equal(video.timestamps[order], times.to(video.timestamps.dtype)):
        raise RuntimeError(f"{path}: decoding it again gave other frame times ({video.timestamps[order].tolist()} "
                           f"instead of {times.tolist()}); the file changed during the run?")  # fmt: skip
    return video.frames[order]


# --------------------------------------------------------------------------------------- CLI
def build_parser() -> ArgumentParser:
    parser = command_parser("select",
        "Pick the K frames of your videos that a selector finds most worth showing: "
        "frames.json, the frames as JPEG and a score plot per video, and a summary of the run.",
    )
    add_input_arguments(parser)
    parser.add_argument("-k", "--k", type=int, default=8, help="frames to pick per video (default 8)")
    parser.add_argument("--selector", default=None,
                        help=f"{', '.join(BASELINES)}, a selector class path, or learned (the --from selector); "
                             "default: learned with --from, else xcorr")  # fmt: skip
    parser.add_argument("--from", dest="source", metavar="CKPT_OR_EXPORT_OR_HUB_ID",
                        help="a trained result: Lightning checkpoint, export folder or Hub id ORG/NAME")  # fmt: skip
    parser.add_argument("--no_plot", "--no-plot", action="store_true", help="leave out selection.png (matplotlib is the slowest part)")
    parser.add_argument("--jpeg_size", "--jpeg-size", default="decoded", type=_jpeg_size,
                        help="the JPEGs' longest edge: decoded (default: as the selector saw them, --frame_size), "
                             "native, or N pixels; other than decoded, the K chosen frames are decoded again from "
                             "the file (a second decoding pass up to the last chosen frame, timed as writing)")  # fmt: skip
    return parser


def _jpeg_size(text: str) -> str | int:
    if text in ("decoded", "native"):
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise ArgumentTypeError(f"--jpeg_size must be decoded, native or a pixel count >= 2, got {text}")
    return value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m trainer select``.

    Returns:
        ``output``, ``selected`` and ``skipped`` (``[(path, reason)]``) videos, and ``totals``
        (frames and seconds per stage, frames/s).
    """
    parser = build_parser()
    args = parse_command(parser, argv)
    paths = check_input_arguments(parser, args)
    name = args.selector or ("learned" if args.source else "xcorr")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        selector, record, _ = make_selector(name, args.source)
    except (ValueError, LoadError, FileNotFoundError) as err:
        parser.error(str(err))
    selector.to(resolve_device(args.device))
    output = Path(args.output)
    decode = {"fps": args.fps, "frame_size": args.frame_size, "max_frames": args.max_frames}
    settings = {"command": "select", "k": args.k, "selector": record, "decode": decode, "jpeg_size": args.jpeg_size,
                "videos": len(paths), "workers": args.workers}  # fmt: skip
    try:
        finished = start_output(output, settings, args.overwrite, args.resume)
    except ValueError as err:
        parser.error(str(err))

    run = VideoRun(parser, output, paths, finished, (SUMMARY_FILE, RUN_FILE), decode, args.k, args.workers,
                   args.fail_fast)  # fmt: skip
    totals = {"videos": 0, "frames": 0, "decode_seconds": 0.0, "select_seconds": 0.0, "write_seconds": 0.0}
    wall = time.perf_counter()
    warned = False
    with run.running():
        for path, folder, item in run:
            start = time.perf_counter()
            chosen = choose_with_scores(selector, item["frames"], item["timestamps"], args.k)
            selected = time.perf_counter()
            jpegs = None
            if args.jpeg_size != "decoded":
                idx, shown, times, _ = chosen
                if torch.equal(shown, item["frames"][idx]):
                    size = None if args.jpeg_size == "native" else args.jpeg_size
                    jpegs = redecoded_frames(path, idx, times, decode, size)
                elif not warned:  # frame averaging shows averages, which no file holds
                    log.warning("%s shows frames that are not decoded frames: its JPEGs stay at the decoded size",
                                record["name"])  # fmt: skip
                    warned = True
            write_selection(output / folder, path, item, chosen, record, decode, args.k, plot=not args.no_plot,
                            jpegs=jpegs)  # fmt: skip
            written = time.perf_counter()
            seconds = {"decode": item["decode_seconds"], "select": selected - start, "write": written - selected}
            run.done(path, folder, {"frames": len(item["timestamps"]),
                                    "timestamps": [round(float(t), 6) for t in chosen[2]]},
                     totals, len(item["timestamps"]), seconds)  # fmt: skip
    run.finish(settings, totals, wall, stages=("decode", "select", "write"))
    print(f"selected {args.k} frames in {totals['videos']} of {len(run.todo)} videos{run.resumed} -> {output}")
    print(run.timing(totals, "candidate frames", args.workers))
    return {"output": str(output), "selected": totals["videos"], "skipped": run.skipped, "resumed": len(finished),
            "totals": totals}  # fmt: skip


if __name__ == "__main__":
    main()
