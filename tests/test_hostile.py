"""A checkpoint is data, never code: a hostile-input corpus through every entry point that loads a trained result.

The corpus is built here from one real checkpoint and its export: a class reference at every level
of what they record (optimizer, LR scheduler, selector, decoder, importance model, encoder, data, inside
init args and lists), spelled every way the loaders could read one (``class_path``,
``_class_path``, ``classPath``, ``_instantiator``, a bare dotted string where a type or callable is
expected), aimed at two targets: a module on ``sys.path`` whose import leaves a marker file, and
``os.system`` with a ``touch`` command. Every entry point must refuse each file with the key path
and the refused value named, and neither marker may ever appear.
"""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import as_overrides, fit_args, written_config

from trainer.__main__ import main as cli_main
from trainer.evaluation.evaluate import main as evaluate_main
from trainer.loading import LoadError, TrainedSelector, check_recorded, load_selector, load_trained
from trainer.tools.caption import main as caption_main
from trainer.tools.export import main as export_main
from trainer.tools.select import main as select_main

ROOT = Path(__file__).parents[1]
MARKER_MODULE = "hostile_marker_xyz"
HUB_ID = "stranger/hostile-mask"


# --------------------------------------------------------------------------------------- the corpus
@pytest.fixture(scope="module")
def marker(tmp_path_factory):
    """A folder on ``sys.path`` with the marker module; importing it or running the command leaves a file here."""
    folder = tmp_path_factory.mktemp("marker")
    (folder / f"{MARKER_MODULE}.py").write_text(
        f"import pathlib\npathlib.Path({str(folder / 'imported')!r}).touch()\n\n\n"
        "class Foo:\n    def __init__(self, *args, **kwargs):\n        pass\n\n\n"
        "def make(*args, **kwargs):\n    return Foo()\n"
    )
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


@pytest.fixture(autouse=True)
def nothing_ran(marker):
    """After every test: the marker module was never imported, no command ran, no file was written."""
    yield
    imported = sys.modules.pop(MARKER_MODULE, None) is not None
    left = sorted(p.name for p in marker.iterdir() if p.suffix != ".py" and p.name != "__pycache__")
    for name in left:
        (marker / name).unlink()
    assert not imported and not left, f"hostile input ran: module imported {imported}, marker files {left}"


def _system(marker, name="ran"):
    return {"class_path": "os.system", "init_args": {"command": f"touch {marker / name}"}}


def _mod(name="Foo"):
    return f"{MARKER_MODULE}.{name}"


def _put(tree, path, value):
    """Sets ``tree[a][b]...`` (keys and list indices) to ``value``."""
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


# (case, where in the checkpoint (a key path from its top), value, the key path the refusal names)
CHECKPOINT_CASES = [
    ("top_class_path", ("hyper_parameters", "_class_path"), lambda m: _mod(), "hyper_parameters._class_path"),
    ("instantiator", ("hyper_parameters", "_instantiator"), lambda m: _mod("make"), "hyper_parameters._instantiator"),
    ("optimizer_system", ("hyper_parameters", "selector_optimizer"), _system,
     "hyper_parameters.selector_optimizer.class_path"),
    ("optimizer_as_string", ("hyper_parameters", "lora_optimizer"), lambda m: _mod("make"),
     "hyper_parameters.lora_optimizer"),
    ("project_function_as_optimizer", ("hyper_parameters", "selector_optimizer"),
     lambda m: {"class_path": "data.atomic.write_atomic", "init_args": {"path": str(m / "written"), "content": "x"}},
     "hyper_parameters.selector_optimizer.class_path"),
    ("lr_scheduler", ("hyper_parameters", "selector_lr_scheduler"),
     lambda m: {"class_path": _mod(), "init_args": {"warmup_steps": 1}}, "hyper_parameters.selector_lr_scheduler.class_path"),
    ("importance", ("hyper_parameters", "importance", "class_path"), lambda m: _mod(), "hyper_parameters.importance.class_path"),
    ("decoder_system", ("hyper_parameters", "decoder"), _system, "hyper_parameters.decoder.class_path"),
    ("selector_as_string", ("hyper_parameters", "teacher"), lambda m: _mod(), "hyper_parameters.teacher"),
    ("encoder_init_arg", ("hyper_parameters", "encoder", "init_args", "pooling"), lambda m: {"class_path": _mod()},
     "hyper_parameters.encoder.init_args.pooling.class_path"),
    ("in_a_list", ("hyper_parameters", "eval_budgets"), lambda m: [4, {"init_args": {"x": [_system(m)]}}],
     "hyper_parameters.eval_budgets[1].init_args.x[0].class_path"),
    ("data", ("hyper_parameters", "data"),
     lambda m: {"class_path": "data.datamodule.DenseCaptionDataModule", "init_args": {"cache": {"_class_path": _mod()}}},
     "hyper_parameters.data.init_args.cache._class_path"),
    ("spelled_classPath", ("hyper_parameters", "decoder"), lambda m: {"classPath": _mod()},
     "hyper_parameters.decoder.classPath"),
    ("hydra_target", ("hyper_parameters", "importance", "init_args", "head"), lambda m: {"_target_": "os.system"},
     "hyper_parameters.importance.init_args.head._target_"),
    ("datamodule_hparams", ("datamodule_hyper_parameters",), lambda m: {"_class_path": _mod()},
     "datamodule_hyper_parameters._class_path"),
    ("remote_code", ("hyper_parameters", "encoder", "init_args", "trust_remote_code"), lambda m: True,
     "hyper_parameters.encoder.init_args.trust_remote_code"),
]  # fmt: skip
# The few that stand for the corpus where an entry point is slow to reach the check (a config parse first).
FEW = ("optimizer_system", "optimizer_as_string", "in_a_list")

