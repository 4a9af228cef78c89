"""A warm cache as a Hugging Face ``datasets`` folder that trains without the videos.

``python -m trainer cache --export DIR`` writes, per split, the cached encoder outputs of every
video with its annotation, as Parquet shards in the Hub's dataset layout::

    DIR/README.md                          dataset card: YAML header (configs -> data files), then
                                           the encoders, weights fingerprints and decode settings
    DIR/frame_selectors.json               what a run checks before it trains from the folder
    DIR/data/<split>-00000-of-0000N.parquet  one row per video: video_id, duration, events, query,
                                           extra (JSON), timestamps, and one column per output
                                           (the per-frame tensor flattened; dtype and per-frame
                                           shape in frame_selectors.json); an output cached row
                                           by row (the captioner's shown frames) holds those rows
                                           only, their frame indices in ``<output>_index``

``datasets.load_dataset(DIR)`` (or the Hub id it was pushed to) reads it like any dataset. A
data module with ``data.from_cache: DIR`` (a folder or a Hub id; ``HF_HUB_OFFLINE`` honoured)
trains from it with no video on the machine (:class:`CachedSplit`), and refuses a folder whose
encoders (by weights fingerprint, pooling, dtype, preprocessing) or decode settings are not the
run's (:func:`check_export`). A local encoder folder is recorded by its name, never its path.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor
from torch.utils.data import Dataset

from data.atomic import write_atomic
from data.encodings import SelectorScores
from data.features import weights_fingerprint
from data.schema import VideoSample

INFO_FILE = "frame_selectors.json"
FORMAT = 1
VIDEOS_PER_SHARD = 256  # ~1.5 GB of SmolVLM2-256M image embeddings per shard at 1 fps, 80 s videos


class ExportError(ValueError):
    """A cache export that cannot be written, read, or used by this run (the message says which)."""


#: What :func:`check_export` compares: an output's source is the run's when all of these agree.
IDENTITY = ("weights_sha256", "pooling", "dtype", "preprocessing_sha1", "settings")


def portable_encoder(encoder: Any) -> dict[str, str]:
    """What makes an encoder's outputs the same on another machine: its weights, pooling, dtype and
    preprocessing, and its name (a Hub id, or a local folder's name; never a local path). A
    selector's scores or picks (:class:`~data.encodings.SelectorScores`) add its settings: its
    class, options, decoder and budget, which its weights alone do not tell (cross-correlation has none)."""
    name = str(encoder.model_name_or_path)
    local = Path(name).expanduser()
    param = next(encoder.parameters(), None)
    return {
        "name": local.name if local.exists() else name,
        "settings": name if isinstance(encoder, SelectorScores) else "",
        "weights_sha256": weights_fingerprint(encoder),
        "pooling": str(getattr(encoder, "pooling", "mean")),
        # A parameterless encoder (a selector's scores) says what it gives itself.
        "dtype": str(param.dtype if param is not None else getattr(encoder, "dtype", "none")).removeprefix("torch."),
        "preprocessing_sha1": hashlib.sha1((getattr(encoder, "preprocessing", "") or "").encode()).hexdigest(),
    }


def _flat(values: Tensor) -> tuple[np.ndarray, str, list[int]]:
    """``(T, ...)`` as ``(T, prod(...))`` numpy rows, the dtype's name and the per-frame shape."""
    values = values.detach().cpu().contiguous()
    dtype = str(values.dtype).removeprefix("torch.")
    if values.dtype == torch.bfloat16:  # Arrow has no bfloat16: its bits as int16
        values = values.view(torch.int16)
    shape = list(values.shape[1:])
    return values.reshape(len(values), math.prod(shape)).numpy(), dtype, shape


def _unflat(rows: np.ndarray, dtype: str, shape: list[int]) -> Tensor:
    values = torch.from_numpy(np.ascontiguousarray(rows)).reshape(len(rows), *shape)
    return values.view(torch.bfloat16) if dtype == "bfloat16" else values


def write_export(
    output: str | Path,
    splits: dict[str, Iterable[tuple[VideoSample, Tensor, dict[str, Tensor]]]],
    encoders: dict[str, dict[str, str]],
    decode_id: str,
    progress: Any = None,
) -> dict[str, int]:
    """Writes the export folder (see the module docstring); returns the videos written per split.

    Args:
        output: The folder (created; it must not hold another export).
        splits: Per split, ``(sample, timestamps, {output: values})`` of each video, in order.
        encoders: Per output, :func:`portable_encoder` of the encoder that gave it.
        decode_id: The decode settings of every entry (:func:`data.features.decode_id`).
        progress: ``tqdm``-like wrapper for the per-video loop, or ``None``.
    """
    output = Path(output)
    if (output / INFO_FILE).exists() or (output.exists() and any(output.iterdir())):
        raise ExportError(f"{output} is not empty: export into a new folder")
    (output / "data").mkdir(parents=True, exist_ok=True)
    layouts: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    files: dict[str, list[str]] = {}
    for split, rows in splits.items():
        batch: list[dict[str, Any]] = []
        shards: list[Path] = []
        for sample, stamps, values in progress(rows, desc=f"export {split}") if progress else rows:
            row = {"video_id": str(sample.video_id), "duration": float(sample.duration),
                   "events": json.dumps([asdict(e) for e in sample.events]),
                   "query": sample.query, "extra": json.dumps(sample.extra or {}),
                   "timestamps": stamps.to(torch.float64).numpy()}  # fmt: skip
            for name in encoders:
                index, value = values[name] if isinstance(values[name], tuple) else (None, values[name])
                flat, dtype, shape = _flat(value)
                layout = {"dtype": dtype, "shape": shape, "partial": index is not None}
                seen = layouts.setdefault(name, layout)
                if seen != layout:
                    raise ExportError(f"{sample.video_id}: {name} is {layout}, other videos' {seen}")
                row[name] = flat
                if index is not None:  # some rows only (those a step showed): which frames they are
                    row[f"{name}_index"] = index.to(torch.int32).numpy()
            batch.append(row)
            if len(batch) == VIDEOS_PER_SHARD:
                shards.append(_write_shard(output, split, len(shards), batch, list(encoders)))
                batch = []
        if batch or not shards:
            shards.append(_write_shard(output, split, len(shards), batch, list(encoders)))
        for i, shard in enumerate(shards):  # the Hub's names: <split>-0000i-of-0000N.parquet
            final = shard.with_name(f"{split}-{i:05d}-of-{len(shards):05d}.parquet")
            shard.rename(final)
            files.setdefault(split, []).append(f"data/{final.name}")
        counts[split] = sum(pq.ParquetFile(output / f).metadata.num_rows for f in files[split])
    info = {"format": FORMAT, "decode_id": decode_id, "outputs": {name: {**encoders[name], **layouts.get(name, {})}
            for name in encoders}, "splits": counts}  # fmt: skip
    write_atomic(output / INFO_FILE, json.dumps(info, indent=1))
    write_atomic(output / "README.md", _card(info, files))
    return counts


def _write_shard(output: Path, split: str, index: int, rows: list[dict[str, Any]], names: list[str]) -> Path:
    columns: dict[str, pa.Array] = {}
    for key in ("video_id", "events", "extra"):
        columns[key] = pa.array([r[key] for r in rows], pa.string())
    columns["duration"] = pa.array([r["duration"] for r in rows], pa.float64())
    columns["query"] = pa.array([r["query"] for r in rows], pa.string())
    columns["timestamps"] = pa.array([r["timestamps"] for r in rows], pa.list_(pa.float64()))
    for name in names:
        # One list of frames per video, each frame a fixed-size list of its flattened values.
        lists = [pa.FixedSizeListArray.from_arrays(pa.array(r[name].reshape(-1)), r[name].shape[1]) for r in rows]
        columns[name] = _list_of(lists) if rows else pa.array([], pa.list_(pa.list_(pa.float32())))
        if rows and f"{name}_index" in rows[0]:
            columns[f"{name}_index"] = pa.array([r[f"{name}_index"] for r in rows], pa.list_(pa.int32()))
    path = output / "data" / f".{split}-{index:05d}.parquet.tmp"
    pq.write_table(pa.table(columns), path)
    return path


def _list_of(lists: list[pa.FixedSizeListArray]) -> pa.Array:
    """Per-video arrays of frames as one list column, without going through Python objects."""
    offsets = np.cumsum([0, *(len(x) for x in lists)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.concat_arrays(lists))


def _card(info: dict[str, Any], files: dict[str, list[str]]) -> str:
    configs = "\n".join(f"  - split: {split}\n    path: {paths}" for split, paths in files.items())
    outputs = "\n".join(
        f"- `{name}`: {o['dtype']} per frame {o.get('shape')}, from `{o['name']}` (weights sha256 "
        f"`{o['weights_sha256'][:16]}...`, pooling {o['pooling']}, dtype {o['dtype']})"
        for name, o in info["outputs"].items()
    )
    videos = ", ".join(f"{split}: {n}" for split, n in info["splits"].items())
    return (f"---\nconfigs:\n- config_name: default\n  data_files:\n{configs}\ntags:\n- video\n- frame-selection\n---\n\n"
            f"# Cached frame encodings\n\nWritten by `python -m trainer cache --export` (frame-selectors): per video its "
            f"annotation, candidate-frame timestamps and encoder outputs, so that a run trains without decoding or "
            f"even holding the videos (`data.from_cache: <this folder or its Hub id>`).\n\nVideos: {videos}. "
            f"Decode settings: `{info['decode_id']}`.\n\n{outputs}\n\nA run refuses this data when its own encoders' "
            f"weights, pooling, dtype or preprocessing, or its decode settings, differ ({INFO_FILE}).\n")  # fmt: skip


# --------------------------------------------------------------------------------------- reading
def resolve_export(source: str | Path) -> Path:
    """The local folder of an export: ``source`` itself, or the snapshot of a Hub dataset id."""
    local = Path(source).expanduser()
    if local.is_dir():
        if not (local / INFO_FILE).is_file():
            raise ExportError(f"{local} holds no {INFO_FILE}: not a folder written by python -m trainer cache --export")
        return local
    from huggingface_hub import snapshot_download  # a Hub id; HF_HUB_OFFLINE: only what is already downloaded

    try:
        return Path(snapshot_download(str(source), repo_type="dataset"))
    except Exception as err:  # noqa: BLE001 - any failure to fetch is the same error to the user
        raise ExportError(f"{source}: not a local folder, and not a Hub dataset that can be fetched ({err})") from err


def read_info(folder: Path) -> dict[str, Any]:
    info = json.loads((folder / INFO_FILE).read_text())
    if info.get("format") != FORMAT:
        raise ExportError(f"{folder}: export format {info.get('format')!r}, this code reads {FORMAT}")
    return info


def check_export(info: dict[str, Any], where: str, encoders: dict[str, Any], decode_id: str) -> None:
    """Refuses an export whose outputs are not what this run's ``encoders`` give at ``decode_id``.

    Raises:
        ExportError: Naming the output and the field that differs (or the missing output).
    """
    if info["decode_id"] != decode_id:
        raise ExportError(f"{where}: decoded at {info['decode_id']}, this run decodes at {decode_id} (data.fps, "
                          "data.frame_size, data.max_frames)")  # fmt: skip
    for name, encoder in encoders.items():
        recorded = info["outputs"].get(name)
        if recorded is None:
            raise ExportError(f"{where}: holds no {name} (it has {sorted(info['outputs'])}); this run reads it")
        mine = portable_encoder(encoder)
        differs = [k for k in IDENTITY if recorded.get(k, "") != mine[k]]
        if differs:
            raise ExportError(f"{where}: its {name} come from another encoder than this run's ({', '.join(differs)} "
                              f"differ: {recorded['name']} there, {mine['name']} here)")  # fmt: skip


class CachedSplit(Dataset):
    """One split of an export as the items :class:`data.datamodule.VideoCaptionDataset` yields, with
    ``frames=None`` and the encoder outputs under ``encoded``: no video is needed.

    Args:
        folder: The export's local folder (:func:`resolve_export`).
        split: ``train``, ``val``, ``test`` or ``predict`` (``predict`` reads ``test``).
        min_frames: Videos with fewer candidate frames are skipped (the frame budget ``K``).
    """

    def __init__(self, folder: Path, split: str, min_frames: int = 1) -> None:
        self.folder = Path(folder)
        self.info = read_info(self.folder)
        self.split = "test" if split == "predict" and "predict" not in self.info["splits"] else split
        files = sorted((self.folder / "data").glob(f"{self.split}-*.parquet"))
        if not files:
            raise ExportError(f"{self.folder}: no {self.split} split (it has {sorted(self.info['splits'])})")
        self.table = pa.concat_tables([pq.read_table(f, memory_map=True) for f in files])
        self.video_ids = self.table.column("video_id").to_pylist()
        self.min_frames = min_frames

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        item = self.load_or_skip(index)
        return None if "skipped" in item else item

    def load_or_skip(self, index: int) -> dict[str, Any]:
        row = self.table.slice(index, 1)
        stamps = torch.from_numpy(np.asarray(row.column("timestamps")[0].values, dtype=np.float64).copy())
        vid = self.video_ids[index]
        if len(stamps) < self.min_frames:
            return {"video_id": vid, "skipped": f"{vid}: {len(stamps)} cached frames, fewer than the frame budget "
                                                f"K={self.min_frames}"}  # fmt: skip
        encoded: dict[str, Any] = {}
        for name, layout in self.info["outputs"].items():
            frames = row.column(name)[0].values  # FixedSizeList of this video's frames
            rows = np.asarray(frames.flatten(), dtype=np.dtype("int16" if layout["dtype"] == "bfloat16" else
                                                                layout["dtype"]))  # fmt: skip
            values = _unflat(rows.reshape(len(frames), -1), layout["dtype"], layout["shape"])
            if layout.get("partial"):  # the rows a step showed, and which frames they are (as the caches give them)
                index = torch.from_numpy(np.asarray(row.column(f"{name}_index")[0].values, dtype=np.int64).copy())
                encoded[name] = (index, values)
            else:
                encoded[name] = values
        return {
            "video_id": vid,
            "video": f"{self.folder.name}/{self.split}/{vid}",  # no file: a name for logs and cache keys
            "frames": None,
            "timestamps": stamps,
            "duration": row.column("duration")[0].as_py(),
            "events": json.loads(row.column("events")[0].as_py()),
            "query": row.column("query")[0].as_py(),
            "extra": json.loads(row.column("extra")[0].as_py()),
            "encoded": encoded,
        }
