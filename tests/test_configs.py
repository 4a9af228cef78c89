"""Config composition: ``config: [bases...]`` in a file is repeated ``--config``."""

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from trainer.__main__ import config_files, main, with_included_configs

ROOT = Path(__file__).parents[1]


def _printed(args: list[str]) -> dict:
    """``fit ARGS --print_config``, parsed back."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        main(["fit", *args, "--print_config"])
    assert info.value.code in (0, None)
    return yaml.safe_load(out.getvalue())


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
    assert printed["trainer"]["logger"]["init_args"]["name"] == "smoke"
    assert printed == _printed(["--config", str(smoke), "--config", str(tmp_path / "base.yaml"),
                                "--trainer.max_epochs", "9"])  # fmt: skip
