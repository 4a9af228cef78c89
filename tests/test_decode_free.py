"""Decode-free epochs: a training step that reads no pixels gets its videos from the caches alone,
with the same batches, losses and weights as a decoding epoch, and never opens a video."""

import pytest
import torch
from helpers import fit_args

import data.datamodule
from data.cache_export import ExportError
from data.datamodule import CacheMissError, DenseCaptionDataModule
from data.schema import load_annotations
from trainer.__main__ import main as cli_main
from trainer.tools.cache import main as cache_main

#: Train only, 2 epochs of the smoke joint run (validation has its own test).
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


def test_validation_reads_the_caches_and_its_baselines_decode_each_video_once(tmp_path, tiny_model_dir, synthetic,
                                                                             decodes, monkeypatch):  # fmt: skip
    """Two validations per run: the module's step and the pixel baselines read the caches (the
    baselines' per-frame scores are cached like the features), and every logged number equals a
    decoding run's."""
    with_val = ("--trainer.limit_val_batches", "1.0", "--trainer.check_val_every_n_epoch", "1")
    _fit(tmp_path, tiny_model_dir, synthetic, "cold", *with_val)  # fills the caches
    decodes.clear()
    warm, _ = _fit(tmp_path, tiny_model_dir, synthetic, "warm", *with_val)
    assert warm.datamodule.datasets["train"].decode_free == ("features", "image_embeds")
    assert set(warm.datamodule.datasets["val"].decode_free) == {"features", "image_embeds", "baseline_scores_pixel_l1",
                                                                "baseline_scores_xcorr"}  # fmt: skip
    assert decodes == []  # neither a training nor a validation video was opened: the baselines' scores are cached

    monkeypatch.setattr(DenseCaptionDataModule, "set_decode_free", lambda self, outputs, splits=("train",): None)
    control, _ = _fit(tmp_path, tiny_model_dir, synthetic, "control", *with_val)
    keys = [k for k in control.trainer.callback_metrics if k.startswith(("val/", "val_baseline/"))]
    assert {"val/recall@4", "val_baseline/xcorr_recall@4", "val_baseline/pixel_l1_recall@4"} <= set(keys)
    for key in keys:
        assert warm.trainer.callback_metrics[key] == control.trainer.callback_metrics[key], key


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
                                             r"\(the VLM reads pixels"):  # fmt: skip
        _fit(tmp_path, tiny_model_dir, synthetic, "pixels", "--data.require_cache", "true",
             "--model.init_args.vlm.init_args.reuse_image_embeds", "false")  # fmt: skip


def test_an_exported_cache_trains_without_the_videos_to_the_same_validation_numbers(
    tmp_path, tiny_model_dir, synthetic, decodes
):
    import json

    from data.cache_export import INFO_FILE

    one_epoch = ("--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1.0", "--trainer.check_val_every_n_epoch", "1")
    out = tmp_path / "export"
    filled = cache_main([*fit_args("smoke_joint.yaml", tmp_path, tiny_model_dir, synthetic, *EXTRA),
                         "--splits", "train", "val", "--export", str(out)])  # fmt: skip
    _, paths, _ = synthetic
    assert filled["exported"] == {s: len(load_annotations(paths[s])) for s in ("train", "val")}
    info = json.loads((out / INFO_FILE).read_text())
    baselines = {"baseline_scores_pixel_l1", "baseline_scores_xcorr"}  # the validation baselines' scores
    assert set(info["outputs"]) == {"features", "image_embeds", *baselines} and info["decode_id"] == "fps2_size64_max128"
    card = (out / "README.md").read_text()
    assert "data_files" in card and str(tiny_model_dir) not in card and str(tmp_path) not in card  # no local path

    videos, _ = _fit(tmp_path, tiny_model_dir, synthetic, "videos", *one_epoch)
    decodes.clear()
    cached, _ = _fit(tmp_path / "elsewhere", tiny_model_dir, synthetic, "cached", *one_epoch,
                     "--data.from_cache", str(out))  # fmt: skip
    assert decodes == []  # neither a training nor a validation video was opened
    for key in ("val/recall@4", "val/recall_mean", "val/caption_loss", "train/loss", "val_baseline/xcorr_recall@4",
                "val_baseline/pixel_l1_recall@4", "val_baseline/uniform_caption_loss"):
        assert cached.trainer.callback_metrics[key] == videos.trainer.callback_metrics[key], key

    with pytest.raises(ExportError, match="decoded at fps2_size64_max128, this run decodes at fps1_size64_max128"):
        _fit(tmp_path, tiny_model_dir, synthetic, "fps", "--data.from_cache", str(out), "--data.fps", "1")
    with pytest.raises(ExportError, match=r"features come from another encoder than this run's \(weights_sha256, dtype"):
        _fit(tmp_path, tiny_model_dir, synthetic, "dtype", "--data.from_cache", str(out),
             "--model.init_args.encoder.init_args.dtype", "bfloat16")  # fmt: skip
    with pytest.raises(ExportError, match=r"holds no teacher_scores \(it has \['baseline_scores_pixel_l1', "
                                          r"'baseline_scores_xcorr', 'features', 'image_embeds'\]\)"):  # fmt: skip
        _fit(tmp_path, tiny_model_dir, synthetic, "teacher", "--data.from_cache", str(out),
             "--model.init_args.objective.teacher_weight", "1.0")  # fmt: skip
    with pytest.raises(CacheMissError, match="data.from_cache: this run's training step reads the videos' pixels"):
        _fit(tmp_path, tiny_model_dir, synthetic, "pixels", "--data.from_cache", str(out),
             "--model.init_args.vlm.init_args.reuse_image_embeds", "false")  # fmt: skip


