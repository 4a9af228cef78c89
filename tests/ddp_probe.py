"""Test helper (imported by a DDP subprocess): dumps each rank's trained weights and metrics."""

from pathlib import Path

import lightning.pytorch as pl
import torch


class RankDump(pl.Callback):
    """Writes ``rank<N>.pt`` at the end of fit: the trainable weights (at the start and the end),
    the logged metrics and the ids of the videos this rank validated (sanity check excluded)."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.initial: dict[str, torch.Tensor] = {}
        self.validated: set[str] = set()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self.validated |= set(batch["video_id"])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.initial = {k: v.detach().cpu().clone() for k, v in pl_module.named_parameters() if v.requires_grad}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().cpu() for k, v in pl_module.named_parameters() if v.requires_grad}
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        seen = sorted(trainer.datamodule.seen_video_ids) if hasattr(trainer.datamodule, "seen_video_ids") else []
        torch.save({"weights": weights, "initial": self.initial, "metrics": metrics, "world_size": trainer.world_size,
                    "seen": seen, "validated": sorted(self.validated)}, self.folder / f"rank{trainer.global_rank}.pt")  # fmt: skip
