"""Real dense-captioning datasets mapped to :class:`~data.schema.VideoSample`.

Three sources, one contract: every loader returns ``(samples, skipped)``. Each row goes through
:func:`~data.schema.validate_sample` (events sorted, ``end >= start``, events inside the duration
up to its 0.5 s tolerance, non-empty captions, positive duration) and must point at an existing
video file. A bad row raises an error naming the file, the row and the field; with
``skip_bad_samples=True`` it is logged and listed in ``skipped`` as ``(video_id, reason)`` instead.

* :func:`load_activitynet`: ActivityNet Captions JSON
  ``{video_id: {duration, timestamps: [[s, e], ...], sentences: [...]}}``; the video is
  ``<video_root>/<video_id>.{mp4,mkv,webm}`` unless the entry names it in ``video``.
* :func:`load_youcook2`: ``youcookii_annotations_trainval.json`` (``{"database": {video_id:
  {duration, subset, recipe_type, annotations: [{segment, sentence, id}]}}}``), one subset at a
  time; videos in the official ``<video_root>/<subset>/<recipe_type>/<video_id>.<ext>`` layout
  or flat in ``<video_root>``.
* :func:`load_hf_dataset` / :func:`iter_hf_samples`: any Hugging Face ``datasets`` dataset (a
  ``save_to_disk`` folder, a JSON-lines/JSON/Parquet file or a Hub id) with a video column and
  either one events column or parallel start/end/caption list columns; ``streaming=True`` reads
  rows lazily.

:class:`~data.datamodule.DenseCaptionDataModule` picks the loader with ``data.annotation_format``.
Config snippets (``data:`` section of a ``python -m trainer`` YAML):

ActivityNet Captions (the default format)::

    data:
      annotation_format: activitynet
      train_file: annotations/activitynet/train.json
      val_file: annotations/activitynet/val_1.json
      test_file: annotations/activitynet/val_2.json
      video_root: videos/activitynet       # v_<id>.mp4 / .mkv / .webm (or <id>.* without "v_")

YouCook2 (one annotation file; each split reads one subset of it)::

    data:
      annotation_format: youcook2
      train_file: annotations/youcookii_annotations_trainval.json
      val_file: annotations/youcookii_annotations_trainval.json
      test_file: annotations/youcookii_annotations_trainval.json
      video_root: videos/youcook2/raw_videos  # <subset>/<recipe_type>/<id>.<ext> or <id>.<ext>
      youcook2_subsets: {train: training, val: validation, test: validation}

Hugging Face ``datasets`` (``*_file`` is a dataset folder, a data file or a Hub id)::

    data:
      annotation_format: hf
      train_file: HuggingFaceM4/ActivitiyNet_Captions
      val_file: HuggingFaceM4/ActivitiyNet_Captions
      video_root: videos/activitynet       # the dataset holds ids / YouTube URLs, not files
      hf_splits: {train: train, val: validation}
      hf_columns:
        video_column: video_id             # resolved as <video_root>/<video_id>.<ext>
        id_column: video_id
        start_column: captions_starts
        end_column: captions_ends
        caption_column: en_captions
        duration_column: duration
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.schema import (
    AnnotationError,
    Event,
    VideoSample,
    sample_from_json,
    validate_sample,
)

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".webm")
"""Containers YouTube downloaders write; tried in this order when an annotation names no file."""

Skipped = tuple[str, str]
"""``(video_id, reason)`` of a row a loader left out."""

LoadResult = tuple[list[VideoSample], list[Skipped]]

# Errors that make one row unusable; anything else (unreadable file, wrong top-level shape) is
# a problem with the whole source and always raises.
_ROW_ERRORS = (AnnotationError, FileNotFoundError)


def locate_video(stems: Sequence[Path], extensions: Sequence[str], where: str) -> Path:
    """Finds the video file for an annotation that names it only by id (or by an extension-less path).

    A stem that already ends in one of ``extensions`` is tried as is. Any other stem is tried as
    is when it has a suffix, then with each extension appended (so ids containing dots, like
    ``abc_12.0_30.0``, still get ``.mp4`` added).

    Args:
        stems: Candidate paths without extension, best first.
        extensions: Extensions to try, with the dot.
        where: Location for the error message (file and row).

    Raises:
        FileNotFoundError: Naming ``where`` and every path tried.
    """
    tried: list[Path] = []
    for stem in stems:
        if stem.suffix.lower() in extensions:
            candidates = [stem]
        else:
            candidates = ([stem] if stem.suffix else []) + [stem.with_name(stem.name + ext) for ext in extensions]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
            tried.append(candidate)
    raise FileNotFoundError(f"{where}: video file not found (tried {', '.join(map(str, tried))})")


def _require_file(video: str | Path, where: str) -> None:
    if not Path(video).is_file():
        raise FileNotFoundError(f"{where}: video file not found: {video}")


# Rows logged one by one per file; the rest are only counted (a whole split of missing videos
# would otherwise print thousands of lines). Every skip is still listed in ``skipped``.
LOGGED_SKIPS = 5


def _skip(video_id: str, err: Exception, skipped: list[Skipped]) -> None:
    skipped.append((video_id, str(err)))
    if len(skipped) <= LOGGED_SKIPS:
        log.warning("skipping sample %s: %s", video_id, err)
    if len(skipped) == LOGGED_SKIPS:
        log.warning("further skipped samples of this file are listed in `skipped`, not logged")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: not valid JSON ({err})") from err


def _number(value: Any, where: str, field: str) -> float:
    """``float(value)``, or an :class:`AnnotationError` naming the field (``None``, text, lists ...)."""
    if isinstance(value, bool):  # float(True) == 1.0 would pass silently
        raise AnnotationError(f"{where}: '{field}' must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: '{field}' must be a number, got {value!r}") from None


# --------------------------------------------------------------------------- ActivityNet Captions


def load_activitynet(
    path: str | Path,
    video_root: str | Path | None = None,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    skip_bad_samples: bool = False,
) -> LoadResult:
    """Reads ActivityNet Captions JSON (``train.json``, ``val_1.json``, ...) and finds each video.

    Entries are parsed and validated by :func:`~data.schema.sample_from_json`, so the file format
    is exactly the one :func:`~data.schema.load_annotations` reads (``events`` lists and the
    project's extra fields included). An entry's ``video`` path is used as given; without one the
    video is ``<video_root>/<video_id><ext>`` for the first extension that exists, and for the
    official ``v_``-prefixed ids also ``<video_root>/<id without v_><ext>`` (downloaders differ).

    Args:
        path: Annotation JSON keyed by video id.
        video_root: Folder of the videos (default: the annotation file's folder).
        extensions: Extensions tried for entries without ``video``.
        skip_bad_samples: List bad rows in ``skipped`` instead of raising.

    Returns:
        ``(samples, skipped)``: valid samples in file order, and ``(video_id, reason)`` per left-out row.

    Raises:
        FileNotFoundError: If the file is missing, or (without skipping) a video is.
        AnnotationError: If the file is not a JSON object, or (without skipping) an entry is malformed.
    """
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise AnnotationError(f"{path}: expected an object keyed by video id, got {type(raw).__name__}")
    root = Path(video_root) if video_root is not None else path.parent
    samples: list[VideoSample] = []
    skipped: list[Skipped] = []
    for video_id, entry in raw.items():
        where = f"{path}[{video_id!r}]"
        try:
            samples.append(_activitynet_sample(video_id, entry, root, extensions, path, where))
        except _ROW_ERRORS as err:
            if not skip_bad_samples:
                raise
            _skip(video_id, err, skipped)
    return samples, skipped


def _activitynet_sample(
    video_id: str, entry: Any, root: Path, extensions: Sequence[str], path: Path, where: str
) -> VideoSample:
    try:
        sample = sample_from_json(video_id, entry, root, str(path))
    except (TypeError, ValueError) as err:
        if isinstance(err, AnnotationError):
            raise
        # e.g. "duration": null reaches float() inside sample_from_json: still this row's fault.
        raise AnnotationError(f"{where}: malformed entry ({type(err).__name__}: {err})") from err
    if "video" in entry:
        _require_file(sample.video, where)
        return sample
    stems = [root / video_id]
    if video_id.startswith("v_"):
        stems.append(root / video_id[2:])
    sample.video = str(locate_video(stems, extensions, where))
    return sample


# --------------------------------------------------------------------------- YouCook2


def load_youcook2(
    path: str | Path,
    video_root: str | Path | None = None,
    subset: str = "training",
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    skip_bad_samples: bool = False,
) -> LoadResult:
    """Reads one subset of YouCook2's ``youcookii_annotations_trainval.json``.

    Each annotation's ``segment`` ``[start, end]`` and ``sentence`` become one event (event ``i``
    is ``annotations[i]`` in error messages before sorting); ``recipe_type``, ``subset`` and
    ``video_url`` are kept in ``sample.extra``. The video is looked up as
    ``<video_root>/<subset>/<recipe_type>/<video_id><ext>`` (the official ``raw_videos`` layout),
    then ``<video_root>/<video_id><ext>``.

    Args:
        path: The YouCook2 annotation JSON (top-level ``database`` object).
        video_root: Folder of the videos (default: the annotation file's folder).
        subset: ``"training"`` or ``"validation"`` (whatever the file's ``subset`` fields say).
        extensions: Extensions tried, in order.
        skip_bad_samples: List bad rows in ``skipped`` instead of raising.

    Returns:
        ``(samples, skipped)`` for the videos of ``subset``.

    Raises:
        FileNotFoundError: If the file is missing, or (without skipping) a video is.
        AnnotationError: If the file has no ``database`` object or no video in ``subset``, or
            (without skipping) an entry is malformed.
    """
    path = Path(path)
    raw = _read_json(path)
    database = raw.get("database") if isinstance(raw, dict) else None
    if not isinstance(database, dict):
        raise AnnotationError(f"{path}: expected YouCook2 JSON with a 'database' object keyed by video id")
    available = sorted({str(e.get("subset")) for e in database.values() if isinstance(e, dict)})
    if subset not in available:
        # A typo ("train" for "training") would otherwise look like an empty dataset.
        raise AnnotationError(f"{path}: no video has subset {subset!r}; the file has {available}")
    root = Path(video_root) if video_root is not None else path.parent
    samples: list[VideoSample] = []
    skipped: list[Skipped] = []
    for video_id, entry in database.items():
        if isinstance(entry, dict) and entry.get("subset") != subset:
            continue
        where = f"{path}['database'][{video_id!r}]"
        try:
            samples.append(_youcook2_sample(video_id, entry, root, subset, extensions, where))
        except _ROW_ERRORS as err:
            if not skip_bad_samples:
                raise
            _skip(video_id, err, skipped)
    return samples, skipped


def _youcook2_sample(
    video_id: str, entry: Any, root: Path, subset: str, extensions: Sequence[str], where: str
) -> VideoSample:
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where}: expected an object, got {type(entry).__name__}")
    annotations = entry.get("annotations")
    if not isinstance(annotations, list):
        raise AnnotationError(f"{where}: 'annotations' must be a list of {{segment, sentence}} objects")
    events = []
    for i, annotation in enumerate(annotations):
        segment = annotation.get("segment") if isinstance(annotation, dict) else None
        if not isinstance(segment, (list, tuple)) or len(segment) != 2:
            raise AnnotationError(f"{where}: annotations[{i}]: 'segment' must be [start, end], got {segment!r}")
        start = _number(segment[0], f"{where}: annotations[{i}]", "segment")
        end = _number(segment[1], f"{where}: annotations[{i}]", "segment")
        events.append(Event(start, end, str(annotation.get("sentence") or "")))
    recipe_type = str(entry.get("recipe_type", ""))
    extra = {k: entry[k] for k in ("recipe_type", "subset", "video_url") if k in entry}
    sample = VideoSample(video_id, "", _number(entry.get("duration"), where, "duration"), events, extra=extra)
    validate_sample(sample, where)
    sample.video = str(locate_video([root / subset / recipe_type / video_id, root / video_id], extensions, where))
    return sample


# --------------------------------------------------------------------------- Hugging Face datasets


@dataclass
class HFColumns:
    """Which columns of a Hugging Face dataset hold what (the keyword arguments of :func:`load_hf_dataset`).

    Attributes:
        video_column: Video path (absolute, relative to ``video_root``, or an id resolved as
            ``<video_root>/<id><ext>``); a ``datasets.Video`` column is read undecoded for its path.
        start_column: Event start times in seconds: a list per row, or the key inside each event
            dict when ``events_column`` is set.
        end_column: Event end times, like ``start_column``.
        caption_column: Event captions, like ``start_column``.
        duration_column: Video length in seconds.
        id_column: Unique video id (default: the video file name without extension).
        events_column: One column of ``{start, end, caption}`` dicts instead of parallel lists.
    """

    video_column: str = "video"
    start_column: str = "start"
    end_column: str = "end"
    caption_column: str = "caption"
    duration_column: str = "duration"
    id_column: str | None = None
    events_column: str | None = None


def iter_hf_samples(
    name_or_path: str | Path,
    split: str = "train",
    video_column: str = "video",
    start_column: str = "start",
    end_column: str = "end",
    caption_column: str = "caption",
    duration_column: str = "duration",
    id_column: str | None = None,
    events_column: str | None = None,
    streaming: bool = False,
    video_root: str | Path | None = None,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    skip_bad_samples: bool = False,
    skipped: list[Skipped] | None = None,
    cache_dir: str | Path | None = None,
) -> Iterator[VideoSample]:
    """Yields validated samples from a Hugging Face ``datasets`` dataset, one row per video.

    The dataset is opened by what ``name_or_path`` is:

    * a ``save_to_disk`` folder (``Dataset`` or ``DatasetDict``): ``datasets.load_from_disk``;
    * a ``.json``/``.jsonl``/``.parquet``/``.csv``/``.arrow`` file: ``load_dataset(<format>,
      data_files={split: path})``;
    * anything else (a Hub id, a folder of data files): ``load_dataset(name_or_path, split=split)``.

    Each row needs a video, a duration and its events, either as **parallel lists**
    (``start_column``, ``end_column``, ``caption_column``, one entry per event) or as one
    ``events_column`` of dicts whose keys are those three names. Hub datasets that fit:

    * ``HuggingFaceM4/ActivitiyNet_Captions`` (a loading script: needs a ``datasets`` version that
      still runs scripts, or its Parquet conversion): ``video_column="video_id"``,
      ``id_column="video_id"``, ``start_column="captions_starts"``, ``end_column="captions_ends"``,
      ``caption_column="en_captions"``, ``duration_column="duration"``; its ``video_path`` is a
      YouTube URL, so download the videos and set ``video_root``.
    * Your own conversions, e.g. ``datasets.Dataset.from_list([{"video": ..., "duration": ...,
      "events": [{"start", "end", "caption"}]}])`` with ``events_column="events"``.

    Datasets with one row per *event* (``lmms-lab/YouCook2``, Charades-STA style grounding sets)
    do not fit directly: group their rows by video first (``Dataset.to_pandas().groupby``).

    Args:
        name_or_path: Dataset folder, data file or Hub id.
        split: Split to read (ignored for a single saved ``Dataset``).
        video_column: See :class:`HFColumns`, as are the other ``*_column`` arguments.
        start_column: Event starts.
        end_column: Event ends.
        caption_column: Event captions.
        duration_column: Video length in seconds.
        id_column: Video id (default: the video file name without extension).
        events_column: Column of event dicts (instead of parallel lists).
        streaming: Read rows lazily (``IterableDataset``) instead of materialising the split
            first: for large Hub datasets, where only a few columns matter.
        video_root: Folder relative video paths resolve against (default: the folder holding a
            local dataset; the working directory for Hub ids).
        extensions: Extensions tried for video values without one (bare ids).
        skip_bad_samples: Log bad rows (and append them to ``skipped``) instead of raising.
        skipped: Receives ``(video_id, reason)`` per left-out row while the generator runs.
        cache_dir: ``datasets`` cache folder for ``load_dataset`` (default: the library's).

    Raises:
        AnnotationError: If a required column is missing, or (without skipping) a row is malformed.
        FileNotFoundError: Without skipping, if a row's video is missing. Being a generator, it
            opens the dataset and raises only once iteration starts.
    """
    dataset = _open_hf_dataset(name_or_path, split, streaming, cache_dir)
    dataset = _undecoded_video(dataset, video_column)
    source = f"{name_or_path} [{split}]"
    event_columns = [events_column] if events_column else [start_column, end_column, caption_column]
    _check_columns(dataset, source, [video_column, duration_column, *event_columns, *filter(None, [id_column])])
    local = Path(name_or_path).expanduser()
    root = Path(video_root) if video_root is not None else (local.parent if local.exists() else Path())
    keys = (start_column, end_column, caption_column)
    for index, row in enumerate(dataset):
        video_value = _video_value(row.get(video_column))
        if id_column is not None and row.get(id_column) is not None:
            video_id = str(row[id_column])
        else:
            video_id = Path(video_value).stem if video_value else f"row{index}"
        where = f"{source} row {index} ({video_id!r})"
        try:
            yield _hf_sample(row, video_id, video_value, where, root, extensions, keys, duration_column, events_column)
        except _ROW_ERRORS as err:
            if not skip_bad_samples:
                raise
            _skip(video_id, err, skipped if skipped is not None else [])


def load_hf_dataset(name_or_path: str | Path, split: str = "train", **options: Any) -> LoadResult:
    """All samples of :func:`iter_hf_samples` as ``(samples, skipped)``.

    Args:
        name_or_path: As for :func:`iter_hf_samples`.
        split: As for :func:`iter_hf_samples`.
        **options: Any other keyword argument of :func:`iter_hf_samples` (columns, streaming,
            ``video_root``, ``skip_bad_samples``, ...), except ``skipped``, which is returned.
    """
    skipped: list[Skipped] = []
    samples = list(iter_hf_samples(name_or_path, split, skipped=skipped, **options))
    return samples, skipped


_DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


def _open_hf_dataset(name_or_path: str | Path, split: str, streaming: bool, cache_dir: str | Path | None) -> Any:
    import datasets  # only this format needs it; keeps `import data.datamodule` light

    path = Path(name_or_path).expanduser()
    cache = str(cache_dir) if cache_dir is not None else None
    if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
        dataset = datasets.load_from_disk(str(path))
        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise AnnotationError(f"{path}: no split {split!r}; it has {sorted(dataset)}")
            dataset = dataset[split]
        return dataset.to_iterable_dataset() if streaming else dataset
    if path.is_file():
        builder = _DATA_FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise AnnotationError(f"{path}: unsupported data file type; use one of {sorted(_DATA_FILE_BUILDERS)}")
        # Naming the split in data_files lets split="validation" work on a single file too.
        return datasets.load_dataset(
            builder, data_files={split: str(path)}, split=split, streaming=streaming, cache_dir=cache
        )
    return datasets.load_dataset(str(name_or_path), split=split, streaming=streaming, cache_dir=cache)


def _undecoded_video(dataset: Any, video_column: str) -> Any:
    """Casts a ``datasets.Video`` column to ``decode=False``: we need the file path, not a decoder."""
    import datasets

    feature = (dataset.features or {}).get(video_column)
    if isinstance(feature, datasets.Video) and feature.decode:
        return dataset.cast_column(video_column, datasets.Video(decode=False))
    return dataset


def _check_columns(dataset: Any, source: str, columns: list[str]) -> None:
    # Streaming JSON may not know its columns up front; rows then fail one by one instead.
    names = dataset.column_names
    if names is None:
        return
    missing = [c for c in columns if c not in names]
    if missing:
        raise AnnotationError(f"{source}: missing column(s) {missing}; the dataset has {names}")


def _video_value(value: Any) -> str:
    """The path in a video cell: a string, or the ``path`` of an undecoded ``datasets.Video``."""
    if isinstance(value, dict):
        value = value.get("path")
    return str(value) if value else ""


def _hf_sample(
    row: dict[str, Any],
    video_id: str,
    video_value: str,
    where: str,
    root: Path,
    extensions: Sequence[str],
    keys: tuple[str, str, str],
    duration_column: str,
    events_column: str | None,
) -> VideoSample:
    if events_column is not None:
        events = _events_from_dicts(row.get(events_column), keys, where, events_column)
    else:
        events = _events_from_lists([row.get(k) for k in keys], keys, where)
    sample = VideoSample(video_id, "", _number(row.get(duration_column), where, duration_column), events)
    validate_sample(sample, where)
    if not video_value:
        raise FileNotFoundError(f"{where}: no video path in this row")
    video = Path(video_value).expanduser()
    sample.video = str(locate_video([video if video.is_absolute() else root / video], extensions, where))
    return sample


def _events_from_lists(columns: list[Any], keys: tuple[str, str, str], where: str) -> list[Event]:
    for key, values in zip(keys, columns):
        if not isinstance(values, (list, tuple)):
            raise AnnotationError(f"{where}: '{key}' must be a list (one entry per event), got {values!r}")
    starts, ends, captions = columns
    if not len(starts) == len(ends) == len(captions):
        raise AnnotationError(
            f"{where}: {len(starts)} '{keys[0]}', {len(ends)} '{keys[1]}' and {len(captions)} '{keys[2]}' "
            "entries; they must pair up"
        )
    events = []
    for i, (start, end, caption) in enumerate(zip(starts, ends, captions)):
        loc = f"{where}: event {i}"
        events.append(Event(_number(start, loc, keys[0]), _number(end, loc, keys[1]), str(caption or "")))
    return events


def _events_from_dicts(value: Any, keys: tuple[str, str, str], where: str, column: str) -> list[Event]:
    if isinstance(value, dict):
        # A `datasets.Sequence` of dicts comes back as a dict of lists.
        return _events_from_lists([value.get(k) for k in keys], keys, f"{where}: {column}")
    if not isinstance(value, (list, tuple)):
        raise AnnotationError(f"{where}: '{column}' must be a list of event objects, got {value!r}")
    events = []
    for i, event in enumerate(value):
        loc = f"{where}: {column}[{i}]"
        if not isinstance(event, dict):
            raise AnnotationError(f"{loc}: expected an object with {list(keys)}, got {event!r}")
        start, end = _number(event.get(keys[0]), loc, keys[0]), _number(event.get(keys[1]), loc, keys[1])
        events.append(Event(start, end, str(event.get(keys[2]) or "")))
    return events
