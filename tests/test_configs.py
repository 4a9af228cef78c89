"""Config composition: ``config: [bases...]`` in a file, repeated ``--config``, and every combination
that the docs (README.md and each folder's Markdown, ``helpers.DOCS``) and the base files name parses."""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

from helpers import DOCS
from trainer.__main__ import config_files, main, with_included_configs

ROOT = Path(__file__).parents[1]
TOP_LEVEL = sorted((ROOT / "configs").glob("*.yaml"))
BASES = sorted((ROOT / "configs" / "base").glob("*.yaml"))


def _printed(args: list[str]) -> dict:
    """``fit ARGS --print_config``, parsed back."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        main(["fit", *args, "--print_config"])
    assert info.value.code in (0, None)
    return yaml.safe_load(out.getvalue())


def _fit_args(command: str) -> list[str]:
    """The arguments after ``python -m trainer fit`` of a documented command."""
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "trainer", "fit"], command
    return words[4:]


def test_listed_configs_come_first_in_order_and_relative_to_the_file(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "c.yaml").write_text("seed_everything: 3\n")
    (tmp_path / "base" / "b.yaml").write_text("config: [c.yaml]\nseed_everything: 2\n")
    (tmp_path / "d.yaml").write_text("seed_everything: 4\n")
    (tmp_path / "a.yaml").write_text("config: [base/b.yaml, d.yaml]\nseed_everything: 1\n")
    a, b, c, d = (str(tmp_path / n) for n in ("a.yaml", "base/b.yaml", "base/c.yaml", "d.yaml"))
    assert config_files(a) == [c, b, d, a]
    assert with_included_configs(["fit", "--config", a, "--trainer.max_epochs", "2"]) == [
        "fit", "--config", c, "--config", b, "--config", d, "--config", a, "--trainer.max_epochs", "2",
    ]  # fmt: skip
    assert with_included_configs([f"--config={a}", "-c", d]) == [*(f"--config={p}" for p in (c, b, d, a)), "-c", d]
    # Not a file: a YAML string (or a missing file) goes to jsonargparse as it is.
    assert with_included_configs(["--config", "{seed_everything: 5}"]) == ["--config", "{seed_everything: 5}"]


def test_a_config_listing_itself_or_a_single_path_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("config: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("config: [a.yaml]\n")
    with pytest.raises(ValueError, match="loop"):
        config_files(str(tmp_path / "a.yaml"))
    # jsonargparse would read a single path itself, replacing whole blocks: only a list is composed.
    (tmp_path / "c.yaml").write_text("config: a.yaml\n")
    with pytest.raises(ValueError, match="list of paths"):
        config_files(str(tmp_path / "c.yaml"))


def test_a_files_own_block_overrides_its_bases_key_by_key(tmp_path):
    """``config: [A, B]`` then ``trainer: {max_epochs: 9}`` is ``--config A --config B --config FILE``:
    the bases' other trainer keys stay (jsonargparse's own single-path include would drop them)."""
    smoke = ROOT / "configs" / "smoke.yaml"
    (tmp_path / "base.yaml").write_text("trainer:\n  max_epochs: 3\n  log_every_n_steps: 11\n")
    composed = tmp_path / "composed.yaml"
    composed.write_text(f"config: [{smoke}, base.yaml]\ntrainer:\n  max_epochs: 9\n")
    printed = _printed(["--config", str(composed)])
    assert printed["trainer"]["max_epochs"] == 9 and printed["trainer"]["log_every_n_steps"] == 11
    assert printed["trainer"]["logger"]["init_args"]["name"] == "smoke"  # from configs/base/trainer_cpu.yaml + smoke
    assert printed == _printed(["--config", str(smoke), "--config", str(tmp_path / "base.yaml"),
                                "--trainer.max_epochs", "9"])  # fmt: skip


@pytest.mark.parametrize("config", TOP_LEVEL, ids=lambda p: p.name)
def test_top_level_configs_list_only_bases_and_bases_list_nothing(config):
    """One level: a top-level config is its bases (configs/base/, in order) and its own keys."""
    listed = yaml.safe_load(config.read_text()).get("config", [])
    assert listed, f"{config.name} lists no bases"
    for entry in listed:
        base = (config.parent / entry).resolve()
        assert base.parent == ROOT / "configs" / "base" and base.is_file(), entry
        assert "config" not in yaml.safe_load(base.read_text()), f"{entry} lists further configs"


@pytest.mark.parametrize("base", BASES, ids=lambda p: p.name)
def test_every_base_opens_with_a_command_that_uses_it_and_parses(base):
    first = base.read_text().splitlines()[0]
    assert first.startswith("# python -m trainer fit --config "), first
    args = _fit_args(first[2:])
    assert str(base.relative_to(ROOT)) in args[1::2], "the command should use this base"
    _printed([str(ROOT / a) if a.endswith(".yaml") else a for a in args])


def _readme_compositions(docs: list[Path] = DOCS) -> list[str]:
    """The docs' ``python -m trainer fit`` commands with more than one ``--config`` (wherever they moved)."""
    commands = [c for doc in docs for c in re.findall(r"python -m trainer fit(?: --config \S+)+", doc.read_text())]
    return sorted({c.strip("`") for c in commands if c.count("--config") > 1})


def test_readme_names_compositions():
    assert len(_readme_compositions()) >= 4  # configs/README.md
    assert _readme_compositions([ROOT / "configs" / "README.md"])
    assert _readme_compositions([ROOT / "README.md"])


@pytest.mark.parametrize("command", _readme_compositions())
def test_every_composition_the_readme_names_parses(command):
    args = [str(ROOT / a) if a.endswith(".yaml") else a for a in _fit_args(command)]
    printed = _printed(args)
    # The last file's own keys win: e.g. a vlm_* base swaps the VLM of the config before it.
    last = yaml.safe_load(Path(args[-1]).read_text())
    vlm = last.get("model", {}).get("init_args", {}).get("vlm")
    if isinstance(vlm, str):  # a part, read in its place
        vlm = yaml.safe_load((Path(args[-1]).parent / vlm).read_text())
    if vlm:
        wanted = vlm["init_args"]["model_name_or_path"]
        assert printed["model"]["init_args"]["vlm"]["init_args"]["model_name_or_path"] == wanted


def test_a_top_level_config_is_its_bases_stacked_on_the_command_line():
    """README: smolvlm2_500m.yaml is four bases and its run names."""
    bases = ["trainer_gpu", "data_activitynet_style", "captioner", "vlm_smolvlm2_500m"]
    stacked = _printed([arg for b in bases for arg in ("--config", str(ROOT / "configs" / "base" / f"{b}.yaml"))])
    config = _printed(["--config", str(ROOT / "configs" / "smolvlm2_500m.yaml")])
    assert config["trainer"]["logger"]["init_args"].pop("name") == "smolvlm2_500m"
    assert config["checkpoint"].pop("dirpath") == "checkpoints/smolvlm2_500m"
    assert config["predictions"].pop("output") == "outputs/smolvlm2_500m_predictions.json"
    for key in (("trainer", "logger", "init_args", "name"), ("checkpoint", "dirpath"), ("predictions", "output")):
        branch = stacked
        for k in key[:-1]:
            branch = branch[k]
        branch.pop(key[-1])
    assert stacked == config
