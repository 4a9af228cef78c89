"""Runs over your own video files, as ``select`` and ``caption`` make them.

The files (``--video``, ``--folder``), their decoding in DataLoader workers ahead of use, one safe
and unique output name per video (:func:`output_names`), the output folder's ``run.json`` and
``summary.jsonl`` (written through, so ``--resume`` continues a killed run and ``--overwrite``
starts it over), skipping or ``--fail_fast`` on a video that cannot be used, and the options of
both commands. The docstring of :mod:`trainer.tools.select` describes what a run writes.
"""

from __future__ import annotations

from argparse import ArgumentTypeError

import contextlib
import inspect
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from data.atomic import remove_leftovers, write_atomic
from data.datamodule import BAD_VIDEO_ERRORS, DenseCaptionDataModule, as_is
from data.decode import decode_video
from data.outputs import check_writable, safe_names
from models.selectors import FrameSelector
from jsonargparse import ArgumentParser, Namespace

from trainer.cli_helpers import RowsWriter, add_run_arguments, check_minimums, read_records, repair_rows
from trainer.loading import TrainedSelector, spec_of

log = logging.getLogger(__name__)

#: File suffixes ``--folder`` picks up (any file named with ``--video`` is tried, whatever its suffix).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp")
SUMMARY_FILE = "summary.jsonl"
RUN_FILE = "run.json"
_DATA_DEFAULTS = inspect.signature(DenseCaptionDataModule).parameters
#: The configs' decoding defaults (``data.fps``, ``data.frame_size``), read from the data module itself.
DEFAULT_FPS = float(_DATA_DEFAULTS["fps"].default)
DEFAULT_FRAME_SIZE = int(_DATA_DEFAULTS["frame_size"].default)


class FailFast(RuntimeError):
    """``--fail_fast``: a video could not be used, and the run stops there."""


# --------------------------------------------------------------------------------------- inputs
def find_videos(videos: Sequence[str] = (), folder: str | None = None, recursive: bool = False) -> list[Path]:
    """The files to run on: ``videos`` as given, then the video files of ``folder`` in name order.

    Hidden files (a leading ``.``, such as the temporary files of an atomic write) are left out
    of a folder. A named video that does not exist is kept: it is reported as skipped, not lost.

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
        ValueError: Nothing to run on.
    """
    paths = [Path(v).expanduser() for v in videos]
    if folder is not None:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"--folder {folder}: no such folder")
        found = root.rglob("*") if recursive else root.iterdir()
        paths += sorted(
            p for p in found
            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )  # fmt: skip
        if not paths:
            more = "" if recursive else " (--recursive looks in its subfolders too)"
            raise ValueError(f"--folder {folder}: no video files ({', '.join(VIDEO_SUFFIXES)}){more}")
    if not paths:
        raise ValueError("no videos: give --video FILE [FILE ...] or --folder DIR")
    return paths


def output_names(paths: Sequence[Path], reserved: Sequence[str] = (), taken: Sequence[str] = ()) -> list[str]:
    """One output name per video, by :func:`data.outputs.safe_names`: its file name without the suffix,
    made safe, with a short hash of its absolute path where it had to change or two would be one."""
    return safe_names([p.stem for p in paths], [os.path.abspath(p) for p in paths], reserved, taken)


class VideoFiles(Dataset):
    """Decodes video files in DataLoader workers; a bad file becomes ``{"index", "skipped": reason}``.

    Args:
        paths: The video files.
        fps: Candidate frames per second (``None``: every frame).
        frame_size: Longest edge of the decoded frames (``None``: as stored).
        max_frames: Cap on candidate frames per video (``None``: the whole video).
    """

    def __init__(
        self, paths: Sequence[Path], fps: float | None, frame_size: int | None, max_frames: int | None = None
    ) -> None:
        self.paths = list(paths)
        self.fps = fps
        self.frame_size = frame_size
        self.max_frames = max_frames

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            video = decode_video(self.paths[index], fps=self.fps, size=self.frame_size, max_frames=self.max_frames)
        except BAD_VIDEO_ERRORS as err:
            return {"index": index, "skipped": str(err)}
        return {"index": index, "frames": video.frames, "timestamps": video.timestamps, "duration": video.duration,
                "native_fps": video.native_fps, "decode_seconds": time.perf_counter() - start}  # fmt: skip


def decoded_videos(files: VideoFiles, workers: int) -> Iterator[dict[str, Any]]:
    """``files``' items in order, decoded by ``workers`` processes (0: in this process) ahead of their use."""
    yield from DataLoader(files, batch_size=None, collate_fn=as_is, num_workers=workers)


