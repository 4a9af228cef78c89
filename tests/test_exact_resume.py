"""A resumed fit is bit-exact: ``trainer.checkpointing.RngState`` stores and restores the global RNGs.

The RL selector (``smoke_rl.yaml``) draws from the global torch generator in every step (budget and
Gumbel-top-k samples, dropout 0.1), so a resume that does not restore it ends with other weights.
"""

import csv
import random
import types
import warnings
from pathlib import Path

import numpy as np
import lightning.pytorch as pl
import pytest
import torch
from helpers import fit_args
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from trainer.__main__ import main
from trainer.checkpointing import RngState, resumes_exactly, rng_states, set_rng_states


def _args(root: Path, tiny_model_dir, synthetic, name: str, *extra: str) -> list[str]:
    return fit_args("smoke_rl.yaml", root, tiny_model_dir, synthetic, "--trainer.logger.init_args.name", name,
                    "--checkpoint.dirpath", str(root / name),
                    "--data.batch_size", "2",  # 4 training videos: 2 steps per epoch
                    "--trainer.check_val_every_n_epoch", "1", "--model.init_args.eval_budgets", "[2, 4]",
                    "--trainer.log_every_n_steps", "1", *extra)  # fmt: skip


class _BatchIds(pl.Callback):
    """Records the video ids of every training batch, by global step."""

    def __init__(self) -> None:
        self.ids: dict[int, list[str]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.ids[trainer.global_step] = list(batch["video_id"])


class _Interrupt(pl.Callback):
    """At the end of step ``step``: SIGTERM's flag (Lightning stops after the step), or an exception."""

    def __init__(self, step: int, sigterm: bool) -> None:
        self.step, self.sigterm = step, sigterm

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            if not self.sigterm:
                raise RuntimeError("crash inside the step")
            trainer._signal_connector.received_sigterm = True  # what Lightning's SIGTERM handler sets


def _fit(root: Path, tiny_model_dir, synthetic, name: str, *extra: str, ckpt: Path | None = None,
         also: tuple[pl.Callback, ...] = ()) -> dict[int, list[str]]:  # fmt: skip
    """One in-process ``fit`` (resumed from ``ckpt`` if given); the video ids of its batches by step."""
    cli = main(_args(root, tiny_model_dir, synthetic, name, *extra), run=False)
    probe = _BatchIds()
    cli.trainer.callbacks += [probe, *also]
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=None if ckpt is None else str(ckpt))
    return probe.ids


