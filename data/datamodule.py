"""Decoded-video datasets and the LightningDataModule behind ``python -m trainer``.

With no annotation files given, the data module writes the synthetic dataset (see
:mod:`data.synthetic`) into ``cache_dir`` and uses its train/val/test splits: that is the
embedded default, so ``fit`` works on a fresh machine with no downloads. Real datasets are read
by the loaders in :mod:`data.sources` (``annotation_format``: ActivityNet Captions, YouCook2 or a
Hugging Face ``datasets`` dataset; its docstring has a config snippet for each).

Decoding long videos can dominate an epoch: ``frame_cache: true`` keeps each video's decoded
frames in ``<cache_dir>/frames/<decode settings>/`` (a :class:`~data.features.FrameCache`), shared
by later epochs, later runs and all DataLoader workers.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from data.cache_export import CachedSplit, check_export, read_info, resolve_export
from data.decode import DecodedVideo, VideoDecodeError, decode_video
from data.encodings import EncodingStore, FrameEncodings, MadeFrames, SelectorScores
from data.features import FrameCache, decode_id
from data.schema import AnnotationError, VideoSample
from data.sources import (
    HFColumns,
    LoadResult,
    load_activitynet,
    load_hf_dataset,
    load_youcook2,
)
from data.synthetic import SyntheticConfig, generate_dataset

log = logging.getLogger(__name__)

AnnotationFormat = Literal["activitynet", "youcook2", "hf"]
ANNOTATION_FORMATS: tuple[str, ...] = ("activitynet", "youcook2", "hf")
# Which part of the source each split reads when the config does not say. YouCook2's test
# annotations are not public, so test/predict fall back to its validation subset.
DEFAULT_YOUCOOK2_SUBSETS = {"train": "training", "val": "validation", "test": "validation", "predict": "validation"}
DEFAULT_HF_SPLITS = {"train": "train", "val": "validation", "test": "test", "predict": "test"}


def default_cache_dir() -> Path:
    """``$FRAME_SELECT_CACHE`` or ``~/.cache/frame-selectors``: generated data never lands in the source tree."""
    env = os.environ.get("FRAME_SELECT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "frame-selectors"


def decode_at(
    video: str, fps: float, frame_size: int, max_frames: int | None, frame_cache: FrameCache | None
) -> DecodedVideo:
    """``video`` decoded at these settings, through ``frame_cache`` when there is one."""

    def run() -> DecodedVideo:
        return decode_video(video, fps=fps, size=frame_size, max_frames=max_frames)

    return run() if frame_cache is None else frame_cache.get_or_decode(video, run)


class VideoCaptionDataset(Dataset):
    """Decodes each sample's video at ``fps`` and ``frame_size``.

    Args:
        samples: Validated samples.
        fps: Decoding rate: the candidate frames a selector chooses from.
        frame_size: Longest edge of decoded frames.
        max_frames: Cap on decoded frames per video.
        min_frames: Videos with fewer decoded frames are bad samples (the frame budget ``K``).
        skip_bad_samples: Log and skip undecodable/too-short videos instead of raising.
        frame_cache: Cache of decoded frames at these same ``fps``/``frame_size``/``max_frames``
            (``None``: decode every time).

    Attributes:
        encoded_store: Set by :meth:`DenseCaptionDataModule.set_frame_encoders`: items then carry
            the encoder outputs already cached for their video (``encoded``), read in the worker.
        decode_free: Set by :meth:`DenseCaptionDataModule.set_decode_free`: the outputs that stand
            in for the frames of a step that reads no pixels. A video whose every one of them is
            cached is not opened: its item has ``frames=None`` and the cached timestamps.
        require_cache: With ``decode_free``, a video missing from the caches is an error
            (:class:`CacheMissError`), not a decode.
        decodes: Videos this process opened (decoded or read from the frame cache).
    """

    def __init__(
        self,
        samples: list[VideoSample],
        fps: float,
        frame_size: int,
        max_frames: int | None = None,
        min_frames: int = 1,
        skip_bad_samples: bool = True,
        frame_cache: FrameCache | None = None,
    ) -> None:
        settings = decode_id(fps, frame_size, max_frames)
        if frame_cache is not None and frame_cache.decode_id != settings:  # frames would be filed wrongly
            raise ValueError(f"frame cache is for decode settings {frame_cache.decode_id!r}, not {settings!r}")
        self.samples = samples
        self.fps = fps
        self.frame_size = frame_size
        self.max_frames = max_frames
        self.min_frames = min_frames
        self.skip_bad_samples = skip_bad_samples
        self.frame_cache = frame_cache
        self.encoded_store: EncodingStore | None = None
        self.decode_free: tuple[str, ...] = ()
        self.require_cache = False
        self.decodes = 0

    def __len__(self) -> int:
        return len(self.samples)

    def decode(self, video: str) -> DecodedVideo:
        """``video`` decoded at this dataset's settings, through the frame cache when there is one."""

        self.decodes += 1
        return decode_at(video, self.fps, self.frame_size, self.max_frames, self.frame_cache)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        item = self.load_or_skip(index)
        if "skipped" in item:
            log.warning("skipping sample %s: %s", item["video_id"], item["skipped"])
            return None
        return item

    def load_or_skip(self, index: int) -> dict[str, Any]:
        """:meth:`load`, or for a bad video under ``skip_bad_samples`` ``{"video_id", "skipped": reason}``."""
        try:
            return self.load(index)
        except BAD_VIDEO_ERRORS as err:
            if not self.skip_bad_samples:
                raise
            return {"video_id": self.samples[index].video_id, "skipped": str(err)}

    def load(self, index: int) -> dict[str, Any]:
        """Sample ``index`` decoded, whatever ``skip_bad_samples`` says.

        Raises:
            FileNotFoundError: If the video is gone.
            VideoDecodeError: If it cannot be decoded or has fewer than ``min_frames`` frames.
        """
        sample = self.samples[index]
        if self.decode_free and self.encoded_store is not None:
            cached = self.encoded_store.read_whole(sample.video, self.decode_free)
            if cached is not None:
                stamps, encoded = cached
                self._check_length(sample, len(stamps))
                return {**self._fields(sample, None, stamps), "encoded": encoded}
            if self.require_cache:
                raise CacheMissError(
                    f"{sample.video_id}: {sample.video} has no cached {', '.join(self.decode_free)} at "
                    f"{self.encoded_store.caches[self.decode_free[0]].decode_id} (data.require_cache: fill the "
                    "caches with python -m trainer cache first)"
                )
        video = self.decode(sample.video)
        self._check_length(sample, len(video))
        item = self._fields(sample, video.frames, video.timestamps)
        if self.encoded_store is not None:
            item["encoded"] = self.encoded_store.read(sample.video, video.timestamps)
            if self.decode_free and self.encoded_store.partial:
                # Rows cached one by one do not tell the candidate frames: record them for the next epoch.
                self.encoded_store.write_times(sample.video, video.timestamps)
        return item

    def _check_length(self, sample: VideoSample, frames: int) -> None:
        if frames < self.min_frames:
            raise VideoDecodeError(
                f"{sample.video}: {frames} frames at {self.fps} fps, fewer than the frame budget K={self.min_frames}"
            )

    @staticmethod
    def _fields(sample: VideoSample, frames: torch.Tensor | None, timestamps: torch.Tensor) -> dict[str, Any]:
        return {
            "video_id": sample.video_id,
            "video": sample.video,
            "frames": frames,
            "timestamps": timestamps,
            "duration": sample.duration,
            "events": [asdict(e) for e in sample.events],
            "query": sample.query,
            "extra": sample.extra,
        }


