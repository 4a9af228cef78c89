"""LightningModule that trains :class:`models.scene.SceneBoundaryModel` on event boundaries."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from models.scene import SceneBoundaryModel, SceneBoundarySelector
from trainer.checkpointing import plain_hparams
from trainer.schedules import with_schedule


def boundary_targets(timestamps: torch.Tensor, events: list[dict[str, Any]], tolerance: float) -> torch.Tensor:
    """1.0 for frames within ``tolerance`` seconds (inclusive) of any event start or end, else 0.0.

    Args:
        timestamps: Frame times in seconds ``(T,)``.
        events: Dicts with ``start`` and ``end`` in seconds (the collate's ``events`` entries).
        tolerance: Half-width of the window around each boundary.

    Returns:
        Float targets ``(T,)``.
    """
    t = timestamps.double()
    bounds = torch.tensor([float(e[k]) for e in events for k in ("start", "end")], dtype=torch.float64)
    if bounds.numel() == 0:
        return torch.zeros(t.shape[0])
    return ((t[:, None] - bounds[None, :]).abs().min(dim=1).values <= tolerance).float()


class SceneBoundaryModule(pl.LightningModule):
    """Frame-level boundary detection: BCE on per-frame logits against :func:`boundary_targets`.

    Boundaries are rare, so positives are weighted by ``negatives / positives`` of each batch.

    Args:
        model: The boundary model; :meth:`inference_selector` scores frames with it.
        optimizer: Optimizer factory.
        tolerance: Seconds around an event start/end that still count as a boundary frame.
        lr_scheduler: LR schedule factory (e.g. :class:`trainer.schedules.WarmupCosine`), stepped
            once per optimizer step; ``None`` keeps the LR constant.
    """

    def __init__(
        self,
        model: SceneBoundaryModel,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        tolerance: float = 0.5,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if tolerance < 0:
            raise ValueError(f"model.tolerance must be >= 0, got {tolerance}")
        # As in DenseCaptioner: the YAML's class_path/init_args make checkpoints self-describing
        # (trainer.loading rebuilds the model from them); directly passed objects are not pickled.
        self.save_hyperparameters()
        self.remove_ignored_hparams([k for k, v in self.hparams.items() if not plain_hparams(v)])
        self.model = model
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.tolerance = tolerance
        self._val_counts = torch.zeros(3)  # true positives, false positives, false negatives

    def loss(self, batch: dict[str, list]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Weighted BCE over every frame of the batch, with the concatenated logits and targets."""
        logits = torch.cat(self.model(batch["frames"]))
        targets = torch.cat(
            [boundary_targets(t, ev, self.tolerance) for t, ev in zip(batch["timestamps"], batch["events"])]
        ).to(logits.device)
        positives = targets.sum()
        pos_weight = (targets.numel() - positives) / positives.clamp(min=1.0)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)
        return loss, logits, targets

    def training_step(self, batch: dict[str, list], batch_idx: int) -> torch.Tensor | None:
        if not batch["frames"]:
            return None  # every sample of this batch was skipped as bad input
        loss, _, _ = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["frames"]))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_counts = torch.zeros(3)

    def validation_step(self, batch: dict[str, list], batch_idx: int) -> None:
        if not batch["frames"]:
            return
        loss, logits, targets = self.loss(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch["frames"]))
        predicted, actual = (logits > 0).cpu(), targets.bool().cpu()  # logit > 0 <=> probability > 0.5
        self._val_counts += torch.tensor(
            [(predicted & actual).sum(), (predicted & ~actual).sum(), (~predicted & actual).sum()], dtype=torch.float32
        )

    def on_validation_epoch_end(self) -> None:
        # F1 over all frames of the epoch, not a mean of per-batch F1s (batches differ in positives).
        tp, fp, fn = self._val_counts.tolist()
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0  # nothing to find, nothing claimed
        self.log("val/boundary_f1", f1, prog_bar=True)

    def inference_selector(self) -> SceneBoundarySelector:
        """Frames by boundary probability: a :class:`SceneBoundarySelector` around the trained model."""
        return SceneBoundarySelector(self.model)

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        return with_schedule(self, self.optimizer(self.parameters()), self.lr_scheduler)
