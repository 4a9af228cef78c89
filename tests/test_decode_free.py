"""Decode-free epochs: a training step that reads no pixels gets its videos from the caches alone,
with the same batches, losses and weights as a decoding epoch, and never opens a video."""

import pytest
import torch
from helpers import fit_args

import data.datamodule
from data.datamodule import CacheMissError, DenseCaptionDataModule
from data.schema import load_annotations
from trainer.__main__ import main as cli_main
from trainer.tools.cache import main as cache_main

#: Train only (validation reads pixels: its baselines score frames), 2 epochs of the smoke joint run.
EXTRA = ("--trainer.max_epochs", "2", "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
         "--data.num_workers", "0", "--data.feature_cache", "true")  # fmt: skip


@pytest.fixture
def decodes(monkeypatch):
    """Counts the videos decoded in this process (the data module's one call into PyAV)."""
    calls = []
    real = data.datamodule.decode_video
    monkeypatch.setattr(data.datamodule, "decode_video", lambda video, **kw: calls.append(video) or real(video, **kw))
    return calls


def _fit(tmp_path, tiny_model_dir, synthetic, name, *extra):
    cli = cli_main(["fit", *fit_args("smoke_joint.yaml", tmp_path, tiny_model_dir, synthetic, *EXTRA, *extra),
                    "--checkpoint.dirpath", str(tmp_path / name)])  # fmt: skip
    weights = {k: v.detach().clone() for k, v in cli.model.named_parameters() if v.requires_grad}
    return cli, weights


def test_a_warm_cache_trains_the_same_weights_without_opening_a_video(tmp_path, tiny_model_dir, synthetic, decodes,
                                                                     monkeypatch):  # fmt: skip
    _, paths, _ = synthetic
    train_videos = len(load_annotations(paths["train"]))
    cold, cold_weights = _fit(tmp_path, tiny_model_dir, synthetic, "cold")  # fills the caches in epoch 1
    # The usability check opens the first video, epoch 1 every one; epoch 2 read them from the caches.
    assert len(decodes) == 1 + train_videos and set(decodes) == {s.video for s in load_annotations(paths["train"])}
    assert cold.datamodule.datasets["train"].decode_free == ("features", "image_embeds")

    decodes.clear()
    warm, warm_weights = _fit(tmp_path, tiny_model_dir, synthetic, "warm")
    assert decodes == []  # no training video was opened in either epoch
    assert warm.trainer.global_step == cold.trainer.global_step > 0

    # The same run with decoding forced: the control every decode-free run must equal.
    decodes.clear()
    monkeypatch.setattr(DenseCaptionDataModule, "set_decode_free", lambda self, outputs, splits=("train",): None)
    control, control_weights = _fit(tmp_path, tiny_model_dir, synthetic, "control")
    assert len(decodes) == 1 + 2 * train_videos
    for name, value in control_weights.items():
        assert torch.equal(value, warm_weights[name]), name  # same batches, losses and gradients, step by step
        assert torch.equal(value, cold_weights[name]), name
    assert control.trainer.callback_metrics["train/loss"] == warm.trainer.callback_metrics["train/loss"]


def test_require_cache_refuses_a_miss_and_a_run_that_reads_pixels(tmp_path, tiny_model_dir, synthetic, decodes):
    with pytest.raises(CacheMissError, match=r"no cached features, image_embeds at .*\(data.require_cache"):
        _fit(tmp_path, tiny_model_dir, synthetic, "cold", "--data.require_cache", "true")
    assert decodes == []
    # The cache command fills what such a run reads, under the same config; then it trains.
    filled = cache_main([*fit_args("smoke_joint.yaml", tmp_path, tiny_model_dir, synthetic, *EXTRA),
                         "--data.require_cache", "true", "--splits", "train"])  # fmt: skip
    assert filled["encoded"] == filled["videos"] > 0
    decodes.clear()
    _fit(tmp_path, tiny_model_dir, synthetic, "warm", "--data.require_cache", "true")
    assert decodes == []
    with pytest.raises(CacheMissError, match=r"data.require_cache: this run's training step reads the videos' pixels "
                                         r"\(distillation from the teacher's scores"):  # fmt: skip
        _fit(tmp_path, tiny_model_dir, synthetic, "teacher", "--data.require_cache", "true",
             "--model.init_args.objective.teacher_weight", "1.0")  # fmt: skip
