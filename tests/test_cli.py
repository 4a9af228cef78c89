"""``python -m trainer``: every config parses, fit writes a resumable checkpoint, predict writes JSON."""

import contextlib
import functools
import io
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from helpers import fit_args, written_config

from trainer.__main__ import main
from trainer.predictions import read_predictions, write_predictions

ROOT = Path(__file__).parents[1]
# Runnable configs: the top-level ones and the recipes (configs/base/ holds the files they list
# under `config:`, configs/parts/ the pieces they include as values; tests/test_configs.py those).
CONFIGS = sorted([*(ROOT / "configs").glob("*.yaml"), *(ROOT / "configs" / "recipes").glob("*.yaml")])


@functools.cache
def _printed_config(config: Path) -> str:
    """``fit --config CONFIG --print_config``'s output (parsed once per config for all tests)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(config), "--print_config"])
    assert info.value.code in (0, None)
    return out.getvalue()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_config_parses_and_opens_with_its_run_command(config):
    first = config.read_text().splitlines()[0]
    assert first == f"# python -m trainer fit --config {config.relative_to(ROOT)}"
    printed = yaml.safe_load(_printed_config(config))
    written = written_config(config)  # its bases, then its own keys
    for key, value in written["data"].items():  # the data part's values reach the data module
        got = printed["data"][key]
        assert ({k: got[k] for k in value} if isinstance(value, dict) else got) == value, key
    # Subclass mode: each config names its LightningModule and the YAML values reach it.
    assert printed["model"]["class_path"] == written["model"]["class_path"]
    args, wanted = printed["model"]["init_args"], written["model"]["init_args"]
    for key, value in wanted.items():
        if not isinstance(value, dict):
            assert args[key] == value, key
    for part in ("vlm", "encoder"):
        if part in wanted:
            assert args[part]["init_args"]["model_name_or_path"] == wanted[part]["init_args"]["model_name_or_path"]
    for key, value in wanted.get("objective", {}).items():
        assert args["objective"][key] == value, key


def test_unknown_config_key_is_rejected(tmp_path, capsys):
    config = {"model": {"init_args": {"vlm": {"init_args": {"lora": {"rank": 4}}}}}}  # the field is called `r`
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(ROOT / "configs" / "smoke.yaml"), "--config", str(path)])
    assert info.value.code != 0
    assert "rank" in capsys.readouterr().err


def _args(tmp_path, tiny_model_dir, synthetic, *extra):
    return fit_args("smoke.yaml", tmp_path, tiny_model_dir, synthetic, "--checkpoint.every_n_train_steps", "1", *extra)


class _AdapterAtStart(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        self.weights = {k: v.detach().clone() for k, v in pl_module.vlm.trainable_state_dict().items()}


def test_fit_writes_trainable_only_checkpoint_and_resumes(tmp_path, tiny_model_dir, synthetic):
    cli = main(["fit", *_args(tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "3")])
    assert cli.trainer.global_step == 3
    last = tmp_path / "ckpt" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    trainable = {f"vlm.{k}" for k in cli.model.vlm.trainable_state_dict()}
    assert set(ckpt["state_dict"]) == trainable and all("lora_" in k for k in trainable)
    assert ckpt["global_step"] == 3
    # Self-describing: the checkpoint records the injected components by class_path.
    assert ckpt["hyper_parameters"]["vlm"]["class_path"] == "models.vlm.SmolVLM"
    saved = {k[len("vlm.") :]: v for k, v in ckpt["state_dict"].items()}
    assert not all(torch.equal(v, torch.zeros_like(v)) for k, v in saved.items() if "lora_B" in k)

    resumed = main(_args(tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "5"), run=False)
    probe = _AdapterAtStart()
    resumed.trainer.callbacks.append(probe)
    resumed.trainer.fit(resumed.model, datamodule=resumed.datamodule, ckpt_path=str(last))
    assert probe.step == 3 and resumed.trainer.global_step == 5
    for k, v in saved.items():
        assert torch.equal(probe.weights[k], v), k


def test_cli_resume_reparses_checkpoint_hparams_in_subclass_mode(tmp_path, tiny_model_dir, synthetic):
    main(["fit", *_args(tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0")])
    last = tmp_path / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=True)["hyper_parameters"]["_class_path"] == "trainer.module.DenseCaptioner"
    # Lightning re-parses the checkpoint's hparams (class_path + init args) before building the model.
    cli = main(["fit", *_args(tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "2",
                              "--trainer.limit_val_batches", "0"), "--ckpt_path", str(last)])  # fmt: skip
    assert type(cli.model).__name__ == "DenseCaptioner" and cli.model.num_frames == 4
    assert cli.trainer.global_step == 2


class _BudgetAtStart(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.budgets = [trainer.datamodule.min_frames, *(d.min_frames for d in trainer.datamodule.datasets.values())]


def test_frame_budget_reaches_the_data_module(tmp_path, tiny_model_dir, synthetic):
    cli = main(_args(tmp_path, tiny_model_dir, synthetic, "--model.init_args.num_frames", "3",
                     "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0"), run=False)  # fmt: skip
    assert cli.datamodule.min_frames == 1  # the data module's own default, before setup
    probe = _BudgetAtStart()
    cli.trainer.callbacks.append(probe)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert probe.budgets == [3, 3, 3]  # the module itself, then its train and val datasets


def test_set_frame_budget_updates_built_datasets(synthetic):
    from data.datamodule import DenseCaptionDataModule

    _, paths, _ = synthetic
    dm = DenseCaptionDataModule(train_file=str(paths["train"]), val_file=str(paths["val"]), min_frames=2)
    dm.setup("fit")
    dm.set_frame_budget(500)  # longer than any synthetic video at 2 fps
    assert dm.datasets["train"].min_frames == dm.datasets["val"].min_frames == 500
    assert dm.datasets["train"][0] is None  # now too short: skipped as a bad sample
    with pytest.raises(ValueError, match="K must be >= 1"):
        dm.set_frame_budget(0)


def test_predict_writes_activitynet_json_that_round_trips(tmp_path, tiny_model_dir, synthetic):
    cli = main(["fit", *_args(tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "1")])
    cli = main(_args(tmp_path, tiny_model_dir, synthetic), run=False)
    outputs = cli.trainer.predict(cli.model, datamodule=cli.datamodule, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    flat = [p for batch in outputs for p in batch]
    _, paths, _ = synthetic
    expected_ids = set(yaml.safe_load(Path(paths["test"]).read_text()))
    results = read_predictions(tmp_path / "pred.json")
    assert set(results) == expected_ids == {p["video_id"] for p in flat}
    for p in flat:
        assert results[p["video_id"]] == p["events"]
        assert len(p["frame_times"]) == 4 and p["frame_times"] == sorted(p["frame_times"])


def test_prediction_file_round_trip(tmp_path):
    preds = [{"video_id": "v1", "events": [{"sentence": "a red circle moves left", "timestamp": [1.0, 3.0]}]},
             {"video_id": "v2", "events": []}]
    write_predictions(preds, tmp_path / "p.json")
    assert read_predictions(tmp_path / "p.json") == {"v1": preds[0]["events"], "v2": []}


def test_smoke_training_lowers_the_loss(tmp_path, tiny_model_dir, synthetic):
    import csv

    cli = main(["fit", *_args(tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "16",
                              "--trainer.log_every_n_steps", "1", "--trainer.limit_val_batches", "0")])  # fmt: skip
    rows = list(csv.DictReader(open(Path(cli.trainer.logger.log_dir) / "metrics.csv")))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses


SELECTORS = [
    ("models.selectors.UniformSelector", {}),
    ("models.selectors.RandomSelector", {"seed": 3}),
    ("models.selectors.PixelDiffSelector", {"p": 2, "decoder": {"class_path": "models.decoders.BinMaxDecoder"}}),
    ("models.selectors.OpticalFlowSelector", {"decoder": {"class_path": "models.decoders.ThresholdDecoder",
                                                          "init_args": {"threshold": 1.5}}}),
    ("models.selectors.FrameAveragingSelector", {}),
    ("models.xcorr.CrossCorrelationSelector", {"size": 32, "grayscale": False, "max_shift": 4,
                                               "decoder": {"class_path": "models.decoders.NoveltyDPDecoder",
                                                           "init_args": {"min_gap": 2}}}),
    ("models.encoders.EmbeddingSelector", {"encoder": {"class_path": "models.encoders.FrameEncoder",
                                                       "init_args": {"model_name_or_path": "TINY"}}}),
]  # fmt: skip


@pytest.mark.parametrize("class_path, init_args", SELECTORS, ids=[s[0].rsplit(".", 1)[1] for s in SELECTORS])
def test_every_selector_and_decoder_is_injectable_and_trains(class_path, init_args, tmp_path, tiny_model_dir, synthetic):
    import json

    spec = json.dumps({"class_path": class_path, "init_args": init_args}).replace("TINY", str(tiny_model_dir))
    cli = main(_args(tmp_path, tiny_model_dir, synthetic, "--model.init_args.selector", spec,
                     "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0"), run=False)  # fmt: skip
    selector = cli.model.selector
    assert type(selector).__module__ + "." + type(selector).__name__ == class_path
    decoder = init_args.get("decoder", {}).get("class_path", "models.decoders.TopKDecoder")
    if class_path.endswith(("UniformSelector", "RandomSelector", "FrameAveragingSelector")):
        decoder = None  # these choose frames themselves
    if decoder:
        assert type(selector.decoder).__name__ == decoder.rsplit(".", 1)[1]
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 1
    cli.datamodule.datasets["train"].decode_free = ()  # decoded, even where the caches could serve it
    batch = next(iter(cli.datamodule.train_dataloader()))
    shown = cli.model.select_frames(batch)  # a batch straight from the loader: no embeddings yet
    assert all(f.shape[0] == 4 and f.dtype == torch.uint8 for f in shown["frames"])
    assert all(bool((t[1:] > t[:-1]).all()) for t in shown["timestamps"])
    # Through the data module's encoding stage, the VLM reads the same frames' embeddings instead.
    attached = cli.datamodule.on_after_batch_transfer(batch, 0)
    if selector.shows_candidates:
        embedded = cli.model.select_frames(attached)
        assert embedded["frames"] is None and all(e.shape[0] == 4 for e in embedded["image_embeds"])
        for t, u in zip(embedded["timestamps"], shown["timestamps"]):
            assert torch.equal(t, u)
    else:  # frame averaging makes new frames: pixels it is
        assert "image_embeds" not in attached


def test_validate_and_test_subcommands_log_losses(tmp_path, tiny_model_dir, synthetic):
    main(["fit", *_args(tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "2")])
    last = str(tmp_path / "ckpt" / "last.ckpt")
    for command, key in (("validate", "val/loss"), ("test", "test/loss")):
        cli = main([command, *_args(tmp_path, tiny_model_dir, synthetic), "--ckpt_path", last])
        value = cli.trainer.callback_metrics[key]
        assert torch.isfinite(value) and 0 < value.item() < 20, (command, value)


@pytest.mark.parametrize("config", [c for c in CONFIGS if "strategy" in written_config(c)["trainer"]],
                         ids=lambda p: p.name)  # fmt: skip
def test_distributed_strategies_in_configs_instantiate(config):
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import Strategy

    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy)
    spec = written_config(config)["trainer"]["strategy"]
    strategy = parser.instantiate(parser.parse_object({"strategy": spec})).strategy
    assert type(strategy).__name__ == spec["class_path"].rsplit(".", 1)[1]
    if "auto_wrap_policy" in spec.get("init_args", {}):
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer

        assert LlamaDecoderLayer in strategy.kwargs["auto_wrap_policy"]._module_classes
        assert strategy.kwargs["use_orig_params"]


# Every GPU config and recipe trains with warmup + cosine; each module names its schedules.
SCHEDULES = {"lr_scheduler": "optimizer", "selector_lr_scheduler": "selector_optimizer",
             "lora_lr_scheduler": "lora_optimizer"}  # fmt: skip
SCHEDULED = [c for c in CONFIGS if c.name.startswith("smolvlm2_")]


def test_gpu_configs_and_recipes_are_the_scheduled_ones():
    parsed = {c: yaml.safe_load(_printed_config(c))["model"]["init_args"] for c in CONFIGS}
    with_schedule = [c for c in CONFIGS if any(parsed[c].get(k) for k in SCHEDULES)]
    assert with_schedule == SCHEDULED and len(SCHEDULED) == 5 + 24


@pytest.mark.parametrize("config", SCHEDULED, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_schedules_warm_up_then_decay_to_the_floor(config):
    from jsonargparse import ArgumentParser
    from lightning.pytorch.cli import LRSchedulerCallable

    from trainer.schedules import WarmupCosine, fit_to_run

    args = yaml.safe_load(_printed_config(config))["model"]["init_args"]
    # One schedule per optimizer the module builds (ranking trains the selector alone).
    trained = ["optimizer"] if "optimizer" in args else [
        side for side, on in (("selector_optimizer", True), ("lora_optimizer", args["objective"]["train_lora"])) if on
    ]  # fmt: skip
    assert sorted(SCHEDULES[k] for k in SCHEDULES if args.get(k)) == sorted(trained)
    parser = ArgumentParser()
    parser.add_argument("--schedule", type=LRSchedulerCallable)
    total = 2000  # optimizer steps of the run, as the module would fill in
    for key, optimizer_key in SCHEDULES.items():
        if not args.get(key):
            continue
        peak = args[optimizer_key]["init_args"]["lr"]
        make = parser.instantiate(parser.parse_object({"schedule": args[key]})).schedule
        parameter = torch.nn.Parameter(torch.zeros(1))
        scheduler = fit_to_run(make(torch.optim.SGD([parameter], lr=peak)), lambda: total)  # the run's length
        assert type(scheduler) is WarmupCosine and scheduler.total_steps == total
        warmup, floor = scheduler.warmup_steps, peak * scheduler.min_lr_ratio
        assert 0 < warmup < total and 0 < scheduler.min_lr_ratio < 1
        lrs = []
        for _ in range(total + 1):
            lrs.append(scheduler.optimizer.param_groups[0]["lr"])
            scheduler.optimizer.step()
            scheduler.step()
        assert lrs[0] == 0.0 and lrs[warmup // 2] == pytest.approx(peak * (warmup // 2) / warmup)
        assert lrs[warmup] == pytest.approx(peak) and max(lrs) == pytest.approx(peak)
        middle = warmup + (total - warmup) // 3
        expected = floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * (middle - warmup) / (total - warmup)))
        assert lrs[middle] == pytest.approx(expected) and lrs[total] == pytest.approx(floor)
