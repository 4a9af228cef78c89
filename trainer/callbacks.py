"""Validation baselines for :class:`trainer.selector_module.SelectorModule`, as a Lightning callback.

The importance model's ``{stage}/recall@K`` means little alone: :class:`ValidationBaselines` logs
what fixed selectors reach on the same videos, at the same budgets and with the same decoder.
``SelectorModule.configure_callbacks`` adds it to every run (``validation_baselines: false``
leaves it out).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl

from models.decoders import Decoder
from models.selectors import FrameSelector, PixelDiffSelector, UniformSelector, uniform_indices
from models.xcorr import CrossCorrelationSelector
from trainer.lru import LRUCache
from trainer.evaluation.metrics import event_recall
from trainer.objectives import CaptionScorer

log = logging.getLogger(__name__)


def baseline_selectors(decoder: Decoder) -> dict[str, FrameSelector]:
    """The fixed selectors :class:`ValidationBaselines` reports, by name (the score-based ones with ``decoder``)."""
    return {
        "uniform": UniformSelector(),
        "pixel_l1": PixelDiffSelector(p=1, decoder=decoder),
        "xcorr": CrossCorrelationSelector(size=64, grayscale=False, decoder=decoder),
    }


def baseline_scores(decoder: Decoder) -> dict[str, FrameSelector]:
    """Batch key -> selector, for the baselines whose per-frame scores read pixels and pick their
    frames from those scores alone: registered with the data module (cached like features), so a
    validation over the caches opens no video. Keys: ``baseline_scores_NAME``."""
    return {f"{BASELINE_SCORES}_{name}": selector for name, selector in baseline_selectors(decoder).items()
            if selector.reads_pixels and selector.picks_from_scores}  # fmt: skip


#: Prefix of the batch keys (and cache outputs) of the baselines' per-frame scores.
BASELINE_SCORES = "baseline_scores"


class ValidationBaselines(pl.Callback):
    """Logs ``{stage}_baseline/{name}_recall@{k}`` for fixed selectors, and the VLM's uniform-frame loss.

    ``name`` is ``uniform``, ``pixel_l1`` or ``xcorr``; the score-based ones (pixel difference,
    cross-correlation) turn scores into frames with the importance model's decoder, so recall compares scores,
    not decoders. With a VLM it also logs ``{stage}_baseline/uniform_caption_loss``: the caption loss
    given ``num_frames`` uniform frames (compare ``{stage}/caption_loss``, the importance model's frames).
    Each value is logged per video (``batch_size=1``), so the epoch value is the mean over videos.

    Args:
        budgets: The budgets K to report (the module's ``eval_budgets``); a video with fewer
            frames than K is left out at that K.
        decoder: The importance model's decoder.
        num_frames: Frames the VLM is shown for the uniform caption loss.
        captions: The module's VLM scorer, or ``None`` (no caption-loss baseline).
        cache_videos: Videos whose recalls are kept between validations. The baselines are fixed,
            so a video's recall never changes, and computing it reads the video's pixels (the
            cross-correlation selector correlates every pair of neighbouring frames); a kept video
            costs a few floats (one per baseline and budget). Past the cap the least recently
            validated video is dropped and computed again when it comes back, so memory does not
            grow with the validation set; 0 recomputes every time.
    """

    def __init__(
        self,
        budgets: list[int],
        decoder: Decoder,
        num_frames: int,
        captions: CaptionScorer | None = None,
        cache_videos: int = 20_000,
    ) -> None:
        self.budgets = sorted(set(budgets))
        self.num_frames = num_frames
        self.captions = captions
        self.selectors = baseline_selectors(decoder)
        self.recalls: LRUCache[str, dict[tuple[str, int], float]] = LRUCache(cache_videos)
        self._warned = False

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self.log_baselines(pl_module, batch, "val")

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self.log_baselines(pl_module, batch, "test")

    def log_baselines(self, pl_module: pl.LightningModule, batch: dict[str, list], stage: str) -> None:
        """Logs every baseline's metrics on ``batch`` through ``pl_module``."""
        if not batch["frames"]:
            return
        # A video read from the caches alone has no frames: the pixel baselines then read their cached
        # scores (baseline_scores_NAME), which an export written before they were cached lacks.
        scored = all(f"{BASELINE_SCORES}_{name}" in batch for name, sel in self.selectors.items() if sel.reads_pixels)
        if not scored and any(frames is None for frames in batch["frames"]):
            if not self._warned:
                log.warning("%s baselines: the batches hold no frames and no cached baseline scores (data.from_cache "
                            "of an export without them), so only the uniform caption loss is logged", stage)  # fmt: skip
                self._warned = True
        else:
            self.log_recall_baselines(pl_module, batch, stage)
        if self.captions is not None:
            uniform = [uniform_indices(len(t), self.num_frames) for t in batch["timestamps"]]
            loss = self.captions.loss(batch, uniform)
            pl_module.log(f"{stage}_baseline/uniform_caption_loss", loss, batch_size=len(batch["frames"]), sync_dist=True)

    def log_recall_baselines(self, pl_module: pl.LightningModule, batch: dict[str, list], stage: str) -> None:
        """Logs every pixel baseline's event recall at each budget (each video's selections computed once)."""
        for k in self.budgets:
            for i, events in enumerate(batch["events"]):
                t = batch["timestamps"][i]
                if k > len(t):
                    continue
                recalls = self.recalls.get(batch["video_id"][i], dict)
                for name, selector in self.selectors.items():
                    if (name, k) not in recalls:
                        key = f"{BASELINE_SCORES}_{name}"
                        if key in batch:  # cached (or computed once and stored): the decoder picks from them
                            chosen = selector.select_from_scores(batch[key][i].per_frame(), k)
                        else:  # from the frames (uniform: the times alone)
                            chosen = selector.select(batch["frames"][i], t, k).cpu()
                        recalls[name, k] = event_recall(t[chosen], events).item()
                    pl_module.log(f"{stage}_baseline/{name}_recall@{k}", recalls[name, k], batch_size=1, sync_dist=True)