# (case, file in the export, key path in its JSON, value, the key path the refusal names)
EXPORT_CASES = [
    ("selector_spec", "selector/frame_selection.json", ("selector",), _system, "selector.class_path"),
    ("decoder_spec", "selector/frame_selection.json", ("decoder", "class_path"), lambda m: _mod(), "decoder.class_path"),
    ("encoder_init_arg", "selector/frame_selection.json", ("encoder", "init_args", "pooling"),
     lambda m: {"class_path": _mod()}, "encoder.init_args.pooling.class_path"),
    ("teacher", "selector/frame_selection.json", ("teacher",), lambda m: {"class_path": _mod(), "init_args": {}},
     "teacher.class_path"),
    ("in_a_list", "selector/frame_selection.json", ("decoder", "init_args", "extra"), lambda m: [1, [_mod("make")]],
     "decoder.init_args.extra[1][0]"),
    ("weights_outside", "selector/frame_selection.json", ("weights",), lambda m: "../../model.safetensors", "weights"),
    ("training_optimizer", "training.json", ("hyper_parameters", "selector_optimizer"), _system,
     "hyper_parameters.selector_optimizer.class_path"),
    ("model_config_auto_map", "config.json", ("auto_map",), lambda m: {"AutoModel": _mod()}, "auto_map.AutoModel"),
    ("adapter_remote_code", "adapter_config.json", ("trust_remote_code",), lambda m: True, "trust_remote_code"),
    ("selector_config", "selector/config.json", ("__class__",), lambda m: _mod(), "__class__"),
]  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_model_dir, synthetic):
    """A 1-step smoke_rl run (importance model): its checkpoint and export, and the fit arguments that made them."""
    tmp = tmp_path_factory.mktemp("hostile-base")
    args = fit_args("smoke_rl.yaml", tmp, tiny_model_dir, synthetic, "--trainer.max_steps", "1",
                    "--trainer.limit_val_batches", "0")  # fmt: skip
    cli_main(["fit", *args])
    ckpt = tmp / "ckpt" / "last.ckpt"
    export_main(["--ckpt", str(ckpt), "--output", str(tmp / "export")])
    return ckpt, tmp / "export", args


@pytest.fixture(scope="module")
def hostile_checkpoints(base, marker, tmp_path_factory):
    """Case name to (a rewritten copy of the base checkpoint, the file and key path its refusal must name)."""
    ckpt, _, _ = base
    folder = tmp_path_factory.mktemp("hostile-ckpt")
    clean = torch.load(ckpt, weights_only=True)
    corpus = {}
    for case, where, value, key in CHECKPOINT_CASES:
        checkpoint = copy.deepcopy(clean)
        _put(checkpoint, where, value(marker))
        torch.save(checkpoint, folder / f"{case}.ckpt")  # tensors, dicts and strings: it passes weights_only
        corpus[case] = (folder / f"{case}.ckpt", f"{case}.ckpt: refusing {key} = ")
    return corpus


@pytest.fixture(scope="module")
def hostile_exports(base, marker, tmp_path_factory):
    """Case name to (a rewritten copy of the base export folder, the file and key path its refusal must name)."""
    _, export, _ = base
    folder = tmp_path_factory.mktemp("hostile-export")
    corpus = {}
    for case, file, where, value, key in EXPORT_CASES:
        copy_ = shutil.copytree(export, folder / case)
        content = json.loads((copy_ / file).read_text()) if (copy_ / file).is_file() else {}
        if file == "selector/frame_selection.json" and case == "selector_spec":
            content["importance_model"] = False  # the selector spec is what gets built
        _put(content, where, value(marker))
        (copy_ / file).write_text(json.dumps(content))
        corpus[case] = (copy_, f"{file}: refusing {key} = ")
    return corpus


