"""Learning-rate schedules for the LightningModules' ``lr_scheduler`` arguments.

Every LightningModule here takes its schedule the way it takes its optimizer: a
``LRSchedulerCallable`` chosen by ``class_path`` in the config (``None``, the default, keeps the
optimizer's LR constant). Any ``torch.optim.lr_scheduler`` class with typed arguments works;
:class:`WarmupCosine` is the one the GPU configs use::

    lr_scheduler:
      class_path: trainer.schedules.WarmupCosine
      init_args:
        warmup_steps: 100
        total_steps: null       # the run's length (trainer.max_steps or max_epochs)
        min_lr_ratio: 0.1

Why a class of our own: torch has no warmup-then-cosine class with plain arguments
(``SequentialLR`` takes scheduler *instances*, which a YAML cannot build around an optimizer it
does not have yet; ``OneCycleLR`` also cycles Adam's beta1 and raises past its end), and
transformers' ``get_cosine_with_min_lr_schedule_with_warmup`` is a function, which jsonargparse
cannot take as a ``class_path``.

A schedule advances once per optimizer step of its optimizer: after gradient accumulation
(``DenseCaptioner``, ``SceneBoundaryModule``), and in ``SelectorModule`` only on the batches
where that side (selector or LoRA) steps (``trainer.max_steps`` counts its batches, whichever
sides step). Lightning saves its state in the checkpoint and
restores it on resume, so the LR curve continues where it stopped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import lightning.pytorch as pl
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

log = logging.getLogger(__name__)


class WarmupCosine(LRScheduler):
    """Linear warmup from 0 to the optimizer's LR, then half a cosine down to ``min_lr_ratio`` of it.

    The LR optimizer step ``s`` (0-based) uses is ``lr * factor(s)`` with::

        factor(s) = s / warmup_steps                                   for s < warmup_steps
        factor(s) = r + (1 - r) * (1 + cos(pi * p)) / 2                 otherwise, where
                    p = min(1, (s - warmup_steps) / (total_steps - warmup_steps)),  r = min_lr_ratio

    so the LR reaches its peak at ``warmup_steps``, the floor ``r * lr`` at ``total_steps``, and
    stays at the floor after it. Up to ``total_steps`` this is transformers'
    ``get_cosine_with_min_lr_schedule_with_warmup(min_lr_rate=r)``.

    Args:
        optimizer: The optimizer whose parameter groups' LRs are scheduled (each group keeps its
            own peak, the LR it was built with).
        warmup_steps: Optimizer steps of linear warmup (0: start at the peak).
        total_steps: Optimizer steps the whole schedule spans, warmup included. ``None``: the
            run's length, which the LightningModule fills in from the trainer
            (:func:`fit_to_run`): ``trainer.max_steps``, or ``max_epochs`` x batches per epoch /
            ``accumulate_grad_batches`` (for ``SelectorModule``, the steps that side takes).
        min_lr_ratio: The floor, as a fraction of the peak LR.
        last_epoch: Index of the last step taken (-1: a fresh schedule), as in every torch scheduler.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 0,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if warmup_steps < 0:
            raise ValueError(f"lr_scheduler warmup_steps must be >= 0, got {warmup_steps}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"lr_scheduler min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        if total_steps is not None and total_steps <= warmup_steps:
            raise ValueError(f"lr_scheduler total_steps ({total_steps}) must be greater than warmup_steps ({warmup_steps})")
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The multiplier of the peak LR at optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return step / self.warmup_steps
        if step == self.warmup_steps:
            return 1.0  # the peak; known before total_steps is
        if self.total_steps is None:
            raise RuntimeError("WarmupCosine.total_steps is not set (the LightningModule sets it from the trainer)")
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        r = self.min_lr_ratio
        return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        factor = self.factor(self.last_epoch)
        return [base * factor for base in self.base_lrs]


def fit_to_run(scheduler: LRScheduler, steps: Callable[[], float]) -> LRScheduler:
    """Gives a :class:`WarmupCosine` with ``total_steps: null`` the run's length, ``steps()``.

    Other schedulers, and a ``WarmupCosine`` with its length set, are returned as they are.
    ``steps`` is only called when needed (it may set up the training data to count batches). A
    run shorter than the warmup (a smoke or profiling run of a real config) only logs a warning:
    its LR never reaches the peak.
    """
    if isinstance(scheduler, WarmupCosine) and scheduler.total_steps is None:
        n = steps()
        if not math.isfinite(n):
            raise ValueError(
                "lr_scheduler total_steps is null (the run's length) but the run has no end: set trainer.max_steps "
                "or trainer.max_epochs, or the schedule's total_steps"
            )
        if n <= scheduler.warmup_steps:
            log.warning(
                "the run takes %d optimizer steps, no more than lr_scheduler warmup_steps=%d: the LR stays in warmup",
                n, scheduler.warmup_steps,
            )  # fmt: skip
        scheduler.total_steps = int(n)
    return scheduler


def with_schedule(
    module: pl.LightningModule, optimizer: Optimizer, lr_scheduler: Callable[[Optimizer], LRScheduler] | None
) -> Optimizer | dict:
    """What an automatically optimised module's ``configure_optimizers`` returns for one optimizer.

    The optimizer alone when there is no schedule; else the optimizer with its schedule, stepped
    once per optimizer step, and a ``total_steps: null`` filled with the run's optimizer steps
    (the module's ``trainer.estimated_stepping_batches``: from ``max_steps`` or ``max_epochs``,
    after gradient accumulation; only read then, so a module without a trainer can still build
    a schedule of fixed length).
    """
    if lr_scheduler is None:
        return optimizer
    scheduler = fit_to_run(lr_scheduler(optimizer), lambda: module.trainer.estimated_stepping_batches)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def steps_per_side(trainer: pl.Trainer, sides_at: Callable[[int], Sequence[bool]]) -> list[float]:
    """Optimizer steps each optimizer of a manually optimised module takes in ``trainer``'s run.

    ``trainer.max_steps`` bounds Lightning's ``global_step``, which a module like
    ``SelectorModule`` advances once per batch on which any of its optimizers steps (see
    :meth:`~trainer.selector_module.SelectorModule.step_optimizers`); ``max_epochs`` bounds batches. The
    run is replayed batch by batch until either bound is reached.

    Args:
        trainer: The trainer (its training data is set up here if it is not yet).
        sides_at: Which optimizers step on training batch ``b`` (0-based), one flag each.

    Returns:
        Steps per optimizer (``inf`` for all if the run has no bound).
    """
    trainer.estimated_stepping_batches  # noqa: B018 - sets the training data up, so the batch count is known
    epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else math.inf
    batches = trainer.num_training_batches * max(epochs, 1) if epochs != math.inf else math.inf
    max_steps = trainer.max_steps if trainer.max_steps >= 0 else math.inf
    n = len(sides_at(0))
    if batches == math.inf and max_steps == math.inf:
        return [math.inf] * n
    counts, batch, steps = [0] * n, 0, 0
    while batch < batches and steps < max_steps:
        active = sides_at(batch)
        for i, on in enumerate(active):
            counts[i] += int(on)
        steps += int(any(active))  # one global step per batch, however many optimizers step on it
        batch += 1
    return [float(c) for c in counts]
