"""On-disk caches of per-frame tensors, so epochs and RL rollouts never re-decode or re-encode a video.

Two caches share one machinery (:class:`PerFrameCache`: keys, atomic publish, corruption handling
and stats): :class:`FeatureCache` holds an encoder's per-frame features, :class:`FrameCache` the
decoded frames themselves. Layout::

    <root>/<slug(encoder_id)>/<decode_id>/<key>/    FeatureCache: one Hugging Face ``datasets`` folder per video
    <root>/<decode_id>/<key>/                       FrameCache (the data module's root: <cache_dir>/frames)
        data-00000-of-00001.arrow    one row per frame: the flattened tensor (``features`` or ``frames``)
                                     and ``timestamp`` (float64)
        dataset_info.json            its ``description`` records the video path, key, ids, the tensor's
                                     dtype and per-frame shape, and extras (a video's duration and fps)
        state.json

* ``encoder_id`` names the encoder: its ``model_name_or_path`` (local folders resolved to an
  absolute path) and pooling, plus the weights' dtype when it is not float32. The folder name is a
  readable slug of it followed by a hash of the full id, so two ids never share a folder.
* ``decode_id`` names the decoding settings, e.g. ``fps2_size64_max128``.
* ``key`` is the sha1 of the video's resolved path, size and ``mtime_ns``, and of
  :data:`data.decode.PIXELS_VERSION` (bumped when decoded pixels change for the same file).

Invalidation: a re-encoded or touched video gets a new key; another encoder or other decode
settings read and write other folders. On top of that :meth:`FeatureCache.get_or_compute` checks
the cached timestamps against the decoded ones and recomputes on a mismatch (e.g. after a decoder
change). Entries are written into a temporary sibling folder and renamed into place, so readers
never see half an entry and concurrent writers (DataLoader workers, DDP ranks) can race safely;
an unreadable entry (missing or truncated files) is a miss and is rewritten. Old entries are never
deleted for you. Weights rebuilt in place in a local folder count as a new encoder (the weight
files' sizes and mtimes are part of ``encoder_id``); a change of the decoder's code under the same
settings is detected only through ``PIXELS_VERSION``.

To clear a cache, delete ``<root>`` (or one encoder's or one decode setting's subfolder).

To fill the caches a config's runs read, ahead of training: ``python -m trainer cache --config
CONFIG`` (:mod:`trainer.tools.cache`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from data.atomic import temp_sibling
from data.decode import PIXELS_VERSION, DecodedVideo, VideoDecodeError, decode_video
from data.schema import VideoSample

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")  # no separators, no leading dot ("..")
_TIMESTAMP_TOLERANCE = 1e-6  # seconds: far below a frame interval; absorbs a caller's float32 round-off


def encoder_id(encoder: Any) -> str:
    """Identity of an encoder's outputs: ``model_name_or_path`` and pooling (plus dtype if not float32
    and a hash of the encoder's ``preprocessing`` description where it has one).

    Args:
        encoder: A :class:`models.encoders.FrameEncoder` or anything with ``model_name_or_path``
            (``pooling`` defaults to ``mean``).
    """
    name = str(encoder.model_name_or_path)
    local = Path(name).expanduser()
    if local.exists():  # the same folder reached from another working directory is the same encoder
        name = str(local.resolve())
    parts = [name, f"pooling={getattr(encoder, 'pooling', 'mean')}"]
    if local.is_dir():
        # A local folder can be rebuilt in place (e.g. the tiny model with other settings): its
        # weight files' sizes and modification times make the new weights a new encoder.
        weights = sorted(local.glob("*.safetensors")) + sorted(local.glob("*.bin"))
        stamp = ";".join(f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights)
        parts.insert(1, f"weights={hashlib.sha1(stamp.encode()).hexdigest()[:12]}")
    param = next(encoder.parameters(), None) if isinstance(encoder, torch.nn.Module) else None
    if param is not None and param.dtype != torch.float32:  # half-precision weights give other features
        parts.append(f"dtype={str(param.dtype).removeprefix('torch.')}")
    preprocessing = getattr(encoder, "preprocessing", None)
    if preprocessing:  # the same frames resized or normalised otherwise are other features
        parts.append(f"preprocessing={hashlib.sha1(preprocessing.encode()).hexdigest()[:12]}")
    return "|".join(parts)


def weights_fingerprint(module: Any) -> str:
    """sha256 of a module's parameters and buffers (names, dtypes, shapes, bytes): the same weights on
    any machine, wherever their files live (bfloat16 hashed by its bits)."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        value = value.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update((value.view(torch.int16) if value.dtype == torch.bfloat16 else value).numpy().tobytes())
    return digest.hexdigest()