def refuses(call, capsys, *expected: str) -> str:
    """Runs ``call``, which must refuse with a LoadError or a non-zero exit whose message holds ``expected``."""
    try:
        result = call()
    except LoadError as err:
        message = str(err)
    except SystemExit as err:
        assert err.code not in (0, None), f"exit {err.code}"
        message = capsys.readouterr().err
    else:
        pytest.fail(f"loaded, returned {result!r}")
    for text in expected:
        assert text in message, message
    return message


# --------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("case", [c[0] for c in CHECKPOINT_CASES])
def test_load_trained_refuses_every_hostile_checkpoint_and_names_the_key(case, hostile_checkpoints, capsys):
    path, key = hostile_checkpoints[case]
    refuses(lambda: load_trained(path), capsys, str(path), key)
    refuses(lambda: load_selector(path), capsys, key)
    refuses(lambda: TrainedSelector(source=str(path)), capsys, key)


@pytest.mark.parametrize("case", [c[0] for c in CHECKPOINT_CASES])
def test_select_caption_and_export_refuse_every_hostile_checkpoint(case, hostile_checkpoints, tmp_path, capsys):
    path, key = hostile_checkpoints[case]
    video = tmp_path / "a.mp4"  # never opened: loading comes first
    video.write_bytes(b"")
    refuses(lambda: select_main(["--video", str(video), "--from", str(path), "--output", str(tmp_path / "s")]), capsys, key)
    refuses(lambda: caption_main(["--video", str(video), "--from", str(path), "--output", str(tmp_path / "c")]), capsys, key)
    refuses(lambda: export_main(["--ckpt", str(path), "--output", str(tmp_path / "e")]), capsys, key)
    assert not any((tmp_path / name).exists() for name in ("s", "c", "e"))


@pytest.mark.parametrize("case", FEW)
def test_evaluate_refuses_a_hostile_checkpoint_before_building_the_model(
    case, hostile_checkpoints, tmp_path, tiny_model_dir, synthetic, capsys
):
    path, key = hostile_checkpoints[case]
    _, paths, _ = synthetic
    sets = [f"data.{split}_file={paths[split]}" for split in ("train", "val", "test")]
    sets += [f"data.cache_dir={tmp_path / 'cache'}", f"model.init_args.encoder.init_args.model_name_or_path={tiny_model_dir}"]
    refuses(lambda: evaluate_main(["--config", str(ROOT / "configs" / "smoke_rl.yaml"), "--ckpt", str(path),
                                   "--selectors", "learned", "--budgets", "2", "--split", "val", "--max_videos", "1",
                                   "--output", str(tmp_path / "eval"), *as_overrides(sets)]), capsys, key)  # fmt: skip
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("command", ["fit", "validate", "predict"])
@pytest.mark.parametrize("case", FEW)
def test_lightning_commands_refuse_a_hostile_ckpt_path_before_merging_its_hparams(
    command, case, hostile_checkpoints, base, capsys
):
    path, key = hostile_checkpoints[case]
    _, _, args = base
    refuses(lambda: cli_main([command, *args, "--ckpt_path", str(path)]), capsys, key)


def test_a_config_that_names_a_trained_selector_with_a_hostile_source_is_refused(
    hostile_checkpoints, hostile_exports, tmp_path, tiny_model_dir, synthetic, capsys
):
    for source, key in (hostile_checkpoints["optimizer_system"], hostile_exports["decoder_spec"]):
        spec = json.dumps({"class_path": "trainer.loading.TrainedSelector", "init_args": {"source": str(source)}})
        args = fit_args("smoke.yaml", tmp_path, tiny_model_dir, synthetic, "--model.init_args.selector", spec)
        refuses(lambda: cli_main(args, run=False), capsys, key)


# --------------------------------------------------------------------------------------- exports and the Hub
@pytest.mark.parametrize("case", [c[0] for c in EXPORT_CASES])
def test_every_hostile_export_folder_and_hub_snapshot_is_refused(case, hostile_exports, tmp_path, monkeypatch, capsys):
    folder, key = hostile_exports[case]
    refuses(lambda: load_trained(folder), capsys, key)
    refuses(lambda: TrainedSelector(source=str(folder)), capsys, key)
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda repo_id: str(folder))
    refuses(lambda: load_selector(HUB_ID), capsys, key)
    video = tmp_path / "a.mp4"
    video.write_bytes(b"")
    for main in (select_main, caption_main):
        refuses(lambda: main(["--video", str(video), "--from", HUB_ID, "--output", str(tmp_path / "out")]), capsys, key)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------- the rule itself