def _losses(log_dir: Path) -> dict[int, str]:
    """``train/loss`` per step as logged (the CSV text: equal strings are equal floats)."""
    out = {}
    for path in sorted(log_dir.glob("version_*/metrics.csv")):
        for row in csv.DictReader(open(path)):
            if row.get("train/loss"):
                out[int(row["step"])] = row["train/loss"]
    return out


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory, tiny_model_dir, synthetic):
    """(root, batches) of a 2-epoch run that nothing interrupted; its weights are ``root/whole/last.ckpt``."""
    root = tmp_path_factory.mktemp("exact-resume")
    batches = _fit(root, tiny_model_dir, synthetic, "whole", "--trainer.max_epochs", "2")
    assert torch.load(root / "whole" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert sorted(batches) == [0, 1, 2, 3] and batches[0] + batches[1] != batches[2] + batches[3]  # reshuffled
    return root, batches


def _resume_and_compare(unbroken, tiny_model_dir, synthetic, name, ckpt: Path) -> bool:
    """Resumes ``ckpt`` to the end of epoch 2 in run ``name``; whether its weights and its losses of
    the resumed steps equal the unbroken run's (its batches must be the unbroken run's)."""
    root, batches = unbroken
    resumed = _fit(root, tiny_model_dir, synthetic, name, "--trainer.max_epochs", "2", ckpt=ckpt)
    assert resumed and resumed == {step: batches[step] for step in resumed}  # same data, same order
    whole, split = _weights(root / "whole" / "last.ckpt"), _weights(root / name / "last.ckpt")
    assert whole.keys() == split.keys() and any(k.startswith("importance.") for k in whole)
    losses, expected = _losses(root / "logs" / name), _losses(root / "logs" / "whole")
    assert sorted(expected) == [0, 1, 2, 3] and {2, 3} <= losses.keys()
    return all(torch.equal(whole[k], split[k]) for k in whole) and all(losses[s] == expected[s] for s in losses)


def test_resume_at_an_epoch_end_gives_the_unbroken_weights(unbroken, tiny_model_dir, synthetic):
    root, _ = unbroken
    # 1 epoch, then the 2nd from last.ckpt (written at the end of epoch 1, after its validation).
    _fit(root, tiny_model_dir, synthetic, "split", "--trainer.max_epochs", "1")
    ckpt = torch.load(root / "split" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and resumes_exactly(ckpt)
    assert _resume_and_compare(unbroken, tiny_model_dir, synthetic, "split", root / "split" / "last.ckpt")

    # The control: the same checkpoint without the RNG states (the data order is still the unbroken
    # run's) resumes to other weights, so the comparison above does see what the RNG decides.
    del ckpt["callbacks"]["RngState"]
    torch.save(ckpt, root / "no_rng.ckpt")
    assert not _resume_and_compare(unbroken, tiny_model_dir, synthetic, "split_no_rng", root / "no_rng.ckpt")


def test_resume_in_the_middle_of_an_epoch_gives_the_unbroken_weights(unbroken, tiny_model_dir, synthetic):
    root, _ = unbroken
    # Stopped after step 3: the first batch of epoch 2; last.ckpt was written at that batch's end.
    _fit(root, tiny_model_dir, synthetic, "mid", "--trainer.max_steps", "3", "--checkpoint.every_n_train_steps", "1")
    ckpt = torch.load(root / "mid" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3 and ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] == 1
    assert _resume_and_compare(unbroken, tiny_model_dir, synthetic, "mid", root / "mid" / "last.ckpt")


def test_a_sigterm_checkpoint_resumes_exactly_one_from_a_crash_says_it_does_not(unbroken, tiny_model_dir, synthetic):
    root, _ = unbroken
    # SIGTERM during step 3 (mid-epoch 2): Lightning finishes the step, save_on_exception writes last.ckpt.
    with pytest.raises(SIGTERMException):
        _fit(root, tiny_model_dir, synthetic, "term", "--trainer.max_epochs", "2", also=(_Interrupt(3, sigterm=True),))
    ckpt = torch.load(root / "term" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3 and resumes_exactly(ckpt)
    assert _resume_and_compare(unbroken, tiny_model_dir, synthetic, "term", root / "term" / "last.ckpt")

    # An exception inside step 3 (here from on_train_batch_end, before Lightning closes the step).
    with pytest.raises(RuntimeError, match="crash inside the step"):
        _fit(root, tiny_model_dir, synthetic, "crash", "--trainer.max_epochs", "2", also=(_Interrupt(3, sigterm=False),))
    ckpt = torch.load(root / "crash" / "last.ckpt", weights_only=True)
    assert not resumes_exactly(ckpt) and ckpt["callbacks"]["RngState"]["exact"] is False
    resumed = RngState()
    resumed.setup(_fake_trainer(1, 0), None, "fit")
    with pytest.warns(UserWarning, match="not bit-exact"):
        resumed.load_state_dict(ckpt["callbacks"]["RngState"])
    # A checkpoint from before RngState existed cannot say.
    del ckpt["callbacks"]["RngState"]
    assert not resumes_exactly(ckpt)


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    _seed(3)
    np.random.randn()  # numpy caches the second gaussian: that is state too
    state = RngState().state_dict()
    expected = _draws()
    torch.save({"callbacks": {"RngState": state}}, tmp_path / "c.ckpt")
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=True)["callbacks"]["RngState"]
    assert len(loaded["ranks"]) == 1
    set_rng_states(loaded["ranks"][0])
    assert _draws() == expected


def _fake_trainer(world_size: int, rank: int, fn=TrainerFn.FITTING):
    return types.SimpleNamespace(world_size=world_size, global_rank=rank, state=types.SimpleNamespace(fn=fn),
                                 fit_loop=types.SimpleNamespace(is_resuming=True))  # fmt: skip


def test_each_rank_restores_its_own_state(monkeypatch):
    """Under DDP, rank 0 writes one checkpoint for all: it holds every rank's states, gathered."""
    _seed(0)
    mine = rng_states()
    _seed(1)
    theirs = rng_states()
    expected = {}
    for name, state in (("rank0", theirs), ("rank1", mine)):
        set_rng_states(state)
        expected[name] = _draws()

    def all_gather_object(out, obj):  # this process is rank 1
        out[0], out[1] = theirs, obj

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object)
    saver = RngState()
    saver.setup(_fake_trainer(2, 1), None, "fit")
    set_rng_states(mine)
    state = saver.state_dict()
    assert len(state["ranks"]) == 2

    for rank in (0, 1):
        resumed = RngState()
        trainer = _fake_trainer(2, rank)
        resumed.setup(trainer, None, "fit")
        resumed.load_state_dict(state)
        _seed(99)
        resumed.on_train_start(trainer, None)
        assert _draws() == expected[f"rank{rank}"]

    # Another number of ranks: nothing restored, and a warning says the resume is not exact.
    other = RngState()
    trainer = _fake_trainer(4, 0)
    other.setup(trainer, None, "fit")
    with pytest.warns(UserWarning, match="not bit-exact"):
        other.load_state_dict(state)
    _seed(99)
    seeded = _draws()
    _seed(99)
    other.on_train_start(trainer, None)
    assert _draws() == seeded
    # validate/test/predict --ckpt_path keep their seeded state.
    evaluating = RngState()
    trainer = _fake_trainer(2, 0, TrainerFn.VALIDATING)
    evaluating.setup(trainer, None, "validate")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluating.load_state_dict(state)
    _seed(99)
    evaluating.on_train_start(trainer, None)
    assert _draws() == seeded


@pytest.mark.slow
def test_ddp_resume_restores_each_ranks_state(tmp_path, tiny_model_dir, synthetic):
    """2 gloo processes: the ranks draw different samples, so each must get its own states back."""
    import os
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(root / "tests"), str(root)])}

    def fit(name: str, *extra: str) -> None:
        args = _args(tmp_path, tiny_model_dir, synthetic, name, "--data.batch_size", "1", "--trainer.strategy", "ddp",
                     "--trainer.devices", "2", "--trainer.accelerator", "cpu", *extra)  # fmt: skip
        result = subprocess.run([sys.executable, "-m", "trainer", "fit", *args], cwd=root, env=env,
                                capture_output=True, text=True, timeout=600)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]

    fit("whole", "--trainer.max_epochs", "2")
    fit("split", "--trainer.max_epochs", "1")
    states = torch.load(tmp_path / "split" / "last.ckpt", weights_only=True)["callbacks"]["RngState"]["ranks"]
    assert len(states) == 2 and not torch.equal(states[0]["torch"], states[1]["torch"])
    fit("split", "--trainer.max_epochs", "2", "--ckpt_path", str(tmp_path / "split" / "last.ckpt"))
    whole, split = _weights(tmp_path / "whole" / "last.ckpt"), _weights(tmp_path / "split" / "last.ckpt")
    assert torch.load(tmp_path / "split" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert all(torch.equal(whole[k], split[k]) for k in whole)