class VideoItems(Dataset):
    """The items of ``dataset`` at ``indices``; a bad video becomes ``{"video_id", "skipped": reason}``.

    For whole-split passes (evaluation, cache filling) that must record what they skip and why,
    while DataLoader workers decode in parallel (``batch_size=None, collate_fn=as_is``).
    """

    def __init__(self, dataset: VideoCaptionDataset, indices: list[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        return self.dataset.load_or_skip(self.indices[position])


def as_is(item: Any) -> Any:
    """Collate function that passes one item through (module level: workers pickle it)."""
    return item


class EpochShuffleSampler(Sampler[int]):
    """Shuffled order that depends only on the run's seed and the epoch (Lightning calls ``set_epoch``).

    A plain shuffling sampler draws each epoch's order from a generator whose state a resumed run
    does not have. Here epoch ``e``'s order is rebuilt from ``(seed, e)``, and the iterator's
    state (epoch, position), which the stateful loader stores in every checkpoint, puts a resumed
    run at the same batch of the same order as the unbroken run.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> list[int]:
        # Unseeded runs have 64-bit initial seeds: keep the mix inside manual_seed's range.
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> _EpochShuffleIterator:
        return _EpochShuffleIterator(self)

    def __len__(self) -> int:
        return self.size


class _EpochShuffleIterator:
    """Iterator over one epoch's order; ``state_dict``/``load_state_dict`` make it resumable."""

    def __init__(self, sampler: EpochShuffleSampler) -> None:
        self.sampler = sampler
        self.epoch = sampler.epoch
        self.order = sampler.order(self.epoch)
        self.position = 0

    def __iter__(self) -> _EpochShuffleIterator:
        return self

    def __next__(self) -> int:
        if self.position >= len(self.order):
            raise StopIteration
        self.position += 1
        return self.order[self.position - 1]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        # Restored before Lightning calls set_epoch, so the epoch comes from the checkpoint.
        self.epoch, self.position = state["epoch"], state["position"]
        self.sampler.epoch = self.epoch
        self.order = self.sampler.order(self.epoch)


# The Lightning stage that sets up each split (``setup(stage)``).
SPLIT_STAGES = {"train": "fit", "val": "validate", "test": "test"}
# What makes one video a bad sample (skipped under ``skip_bad_samples``) rather than a bug.
BAD_VIDEO_ERRORS = (FileNotFoundError, VideoDecodeError)


class CacheMissError(RuntimeError):
    """A video a ``data.require_cache`` run needs is not in the caches (never skipped: fill them first)."""


class NoUsableSamplesError(RuntimeError):
    """Every sample of a split is skipped at the current settings, so a loop over it would run no step."""


def skip_report(skipped: list[tuple[str, str]], shown: int = 3) -> str:
    """Counts of skip reasons by kind and the first ``shown`` reasons, for an error message."""
    kinds = Counter(_reason_kind(reason) for _, reason in skipped)
    counts = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
    first = "; ".join(f"{vid}: {reason}" for vid, reason in skipped[:shown])
    return f"{len(skipped)} skipped ({counts}); first: {first}"


def _reason_kind(reason: str) -> str:
    """A short category for a skip reason, for the counted report."""
    for kind in ("not found", "end=", "empty", "beyond", "duration", "decode", "frames"):
        if kind in reason:
            return {"end=": "end before start", "beyond": "event past the duration"}.get(kind, kind)
    return "other"


def collate_videos(items: list[dict[str, Any] | None]) -> dict[str, list[Any]]:
    """Keeps variable-length videos as lists and drops skipped (``None``) samples."""
    items = [x for x in items if x is not None]
    keys = ("video_id", "video", "frames", "timestamps", "duration", "events", "query", "extra")
    batch = {k: [x[k] for x in items] for k in keys}
    if items and "encoded" in items[0]:  # cached encoder outputs (see DenseCaptionDataModule.set_frame_encoders)
        batch["encoded"] = [x["encoded"] for x in items]
    return batch


class DenseCaptionDataModule(pl.LightningDataModule):
    """Train/val/test/predict splits of dense-captioning videos.

    Args:
        train_file: Annotations for training (``None``: synthetic): a JSON file in
            ``annotation_format``; for ``"hf"`` a dataset folder, data file or Hub id.
        val_file: Validation annotations.
        test_file: Test annotations.
        predict_file: Annotations of the videos to caption in ``predict`` (default: ``test_file``).
        video_root: Folder that relative video paths resolve against (default: each file's folder).
        synthetic: Generator settings used when no annotation files are given.
        cache_dir: Where generated data goes (default: :func:`default_cache_dir`).
        fps: Candidate-frame decoding rate.
        frame_size: Longest edge of decoded frames in pixels.
        max_frames: Cap on candidate frames per video.
        min_frames: Frame budget ``K``; shorter videos are bad samples. The captioner overrides it
            with its ``num_frames`` at setup (:meth:`set_frame_budget`).
        batch_size: Videos per batch.
        num_workers: DataLoader worker processes (decoding runs there).
        skip_bad_samples: Skip bad samples (malformed annotation rows, missing or undecodable
            videos) with a logged warning and a record in :attr:`skipped` (``False``: fail fast).
        annotation_format: ``"activitynet"`` (:func:`~data.sources.load_activitynet`),
            ``"youcook2"`` (:func:`~data.sources.load_youcook2`) or ``"hf"``
            (:func:`~data.sources.load_hf_dataset`).
        youcook2_subsets: YouCook2 subset each split reads (default
            :data:`DEFAULT_YOUCOOK2_SUBSETS`; missing splits keep the default).
        hf_columns: Column mapping of a Hugging Face dataset.
        hf_splits: Dataset split each split reads (default :data:`DEFAULT_HF_SPLITS`).
        hf_streaming: Read Hugging Face rows lazily (see :func:`~data.sources.iter_hf_samples`).
        frame_cache: Cache decoded frames in ``<cache_dir>/frames/<decode settings>/`` (a
            :class:`~data.features.FrameCache`): each video is decoded once at these ``fps``,
            ``frame_size`` and ``max_frames``, then read from disk by every epoch, run and worker.
            Costs ``3 * frame_size**2`` bytes per frame (about 1.5 MiB per 128-frame video at 64 px).
        feature_cache: Cache the outputs of the encoders a LightningModule registers
            (:meth:`set_frame_encoders`: selector features, VLM image embeddings) per video in
            ``<cache_dir>/features/``, so each frame goes through the vision tower once per run
            and, once warm, never again. ``False``: they are computed for each batch. Image
            embeddings cost ``image_seq_len * hidden`` values per frame (72 KiB in bfloat16 for
            SmolVLM2-256M).
        require_cache: In a run whose training step reads no pixels (:meth:`set_decode_free`),
            a training video missing from the feature cache is an error instead of a decode: for
            machines that should never decode (fill the caches with ``python -m trainer cache``).
        from_cache: A folder written by ``python -m trainer cache --export`` (or the Hub id of
            one): every split is read from it (:class:`~data.cache_export.CachedSplit`), with no
            video and no annotation file; a run whose encoders or decode settings differ, or whose
            step reads pixels, is refused.

    Attributes:
        frame_cache: The :class:`~data.features.FrameCache` the datasets share, or ``None``.
        encodings: The :class:`~data.encodings.FrameEncodings` that attaches encoder outputs to
            batches, once a module registered its encoders (``None`` before).
        skipped: ``(video_id, reason)`` of every bad sample dropped so far.

    Raises:
        NoUsableSamplesError: From a split's ``*_dataloader()`` (which Lightning calls before its
            loop runs a step or writes a checkpoint) when no sample of the split loads at the
            current frame budget (:meth:`check_usable`).
    """

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        predict_file: str | None = None,
        video_root: str | None = None,
        synthetic: SyntheticConfig = SyntheticConfig(),
        cache_dir: str | None = None,
        fps: float = 2.0,
        frame_size: int = 64,
        max_frames: int | None = 128,
        min_frames: int = 1,
        batch_size: int = 2,
        num_workers: int = 0,
        skip_bad_samples: bool = True,
        annotation_format: AnnotationFormat = "activitynet",
        youcook2_subsets: dict[str, str] | None = None,
        hf_columns: HFColumns = HFColumns(),
        hf_splits: dict[str, str] | None = None,
        hf_streaming: bool = False,
        frame_cache: bool = False,
        feature_cache: bool = True,
        require_cache: bool = False,
        from_cache: str | None = None,
    ) -> None:
        super().__init__()
        if annotation_format not in ANNOTATION_FORMATS:
            raise ValueError(f"annotation_format must be one of {ANNOTATION_FORMATS}, got {annotation_format!r}")
        # "~/datasets/..." in a config means the user's home, as in a shell.
        files = {"train": train_file, "val": val_file, "test": test_file, "predict": predict_file or test_file}
        self.files = {k: None if v is None else os.path.expanduser(v) for k, v in files.items()}
        self.video_root = None if video_root is None else os.path.expanduser(video_root)
        self.synthetic = synthetic
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.fps = fps
        self.frame_size = frame_size
        self.max_frames = max_frames
        self.min_frames = min_frames
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.skip_bad_samples = skip_bad_samples
        self.annotation_format = annotation_format
        self.youcook2_subsets = {**DEFAULT_YOUCOOK2_SUBSETS, **(youcook2_subsets or {})}
        self.hf_columns = hf_columns
        self.hf_splits = {**DEFAULT_HF_SPLITS, **(hf_splits or {})}
        self.hf_streaming = hf_streaming
        self.frame_cache = FrameCache(self.cache_dir / "frames", fps, frame_size, max_frames) if frame_cache else None
        self.feature_cache = feature_cache
        self.require_cache = require_cache
        self.from_cache = from_cache
        self._export: tuple[Path, dict[str, Any]] | None = None  # (folder, info) once resolved
        self.encodings: FrameEncodings | None = None
        self.datasets: dict[str, VideoCaptionDataset] = {}
        self.skipped: list[tuple[str, str]] = []
        # Per split: its annotation file and the rows skipped reading it (for check_usable's report).
        self._sources: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        # Per split: the frame budget at which a sample was seen to load (check_usable runs once per budget).
        self._usable_at: dict[str, int] = {}

    def set_frame_budget(self, k: int) -> None:
        """Sets the frame budget ``K`` here and on datasets already built.

        Called by the LightningModule's ``setup`` (which Lightning runs after this module's), so
        videos too short for the model's budget are skipped; datasets read ``min_frames`` per item.
        """
        if k < 1:
            raise ValueError(f"frame budget K must be >= 1, got {k}")
        self.min_frames = k
        for dataset in self.datasets.values():
            dataset.min_frames = k

    def set_frame_encoders(
        self,
        features: Any | None = None,
        image_embeds: Any | None = None,
        embed_all_frames: bool = True,
        scores: dict[str, Any] | None = None,
    ) -> FrameEncodings:
        """Makes every batch carry these encoders' outputs (``features``, ``image_embeds``) and
        these selectors' per-frame ``scores`` (e.g. ``{"teacher_scores": teacher}``, ``(T, 1)``; a
        :class:`~data.encodings.SelectorScores` to give the budget they are for).

        Called by a LightningModule's ``setup`` with its frozen encoders (see
        :class:`~data.encodings.FrameEncodings` for the arguments): cached outputs are read by the
        DataLoader workers, the rest is computed in :meth:`on_after_batch_transfer` on the
        encoders' device and stored when ``feature_cache`` is on.
        """
        root = self.cache_dir / "features" if self.feature_cache and self.from_cache is None else None
        scorers = {name: selector if isinstance(selector, (SelectorScores, MadeFrames)) else SelectorScores(selector)
                   for name, selector in (scores or {}).items()}  # fmt: skip
        self.encodings = FrameEncodings(features, image_embeds, root, self.decode_id, embed_all_frames, scorers)
        if self.from_cache is not None:  # every output a step reads must be the export's, from the same encoder
            folder, info = self.export()
            check_export(info, self.from_cache, self.encodings.encoders, self.decode_id)
        self.encodings.frames_of = self.decode_frames
        for dataset in self.datasets.values():
            dataset.encoded_store = self.encodings.store
        log.info("encoder outputs: %s", self.encodings.summary())  # entries and size already on disk
        return self.encodings

    def set_decode_free(self, outputs: tuple[str, ...], splits: tuple[str, ...] = ("train",)) -> None:
        """Lets ``splits`` yield a video from the caches alone when every one of ``outputs`` is cached.

        Called by a LightningModule whose step on these splits reads no pixels, only these encoder
        outputs (registered first with :meth:`set_frame_encoders`, with ``feature_cache`` on): an
        epoch over a warm cache then never opens a video. A video with a miss is decoded, encoded
        once and stored as before (with ``require_cache``: an error). The batches are the same
        either way, but for ``frames``, which is ``None`` for a video not opened.

        Raises:
            ValueError: If ``require_cache`` is set and there is no feature cache to read.
        """
        if self.from_cache is not None:
            return  # its items never have frames
        store = self.encodings.store if self.encodings is not None else None
        if store is None:
            if self.require_cache:
                raise ValueError("data.require_cache needs data.feature_cache: true (there is no cache to read)")
            return
        missing = [name for name in outputs if name not in store.caches]
        if missing:
            raise ValueError(f"set_decode_free: no cache for {missing}; cached outputs: {sorted(store.caches)}")
        for split in splits:
            if split in self.datasets:
                self.datasets[split].decode_free = tuple(outputs)
                self.datasets[split].require_cache = self.require_cache
        log.info("%s: videos whose %s are cached are not decoded", "/".join(splits), " and ".join(outputs))

    def decode_frames(self, video: str) -> torch.Tensor:
        """``video``'s candidate frames at this module's settings (through the frame cache when on):
        for rows a step asks of a video its worker read from the caches alone."""

        return decode_at(video, self.fps, self.frame_size, self.max_frames, self.frame_cache).frames

    def needs_pixels(self, reason: str) -> None:
        """Said by a LightningModule whose training step reads pixels (so it decodes every video).

        Raises:
            CacheMissError: If ``require_cache`` is set: such a run cannot train from the caches alone.
        """
        if self.require_cache or self.from_cache is not None:
            setting = "data.from_cache" if self.from_cache is not None else "data.require_cache"
            raise CacheMissError(f"{setting}: this run's training step reads the videos' pixels ({reason}), so "
                                 "it cannot train from the caches alone")  # fmt: skip
        log.info("training decodes every video: %s", reason)

    @property
    def decode_id(self) -> str:
        """Identity of this module's decoding settings (see :func:`~data.features.decode_id`)."""
        return decode_id(self.fps, self.frame_size, self.max_frames)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Main process, after the workers: compute the encoder outputs they did not find cached.
        if self.encodings is None or not batch.get("frames"):
            return batch
        return self.encodings.attach(batch)

    @property
    def uses_synthetic(self) -> bool:
        return all(v is None for v in self.files.values())

    def synthetic_root(self) -> Path:
        return self.cache_dir / f"synthetic-{self.synthetic.fingerprint()}"

    def export(self) -> tuple[Path, dict[str, Any]]:
        """``(local folder, info)`` of ``from_cache`` (fetched from the Hub once if it is an id)."""
        if self._export is None:
            folder = resolve_export(self.from_cache)
            self._export = folder, read_info(folder)
        return self._export

    def prepare_data(self) -> None:
        if self.from_cache is not None:
            self.export()
            return
        if self.uses_synthetic:
            generate_dataset(self.synthetic_root(), self.synthetic)

    def _resolve_files(self) -> dict[str, str | None]:
        if not self.uses_synthetic:
            return self.files
        paths = generate_dataset(self.synthetic_root(), self.synthetic, progress=False)
        return {"train": paths["train"], "val": paths["val"], "test": paths["test"], "predict": paths["test"]}

    def _read(self, split: str, path: str | Path) -> LoadResult:
        """Samples of one split via the :mod:`data.sources` loader of ``annotation_format``."""
        skip = self.skip_bad_samples
        # The generated synthetic data is ActivityNet-style whatever the configured format.
        fmt = "activitynet" if self.uses_synthetic else self.annotation_format
        if fmt == "youcook2":
            subset = self.youcook2_subsets.get(split, split)
            return load_youcook2(path, self.video_root, subset=subset, skip_bad_samples=skip)
        if fmt == "hf":
            return load_hf_dataset(
                path, self.hf_splits.get(split, split), **asdict(self.hf_columns), streaming=self.hf_streaming,
                video_root=self.video_root, skip_bad_samples=skip,
            )  # fmt: skip
        return load_activitynet(path, self.video_root, skip_bad_samples=skip)

    def _load(self, split: str, path: str | Path) -> VideoCaptionDataset:
        # The loaders validate every row and check that its video exists; skipped rows are logged there.
        kept, skipped = self._read(split, path)
        self.skipped.extend(skipped)
        self._sources[split] = (str(path), skipped)
        if not kept:
            why = skip_report(skipped) if skipped else "the file lists no videos"
            raise AnnotationError(f"{path}: no usable samples in split '{split}': {why}")
        dataset = VideoCaptionDataset(
            kept, self.fps, self.frame_size, self.max_frames, self.min_frames, self.skip_bad_samples, self.frame_cache
        )
        dataset.encoded_store = self.encodings.store if self.encodings is not None else None
        return dataset

    def setup(self, stage: str | None = None) -> None:
        files = self._resolve_files() if self.from_cache is None else {}
        wanted = {
            "fit": ["train", "val"],
            "validate": ["val"],
            "test": ["test"],
            "predict": ["predict"],
            None: ["train", "val", "test", "predict"],
        }[stage]
        for split in wanted:
            if split in self.datasets:
                continue
            if self.from_cache is not None:
                folder, info = self.export()
                if split == "val" and "val" not in info["splits"]:
                    continue
                self.datasets[split] = CachedSplit(folder, split, self.min_frames)
                continue
            if files[split] is None:
                if split == "val":
                    continue  # training without validation is allowed
                raise ValueError(f"data.{split}_file is required for stage '{stage}'")
            self.datasets[split] = self._load(split, files[split])
        if self.skipped:
            log.warning("bad samples so far: %s (data.skipped lists them all)", skip_report(self.skipped))
        if self.frame_cache is not None:
            # Hits and misses are this process's: DataLoader workers count theirs in their own copies.
            log.info("%s (this process)", self.frame_cache.summary())
        if self.encodings is not None:
            log.info("encoder outputs: %s (this process)", self.encodings.summary())

    def check_usable(self, split: str) -> None:
        """Raises unless some sample of ``split`` loads at the current frame budget.

        A bad video is skipped when its batch is built, so a split whose every video is skipped
        (missing, undecodable, fewer candidate frames than ``K``) would run its loop on empty
        batches: ``fit`` would count steps, write checkpoints and exit 0 having learned nothing.
        The videos are decoded in order until one loads (usually the first); a later budget
        (:meth:`set_frame_budget`) checks again.

        Raises:
            NoUsableSamplesError: Naming the split, its file, the budget and the skip reasons by
                kind with the first few (the rows skipped reading the file included).
        """
        dataset = self.datasets[split]
        if self._usable_at.get(split) == dataset.min_frames:
            return
        skipped = []
        for index in range(len(dataset)):
            item = dataset.load_or_skip(index)
            if "skipped" not in item:
                self._usable_at[split] = dataset.min_frames
                return
            skipped.append((item["video_id"], item["skipped"]))
        path, file_skips = self._sources.get(split, ("?", []))
        hint = ""
        if all(_reason_kind(reason) == "frames" for _, reason in skipped):
            hint = (" (every video has fewer candidate frames than K: lower K, the model's num_frames or "
                    "data.min_frames, or raise data.fps or data.max_frames)")  # fmt: skip
        raise NoUsableSamplesError(
            f"{path}: no usable sample in split '{split}' at frame budget K={dataset.min_frames}{hint}: "
            f"{skip_report(file_skips + skipped)}"
        )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        # A stateful loader: Lightning saves its position (and the shuffle order) in every
        # checkpoint, so a run killed mid-epoch resumes at the same batch with the same data order.
        self.check_usable(split)
        dataset = self.datasets[split]
        return StatefulDataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(len(dataset), torch.initial_seed()) if shuffle else None,
            num_workers=self.num_workers,
            collate_fn=collate_videos,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False) if "val" in self.datasets else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Frames stay on the CPU: the processor resizes them there; the model moves its inputs.
        return batch