def output_id(encoder: Any, output: str = "features") -> str:
    """Identity of one output of an encoder: :func:`encoder_id`, plus the output's name unless ``features``."""
    return encoder_id(encoder) if output == "features" else f"{encoder_id(encoder)}|{output}"


def decode_id(fps: float | None, frame_size: int | None, max_frames: int | None) -> str:
    """Folder name of the decoding settings, e.g. ``fps2_size64_max128`` (``None``: ``all``/``native``)."""
    rate = "all" if fps is None else f"{fps:g}"
    size = "native" if frame_size is None else str(frame_size)
    cap = "all" if max_frames is None else str(max_frames)
    return f"fps{rate}_size{size}_max{cap}"


def _slug(text: str, keep: int = 60) -> str:
    """A filesystem-safe folder name for ``text``: its readable tail plus a hash of all of it."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[-keep:].strip("-.")
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{readable}-{digest}" if readable else digest


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Hides ``datasets``' own progress bars: one per saved video would flood training logs."""
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _same_timestamps(cached: Tensor, decoded: Tensor) -> bool:
    return cached.shape == decoded.shape and torch.allclose(
        cached, decoded.to(torch.float64), rtol=0.0, atol=_TIMESTAMP_TOLERANCE
    )


def _folder_bytes(path: Path) -> int:
    total = 0
    for f in path.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # another process may replace entries meanwhile
            if f.is_file():
                total += f.stat().st_size
    return total


def human_bytes(n: float) -> str:
    """A byte count in binary units, e.g. ``512 B``, ``1.5 KiB``, ``2.0 GiB`` (the project's one formatter)."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} TiB"


def _arrow_dtype(dtype: torch.dtype) -> str:
    """The numpy/Arrow name of a torch dtype, e.g. ``uint8``; bfloat16 has none and is refused."""
    try:
        return str(torch.empty(0, dtype=dtype).numpy().dtype)
    except TypeError as err:
        raise ValueError(f"cannot cache tensors of dtype {dtype}: no numpy/Arrow equivalent") from err


@dataclass
class _Entry:
    """One video's cached rows: ``values (T, *shape)``, ``timestamps (T,)`` float64 and the ``extra`` dict."""

    values: Tensor
    timestamps: Tensor
    extra: dict[str, Any]