def test_the_walk_decides_without_importing_and_lets_what_the_project_records_through(base, marker):
    ckpt, export, _ = base
    # What fit and export record passes: project classes, torch.optim classes, Lightning's _instantiator.
    check_recorded({"hyper_parameters": torch.load(ckpt, weights_only=True)["hyper_parameters"]}, "base")
    for file in ("training.json", "selector/config.json"):  # read as plain values: file names such as last.ckpt pass
        check_recorded({**json.loads((export / file).read_text()), "checkpoint": "last.ckpt"}, file, parsed=False)
    with pytest.raises(LoadError, match=r"checkpoint = 'last\.ckpt'"):  # where jsonargparse reads it, it could import
        check_recorded({"checkpoint": "last.ckpt"}, "parsed")
    for typed in ({"__class__": _mod()}, {"auto_map": {"AutoModel": _mod()}}, {"x": {"class_path": "last.ckpt"}}):
        with pytest.raises(LoadError, match="refusing"):
            check_recorded(typed, "read as plain values", parsed=False)
    check_recorded({"lr_scheduler": {"class_path": "trainer.schedules.WarmupCosine"},
                    "optimizer": {"class_path": "torch.optim.SGD"}, "plateau": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                    "model_name_or_path": "HuggingFaceTB/SmolVLM2-256M-Video-Instruct", "version": "5.25.0"}, "legit")  # fmt: skip
    refused = {
        "torch.optim.Optimizer.zero_grad": "a method, not a class",
        "torch.load": "torch outside torch.optim",
        "torch.optim.lr_scheduler.warnings": "a module inside torch.optim",
        "trainer.tools.export.push_folder": "a project function, not a class",
        "models.nowhere.Foo": "a project path that names nothing",
        "lightning.pytorch.cli.instantiate_module": "Lightning's instantiator outside _instantiator",
        _mod(): "a module that is on sys.path but not imported",
    }
    for value, why in refused.items():
        with pytest.raises(LoadError, match=r"x\.class_path"):
            check_recorded({"x": {"class_path": value}}, why)
    assert MARKER_MODULE not in sys.modules


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_what_every_config_records_passes_the_check(config):
    """A run of any config records its model section as hyperparameters (class paths and init args): all pass."""
    model = written_config(ROOT / "configs" / config)["model"]
    check_recorded({"hyper_parameters": {"_class_path": model["class_path"], **model.get("init_args", {}),
                                         "_instantiator": "lightning.pytorch.cli.instantiate_module"}}, config)  # fmt: skip


def test_a_users_own_config_may_name_any_class_but_its_checkpoint_records_data(
    tmp_path, tiny_model_dir, synthetic, monkeypatch, capsys
):
    """The command line names an optimizer outside the allow-list: fit runs it (the user's choice); the
    checkpoint it writes records that name, and loading it is refused like any other recorded name,
    except by ``fit --ckpt_path`` whose own command line names that class again (resuming one's own run)."""
    (tmp_path / "user_optim_xyz.py").write_text("import torch\n\n\nclass Adam(torch.optim.AdamW):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    optimizer = json.dumps({"class_path": "user_optim_xyz.Adam", "init_args": {"lr": 0.001}})
    args = fit_args("smoke_rl.yaml", tmp_path, tiny_model_dir, synthetic, "--trainer.limit_val_batches", "0")
    cli = cli_main(["fit", *args, "--trainer.max_steps", "1", "--model.init_args.selector_optimizer", optimizer])
    assert type(cli.trainer.optimizers[0]).__name__ == "Adam" and cli.trainer.global_step == 1
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    key = "hyper_parameters.selector_optimizer.class_path = 'user_optim_xyz.Adam'"
    refuses(lambda: load_trained(ckpt), capsys, key)
    refuses(lambda: cli_main(["fit", *args, "--trainer.max_steps", "2", "--ckpt_path", str(ckpt)]), capsys, key)
    resumed = cli_main(["fit", *args, "--trainer.max_steps", "2", "--model.init_args.selector_optimizer", optimizer,
                        "--ckpt_path", str(ckpt)])  # fmt: skip
    assert type(resumed.trainer.optimizers[0]).__name__ == "Adam" and resumed.trainer.global_step == 2
    sys.modules.pop("user_optim_xyz")


@pytest.mark.slow
def test_the_command_line_says_why_and_exits_non_zero(hostile_checkpoints, marker, tmp_path):
    """``python -m trainer`` itself: one subprocess, with the marker module importable in it too."""
    path, key = hostile_checkpoints["optimizer_as_string"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(marker), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "trainer", "export", "--ckpt", str(path), "--output",
                           str(tmp_path / "e")], capture_output=True, text=True, env=env, cwd=ROOT)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert key in done.stderr and "Traceback" not in done.stderr
