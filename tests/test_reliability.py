"""Nothing lost on a crash: mid-epoch resume, SIGTERM/SIGKILL, determinism."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import fit_args

from trainer.__main__ import main

ROOT = Path(__file__).parents[1]


def _args(tmp_path, tiny_model_dir, synthetic, name, *extra):
    return fit_args("smoke.yaml", tmp_path, tiny_model_dir, synthetic, "--trainer.logger.init_args.name", name,
                    "--trainer.log_every_n_steps", "1", "--checkpoint.dirpath", str(tmp_path / name),
                    "--checkpoint.every_n_train_steps", "1", *extra)  # fmt: skip


def _losses(log_dir: Path) -> dict[int, float]:
    out = {}
    for path in sorted(log_dir.glob("version_*/metrics.csv")):
        for row in csv.DictReader(open(path)):
            if row.get("train/loss"):
                out[int(row["step"])] = float(row["train/loss"])
    return out


def _adapter(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, weights_only=True)["state_dict"]


def test_mid_epoch_resume_continues_the_uninterrupted_run(tmp_path, tiny_model_dir, synthetic):
    # 4 training videos, batch 2: 2 steps per epoch, so step 3 stops in the middle of epoch 2.
    main(["fit", *_args(tmp_path, tiny_model_dir, synthetic, "whole", "--trainer.max_steps", "6")])
    main(["fit", *_args(tmp_path, tiny_model_dir, synthetic, "split", "--trainer.max_steps", "3")])
    ckpt = tmp_path / "split" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 3
    main(["fit", *_args(tmp_path, tiny_model_dir, synthetic, "split", "--trainer.max_steps", "6"),
          "--ckpt_path", str(ckpt)])  # fmt: skip
    whole, split = _losses(tmp_path / "logs" / "whole"), _losses(tmp_path / "logs" / "split")
    assert sorted(whole) == sorted(split) == list(range(6))
    for step in range(6):  # same batches in the same order, same optimizer state
        assert split[step] == pytest.approx(whole[step], abs=1e-5), step
    a, b = _adapter(tmp_path / "whole" / "last.ckpt"), _adapter(ckpt)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_same_seed_same_run(tmp_path, tiny_model_dir, synthetic):
    for name in ("a", "b"):
        main(["fit", *_args(tmp_path, tiny_model_dir, synthetic, name, "--trainer.max_steps", "3")])
    assert _losses(tmp_path / "logs" / "a") == _losses(tmp_path / "logs" / "b")
    a, b = _adapter(tmp_path / "a" / "last.ckpt"), _adapter(tmp_path / "b" / "last.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_fit_resumes_from_last_ckpt(sig, tmp_path, tiny_model_dir, synthetic):
    args = _args(tmp_path, tiny_model_dir, synthetic, "killed", "--trainer.max_steps", "400")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "trainer", "fit", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    ckpt = tmp_path / "killed" / "last.ckpt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                if torch.load(ckpt, weights_only=True)["global_step"] >= 3:
                    break
            except Exception:  # caught mid-write: try again
                pass
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    proc.send_signal(sig)
    proc.wait(timeout=60)
    stopped_at = torch.load(ckpt, weights_only=True)["global_step"]
    assert 3 <= stopped_at < 400
    if sig == signal.SIGTERM:
        # Graceful stop: Lightning finishes the batch, the checkpoint callback saves on the
        # SIGTERMException, and the process exits by itself instead of dying of the signal.
        assert proc.returncode != -signal.SIGTERM, proc.returncode
    resumed = main(["fit", *_args(tmp_path, tiny_model_dir, synthetic, "killed", "--trainer.max_steps",
                                  str(stopped_at + 2)), "--ckpt_path", str(ckpt)])  # fmt: skip
    assert resumed.trainer.global_step == stopped_at + 2
    losses = _losses(tmp_path / "logs" / "killed")
    assert stopped_at in losses and stopped_at + 1 in losses  # the resumed run logged the steps after the kill



def test_epoch_shuffle_accepts_any_initial_seed():
    from data.datamodule import EpochShuffleSampler

    for seed in (0, 2**64 - 1, 123456789012345678):  # torch.initial_seed() of an unseeded process is 64-bit
        sampler = EpochShuffleSampler(10, seed)
        first, again = list(sampler), list(sampler)
        sampler.set_epoch(1)
        assert sorted(first) == list(range(10)) and first == again and list(sampler) != first
