"""A split whose every sample is skipped stops ``fit``/``validate``/``test`` before any step or checkpoint."""

import re

import pytest
from helpers import fit_args

from data.datamodule import DenseCaptionDataModule, NoUsableSamplesError
from data.schema import Event, VideoSample, load_annotations, save_annotations
from trainer.__main__ import main

# Longer than every synthetic test video at 2 fps (8-10 s: 16-20 candidate frames), within the
# tiny VLM's context.
K_ABOVE_EVERY_VIDEO = 24


@pytest.mark.parametrize("command", ["fit", "validate", "test"])
def test_a_budget_above_every_video_stops_the_run_before_any_checkpoint(command, tmp_path, tiny_model_dir, synthetic):
    args = fit_args("smoke.yaml", tmp_path, tiny_model_dir, synthetic, "--model.init_args.num_frames",
                    str(K_ABOVE_EVERY_VIDEO), "--trainer.max_steps", "2", "--checkpoint.every_n_train_steps", "1")  # fmt: skip
    with pytest.raises(NoUsableSamplesError) as info:
        main([command, *args])
    split = {"fit": "val", "validate": "val", "test": "test"}[command]  # fit checks val first (sanity check)
    videos = len(load_annotations(synthetic[1][split]))
    message = str(info.value)
    assert message.startswith(f"{synthetic[1][split]}: no usable sample in split '{split}' at frame budget K=24")
    assert f": {videos} skipped ({videos} frames); first: " in message  # the reasons, counted by kind
    assert re.search(r"synth_\w+\.mp4: 1\d frames at 2\.0 fps, fewer than the frame budget K=24", message)
    assert "fewer candidate frames than K: lower K" in message
    assert not (tmp_path / "ckpt").exists() or not list((tmp_path / "ckpt").iterdir())


def test_fit_without_validation_stops_on_the_train_split(tmp_path, tiny_model_dir, synthetic):
    args = fit_args("smoke.yaml", tmp_path, tiny_model_dir, synthetic, "--model.init_args.num_frames",
                    str(K_ABOVE_EVERY_VIDEO), "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0")  # fmt: skip
    with pytest.raises(NoUsableSamplesError, match="no usable sample in split 'train'"):
        main(["fit", *args])
    assert not (tmp_path / "ckpt").exists() or not list((tmp_path / "ckpt").iterdir())


def test_the_report_counts_the_rows_skipped_reading_the_file_too(tmp_path, synthetic):
    samples = load_annotations(synthetic[1]["train"])[:2]
    gone = VideoSample("gone", str(tmp_path / "gone.mp4"), 5.0, [Event(0, 1, "x")])  # skipped reading the file
    (tmp_path / "broken.mp4").write_bytes(b"not a video")  # skipped when decoded
    broken = VideoSample("broken", str(tmp_path / "broken.mp4"), 5.0, [Event(0, 1, "x")])
    save_annotations([gone, broken, *samples], tmp_path / "train.json")
    dm = DenseCaptionDataModule(train_file=str(tmp_path / "train.json"), fps=2.0, frame_size=32)
    dm.setup("fit")
    dm.set_frame_budget(2)
    assert next(iter(dm.train_dataloader()))["video_id"]  # some sample loads: a normal loader
    dm.set_frame_budget(500)  # a new budget is checked again
    with pytest.raises(NoUsableSamplesError) as info:
        dm.train_dataloader()
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'train.json'}: no usable sample in split 'train' at frame budget K=500: ")
    assert ": 4 skipped (2 frames, 1 not found, 1 decode); first: gone: " in message
    assert "fewer candidate frames than K: lower K" not in message  # not every video is too short
