"""One command line: every ``python -m trainer`` command is listed by ``--help``, parses ``fit``'s
syntax, takes ``--config`` and ``--print_config``, and the old ``--set`` says what replaced it."""

import importlib
import os
import subprocess
import sys

import pytest
import yaml

from helpers import ROOT
from trainer.__main__ import COMMANDS, run

CONFIGS = ROOT / "configs"
TOOLS = sorted(name for name, (module, _) in COMMANDS.items() if module is not None)
#: The commands whose --config is a training config (fit's files), and the one they need to parse.
TRAINING = {"evaluate": str(CONFIGS / "smoke.yaml"), "cache": str(CONFIGS / "smoke.yaml")}


def _main(name):
    return importlib.import_module(COMMANDS[name][0]).main


def printed_config(name, argv, capsys) -> dict:
    """The YAML ``python -m trainer NAME ARGV --print_config`` prints, parsed; it exits 0."""
    with pytest.raises(SystemExit) as done:
        _main(name)([*argv, "--print_config"])
    assert done.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_help_lists_every_command_and_every_listed_command_runs_its_module(capsys):
    assert run(["--help"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)
    assert {"fit", "evaluate", "score", "select", "caption", "export", "cache", "reproduce"} <= set(listed)
    for name in TOOLS:
        assert callable(_main(name)), name
    assert run(["no_such_command"]) == 2 and "unknown command 'no_such_command'" in capsys.readouterr().err


def test_python_m_trainer_help_as_a_process():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "trainer", "--help"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0
    assert all(f"  {name} " in done.stdout for name in COMMANDS), done.stdout


@pytest.mark.parametrize("name", TOOLS)
def test_every_command_prints_its_config_and_reads_it_back(name, tmp_path, capsys):
    base = ["--config", TRAINING[name]] if name in TRAINING else []
    first = printed_config(name, base, capsys)
    assert isinstance(first, dict) and first, name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(first))
    assert printed_config(name, ["--config", str(path)], capsys) == first


def test_training_commands_take_fits_overrides_and_their_options_from_the_same_file(tmp_path, capsys):
    printed = printed_config("evaluate", ["--config", TRAINING["evaluate"], "--data.fps", "3", "--budgets", "2", "4",
                                          "--max_videos", "5"], capsys)  # fmt: skip
    assert printed["data"]["fps"] == 3.0 and printed["budgets"] == [2, 4] and printed["max_videos"] == 5
    assert printed["model"]["class_path"].endswith("DenseCaptioner")  # smoke.yaml's, composed from its bases
    # evaluate's own options in the training config's file, the command line after it winning.
    own = tmp_path / "eval.yaml"
    own.write_text("config: [" + TRAINING["evaluate"] + "]\nbudgets: [8]\nselectors: [uniform, xcorr]\nseed: 3\n")
    printed = printed_config("evaluate", ["--config", str(own), "--seed", "4"], capsys)
    assert (printed["budgets"], printed["selectors"], printed["seed"]) == ([8], ["uniform", "xcorr"], 4)
    assert printed["data"]["fps"] != 3.0
    printed = printed_config("cache", ["--config", TRAINING["cache"], "--data.frame_cache", "true", "--splits", "val"],
                             capsys)  # fmt: skip
    assert printed["data"]["frame_cache"] is True and printed["splits"] == ["val"]


def test_the_old_dashed_spelling_is_an_alias_and_set_names_its_replacement(capsys):
    dashed = printed_config("score", ["--pred", "a.json", "--ref", "b.json", "--max-proposals", "7"], capsys)
    plain = printed_config("score", ["--pred", "a.json", "--ref", "b.json", "--max_proposals", "7"], capsys)
    assert dashed == plain and plain["max_proposals"] == 7
    for name in ("evaluate", "cache"):
        with pytest.raises(SystemExit) as refused:
            _main(name)(["--config", TRAINING[name], "--set", "data.fps=1", "data.frame_size=64"])
        assert refused.value.code == 2
        assert "--data.fps 1 --data.frame_size 64" in capsys.readouterr().err


def test_a_commands_config_file_composes_like_fits(tmp_path, capsys):
    base = tmp_path / "base.yaml"
    base.write_text("k: 3\nfps: 2.0\n")
    mine = tmp_path / "mine.yaml"
    mine.write_text("config: [base.yaml]\nk: 5\n")
    printed = printed_config("select", ["--config", str(mine)], capsys)
    assert (printed["k"], printed["fps"]) == (5, 2.0)  # the file's own value wins; the base's others stay
    assert printed_config("select", ["--config", str(mine), "-k", "6"], capsys)["k"] == 6
