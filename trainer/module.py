"""LightningModule: select K frames per video, caption them with SmolVLM, train the LoRA adapter."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import OptimizerCallable

from models.prompting import format_dense_caption, parse_dense_caption
from models.selectors import FrameSelector, UniformSelector
from models.vlm import SmolVLM
from trainer.checkpointing import (
    check_trainable_state,
    keep_trainable_state,
    plain_hparams,
)


class DenseCaptioner(pl.LightningModule):
    """Frame selection + SmolVLM dense captioning.

    Args:
        vlm: The SmolVLM wrapper (its LoRA adapter is what trains here).
        selector: Chooses the frames the VLM sees (default: uniform).
        num_frames: Frame budget ``K`` per video.
        optimizer: Optimizer factory for the trainable parameters.
    """

    def __init__(
        self,
        vlm: SmolVLM,
        selector: FrameSelector | None = None,
        num_frames: int = 8,
        optimizer: OptimizerCallable = torch.optim.AdamW,
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
        # Checkpoints hold trainable weights only (the frozen base is reloaded from the hub
        # folder), so loading is non-strict and :meth:`on_load_checkpoint` checks keys itself.
        self.strict_loading = False

    def setup(self, stage: str) -> None:
        # Lightning sets the data module up first; telling it K here (rather than linking config
        # arguments) lets it skip videos shorter than the budget for any LightningModule.
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if hasattr(datamodule, "set_frame_budget"):
            datamodule.set_frame_budget(self.num_frames)

    # ----------------------------------------------------------------------------- selection
    def select_frames(self, batch: dict[str, list]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The frames shown to the VLM and their timestamps, for every video in the batch."""
        frames, stamps = [], []
        with torch.no_grad():
            for f, t in zip(batch["frames"], batch["timestamps"]):
                shown, times = self.selector.gather(f, t, self.num_frames)
                frames.append(shown)
                stamps.append(times)
        return frames, stamps

    def caption_loss(self, batch: dict[str, list]) -> torch.Tensor:
        frames, stamps = self.select_frames(batch)
        targets = [format_dense_caption(events) for events in batch["events"]]
        inputs = self.vlm.build_batch(frames, stamps, batch["duration"], targets, batch["query"])
        return self.vlm(inputs)

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
        frames, stamps = self.select_frames(batch)
        texts = self.vlm.generate(frames, stamps, batch["duration"], batch["query"])
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
    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError(
                "nothing to train: the VLM is frozen (vlm.lora.enabled=false) and the selector has no parameters"
            )
        return self.optimizer(params)

    # ----------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Trainable weights only: the frozen base (hundreds of MB for real SmolVLMs) is reloaded
        # from model_name_or_path, recorded here so the checkpoint says what it adapts.
        keep_trainable_state(self, checkpoint)
        checkpoint["base_model"] = self.vlm.model_name_or_path

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        hint = f" (base {checkpoint.get('base_model')!r}); check the LoRA settings and selector in the config"
        check_trainable_state(self, checkpoint, hint)