class PerFrameCache:
    """Per-video tensors with one row per decoded frame, plus each frame's timestamp: the shared machinery.

    A stored tensor may have any dtype with a numpy/Arrow equivalent and any per-frame shape: each
    row is stored flattened (a fixed-length Arrow list) and the dtype and per-frame shape are
    recorded in the entry, so ``(T, D)`` float32 features and ``(T, 3, H, W)`` uint8 frames go
    through the same code. Subclasses give it a typed ``get``/``put``.

    Args:
        directory: Folder of this cache's entries (one subfolder per video key).
        decode_id: Identity of the decoding settings (see :func:`decode_id`); a plain folder name.
        identity: Ids recorded in every entry (for people inspecting the cache; lookups use the folder).

    Attributes:
        directory: Where this cache's entries live.
        hits: Lookups answered from disk (counted per instance, so per process).
        misses: Lookups that were not (absent, unreadable or stale entries).
        compute_seconds: Time spent computing the values on misses.
    """

    name = "cache"  # for logs
    column = "values"  # name of the tensor's column in the Arrow table
    required_extra: tuple[str, ...] = ()  # keys an entry's extra must hold to be readable
    work = "computing"  # what compute_seconds measures, for summary()

    def __init__(self, directory: str | Path, decode_id: str, identity: dict[str, str]) -> None:
        if not _SAFE_NAME.match(decode_id):
            raise ValueError(f"decode_id must be a plain folder name (no separators or leading dot), got {decode_id!r}")
        self.directory = Path(directory).expanduser()
        self.decode_id = decode_id
        self.identity = identity
        self.hits = 0
        self.misses = 0
        self.compute_seconds = 0.0

    def key(self, video: str | Path) -> str:
        """Stable key of a video file: sha1 of its resolved path, size, ``mtime_ns`` and ``PIXELS_VERSION``.

        Raises:
            FileNotFoundError: If the video does not exist.
        """
        path = Path(video).expanduser().resolve()
        stat = path.stat()
        # PIXELS_VERSION: entries of frames decoded by an older conversion (and features of them) are misses.
        key = f"{path}\n{stat.st_size}\n{stat.st_mtime_ns}\npixels {PIXELS_VERSION}"
        return hashlib.sha1(key.encode()).hexdigest()

    def entry_path(self, video: str | Path) -> Path:
        """Folder that holds (or would hold) ``video``'s entry."""
        return self.directory / self.key(video)

    def stats(self) -> dict[str, Any]:
        """Entries and bytes on disk for this cache's folder, and this instance's counters."""
        entries = 0
        if self.directory.is_dir():
            entries = sum(1 for p in self.directory.iterdir() if p.is_dir() and not p.name.startswith("."))
        return {
            "directory": str(self.directory),
            "entries": entries,
            "bytes": _folder_bytes(self.directory) if self.directory.is_dir() else 0,
            "hits": self.hits,
            "misses": self.misses,
            "compute_seconds": self.compute_seconds,
        }

    def summary(self) -> str:
        """:meth:`stats` as one line, e.g. for a log."""
        s = self.stats()
        return (
            f"{self.name} {s['directory']}: {s['entries']} entries, {human_bytes(s['bytes'])}; {s['hits']} hits, "
            f"{s['misses']} misses, {s['compute_seconds']:.1f} s {self.work}"
        )

    def _lookup(self, video: str | Path) -> _Entry | None:
        """The video's entry, counted as a hit, or ``None``, counted as a miss."""
        entry = self._read(self.entry_path(video))
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def _store(self, video: str | Path, values: Tensor, timestamps: Tensor, extra: dict[str, Any]) -> None:
        """Stores a video's rows atomically.

        If another writer stored the same video first, its entry is kept and this one discarded
        (same inputs, same values); a stale (other timestamps) or unreadable entry is replaced.
        """
        values = values.detach().cpu().contiguous()
        timestamps = timestamps.detach().to("cpu", torch.float64)
        if values.ndim < 1 or timestamps.ndim != 1 or not 0 < len(values) == len(timestamps):
            raise ValueError(
                f"expected values (T, ...) and timestamps (T,) with T >= 1, got {tuple(values.shape)} "
                f"and {tuple(timestamps.shape)}"
            )
        bf16 = values.dtype == torch.bfloat16
        if bf16:  # numpy and Arrow have no bfloat16: store its bits, record the real dtype
            values = values.view(torch.int16)
        arrow_dtype = _arrow_dtype(values.dtype)
        dtype = "bfloat16" if bf16 else arrow_dtype
        row_shape = list(values.shape[1:])
        row_size = math.prod(row_shape)
        target = self.entry_path(video)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Not data.atomic.write_atomic: the first writer's entry wins here (see _publish), not the last.
        tmp = temp_sibling(target)
        schema = datasets.Features(
            {
                self.column: datasets.List(datasets.Value(arrow_dtype), length=row_size),
                "timestamp": datasets.Value("float64"),
            }
        )
        meta = {
            "video": str(Path(video).expanduser().resolve()),
            "key": target.name,
            **self.identity,
            "decode_id": self.decode_id,
            "dtype": dtype,
            "shape": row_shape,
            "extra": extra,
        }
        # The Arrow table wraps the tensor's memory (no copy); Dataset.from_dict would convert frames
        # row by row, about 70x slower for a video's worth of uint8 frames.
        flat = pa.array(values.numpy().reshape(-1))
        table = pa.table(
            {
                self.column: pa.FixedSizeListArray.from_arrays(flat, row_size),
                "timestamp": pa.array(timestamps.numpy()),
            }
        )
        info = datasets.DatasetInfo(description=json.dumps(meta), features=schema)
        # A random fingerprint: the default one hashes the whole table, and nothing here uses it.
        dataset = datasets.Dataset(table, info=info, fingerprint=uuid.uuid4().hex)
        try:
            with _quiet_datasets():
                dataset.save_to_disk(str(tmp))
            self._publish(tmp, target, timestamps)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # ours, if another writer's entry won

    def _read(self, entry: Path) -> _Entry | None:
        if not entry.is_dir():
            return None
        try:
            dataset = datasets.load_from_disk(str(entry))
            meta = json.loads(dataset.info.description or "{}")
            # numpy, not torch, format: the torch formatter would turn float64 timestamps into float32.
            table = dataset.with_format("numpy")[:]
            # Entries written before dtype and shape were recorded hold (T, D) float32 features.
            dtype = meta.get("dtype", "float32")
            flat = np.array(table[self.column], dtype=np.dtype("int16" if dtype == "bfloat16" else dtype))
            shape = meta.get("shape", list(flat.shape[1:]))
            values = torch.from_numpy(flat.reshape(len(flat), *shape))
            if dtype == "bfloat16":
                values = values.view(torch.bfloat16)
            timestamps = torch.from_numpy(np.array(table["timestamp"], dtype=np.float64))
            extra = meta.get("extra", {})
        except Exception as err:  # noqa: BLE001 - an unreadable entry is a miss, never a crash
            log.warning("%s: unreadable entry %s (%s: %s); recomputing", self.name, entry, type(err).__name__, err)
            return None
        if len(values) != len(timestamps) or len(values) == 0 or any(k not in extra for k in self.required_extra):
            log.warning("%s: malformed entry %s; recomputing", self.name, entry)
            return None
        return _Entry(values, timestamps, extra)

    def _publish(self, tmp: Path, target: Path, timestamps: Tensor) -> None:
        """Renames ``tmp`` to ``target``; settles the race when ``target`` already exists."""
        try:
            os.rename(tmp, target)  # atomic; fails if a non-empty target is already there
            return
        except OSError:
            pass
        existing = self._read(target)
        if existing is not None and _same_timestamps(existing.timestamps, timestamps):
            return  # another worker/rank stored this video first: keep theirs
        # Stale or broken: move it aside (atomically, so readers see old-or-nothing), then publish ours.
        trash = temp_sibling(target, "old")
        with contextlib.suppress(FileNotFoundError):
            os.rename(target, trash)
        with contextlib.suppress(OSError):  # a concurrent writer published a fresh entry in between: fine
            os.rename(tmp, target)
        shutil.rmtree(trash, ignore_errors=True)


