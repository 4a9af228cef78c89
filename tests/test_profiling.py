"""``trainer.profiling.ResourceReport``: speed and peak memory of a short fit, as JSON."""

import json

import pytest
from helpers import fit_args

from trainer.__main__ import main
from trainer.profiling import ResourceReport


def test_resource_report_times_batches_and_counts_what_trains(tmp_path, tiny_model_dir, synthetic):
    out = tmp_path / "resources.json"
    callbacks = json.dumps([{"class_path": "trainer.profiling.ResourceReport",
                             "init_args": {"output": str(out), "warmup_batches": 1}}])  # fmt: skip
    cli = main(["fit", *fit_args("smoke.yaml", tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "4",
                                 "--trainer.limit_val_batches", "0", "--data.batch_size", "2",
                                 "--trainer.callbacks", callbacks)])  # fmt: skip
    report = json.loads(out.read_text())
    assert report["batches_timed"] == 3  # 4 steps, the first one is warm-up
    assert report["device"] == "cpu" and report["world_size"] == 1 and report["batch_size"] == 2
    assert report["model"] == str(tiny_model_dir) and report["frames_shown"] == 4
    lora = sum(p.numel() for n, p in cli.model.named_parameters() if "lora_" in n)
    assert report["trainable_parameters"] == lora > 0
    assert report["parameters"] > report["trainable_parameters"]
    assert report["seconds_per_batch"] > 0
    # Batch end to batch end also pays for loading the next batch.
    assert report["wall_seconds_per_batch"] >= report["seconds_per_batch"] * 0.9
    assert report["videos_per_s"] == pytest.approx(2 / report["seconds_per_batch"], rel=1e-6)
    assert report["candidate_frames_per_s"] > report["videos_per_s"]  # many candidate frames per video
    assert 0.05 < report["peak_rss_gib"] < 64


def test_resource_report_rejects_negative_warmup():
    with pytest.raises(ValueError, match="warmup_batches"):
        ResourceReport(warmup_batches=-1)