def default_workers() -> int:
    """Decoding processes: one per core but the one the selector runs on, at least 1, at most 4."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


# --------------------------------------------------------------------------------------- outputs
def selector_record(name: str, selector: FrameSelector, source: str | None = None, kind: str | None = None) -> dict[str, Any]:
    """What ``frames.json`` says about the selector: its name, class path and init args, decoder, source."""
    inner = selector.inner if isinstance(selector, TrainedSelector) else selector
    record = {"name": name, **spec_of(inner, None)}
    if hasattr(inner, "decoder"):
        record["decoder"] = spec_of(inner.decoder, None)
    if source is not None:
        record["from"] = {"source": str(source), "kind": kind}
    return record


def check_output(output: Path, overwrite: bool, resume: bool) -> None:
    """Refuses, before any model loads, an ``output`` that cannot be written or holds a run the flags do not name.

    Raises:
        OSError: ``output`` is a file, or no file can be created there.
        ValueError: ``--resume`` with ``--overwrite``.
        FileExistsError: ``output`` holds a run and neither flag says what to do with it.
    """
    check_writable(output)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if (output / SUMMARY_FILE).exists() and not (overwrite or resume):
        raise FileExistsError(f"{output} already holds a run ({SUMMARY_FILE}): --resume continues it, --overwrite "
                              "starts it over, or use another --output")  # fmt: skip


#: What a resumed run must share with the run that wrote ``run.json`` (the rest may differ: workers, ...).
RESUME_KEYS = ("command", "k", "selector", "decode", "jpeg_size", "from")


def start_output(output: Path, settings: dict[str, Any], overwrite: bool, resume: bool) -> dict[str, dict[str, Any]]:
    """Creates ``output`` and writes ``run.json``; returns the summary lines of the videos a resumed run finished.

    With ``resume``, the earlier run's settings must match (:data:`RESUME_KEYS`), a summary line
    cut off by a kill is removed, and so is every temporary file or folder a killed write left
    (:func:`data.atomic.remove_leftovers`), as with ``overwrite``, which also starts the summary over.

    Returns:
        Video path (as given) to its line, ``ok`` or ``skipped``: neither is run again.

    Raises:
        ValueError: The earlier run had other settings, or its summary is not this command's.
    """
    output.mkdir(parents=True, exist_ok=True)
    summary = output / SUMMARY_FILE
    finished: dict[str, dict[str, Any]] = {}
    if resume and summary.is_file():
        old = json.loads((output / RUN_FILE).read_text()) if (output / RUN_FILE).is_file() else {}
        now = json.loads(json.dumps(settings))  # as JSON reads it back: tuples are lists
        differs = [key for key in RESUME_KEYS if old.get(key) != now.get(key)]
        if differs:
            detail = "; ".join(f"{key}: {old.get(key)!r} there, {now.get(key)!r} now" for key in differs)
            raise ValueError(f"{output} holds a run with other settings ({detail}): use the same settings, "
                             "another --output, or --overwrite")  # fmt: skip
        repair_rows(summary, key="video")
        finished = {line["video"]: line for line in read_records(summary)}
    elif overwrite:
        summary.unlink(missing_ok=True)
    if resume or overwrite:
        for path in remove_leftovers(output):
            log.info("removed %s, left by a killed write", path)
    write_atomic(output / RUN_FILE, json.dumps(settings, indent=1) + "\n")
    return finished


def skip_reason(item: dict[str, Any], k: int, fps: float | None) -> str | None:
    """Why a decoded item cannot be selected from (``None``: it can)."""
    if "skipped" in item:
        return item["skipped"]
    count = len(item["timestamps"])
    if count < k:
        rate = "every frame" if fps is None else f"{fps:g} fps"
        return f"{count} candidate frames at {rate}, fewer than K={k} (use a higher --fps or a smaller -k)"
    return None


def report_skipped(skipped: list[tuple[Path, str]]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} video(s):")
        for path, reason in skipped:
            print(f"  {path}: {reason}")


class VideoRun:
    """The loop ``select``, ``caption`` and ``scenes`` share over decoded videos, and its bookkeeping.

    Iterating yields ``(path, name, item)`` for each video still to do that can be used, decoded
    ahead by worker processes; one that cannot (unreadable, no frames, fewer than K candidates)
    gets a ``skipped`` line in ``summary.jsonl`` with the reason and is listed at the end, or,
    with ``fail_fast``, stops the run: :meth:`running` then exits with the error, after every
    video before it was written. Each finished video's line goes through :meth:`done`, and
    :meth:`check_done` ends a run in which no video was done with an error.

    Args:
        parser: The command's parser (for the error exits).
        output: The run's folder.
        paths: The video files, in order.
        finished: The summary lines of the videos a resumed run finished (:func:`start_output`):
            they are not run again, and their names (``output``) are not given again.
        reserved: The run's own file names, which no video's output may take.
        decode: ``fps``, ``frame_size`` and ``max_frames`` of the decoding.
        k: Frames to choose (videos with fewer candidates are skipped).
        workers: Decoding processes.
        fail_fast: Stop at the first video that cannot be used.

    Attributes:
        todo: The videos this process runs, and ``names`` their output names (:func:`output_names`).
        skipped: ``(path, reason)`` of the videos this process skipped.
    """

    def __init__(self, parser: ArgumentParser, output: Path, paths: list[Path],
                 finished: dict[str, dict[str, Any]], reserved: Sequence[str], decode: dict[str, Any], k: int,
                 workers: int, fail_fast: bool) -> None:  # fmt: skip
        self.parser, self.output, self.finished = parser, output, finished
        self.k, self.fps, self.workers, self.fail_fast = k, decode["fps"], workers, fail_fast
        self.todo = [path for path in paths if str(path) not in finished]
        taken = [line["output"] for line in finished.values() if "output" in line]
        self.names = output_names(self.todo, reserved, taken)
        self.files = VideoFiles(self.todo, decode["fps"], decode["frame_size"], decode["max_frames"])
        self.skipped: list[tuple[Path, str]] = []
        self.ok = 0
        self.writer = RowsWriter(output / SUMMARY_FILE)
        if finished:
            print(f"resuming: {len(paths) - len(self.todo)} of {len(paths)} videos are finished in {output}")

    def __iter__(self) -> Iterator[tuple[Path, str, dict[str, Any]]]:
        desc = self.parser.prog.rsplit(" ", 1)[-1]
        for item in tqdm(decoded_videos(self.files, self.workers), total=len(self.todo), desc=desc, unit="video"):
            path, name = self.todo[item["index"]], self.names[item["index"]]
            reason = skip_reason(item, self.k, self.fps)
            if reason is None:
                yield path, name, item
                continue
            self.writer.append({"video": str(path), "status": "skipped", "reason": reason})
            self.skipped.append((path, reason))
            if self.fail_fast:
                raise FailFast(f"{path}: {reason}")
            log.warning("skipping %s: %s", path, reason)

    def done(self, path: Path, name: str, record: dict[str, Any], totals: dict[str, Any], frames: int,
             seconds: dict[str, float]) -> None:  # fmt: skip
        """Appends a finished video's line to ``summary.jsonl`` (written through at once): its path
        as given (``video``), its output name (``output``), ``record`` and each stage's ``seconds``;
        and adds the video to ``totals``: a video, its ``frames`` and each stage's seconds."""
        self.writer.append({"video": str(path), "output": name, "status": "ok", **record,
                            "seconds": {stage: round(value, 4) for stage, value in seconds.items()}})  # fmt: skip
        self.ok += 1
        totals["videos"] += 1
        totals["frames"] += frames
        for stage, value in seconds.items():
            totals[f"{stage}_seconds"] += value

    @property
    def resumed(self) -> str:
        """`` (N finished before)`` for the closing line of a resumed run, else empty."""
        return f" ({len(self.finished)} finished before)" if self.finished else ""

    def check_done(self) -> None:
        """Exits with status 1, naming the first reasons, when no video of the run (resumed ones
        included) was done."""
        if self.ok or any(line.get("status") == "ok" for line in self.finished.values()):
            return
        reasons = [(line["video"], line.get("reason", "?")) for line in self.finished.values()] + self.skipped
        first = "; ".join(f"{path}: {reason}" for path, reason in reasons[:3])
        self.parser.exit(1, f"{self.parser.prog}: error: none of the {len(self.finished) + len(self.todo)} videos "
                            f"could be used ({len(reasons)} skipped); first: {first}\n")  # fmt: skip

    def timing(self, totals: dict[str, Any], what: str, workers: int) -> str:
        """The closing line: ``what`` frames and the frames/s of each stage :meth:`finish` computed."""
        fps = totals["frames_per_second"]
        stages = ", ".join(f"{stage} {value}" for stage, value in fps.items() if stage not in ("decode", "wall"))
        where = f"{workers} worker process(es)" if workers else "main process"
        return (f"timing: {totals['frames']} {what}; frames/s: decode {fps['decode']} ({where}), {stages}, "
                f"end to end {fps['wall']}")

    def finish(self, settings: dict[str, Any], totals: dict[str, Any], started: float,
               stages: Sequence[str] = ()) -> None:  # fmt: skip
        """Ends the run: ``run.json`` with ``settings`` and ``totals`` (its wall time and the frames/s
        of each of ``stages``, from ``totals[STAGE_seconds]`` and ``totals["frames"]``), the skipped
        videos listed, and :meth:`check_done`'s exit when no video was done."""
        totals["wall_seconds"] = time.perf_counter() - started
        if stages:
            totals["frames_per_second"] = {stage: rate(totals["frames"], totals[f"{stage}_seconds"])
                                           for stage in (*stages, "wall")}  # fmt: skip
        write_atomic(self.output / RUN_FILE, json.dumps({**settings, "totals": totals}, indent=1) + "\n")
        report_skipped(self.skipped)
        self.check_done()

    @contextlib.contextmanager
    def running(self) -> Iterator[VideoRun]:
        """Closes the summary whatever happens; turns ``--fail_fast``'s stop into the command's error exit."""
        try:
            yield self
        except FailFast as err:
            report_skipped(self.skipped)
            self.parser.exit(1, f"{self.parser.prog}: error: --fail_fast: {err} "
                                f"(the videos before it are written in {self.output})\n")  # fmt: skip
        finally:
            self.writer.close()