class FeatureCache(PerFrameCache):
    """Per-video outputs of one encoder at one decoding setting, stored under ``root``.

    An output is any per-frame tensor: pooled features ``(T, D)`` float32, or a VLM's image
    embeddings ``(T, S, hidden)`` in the model's dtype (bfloat16 included); it is read back with
    the dtype and shape it was stored with.

    Args:
        root: Cache root shared by all encoders and settings.
        encoder_id: Identity of the encoder (see :func:`encoder_id`).
        decode_id: Identity of the decoding settings (see :func:`decode_id`); a plain folder name.
            Both ids are required: a cache filed under the wrong identity would serve wrong features.

    Attributes:
        directory: ``root/<slug(encoder_id)>/<decode_id>``, where this cache's entries live.
        hits: Lookups answered from disk.
        misses: Lookups that were not (absent, unreadable or stale entries).
        compute_seconds: Time spent in the encode function on misses.
    """

    name = "feature cache"
    column = "features"
    work = "encoding"

    def __init__(self, root: str | Path, encoder_id: str, decode_id: str) -> None:
        self.root = Path(root).expanduser()
        self.encoder_id = encoder_id
        super().__init__(self.root / _slug(encoder_id) / decode_id, decode_id, {"encoder_id": encoder_id})

    @classmethod
    def for_encoder(
        cls,
        root: str | Path,
        encoder: Any,
        fps: float | None,
        frame_size: int | None,
        max_frames: int | None,
        output: str = "features",
    ) -> FeatureCache:
        """The cache of one of ``encoder``'s outputs for videos decoded at these settings.

        Args:
            root: Cache root.
            encoder: A :class:`models.encoders.FrameEncoder` (or anything with ``model_name_or_path``).
            fps: Decoding rate, as passed to :func:`data.decode.decode_video`.
            frame_size: Longest edge of decoded frames.
            max_frames: Cap on decoded frames per video.
            output: ``features`` (pooled, what the selector reads) or ``image_embeds`` (the VLM's).
        """
        return cls(root, output_id(encoder, output), decode_id(fps, frame_size, max_frames))

    def get(self, video: str | Path) -> tuple[Tensor, Tensor] | None:
        """``(values (T, ...), timestamps (T,) float64)`` of a cached video, or ``None`` on a miss."""
        entry = self._lookup(video)
        return None if entry is None else (entry.values, entry.timestamps)

    def get_valid(self, video: str | Path, timestamps: Tensor) -> Tensor | None:
        """The cached values of ``video`` if they were computed for these ``timestamps``, else ``None``.

        Counted as a hit or a miss; an entry cached with other timestamps (the decoder or its
        settings changed under the same folder) is a miss.
        """
        cached = self._read(self.entry_path(video))
        if cached is not None and _same_timestamps(cached.timestamps, timestamps):
            self.hits += 1
            return cached.values
        if cached is not None:
            log.info("%s: %s was cached with other timestamps; recomputing", self.name, video)
        self.misses += 1
        return None

    def put(self, video: str | Path, values: Tensor, timestamps: Tensor) -> None:
        """Stores a video's per-frame values atomically, in their own dtype.

        If another writer stored the same video first, its entry is kept and this one discarded
        (same inputs, same values); a stale (other timestamps) or unreadable entry is replaced.

        Args:
            video: The video file the values were computed from.
            values: ``(T, ...)`` per-frame values, e.g. features ``(T, D)``.
            timestamps: ``(T,)`` frame times in seconds.
        """
        values = values.detach().cpu()
        if values.ndim < 2:
            raise ValueError(f"expected per-frame values (T, ...), got {tuple(values.shape)}")
        self._store(video, values, timestamps, extra={})

    def get_or_compute(
        self,
        video: str | Path,
        frames: Tensor,
        timestamps: Tensor,
        encode: Callable[[Tensor], Tensor],
    ) -> Tensor:
        """Cached features of ``video``, computed with ``encode(frames)`` and stored on a miss.

        A cached entry whose timestamps differ from ``timestamps`` is stale (the decoder or its
        settings changed under the same folder) and is recomputed and replaced.

        Args:
            video: The video file ``frames`` were decoded from.
            frames: ``uint8 (T, 3, H, W)`` decoded frames.
            timestamps: ``(T,)`` their times in seconds.
            encode: Frames to ``(T, D)`` features, e.g. a :class:`models.encoders.FrameEncoder`.

        Returns:
            ``(T, D)`` float32 features on the CPU.
        """
        cached = self.get_valid(video, timestamps)
        return cached if cached is not None else self._compute(video, frames, timestamps, encode)

    def _compute(
        self, video: str | Path, frames: Tensor, timestamps: Tensor, encode: Callable[[Tensor], Tensor]
    ) -> Tensor:
        start = time.perf_counter()
        with torch.no_grad():  # cached features are constants: no graph to keep
            features = encode(frames).detach().to("cpu", torch.float32)
        self.compute_seconds += time.perf_counter() - start
        self.put(video, features, timestamps)
        return features


