"""trainer.loading: every form of trained result gives the same selector, under one trust rule."""

import json

import pytest
import torch
from helpers import fit_args

from trainer.__main__ import main as cli_main
from trainer.tools.export import main as export_main
from trainer.loading import (
    LoadError,
    TrainedSelector,
    build_from_spec,
    import_class,
    load_selector,
    load_trained,
    module_from_checkpoint,
    resolve_source,
)


@pytest.fixture(scope="module")
def trained_mask(tmp_path_factory, tiny_model_dir, synthetic):
    """A 2-step smoke_rl run's last checkpoint and its export folder."""
    tmp = tmp_path_factory.mktemp("loading")
    cli_main(["fit", *fit_args("smoke_rl.yaml", tmp, tiny_model_dir, synthetic, "--trainer.max_steps", "2",
                               "--trainer.limit_val_batches", "0")])  # fmt: skip
    ckpt = tmp / "ckpt" / "last.ckpt"
    export = tmp / "export"
    export_main(["--ckpt", str(ckpt), "--output", str(export)])
    return ckpt, export


def _video(seed=0, t=20):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, 3, 64, 64), dtype=torch.uint8, generator=g), torch.arange(t, dtype=torch.float64) * 0.5


def test_checkpoint_export_and_hub_id_give_the_same_selector(trained_mask, monkeypatch):
    ckpt, export = trained_mask
    from_ckpt = load_trained(ckpt)
    assert from_ckpt.kind == "checkpoint" and type(from_ckpt.module).__name__ == "SelectorModule"
    assert from_ckpt.hparams["_class_path"] == "trainer.selector_module.SelectorModule"
    from_export = load_trained(export)
    assert from_export.kind == "export" and from_export.module is None
    assert from_export.hparams["importance"] == from_ckpt.hparams["importance"]  # training.json's record

    # A Hub id is fetched with snapshot_download (here: answered from the export folder).
    asked = []
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda repo_id: asked.append(repo_id) or str(export))
    from_hub = load_selector("someone/tiny-mask")
    assert asked == ["someone/tiny-mask"]

    frames, times = _video()
    for k in (2, 4, 8):
        expected = from_ckpt.selector.select(frames, times, k)
        assert torch.equal(from_export.selector.select(frames, times, k), expected)
        assert torch.equal(from_hub.select(frames, times, k), expected)
    assert torch.equal(from_export.selector.scores(frames, times), from_ckpt.selector.scores(frames, times))


