"""LightningModule: select K frames per video, caption them with SmolVLM, train the LoRA adapter."""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from data.encodings import FrameEncodings, MadeFrames, SelectorScores
from models.prompting import format_dense_caption, parse_dense_caption
from models.selectors import FrameSelector, UniformSelector
from models.vlm import SmolVLM
from trainer.checkpointing import (
    check_trainable_state,
    keep_trainable_state,
    plain_hparams,
)
from trainer.schedules import with_schedule

log = logging.getLogger(__name__)

#: The batch key (and cache output name) of the captioner's selector's K picks: a 0/1 column per video.
SELECTOR_PICKS = "selector_picks"
#: The batch key (and cache output name) of the image embeddings of the frames the captioner's selector makes.
MADE_FRAMES = "made_frames"


class DenseCaptioner(pl.LightningModule):
    """Frame selection + SmolVLM dense captioning.

    Args:
        vlm: The SmolVLM wrapper (its LoRA adapter is what trains here).
        selector: Chooses the frames the VLM sees (default: uniform).
        num_frames: Frame budget ``K`` per video.
        optimizer: Optimizer factory for the trainable parameters.
        lr_scheduler: LR schedule factory (e.g. :class:`trainer.schedules.WarmupCosine`), stepped
            once per optimizer step (after gradient accumulation); ``None`` keeps the LR constant.
    """

    def __init__(
        self,
        vlm: SmolVLM,
        selector: FrameSelector | None = None,
        num_frames: int = 8,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"model.num_frames must be >= 1, got {num_frames}")
        # Under LightningCLI these are the YAML's class_path/init_args, which makes checkpoints
        # self-describing; objects passed directly (tests, notebooks) are not pickled.
        self.save_hyperparameters()
        self.remove_ignored_hparams([k for k, v in self.hparams.items() if not plain_hparams(v)])
        vlm.check_frame_budget(num_frames)
        self.vlm = vlm
        self.selector = selector if selector is not None else UniformSelector()
        self.num_frames = num_frames
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        # Checkpoints hold trainable weights only (the frozen base is reloaded from the hub
        # folder), so loading is non-strict and :meth:`on_load_checkpoint` checks keys itself.
        self.strict_loading = False

    def setup(self, stage: str) -> None:
        # Lightning sets the data module up first; telling it K here (rather than linking config
        # arguments) lets it skip videos shorter than the budget for any LightningModule.
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None:
            self.register_encoders(datamodule)

    def register_encoders(self, datamodule: Any) -> FrameEncodings | None:
        """Tells the data module this run's frame budget and the VLM's image-embedding encoder.

        Returns:
            The data module's :class:`~data.encodings.FrameEncodings`, or ``None`` when the VLM
            reads pixels (or the data module takes no encoders).
        """
        if hasattr(datamodule, "set_frame_budget"):
            datamodule.set_frame_budget(self.num_frames)
        # A selector that makes frames (frame averaging) has their embeddings cached when it can
        # tell which they are from the frame times alone (``shown_times``).
        makes = not self.selector.shows_candidates
        blocker = self.vlm.embeds_blocker() or (
            f"{type(self.selector).__name__} shows frames it makes" if makes and not hasattr(self.selector, "shown_times")
            else None
        )  # fmt: skip
        if blocker is not None:
            log.info("the VLM runs its vision tower on pixels: %s", blocker)
        elif hasattr(datamodule, "set_frame_encoders"):
            if makes:  # the embeddings of the K frames it makes, cached row by row; no candidate's
                made = {MADE_FRAMES: MadeFrames(self.selector, self.num_frames, self.vlm.frame_encoder())}
                encodings = datamodule.set_frame_encoders(embed_all_frames=False, scores=made)
            else:
                # The same K frames of a video come back every epoch: encode just those (lazily, once
                # per batch), rather than all candidates; entries a selector run cached are read.
                # A selector that reads pixels has its K picks cached like features (a 0/1 column per
                # video, keyed by its settings, weights, decoder and K): later epochs need no pixels.
                picks = {SELECTOR_PICKS: SelectorScores(self.selector, k=self.num_frames, picks=True)}
                encodings = datamodule.set_frame_encoders(image_embeds=self.vlm.frame_encoder(), embed_all_frames=False,
                                                          scores=picks if self.selector.reads_pixels else None)  # fmt: skip
            if hasattr(datamodule, "set_decode_free"):
                # the shown rows are cached row by row (and the picks whole): later epochs open no video
                datamodule.set_decode_free(tuple(encodings.encoders), splits=("train", "val", "test", "predict"))
            return encodings
        if hasattr(datamodule, "needs_pixels"):
            datamodule.needs_pixels(f"the VLM reads pixels: {blocker}")
        return None

    # ----------------------------------------------------------------------------- selection
    def select_frames(self, batch: dict[str, list]) -> dict[str, Any]:
        """What the VLM sees of every video in the batch: timestamps, and embedding rows or frames.

        Keyword arguments for :meth:`SmolVLM.build_batch` / :meth:`SmolVLM.generate`.
        """
        frames, stamps, embeds = [], [], []
        with torch.no_grad():
            rows = MADE_FRAMES if MADE_FRAMES in batch else "image_embeds"  # the embeddings shown, by frame
            for i, (f, t) in enumerate(zip(batch["frames"], batch["timestamps"])):
                if SELECTOR_PICKS in batch:  # cached or just computed: the frames choose() picked
                    idx = torch.nonzero(batch[SELECTOR_PICKS][i].per_frame() > 0.5).flatten()
                    shown, times = (None if f is None else f[idx]), t[idx]
                elif rows == MADE_FRAMES:  # made frames, each cached at the row select() names for it
                    idx, shown = self.selector.select(f, t, self.num_frames), None
                    times = self.selector.shown_times(t, self.num_frames)
                else:
                    idx, shown, times = self.selector.choose(f, t, self.num_frames)
                frames.append(shown)
                stamps.append(times)
                if rows in batch:
                    embeds.append(batch[rows][i].rows(idx))
        if rows in batch:
            return {"frames": None, "timestamps": stamps, "image_embeds": embeds}
        return {"frames": frames, "timestamps": stamps}

    def caption_loss(self, batch: dict[str, list]) -> torch.Tensor:
        targets = [format_dense_caption(events) for events in batch["events"]]
        shown = self.select_frames(batch)
        return self.vlm(self.vlm.build_batch(**shown, durations=batch["duration"], targets=targets, queries=batch["query"]))

    # ----------------------------------------------------------------------------- steps
    def training_step(self, batch: dict[str, list], batch_idx: int) -> torch.Tensor | None:
        if not batch["frames"]:
            return None  # every sample of this batch was skipped as bad input
        loss = self.caption_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["frames"]))
        return loss

    def validation_step(self, batch: dict[str, list], batch_idx: int) -> None:
        if batch["frames"]:
            # sync_dist: every rank reports the mean over all ranks' videos, not its own shard's.
            loss = self.caption_loss(batch)
            self.log("val/loss", loss, prog_bar=True, batch_size=len(batch["frames"]), sync_dist=True)

    def test_step(self, batch: dict[str, list], batch_idx: int) -> None:
        if batch["frames"]:
            self.log("test/loss", self.caption_loss(batch), batch_size=len(batch["frames"]), sync_dist=True)

    def predict_step(self, batch: dict[str, list], batch_idx: int) -> list[dict[str, Any]]:
        if not batch["frames"]:
            return []
        shown = self.select_frames(batch)
        stamps = shown["timestamps"]
        texts = self.vlm.generate(**shown, durations=batch["duration"], queries=batch["query"])
        return [
            {
                "video_id": vid,
                "duration": duration,
                "text": text,
                "events": [
                    {"sentence": e.caption, "timestamp": [e.start, min(e.end, duration)]}
                    for e in parse_dense_caption(text)
                ],
                "frame_times": [round(float(x), 3) for x in t],
            }
            for vid, duration, text, t in zip(batch["video_id"], batch["duration"], texts, stamps)
        ]

    # ----------------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError(
                "nothing to train: the VLM is frozen (vlm.lora.enabled=false) and the selector has no parameters"
            )
        return with_schedule(self, self.optimizer(params), self.lr_scheduler)

    def inference_selector(self) -> FrameSelector:
        """The frame selector this captioner shows its VLM frames with."""
        return self.selector

    # ----------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Trainable weights only: the frozen base (hundreds of MB for real SmolVLMs) is reloaded
        # from model_name_or_path, recorded here so the checkpoint says what it adapts.
        keep_trainable_state(self, checkpoint)
        checkpoint["base_model"] = self.vlm.model_name_or_path

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        hint = f" (base {checkpoint.get('base_model')!r}); check the LoRA settings and selector in the config"
        check_trainable_state(self, checkpoint, hint)