class FrameCache(PerFrameCache):
    """Decoded frames of each video at one decoding setting, stored under ``root/<decode_id>``.

    Shared by runs and by DataLoader worker processes (each counts its own hits and misses).
    Frames are stored as decoded (``uint8``), so a cached video costs ``T * 3 * H * W`` bytes,
    e.g. 1.5 MiB for 128 frames of 64 x 64.

    Args:
        root: Cache root of decoded frames, e.g. ``<data.cache_dir>/frames``.
        fps: Decoding rate, as passed to :func:`data.decode.decode_video`.
        frame_size: Longest edge of decoded frames.
        max_frames: Cap on decoded frames per video.

    Attributes:
        directory: ``root/<decode_id>``, where this cache's entries live.
        hits: Lookups answered from disk.
        misses: Lookups that were not (absent or unreadable entries).
        compute_seconds: Time spent decoding on misses (in :meth:`get_or_decode`).
    """

    name = "frame cache"
    column = "frames"
    required_extra = ("duration", "native_fps")
    work = "decoding"

    def __init__(self, root: str | Path, fps: float | None, frame_size: int | None, max_frames: int | None) -> None:
        self.root = Path(root).expanduser()
        self.fps = fps
        self.frame_size = frame_size
        self.max_frames = max_frames
        settings = decode_id(fps, frame_size, max_frames)
        super().__init__(self.root / settings, settings, {"kind": "decoded frames"})

    def get(self, video: str | Path) -> DecodedVideo | None:
        """The cached decoding of ``video``, or ``None`` on a miss."""
        entry = self._lookup(video)
        if entry is None:
            return None
        return DecodedVideo(
            entry.values, entry.timestamps, float(entry.extra["duration"]), float(entry.extra["native_fps"])
        )

    def put(self, video: str | Path, decoded: DecodedVideo) -> None:
        """Stores a video's decoding atomically (a rival writer's entry for the same video is kept).

        Args:
            video: The video file.
            decoded: Its decoding at this cache's settings.
        """
        if decoded.frames.ndim != 4:
            raise ValueError(f"expected frames (T, 3, H, W), got {tuple(decoded.frames.shape)}")
        extra = {"duration": decoded.duration, "native_fps": decoded.native_fps}
        self._store(video, decoded.frames, decoded.timestamps, extra)

    def get_or_decode(self, video: str | Path, decode: Callable[[], DecodedVideo]) -> DecodedVideo:
        """The cached decoding of ``video``, or ``decode()``'s, stored for next time.

        A failed write (e.g. a full disk) is logged and the decoded video returned anyway: the
        cache only saves time. Decoding errors propagate and nothing is stored.

        Args:
            video: The video file.
            decode: Decodes ``video`` at this cache's settings, e.g.
                ``lambda: decode_video(video, fps, frame_size, max_frames)``.
        """
        cached = self.get(video)
        if cached is not None:
            return cached
        start = time.perf_counter()
        decoded = decode()
        self.compute_seconds += time.perf_counter() - start
        try:
            self.put(video, decoded)
        except OSError as err:
            log.warning("%s: cannot store %s (%s); continuing without caching it", self.name, video, err)
        return decoded


