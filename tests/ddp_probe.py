"""Test helper (imported by a DDP subprocess): dumps each rank's trained weights and metrics."""

from pathlib import Path

import lightning.pytorch as pl
import torch


class RankDump(pl.Callback):
    """Writes ``rank<N>.pt`` with the trainable weights and the logged metrics at the end of fit."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().cpu() for k, v in pl_module.named_parameters() if v.requires_grad}
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        seen = sorted(trainer.datamodule.seen_video_ids) if hasattr(trainer.datamodule, "seen_video_ids") else []
        torch.save({"weights": weights, "metrics": metrics, "world_size": trainer.world_size, "seen": seen},
                   self.folder / f"rank{trainer.global_rank}.pt")  # fmt: skip