def test_sources_that_are_none_of_the_three_say_what_is_accepted(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="Lightning checkpoint .* export folder .* Hub id"):
        resolve_source(tmp_path / "missing.ckpt")
    with pytest.raises(LoadError, match="not an export"):
        resolve_source(tmp_path)

    def offline(repo_id):
        raise OSError("offline")

    monkeypatch.setattr("huggingface_hub.snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match="could not provide it .*offline"):
        resolve_source("nobody/nothing")


@pytest.mark.parametrize("old_name", ["selector", "policy"])
def test_old_checkpoints_that_name_the_importance_model_otherwise_still_load_and_resume(
    old_name, trained_mask, tmp_path, tiny_model_dir, synthetic
):
    ckpt, _ = trained_mask
    checkpoint = torch.load(ckpt, weights_only=True)
    hparams = dict(checkpoint["hyper_parameters"])
    hparams[old_name] = hparams.pop("importance")
    old = {**checkpoint, "hyper_parameters": hparams,
           "state_dict": {k.replace("importance.", f"{old_name}.", 1): v for k, v in checkpoint["state_dict"].items()}}  # fmt: skip
    assert any(k.startswith(f"{old_name}.") for k in old["state_dict"])
    torch.save(old, tmp_path / "old.ckpt")
    module, _ = module_from_checkpoint(tmp_path / "old.ckpt")
    new, _ = module_from_checkpoint(ckpt)
    for (name, a), b in zip(new.importance.state_dict().items(), module.importance.state_dict().values()):
        assert torch.equal(a, b), name
    if old_name == "policy":  # fit --ckpt_path merges the old hyperparameters under the new name
        cli = cli_main(["fit", *fit_args("smoke_rl.yaml", tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "3",
                                         "--trainer.limit_val_batches", "0"), "--ckpt_path", str(tmp_path / "old.ckpt")])  # fmt: skip
        assert cli.trainer.global_step == 3


def test_an_old_init_arg_in_a_config_or_on_the_command_line_names_the_new_one(tmp_path):
    from trainer.__main__ import ConfigError, check_flags, config_files

    config = tmp_path / "mine.yaml"
    config.write_text("model:\n  init_args:\n    policy:\n      init_args: {max_budget: 8}\n")
    with pytest.raises(ConfigError, match=r"model.init_args.policy was renamed model.init_args.importance"):
        config_files(str(config))
    config.write_text("model:\n  class_path: trainer.selector_module.SelectorModule\n  init_args:\n    selector: {}\n")
    with pytest.raises(ConfigError, match=r"model.init_args.selector was renamed model.init_args.importance"):
        config_files(str(config))
    # ``selector`` is still the captioner's own argument.
    config.write_text("model:\n  class_path: trainer.module.DenseCaptioner\n  init_args:\n    selector: {}\n")
    assert config_files(str(config)) == [str(config)]
    with pytest.raises(ConfigError, match=r"--model.init_args.policy.init_args.score_inputs was renamed "
                                          r"--model.init_args.importance.init_args.score_inputs"):  # fmt: skip
        check_flags(["--model.init_args.policy.init_args.score_inputs", "1"])
    with pytest.raises(ConfigError, match=r"--model.init_args.policy was renamed --model.init_args.importance;"):
        check_flags(["--model.init_args.policy=x"])
    check_flags(["--model.init_args.importance.init_args.score_inputs", "1", "--trainer.strategy.init_args.auto_wrap_policy", "x"])


def test_one_allow_list_for_checkpoints_exports_and_selector_names(tmp_path):
    with pytest.raises(LoadError, match="refusing to import 'subprocess.Popen'"):
        import_class("subprocess.Popen", object)
    with pytest.raises(LoadError, match="is not a"):
        import_class("models.decoders.TopKDecoder", torch.optim.Optimizer)
    with pytest.raises(LoadError, match="trust_remote_code"):
        build_from_spec({"class_path": "models.encoders.FrameEncoder", "init_args": {"trust_remote_code": True}})
    # evaluate's selector names go through the same list.
    from trainer.cli_helpers import build_selector

    with pytest.raises(LoadError, match="refusing to import"):
        build_selector("collections.OrderedDict", None)
    assert type(build_selector("models.selectors.UniformSelector", None)).__name__ == "UniformSelector"
    # An export whose selector spec names a foreign class is refused too.
    folder = tmp_path / "bad" / "selector"
    folder.mkdir(parents=True)
    (folder / "frame_selection.json").write_text(json.dumps(
        {"importance_model": False, "selector": {"class_path": "os.system"}, "decoder": None}))  # fmt: skip
    with pytest.raises(LoadError, match=r"frame_selection\.json: refusing selector\.class_path = 'os\.system'"):
        load_selector(tmp_path / "bad")


def test_trained_selector_in_a_captioner_config_is_frozen_and_picks_the_trained_frames(
    trained_mask, tmp_path, tiny_model_dir, synthetic
):
    ckpt, export = trained_mask
    spec = json.dumps({"class_path": "trainer.loading.TrainedSelector", "init_args": {"source": str(export)}})
    cli = cli_main(fit_args("smoke.yaml", tmp_path, tiny_model_dir, synthetic, "--model.init_args.selector", spec,
                            "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0"), run=False)  # fmt: skip
    selector = cli.model.inference_selector()
    assert isinstance(selector, TrainedSelector)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert not any(p.requires_grad for p in selector.parameters()) and not selector.inner.training
    # The captioner's checkpoint keeps only what trained (the LoRA adapter), not the frozen selector.
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["state_dict"]
    assert saved and not any(k.startswith("selector.") for k in saved)
    frames, times = _video(1)
    assert torch.equal(selector.select(frames, times, 4), load_selector(ckpt).select(frames, times, 4))


def test_a_model_that_reads_its_teachers_scores_exports_its_teacher(tmp_path, tiny_model_dir, synthetic):
    """wide_budget's importance model reads cross-correlation scores: its export rebuilds that teacher and
    picks the same frames, and so does an export written when the teacher was called the ``cue``."""
    cli_main(["fit", *fit_args("smoke_rl.yaml", tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "2",
                               "--trainer.limit_val_batches", "0", "--model.init_args.importance.init_args.score_inputs", "1",
                               "--model.init_args.teacher", '{"class_path": "models.xcorr.CrossCorrelationSelector", '
                               '"init_args": {"size": 32, "grayscale": false}}')])  # fmt: skip
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    export_main(["--ckpt", str(ckpt), "--output", str(tmp_path / "export")])
    info = json.loads((tmp_path / "export" / "selector" / "frame_selection.json").read_text())
    assert info["teacher"]["class_path"] == "models.xcorr.CrossCorrelationSelector"
    assert info["teacher"]["init_args"]["size"] == 32
    from_ckpt, from_export = load_selector(ckpt), load_selector(tmp_path / "export")
    assert from_export.teacher.size == 32 and from_export.teacher.grayscale is False
    frames, times = _video(2)
    for k in (2, 4):
        assert torch.equal(from_export.select(frames, times, k), from_ckpt.select(frames, times, k))
    info["cue"] = info.pop("teacher")  # as exports wrote it before
    (tmp_path / "export" / "selector" / "frame_selection.json").write_text(json.dumps(info))
    old = load_selector(tmp_path / "export")
    assert old.teacher.size == 32
    assert torch.equal(old.select(frames, times, 4), from_ckpt.select(frames, times, 4))


def test_a_checkpoint_that_records_a_renamed_class_still_loads_and_an_old_config_names_the_new(
    trained_mask, tmp_path, tiny_model_dir, synthetic
):
    from trainer.__main__ import ConfigError, config_files
    from trainer.renames import RENAMED_CLASSES

    ckpt, _ = trained_mask
    old = tmp_path / "old.ckpt"
    state = torch.load(ckpt, weights_only=True)
    assert state["hyper_parameters"]["_class_path"] == "trainer.selector_module.SelectorModule"
    state["hyper_parameters"]["_class_path"] = "trainer.selection.SelectorTrainer"  # as written before the rename
    torch.save(state, old)
    loaded = load_trained(old)
    assert type(loaded.module).__name__ == "SelectorModule"
    assert loaded.hparams["_class_path"] == "trainer.selector_module.SelectorModule"
    frames, times = _video()
    assert torch.equal(loaded.selector.select(frames, times, 4), load_trained(ckpt).selector.select(frames, times, 4))
    # fit --ckpt_path resumes it under the new name (LightningCLI merges the recorded class).
    cli = cli_main(["fit", *fit_args("smoke_rl.yaml", tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "3",
                                     "--trainer.limit_val_batches", "0"), "--ckpt_path", str(old)])  # fmt: skip
    assert type(cli.model).__name__ == "SelectorModule" and cli.trainer.global_step == 3

    # A user's config with the old name: an error that names the new one, before anything is parsed.
    config = tmp_path / "mine.yaml"
    config.write_text("model:\n  class_path: trainer.selection.SelectorTrainer\n")
    with pytest.raises(ConfigError, match=r"model.class_path: trainer.selection.SelectorTrainer was renamed "
                                          r"trainer.selector_module.SelectorModule"):  # fmt: skip
        config_files(str(config))
    assert all(new.rpartition(".")[0] for new in RENAMED_CLASSES.values())