def precompute_features(
    samples: Sequence[VideoSample],
    cache: FeatureCache,
    encoder: Callable[[Tensor], Tensor],
    fps: float | None,
    frame_size: int | None,
    max_frames: int | None,
    progress: bool = True,
) -> dict[str, Any]:
    """Decodes and encodes every video not yet in ``cache``.

    Videos already cached are not decoded again (their key covers the file and the decode
    settings). Videos that fail to decode are logged, skipped and listed.

    Args:
        samples: Samples whose videos to encode (a video listed twice is encoded once).
        cache: Cache to fill; its ``decode_id`` must match ``fps``/``frame_size``/``max_frames``.
        encoder: Frames to features, e.g. a :class:`models.encoders.FrameEncoder`.
        fps: Decoding rate.
        frame_size: Longest edge of decoded frames.
        max_frames: Cap on decoded frames per video.
        progress: Show a progress bar.

    Returns:
        :meth:`FeatureCache.stats` plus ``videos`` (distinct videos), ``computed`` (videos encoded
        now), ``seconds`` (wall time) and ``failed`` (a list of ``{"video_id", "video", "error"}``).

    Raises:
        ValueError: If the decode settings are not the cache's (features would be filed under the
            wrong settings).
    """
    expected = decode_id(fps, frame_size, max_frames)
    if cache.decode_id != expected:
        raise ValueError(f"cache is for decode settings {cache.decode_id!r}, but decoding with {expected!r}")
    from tqdm.auto import tqdm

    start = time.perf_counter()
    unique = list({str(s.video): s for s in reversed(samples)}.values())[::-1]  # first sample per video
    failed: list[dict[str, str]] = []
    computed = 0
    for sample in tqdm(unique, desc="encoding videos", unit="video", disable=not progress):
        try:
            if cache.get(sample.video) is not None:
                continue
            video = decode_video(sample.video, fps=fps, size=frame_size, max_frames=max_frames)
        except (FileNotFoundError, VideoDecodeError) as err:
            log.warning("skipping %s: %s", sample.video_id, err)
            failed.append({"video_id": sample.video_id, "video": str(sample.video), "error": str(err)})
            continue
        cache._compute(sample.video, video.frames, video.timestamps, encoder)
        computed += 1
    seconds = time.perf_counter() - start
    return {**cache.stats(), "videos": len(unique), "computed": computed, "seconds": seconds, "failed": failed}
