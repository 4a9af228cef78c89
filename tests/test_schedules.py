"""LR schedules: WarmupCosine's closed form, the run's length, per-side stepping and resume."""

import math
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from helpers import fit_args

from trainer.__main__ import main
from trainer.schedules import WarmupCosine, fit_to_run, steps_per_side

SCHEDULE = "trainer.schedules.WarmupCosine"


def _optimizer(*lrs: float) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.AdamW(groups)


def closed_form(step: int, warmup: int, total: int, ratio: float) -> float:
    """WarmupCosine's factor written out once more (its docstring's formula)."""
    if step < warmup:
        return step / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _lrs(scheduler: WarmupCosine, steps: int) -> list[list[float]]:
    """Each group's LR for optimizer steps 0 .. steps - 1 (the LR the step uses)."""
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in scheduler.optimizer.param_groups])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def test_warmup_cosine_follows_the_closed_form_for_every_group():
    scheduler = WarmupCosine(_optimizer(1e-3, 4e-4), warmup_steps=4, total_steps=12, min_lr_ratio=0.1)
    lrs = _lrs(scheduler, 16)
    for step, (a, b) in enumerate(lrs):
        f = closed_form(step, 4, 12, 0.1)
        assert a == pytest.approx(1e-3 * f, rel=1e-12) and b == pytest.approx(4e-4 * f, rel=1e-12)
    assert lrs[0] == [0.0, 0.0] and lrs[4] == pytest.approx([1e-3, 4e-4])  # from 0 to the peak
    assert lrs[8][0] == pytest.approx(1e-3 * 0.55)  # half way down: (1 + 0.1) / 2
    assert all(row == pytest.approx([1e-4, 4e-5]) for row in lrs[12:])  # the floor, and held there


def test_warmup_cosine_matches_transformers_up_to_total_steps():
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    ours = WarmupCosine(_optimizer(1.0), warmup_steps=3, total_steps=20, min_lr_ratio=0.2)
    theirs = get_cosine_with_min_lr_schedule_with_warmup(_optimizer(1.0), 3, 20, min_lr_rate=0.2)
    assert [r[0] for r in _lrs(ours, 21)] == pytest.approx([r[0] for r in _lrs(theirs, 21)], abs=1e-12)


def test_no_warmup_starts_at_the_peak_and_settings_are_checked():
    assert _lrs(WarmupCosine(_optimizer(0.5), total_steps=4), 1) == [[0.5]]
    with pytest.raises(ValueError, match="greater than warmup_steps"):
        WarmupCosine(_optimizer(1.0), warmup_steps=10, total_steps=10)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        WarmupCosine(_optimizer(1.0), total_steps=10, min_lr_ratio=1.5)
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(_optimizer(1.0), warmup_steps=-1)


def test_length_left_to_the_run_is_filled_in_and_saved_with_the_state():
    scheduler = WarmupCosine(_optimizer(1.0), warmup_steps=2, min_lr_ratio=0.1)
    _lrs(scheduler, 2)  # warmup needs no length
    with pytest.raises(RuntimeError, match="total_steps is not set"):
        scheduler.factor(3)
    assert fit_to_run(scheduler, lambda: 10) is scheduler and scheduler.total_steps == 10
    assert fit_to_run(scheduler, lambda: 99).total_steps == 10  # set once; never overwritten
    with pytest.raises(ValueError, match="no end"):
        fit_to_run(WarmupCosine(_optimizer(1.0)), lambda: math.inf)
    # As on resume: optimizer (its LR included) and schedule come back from their state dicts.
    fresh = WarmupCosine(_optimizer(1.0), warmup_steps=2, min_lr_ratio=0.1)
    fresh.optimizer.load_state_dict(scheduler.optimizer.state_dict())
    fresh.load_state_dict(scheduler.state_dict())
    assert fresh.total_steps == 10 and fresh.last_epoch == 2
    assert _lrs(fresh, 8) == _lrs(scheduler, 8)
    # A run shorter than the warmup warns instead of failing (a profiling run of a real config).
    short = fit_to_run(WarmupCosine(_optimizer(1.0), warmup_steps=100), lambda: 5)
    assert short.total_steps == 5 and _lrs(short, 5)[-1] == [pytest.approx(0.04)]


def _trainer(batches_per_epoch, max_epochs, max_steps):
    return SimpleNamespace(estimated_stepping_batches=0, num_training_batches=batches_per_epoch,
                           max_epochs=max_epochs, max_steps=max_steps)  # fmt: skip


def test_steps_per_side_replays_the_run():
    both = lambda b: [True, True]  # noqa: E731
    lora_from_3 = lambda b: [True, b >= 3]  # noqa: E731
    alternate = lambda b: [b % 2 == 0, b % 2 == 1]  # noqa: E731
    assert steps_per_side(_trainer(10, 2, -1), both) == [20, 20]  # max_epochs bounds batches
    assert steps_per_side(_trainer(10, -1, 9), both) == [9, 9]  # max_steps counts batches, not optimizer steps
    assert steps_per_side(_trainer(10, 2, 9), lora_from_3) == [9, 6]
    assert steps_per_side(_trainer(10, -1, 5), lambda b: [False, b >= 3]) == [0, 5]  # a batch where nothing steps is no step
    assert steps_per_side(_trainer(4, 1, -1), lora_from_3) == [4, 1]
    assert steps_per_side(_trainer(5, 1, -1), alternate) == [3, 2]
    assert steps_per_side(_trainer(math.inf, -1, -1), both) == [math.inf, math.inf]


