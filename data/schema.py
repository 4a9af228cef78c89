"""Typed dense-captioning samples and their ActivityNet-Captions-style JSON form.

A sample is one video with its annotated events::

    {"video": "clips/v_001.mp4", "duration": 12.0, "events": [{"start": 1.0, "end": 4.5, "caption": "..."}]}

Everything that reads annotations goes through :func:`validate_sample`, so bad input fails with
an error that names the file and the field instead of surfacing later as a NaN loss.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data.atomic import write_atomic


class AnnotationError(ValueError):
    """An annotation is malformed (bad field, event outside the video, empty caption, ...)."""


@dataclass
class Event:
    """One annotated event.

    Attributes:
        start: Start time in seconds.
        end: End time in seconds (``end >= start``).
        caption: Free-text description of what happens.
    """

    start: float
    end: float
    caption: str


@dataclass
class VideoSample:
    """One dense-captioning sample.

    Attributes:
        video_id: Unique key of the video in its annotation file.
        video: Path to the video file.
        duration: Video length in seconds.
        events: Annotated events, sorted by start time.
        fps: Native frame rate if known (informational; decoding reads it from the container).
        query: Optional text query for query-conditioned selection.
        extra: Anything else the annotation carried (e.g. ground-truth informative frames).
    """

    video_id: str
    video: str
    duration: float
    events: list[Event]
    fps: float | None = None
    query: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Returns the ActivityNet-style entry (``timestamps``/``sentences``) for this sample."""
        entry: dict[str, Any] = {
            "video": self.video,
            "duration": self.duration,
            "timestamps": [[e.start, e.end] for e in self.events],
            "sentences": [e.caption for e in self.events],
        }
        if self.fps is not None:
            entry["fps"] = self.fps
        if self.query is not None:
            entry["query"] = self.query
        entry.update(self.extra)
        return entry


def validate_sample(sample: VideoSample, where: str, tolerance: float = 0.5) -> VideoSample:
    """Checks a sample and returns it with events sorted by start.

    Args:
        sample: The sample to check.
        where: Human-readable location used in error messages (file and key).
        tolerance: Seconds an event may run past ``duration`` (annotations are often rounded).

    Raises:
        AnnotationError: Naming ``where`` and the offending field.
    """
    if not isinstance(sample.duration, (int, float)) or not sample.duration > 0:
        raise AnnotationError(f"{where}: 'duration' must be a positive number, got {sample.duration!r}")
    if not sample.events:
        raise AnnotationError(f"{where}: 'events' is empty; a dense-captioning sample needs at least one event")
    for i, event in enumerate(sample.events):
        loc = f"{where}: events[{i}]"
        if event.start < 0:
            raise AnnotationError(f"{loc}: start={event.start} is negative")
        if event.end < event.start:
            raise AnnotationError(f"{loc}: end={event.end} < start={event.start}")
        if event.end > sample.duration + tolerance:
            raise AnnotationError(f"{loc}: end={event.end} is beyond the video duration {sample.duration}")
        if not event.caption or not event.caption.strip():
            raise AnnotationError(f"{loc}: caption is empty")
    sample.events = sorted(sample.events, key=lambda e: (e.start, e.end))
    return sample


def sample_from_json(video_id: str, entry: dict[str, Any], video_root: Path, where: str) -> VideoSample:
    """Builds a validated sample from one ActivityNet-Captions-style entry.

    Accepts either ``timestamps`` + ``sentences`` (ActivityNet Captions) or ``events`` as a list
    of ``{start, end, caption}`` dicts. The video path is ``entry["video"]`` if present, otherwise
    ``<video_root>/<video_id>.mp4``; relative paths are resolved against ``video_root``.
    """
    where = f"{where}[{video_id!r}]"
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where}: expected an object, got {type(entry).__name__}")
    if "duration" not in entry:
        raise AnnotationError(f"{where}: missing field 'duration'")
    if "events" in entry:
        try:
            events = [Event(float(e["start"]), float(e["end"]), str(e["caption"])) for e in entry["events"]]
        except (KeyError, TypeError, ValueError) as err:
            raise AnnotationError(f"{where}: every event needs numeric 'start', 'end' and a 'caption' ({err})") from err
    elif "timestamps" in entry and "sentences" in entry:
        stamps, sentences = entry["timestamps"], entry["sentences"]
        if len(stamps) != len(sentences):
            raise AnnotationError(
                f"{where}: {len(stamps)} timestamps but {len(sentences)} sentences; they must pair up"
            )
        try:
            events = [Event(float(s), float(e), str(c)) for (s, e), c in zip(stamps, sentences)]
        except (TypeError, ValueError) as err:
            raise AnnotationError(f"{where}: 'timestamps' must be [start, end] number pairs ({err})") from err
    else:
        raise AnnotationError(f"{where}: needs either 'events' or 'timestamps' and 'sentences'")
    video = Path(entry.get("video", f"{video_id}.mp4"))
    if not video.is_absolute():
        video = video_root / video
    known = {"video", "duration", "timestamps", "sentences", "events", "fps", "query"}
    sample = VideoSample(
        video_id=video_id,
        video=str(video),
        duration=float(entry["duration"]),
        events=events,
        fps=float(entry["fps"]) if entry.get("fps") is not None else None,
        query=entry.get("query"),
        extra={k: v for k, v in entry.items() if k not in known},
    )
    return validate_sample(sample, where)


def load_annotations(path: str | Path, video_root: str | Path | None = None) -> list[VideoSample]:
    """Reads an ActivityNet-Captions-style file ``{video_id: {duration, timestamps, sentences}}``.

    Args:
        path: JSON file.
        video_root: Folder that relative video paths are resolved against (default: the file's folder).

    Raises:
        FileNotFoundError: If the file does not exist.
        AnnotationError: If the JSON is invalid or an entry is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(raw, dict):
        raise AnnotationError(f"{path}: expected an object keyed by video id, got {type(raw).__name__}")
    root = Path(video_root) if video_root is not None else path.parent
    return [sample_from_json(vid, entry, root, str(path)) for vid, entry in raw.items()]


def save_annotations(samples: list[VideoSample], path: str | Path) -> None:
    """Writes samples as an ActivityNet-Captions-style JSON file (atomically)."""
    write_atomic(path, json.dumps({s.video_id: s.to_json() for s in samples}, indent=1))


def event_dicts(sample: VideoSample) -> list[dict[str, Any]]:
    """Events as plain dicts (what collate passes around)."""
    return [asdict(e) for e in sample.events]
