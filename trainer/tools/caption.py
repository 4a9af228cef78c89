"""``python -m trainer caption``: dense captions of your own videos from a trained result.

::

    python -m trainer caption --video a.mp4 b.mkv --from exports/NAME --output outputs/caption
    python -m trainer caption --folder ~/videos --from ORG/NAME -k 8 --output outputs/caption
    python -m trainer caption --video a.mp4 --from checkpoints/smoke/last.ckpt --output outputs/caption

``--from`` is a captioner's Lightning checkpoint, a merged or adapter-only export folder
(``python -m trainer export``) or a Hub id of one; :func:`trainer.loading.load_trained` gives its
frame selector and :func:`trainer.loading.load_vlm` its SmolVLM, under the one trust rule (no
remote code, no unpickling). Each video is decoded as for ``python -m trainer select`` (same
``--fps``, ``--frame_size``, worker processes, skipping of bad files), the selector picks ``-k``
frames (default: the budget the result was trained with), and the VLM, on the GPU when there is
one, writes one event per line, ``MM:SS-MM:SS caption``, shown the frames with their true times.
``--output`` then holds::

    captions.json      every video's events in the ActivityNet submission format
                       (``results``: ``{"sentence", "timestamp": [start, end]}``), with the shown
                       frames' times and the raw text; rewritten at most every
                       ``CAPTIONS_EVERY_SECONDS`` and when the run ends, also by an error
                       or Ctrl-C (``summary.jsonl`` has each video's text at once)
    NAME.srt, NAME.vtt each video's events as SubRip and WebVTT subtitles, one cue per event
                       spanning its time (the same times as captions.json, to the millisecond)
    summary.jsonl      one JSON line per video, written as each finishes (status, text, seconds)
    run.json           the run's settings and totals

Event times are clipped to the video (an event the model dates past the end is dropped) and
rounded to milliseconds, the precision of both subtitle formats, so all three files agree.
``NAME`` is named as by ``select`` (:func:`trainer.tools.video_files.output_names`: safe, unique, the
video's path kept in ``summary.jsonl``) and is the video's id in ``captions.json``. ``--resume``
continues a run as ``select`` does; its ``captions.json`` holds the videos captioned before it
too. A run in which no video could be captioned exits with status 1 and the first reasons.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentParser

from data.atomic import write_atomic
from models.prompting import parse_dense_caption
from trainer.cli_helpers import check_minimums, command_parser, parse_command, resolve_device
from trainer.loading import LoadError, frame_budget, load_trained, load_vlm
from trainer.predictions import write_predictions
from trainer.tools.video_files import (
    RUN_FILE,
    SUMMARY_FILE,
    VideoRun,
    add_input_arguments,
    check_input_arguments,
    clock,
    rate,
    selector_record,
    start_output,
)

log = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.json"
# captions.json holds every video so far and is replaced whole, so rewriting it after each video
# would cost I/O that grows with the square of the videos; every half minute bounds what a killed
# run (SIGKILL: no `finally`) loses from it to that, and summary.jsonl still has each video's text.
CAPTIONS_EVERY_SECONDS = 30.0


# --------------------------------------------------------------------------------------- events
def caption_events(text: str, duration: float) -> list[dict[str, Any]]:
    """The generated text's events as ``{"sentence", "timestamp": [start, end]}``, inside the video.

    Times are clipped to ``[0, duration]`` and rounded to milliseconds (what SRT and WebVTT hold);
    an event that starts at or after the end of the video is dropped.
    """
    events = []
    for line in parse_dense_caption(text):
        start, end = round(min(line.start, duration), 3), round(min(line.end, duration), 3)
        if start >= round(duration, 3):
            log.info("dropping an event dated past the video's end (%.3f s): %r", duration, line.caption)
            continue
        events.append({"sentence": line.caption, "timestamp": [start, end]})
    return events


def _cue_text(sentence: str) -> str:
    # A blank line ends a cue in both formats and "-->" starts a timing line in WebVTT: neither
    # may appear inside a caption.
    lines = [line.strip() for line in sentence.replace("-->", "->").splitlines() if line.strip()]
    return "\n".join(lines) or "..."


def srt_text(events: list[dict[str, Any]]) -> str:
    """SubRip subtitles: numbered cues ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` in start order."""
    cues = sorted(events, key=lambda e: tuple(e["timestamp"]))
    blocks = [
        f"{n}\n{clock(e['timestamp'][0], ',')} --> {clock(e['timestamp'][1], ',')}\n{_cue_text(e['sentence'])}\n"
        for n, e in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def webvtt_text(events: list[dict[str, Any]]) -> str:
    """WebVTT subtitles: the ``WEBVTT`` header, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` in start order."""
    cues = sorted(events, key=lambda e: tuple(e["timestamp"]))
    blocks = [
        f"{clock(e['timestamp'][0], '.')} --> {clock(e['timestamp'][1], '.')}\n{_cue_text(e['sentence'])}\n"
        for e in cues
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def resumed_prediction(line: dict[str, Any]) -> dict[str, Any]:
    """The ``captions.json`` entry of a video an earlier run captioned, from its ``summary.jsonl`` line.

    Raises:
        ValueError: The line lacks the video's duration (written by an older version: ``--overwrite``).
    """
    if "duration" not in line:
        raise ValueError(f"{SUMMARY_FILE}: the line of {line['video']} has no duration (an older version wrote "
                         "it): --overwrite starts the run over")  # fmt: skip
    return {"video_id": line["video_id"], "events": caption_events(line["text"], line["duration"]),
            "text": line["text"], "frame_times": line["frame_times"]}  # fmt: skip


# --------------------------------------------------------------------------------------- CLI
@contextlib.contextmanager
def _written_at_exit(predictions: list[dict[str, Any]], path: Path, details: str):
    """Writes ``predictions`` to ``path`` when the block ends, by an error or Ctrl-C too: every video
    captioned so far (none: still one valid, empty submission, so a run always leaves its JSON)."""
    try:
        yield
    finally:
        write_predictions(predictions, path, details)


def build_parser() -> ArgumentParser:
    parser = command_parser("caption",
        "Dense captions of your videos from a trained captioner: the selector picks K frames, "
        "SmolVLM captions them; ActivityNet JSON, SRT and WebVTT files.",
    )
    add_input_arguments(parser)
    parser.add_argument("--from", dest="source", required=True, metavar="EXPORT_OR_HUB_ID_OR_CKPT",
                        help="a trained captioner: export folder, Hub id ORG/NAME or Lightning checkpoint")  # fmt: skip
    parser.add_argument("-k", "--k", type=int, default=None,
                        help="frames shown to the VLM per video (default: the budget it trained with)")  # fmt: skip
    parser.add_argument("--max_new_tokens", "--max-new-tokens", type=int, default=None,
                        help="generation length (default: the recorded vlm.max_new_tokens)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m trainer caption``.

    Returns:
        ``output``, ``captioned`` (videos), ``skipped`` (``[(path, reason)]``) and ``totals``.
    """
    parser = build_parser()
    args = parse_command(parser, argv)
    paths = check_input_arguments(parser, args)
    check_minimums(parser, args, max_new_tokens=1)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        trained = load_trained(args.source)
        vlm = load_vlm(trained)
    except (LoadError, FileNotFoundError) as err:
        parser.error(str(err))
    selector = trained.selector.eval()
    k = args.k or frame_budget(trained)
    if k is None:
        parser.error(f"{args.source} records no frame budget: pass -k")
    try:
        vlm.check_frame_budget(k)  # before any video is decoded
    except ValueError as err:
        parser.error(str(err))
    device = resolve_device(args.device)
    vlm.to(device)
    selector.to(device)
    output = Path(args.output)
    decode = {"fps": args.fps, "frame_size": args.frame_size, "max_frames": args.max_frames}
    settings = {"command": "caption", "k": k, "from": {"source": str(args.source), "kind": trained.kind},
                "selector": selector_record("learned", selector, args.source, trained.kind), "decode": decode,
                "videos": len(paths), "device": str(device), "vlm": vlm.model_name_or_path}  # fmt: skip
    try:
        finished = start_output(output, settings, args.overwrite, args.resume)
        # A resumed run's captions.json holds the videos captioned before it too, from their summary lines.
        predictions = [resumed_prediction(line) for line in finished.values() if line["status"] == "ok"]
    except ValueError as err:
        parser.error(str(err))
    details = f"frames selected by the selector of {args.source}, K={k}; python -m trainer caption"

    run = VideoRun(parser, output, paths, finished, (CAPTIONS_FILE, SUMMARY_FILE, RUN_FILE), decode, k, args.workers,
                   args.fail_fast)  # fmt: skip
    totals = {"videos": 0, "frames": 0, "decode_seconds": 0.0, "caption_seconds": 0.0}
    wall = last_write = time.perf_counter()
    with run.running(), _written_at_exit(predictions, output / CAPTIONS_FILE, details):
        for path, name, item in run:
            start = time.perf_counter()
            with torch.no_grad():
                _, shown, times = selector.choose(item["frames"], item["timestamps"], k)
            text = vlm.generate([shown], [times], [item["duration"]], max_new_tokens=args.max_new_tokens)[0]
            seconds = time.perf_counter() - start
            events = caption_events(text, item["duration"])
            write_atomic(output / f"{name}.srt", srt_text(events))
            write_atomic(output / f"{name}.vtt", webvtt_text(events))
            predictions.append({"video_id": name, "events": events, "text": text,
                                "frame_times": [round(float(t), 3) for t in times]})  # fmt: skip
            if time.perf_counter() - last_write >= CAPTIONS_EVERY_SECONDS:
                # All videos so far, replaced in one rename: a crash leaves the previous complete file.
                write_predictions(predictions, output / CAPTIONS_FILE, details)
                last_write = time.perf_counter()
            run.done(path, name, {"video_id": name, "events": len(events), "text": text, "duration": item["duration"],
                                  "frame_times": predictions[-1]["frame_times"]}, totals, len(item["timestamps"]),
                     {"decode": item["decode_seconds"], "caption": seconds})  # fmt: skip
    totals["videos_per_second"] = rate(totals["videos"], time.perf_counter() - wall)
    run.finish(settings, totals, wall)
    print(f"captioned {totals['videos']} of {len(run.todo)} videos{run.resumed} with K={k} frames -> "
          f"{output}/{CAPTIONS_FILE}, NAME.srt, NAME.vtt ({device})")  # fmt: skip
    return {"output": str(output), "captioned": totals["videos"], "skipped": run.skipped, "resumed": len(finished),
            "totals": totals, "predictions": predictions}  # fmt: skip


if __name__ == "__main__":
    main()