def test_scene_trainer_hands_its_schedule_to_lightning_per_optimizer_step():
    from functools import partial

    from models.scene import SceneBoundaryModel
    from trainer.scene import SceneBoundaryModule

    module = SceneBoundaryModule(SceneBoundaryModel(hidden=8, thumb=4))
    assert isinstance(module.configure_optimizers(), torch.optim.Optimizer)  # no schedule: constant LR, as before
    module = SceneBoundaryModule(SceneBoundaryModel(hidden=8, thumb=4),
                                  lr_scheduler=partial(WarmupCosine, warmup_steps=2, total_steps=8))  # fmt: skip
    config = module.configure_optimizers()
    assert config["lr_scheduler"]["interval"] == "step"
    assert config["lr_scheduler"]["scheduler"].optimizer is config["optimizer"]


class _LRs(pl.Callback):
    """Every optimizer's LR at the start of each training batch (the LR that batch's step uses)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.lrs: list[list[float]] = []
        self.stop_after = stop_after

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append([opt.param_groups[0]["lr"] for opt in trainer.optimizers])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.stop_after is not None and len(self.lrs) >= self.stop_after:
            trainer.should_stop = True  # as if the job were cut off here; last.ckpt is written


def _fit(args: list[str], probe: _LRs, ckpt_path=None):
    cli = main(args, run=False)
    cli.trainer.callbacks.append(probe)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    return cli


def test_captioner_schedule_spans_max_steps_and_resumes_where_it_stopped(tmp_path, tiny_model_dir, synthetic):
    args = fit_args("smoke.yaml", tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "6",
                    "--trainer.limit_val_batches", "0",
                    "--model.init_args.lr_scheduler", SCHEDULE,
                    "--model.init_args.lr_scheduler.init_args.warmup_steps", "2",
                    "--model.init_args.lr_scheduler.init_args.min_lr_ratio", "0.1")  # fmt: skip
    before = _LRs(stop_after=3)
    first = _fit(args, before)
    assert first.trainer.global_step == 3
    assert first.trainer.lr_scheduler_configs[0].scheduler.total_steps == 6  # trainer.max_steps
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 3 and ckpt["lr_schedulers"][0]["total_steps"] == 6
    probe = _LRs()
    resumed = _fit(args, probe, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.trainer.global_step == 6
    lrs = [row[0] for row in before.lrs + probe.lrs]
    assert lrs == pytest.approx([0.003 * closed_form(s, 2, 6, 0.1) for s in range(6)], rel=1e-9)


def test_selector_sides_count_their_own_steps_and_resume(tmp_path, tiny_model_dir, synthetic):
    """LoRA joins after one batch: the selector steps on batches 0-3, LoRA on 1-3 (max_steps 4: batches)."""
    schedule = []
    for side in ("selector", "lora"):
        schedule += [f"--model.init_args.{side}_lr_scheduler", SCHEDULE,
                     f"--model.init_args.{side}_lr_scheduler.init_args.warmup_steps", "1",
                     f"--model.init_args.{side}_lr_scheduler.init_args.min_lr_ratio", "0.1"]  # fmt: skip
    args = fit_args("smoke_joint.yaml", tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "4",
                    "--trainer.max_epochs", "100", "--trainer.limit_val_batches", "0",
                    "--model.init_args.objective.lora_start", "1", "--model.init_args.objective.group_size", "2",
                    "--data.batch_size", "2", *schedule)  # fmt: skip
    before = _LRs(stop_after=2)
    first = _fit(args, before)
    assert first.trainer.global_step == 2 and first.model.batches_done == 2
    selector, lora = (c.scheduler for c in first.trainer.lr_scheduler_configs)
    assert (selector.total_steps, lora.total_steps) == (4, 3)  # each side's steps in a 4-batch run
    assert (selector.last_epoch, lora.last_epoch) == (2, 1)
    probe = _LRs()
    resumed = _fit(args, probe, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.trainer.global_step == 4 and resumed.model.batches_done == 4
    selector, lora = (c.scheduler for c in resumed.trainer.lr_scheduler_configs)
    assert (selector.last_epoch, lora.last_epoch) == (4, 3)
    lrs = before.lrs + probe.lrs
    assert [r[0] for r in lrs] == pytest.approx([1e-3 * closed_form(b, 1, 4, 0.1) for b in range(4)], rel=1e-9)
    assert [r[1] for r in lrs] == pytest.approx([3e-3 * closed_form(max(b - 1, 0), 1, 3, 0.1) for b in range(4)], rel=1e-9)