def clock(seconds: float, separator: str = ".") -> str:
    """``HH:MM:SS<separator>mmm`` of a time in seconds, to the nearest millisecond (a negative time
    is 0): SRT's clock with ``","``, WebVTT's and PySceneDetect's timecodes with ``"."``."""
    ms = max(0, int(round(seconds * 1000)))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def rate(frames: int, seconds: float) -> float | None:
    return round(frames / seconds, 1) if seconds > 0 else None


# --------------------------------------------------------------------------------------- CLI
def add_input_arguments(
    parser: ArgumentParser,
    fps: tuple[float | None, str] | None = None,
    frame_size: tuple[int | None, str] | None = None,
) -> None:
    """The video, decoding and run arguments ``select``, ``caption`` and ``scenes`` share.

    Args:
        parser: The command's parser.
        fps: ``(default, help)`` of ``--fps`` for a command whose own differ (``scenes``: every frame).
        frame_size: ``(default, help)`` of ``--frame_size``, likewise.
    """
    fps = fps or (DEFAULT_FPS, f"candidate frames per second, or 'native' for every frame (default {DEFAULT_FPS:g}, "
                               "data.fps of the configs; use the value the selector trained with)")  # fmt: skip
    frame_size = frame_size or (DEFAULT_FRAME_SIZE, f"longest edge of decoded frames in pixels (default "
                                f"{DEFAULT_FRAME_SIZE}, data.frame_size; the smolvlm2_* configs use 384)")  # fmt: skip
    parser.add_argument("--video", nargs="+", default=[], metavar="FILE", help="video files")
    parser.add_argument("--folder", help="a folder of videos (" + " ".join(VIDEO_SUFFIXES) + ")")
    parser.add_argument("--recursive", action="store_true", help="with --folder: its subfolders too")
    parser.add_argument("--output", required=True, help="folder to write to (created)")
    parser.add_argument("--fps", default=fps[0], type=_fps, help=fps[1])
    parser.add_argument("--frame_size", "--frame-size", default=frame_size[0], type=int, help=frame_size[1])
    parser.add_argument("--max_frames", "--max-frames", type=int, default=None, help="cap on candidate frames per video (default: all)")
    add_run_arguments(parser, workers=default_workers())
    parser.add_argument("--fail_fast", "--fail-fast", action="store_true", help="stop at the first unreadable video instead of skipping it")
    parser.add_argument("--resume", action="store_true",
                        help="continue a run in --output: skip the videos it finished or skipped (same settings)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="start over in an --output that holds a run")


def _fps(text: str) -> float | None:
    if text == "native":
        return None
    value = float(text)
    if value <= 0:
        raise ArgumentTypeError(f"--fps must be positive or 'native', got {text}")
    return value


def check_input_arguments(parser: ArgumentParser, args: Namespace) -> list[Path]:
    """Validates the shared arguments; returns the videos to run on."""
    check_minimums(parser, args, frame_size=2, max_frames=1, workers=0, **({"k": 1} if hasattr(args, "k") else {}))
    try:
        paths = find_videos(args.video, args.folder, args.recursive)
        check_output(Path(args.output), args.overwrite, args.resume)  # before any model loads
    except (OSError, ValueError) as err:
        parser.error(str(err))
    return paths