def test_from_cache_takes_a_hub_id_and_refuses_a_folder_that_is_no_export(tmp_path, monkeypatch):
    from data.cache_export import INFO_FILE

    export = tmp_path / "export"
    (export / "data").mkdir(parents=True)
    (export / INFO_FILE).write_text('{"format": 1, "decode_id": "fps2_size64_max128", "outputs": {}, "splits": {}}')
    asked = []
    monkeypatch.setattr("huggingface_hub.snapshot_download",
                        lambda repo_id, repo_type: asked.append((repo_id, repo_type)) or str(export))  # fmt: skip
    folder, info = DenseCaptionDataModule(from_cache="someone/encoded-activitynet").export()
    assert asked == [("someone/encoded-activitynet", "dataset")] and folder == export and info["outputs"] == {}
    (tmp_path / "plain").mkdir()
    with pytest.raises(ExportError, match="holds no frame_selectors.json"):
        DenseCaptionDataModule(from_cache=str(tmp_path / "plain")).export()


#: Cross-correlation scores decoded by the exact "N best of T" program, which reads the pairwise matrix too.
XCORR_DP = ('{"class_path": "models.xcorr.CrossCorrelationSelector", "init_args": {"size": 32, "decoder": '
            '{"class_path": "models.decoders.NoveltyDPDecoder", "init_args": {"min_gap": 2}}}}')


AVERAGING = '{"class_path": "models.selectors.FrameAveragingSelector"}'


@pytest.mark.parametrize("selector", [None, XCORR_DP, AVERAGING], ids=["uniform", "xcorr_pairwise_dp", "averaging"])
def test_the_captioner_caches_its_shown_rows_and_then_opens_no_video(selector, tmp_path, tiny_model_dir, synthetic,
                                                                     decodes, monkeypatch):  # fmt: skip
    """Uniform frames need only the times; a selector that reads pixels (cross-correlation scores and
    pairwise matrix, decoded by a dynamic program) has its K picks cached too, so later epochs show
    the same K frames without its pixels; frame averaging has the embeddings of the bin averages it
    makes cached instead of any candidate's."""
    chosen = ("--model.init_args.selector", selector) if selector else ()

    def fit(name, *extra):
        cli = cli_main(["fit", *fit_args("smoke.yaml", tmp_path, tiny_model_dir, synthetic, *EXTRA, *chosen, *extra),
                        "--trainer.check_val_every_n_epoch", "1", "--trainer.limit_val_batches", "1.0",
                        "--checkpoint.dirpath", str(tmp_path / name)])  # fmt: skip
        return cli, {k: v.detach().clone() for k, v in cli.model.named_parameters() if v.requires_grad}

    _, paths, _ = synthetic
    videos = {split: {s.video for s in load_annotations(paths[split])} for split in ("train", "val")}
    cold, cold_weights = fit("cold")
    expected = {None: {"image_embeds"}, XCORR_DP: {"image_embeds", "selector_picks"}, AVERAGING: {"made_frames"}}[selector]
    assert set(cold.datamodule.datasets["train"].decode_free) == expected
    assert set(decodes) == videos["train"] | videos["val"]  # epoch 1 (and its validation) decoded each video once
    assert len(decodes) == 1 + len(videos["train"]) + 1 + len(videos["val"])  # + each split's usability check

    decodes.clear()
    warm, warm_weights = fit("warm")
    assert decodes == []  # the K shown rows and the candidate times of every video are cached
    decodes.clear()
    monkeypatch.setattr(DenseCaptionDataModule, "set_decode_free", lambda self, outputs, splits=("train",): None)
    control, control_weights = fit("control")
    assert len(decodes) > 2 * len(videos["train"])
    for name, value in control_weights.items():
        assert torch.equal(value, warm_weights[name]) and torch.equal(value, cold_weights[name]), name
    for key in ("train/loss", "val/loss"):
        assert control.trainer.callback_metrics[key] == warm.trainer.callback_metrics[key], key


