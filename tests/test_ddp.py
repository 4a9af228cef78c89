"""``strategy: ddp`` on CPU: 2 gloo processes train the same weights and agree on metrics, for the
captioner and for the selector module (the importance model alone, and jointly with LoRA)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import fit_args

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
DDP = ["--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2"]


def _fit_on_two_ranks(args: list[str], dump: Path) -> list[dict]:
    """``fit ARGS`` under DDP on 2 CPU processes with :class:`ddp_probe.RankDump`; each rank's dump."""
    callbacks = f'[{{"class_path": "ddp_probe.RankDump", "init_args": {{"folder": "{dump}"}}}}]'
    result = subprocess.run([sys.executable, "-m", "trainer", "fit", *args, *DDP, "--trainer.callbacks", callbacks],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(dump / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    return ranks


def test_ddp_two_processes_train_identical_weights(tmp_path, tiny_model_dir, synthetic):
    _, paths, _ = synthetic
    args = [
        "--config", str(ROOT / "configs" / "smoke.yaml"),
        "--model.init_args.vlm.init_args.model_name_or_path", str(tiny_model_dir),
        "--data.train_file", str(paths["train"]),
        "--data.val_file", str(paths["train"]),  # 4 videos: each rank validates 2 different ones
        "--data.batch_size", "1",
        "--trainer.max_steps", "3",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--checkpoint.dirpath", str(tmp_path / "ckpt"),
    ]  # fmt: skip
    ranks = _fit_on_two_ranks(args, tmp_path / "ranks")
    w0, w1 = ranks[0]["weights"], ranks[1]["weights"]
    assert w0.keys() == w1.keys() and all("lora_" in k for k in w0)
    # Gradients are all-reduced, so the replicas stay identical ...
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    # ... and they did train (LoRA B starts at zero).
    assert any(w0[k].abs().sum() > 0 for k in w0 if "lora_B" in k)
    # Validation loss is synced: both ranks report the same mean over all validation videos.
    assert ranks[0]["metrics"]["val/loss"] == ranks[1]["metrics"]["val/loss"]
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 3

    # predict on 2 ranks: the shards are gathered into one file holding every video once.
    predict = [*args, *DDP, "--data.test_file", str(paths["train"]), "--predictions.output", str(tmp_path / "pred.json"),
               "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "trainer", "predict", *predict], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads((tmp_path / "pred.json").read_text())["results"]
    assert set(written) == set(json.loads(Path(paths["train"]).read_text()))  # 4 videos, 2 per rank


# smoke_joint (importance model + LoRA, two optimizers) runs by default; the importance model alone is a subset of it (~25 s: slow).
@pytest.mark.parametrize("config", [pytest.param("smoke_rl.yaml", marks=pytest.mark.slow), "smoke_joint.yaml"])
def test_ddp_selector_trainer_keeps_the_replicas_identical(tmp_path, tiny_model_dir, synthetic, config):
    """The selector trainer under ``strategy: ddp`` on 2 CPU processes: the importance model alone (RL) and the
    mask jointly with LoRA (two optimizers, manual optimization) train, their replicas stay
    identical, and validation metrics and the score baselines agree across ranks."""
    _, paths, _ = synthetic
    args = fit_args(config, tmp_path, tiny_model_dir, synthetic,
                    "--data.val_file", str(paths["train"]),  # 4 videos: each rank validates 2 different ones
                    "--data.batch_size", "1", "--trainer.max_steps", "3", "--trainer.check_val_every_n_epoch", "1")  # fmt: skip
    ranks = _fit_on_two_ranks(args, tmp_path / "ranks")
    w0, w1 = ranks[0]["weights"], ranks[1]["weights"]
    assert w0.keys() == w1.keys() and any(k.startswith("importance.") for k in w0)
    assert any("lora_" in k for k in w0) == (config == "smoke_joint.yaml")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # gradients all-reduced for every optimizer
    initial = ranks[0]["initial"]
    assert any(not torch.equal(w0[k], initial[k]) for k in w0 if k.startswith("importance."))  # the importance model trained
    if config == "smoke_joint.yaml":
        assert any(w0[k].abs().sum() > 0 for k in w0 if "lora_B" in k)  # so did LoRA (B starts at zero)
    m0, m1 = ranks[0]["metrics"], ranks[1]["metrics"]
    # Each rank validated other videos, so only the all-reduce makes their metrics agree.
    v0, v1 = set(ranks[0]["validated"]), set(ranks[1]["validated"])
    assert v0 and v1 and not v0 & v1 and len(v0 | v1) == len(json.loads(Path(paths["train"]).read_text()))
    synced = [k for k in m0 if k.startswith(("val/", "val_baseline/"))]
    assert "val/recall@4" in synced and "val_baseline/xcorr_recall@4" in synced
    assert all(m0[k] == m1[k] for k in synced), {k: (m0[k], m1[k]) for k in synced if m0[k] != m1[k]}
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] >= 3