def test_the_cache_command_fills_the_captioners_shown_rows_and_exports_them(tmp_path, tiny_model_dir, synthetic,
                                                                           decodes):  # fmt: skip
    """``cache`` under a captioner config stores its picks, the K rows it shows and each video's
    frame times: the first epoch then opens no video, and the export trains with no video at all."""
    common = fit_args("smoke.yaml", tmp_path, tiny_model_dir, synthetic, *EXTRA, "--model.init_args.selector", XCORR_DP)
    report = cache_main([*common, "--splits", "train", "val", "--workers", "0", "--export", str(tmp_path / "export")])
    _, paths, _ = synthetic
    videos = {s.video for split in ("train", "val") for s in load_annotations(paths[split])}
    assert report["encoded"] == report["stored"] == len(videos) and set(decodes) == videos
    assert report["stats"]["image_embeds"]["entries"] == report["stats"]["selector_picks"]["entries"] == len(videos)
    assert report["exported"] == {split: len(load_annotations(paths[split])) for split in ("train", "val")}

    decodes.clear()
    fit = ["--trainer.check_val_every_n_epoch", "1", "--trainer.limit_val_batches", "1.0"]
    warm = cli_main(["fit", *common, *fit, "--checkpoint.dirpath", str(tmp_path / "warm")])
    assert decodes == [] and warm.trainer.global_step > 0  # the first epoch too
    exported = cli_main(["fit", *fit_args("smoke.yaml", tmp_path / "elsewhere", tiny_model_dir, synthetic, *EXTRA,
                                          "--model.init_args.selector", XCORR_DP, "--data.from_cache",
                                          str(tmp_path / "export"), *fit)])  # fmt: skip
    assert decodes == []
    for key in ("train/loss", "val/loss"):
        assert exported.trainer.callback_metrics[key] == warm.trainer.callback_metrics[key], key
    # Picks of another decoder setting are not this run's, although the selector has no weights to tell.
    other = XCORR_DP.replace('"min_gap": 2', '"min_gap": 3')
    with pytest.raises(ExportError, match=r"its selector_picks come from another encoder than this run's \(settings "):
        cli_main(["fit", *fit_args("smoke.yaml", tmp_path / "other", tiny_model_dir, synthetic, *EXTRA,
                                   "--model.init_args.selector", other, "--data.from_cache", str(tmp_path / "export"))])


def test_bench_epoch_times_the_three_modes_on_the_same_batches(tmp_path, tiny_model_dir, capsys):
    from trainer.benchmarks.bench_epoch import MODES, table
    from trainer.benchmarks.bench_epoch import main as bench_epoch

    rows = bench_epoch(["--model", str(tiny_model_dir), "--videos", "2", "--seconds", "8", "10", "--height", "96",
                        "--fps", "2", "--frame_size", "64", "--families", "captioner", "--workdir", str(tmp_path),
                        "--rounds", "2", "--output", str(tmp_path / "rows.json")])  # fmt: skip
    assert [(r["round"], r["mode"]) for r in rows] == [(0, "fill"), (1, "decoding"), (1, "decode_free"), (1, "floor"),
                                                       (2, "decode_free"), (2, "floor"), (2, "decoding")]  # rotated
    for row in rows[1:]:
        assert row["videos_decoded"] == (3 if row["mode"] == "decoding" else 0)  # 2 clips + the usability check
        assert row["same_weights"] is True  # every mode and round trained the same weights
        assert row["train_loss"] == rows[1]["train_loss"]
        assert 0 < row["step_seconds"] < row["seconds_per_epoch"]
        assert row["loader_seconds"] == pytest.approx(row["seconds_per_epoch"] - row["step_seconds"])
    assert rows[0]["videos_decoded"] == 3 and all(m in MODES for m in {r["mode"] for r in rows[1:]})
    line = table(rows).splitlines()[2]
    assert line.startswith("| captioner | 2 | ") and line.endswith("| 3, 0, 0 | True |")
    with pytest.raises(SystemExit) as refused:  # no round would time nothing and still exit 0
        bench_epoch(["--rounds", "0", "--workdir", str(tmp_path / "none")])
    assert refused.value.code == 2 and "--rounds must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_the_teachers_scores_are_cached_like_the_features(tmp_path, tiny_model_dir, synthetic, decodes, monkeypatch):
    """Distillation from the cross-correlation teacher, and its scores as the importance model's input: both read the
    teacher's scores, which the caches hold after the first epoch."""
    teacher = ("--model.init_args.objective.teacher_weight", "1.0", "--model.init_args.importance.init_args.score_inputs", "1")
    _, paths, _ = synthetic
    train = {s.video for s in load_annotations(paths["train"])}
    cold, cold_weights = _fit(tmp_path, tiny_model_dir, synthetic, "cold", *teacher)
    assert cold.datamodule.datasets["train"].decode_free == ("features", "image_embeds", "teacher_scores")
    assert set(decodes) == train and len(decodes) == 1 + len(train)
    decodes.clear()
    warm, warm_weights = _fit(tmp_path, tiny_model_dir, synthetic, "warm", *teacher)
    assert decodes == []
    monkeypatch.setattr(DenseCaptionDataModule, "set_decode_free", lambda self, outputs, splits=("train",): None)
    control, control_weights = _fit(tmp_path, tiny_model_dir, synthetic, "control", *teacher)
    for name, value in control_weights.items():
        assert torch.equal(value, warm_weights[name]) and torch.equal(value, cold_weights[name]), name
    assert "train/teacher_loss" in control.trainer.callback_metrics
    assert control.trainer.callback_metrics["train/loss"] == warm.trainer.callback_metrics["train/loss"]
