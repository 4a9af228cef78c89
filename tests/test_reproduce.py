"""``python -m trainer reproduce``: a table regenerated twice is the same, RESULTS.md blocks, several seeds,
interrupted runs, tables that evaluate another table's training run.

The ``tiny`` table trains and evaluates for real (two fresh runs, ~45 s each on 2 CPU cores, in
subprocesses that inherit ``HF_HUB_OFFLINE=1`` from conftest); the CLI paths that need no new
numbers reuse the first run's folder. Training a second seed for real is the slow test.
"""

import dataclasses
import json
import os
import re
import shutil
import statistics
from pathlib import Path

import pytest
import torch

from trainer.evaluation import reproduce
from trainer.evaluation.reproduce import TABLES, TableSpec, body_of, main

ROOT = Path(__file__).parents[1]
RESULTS_TEXT = "# project\n\nSome text.\n\n<!-- reproduce:tiny -->\nan old table\n<!-- /reproduce:tiny -->\n\nMore text.\n"


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the specs name their configs relative to the repository root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(root, the results file, first run, second run): the first ran with ``--write``, the second with ``--check``."""
    root = tmp_path_factory.mktemp("reproduce")
    readme = root / "RESULTS.md"
    readme.write_text(RESULTS_TEXT)
    first, second = root / "first", root / "second"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert main(["tiny", "--output", str(first), "--readme", str(readme), "--write"]) == 0
        # A fresh regeneration whose body must equal the block just written: exit 0.
        assert main(["tiny", "--output", str(second), "--readme", str(readme), "--check"]) == 0
    finally:
        os.chdir(cwd)
    return root, readme, first, second


def _rows(body: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in body.splitlines() if line.startswith("| ")]


def test_tiny_table_is_regenerated_bit_exactly(tiny):
    _, _, first, second = tiny
    one, two = (body_of((run / "table.md").read_text()) for run in (first, second))
    assert one.encode() == two.encode()
    assert "ms_per_video" not in one and "frames_per_s" not in one  # timings never enter a body
    summary = [r for r in _rows(one) if r[0] in TABLES["tiny"].selectors]
    expected = {(s, k) for s in ("learned", "uniform", "random", "xcorr") for k in ("2", "4")}
    assert {(r[0], r[1]) for r in summary} == expected
    for row in summary:
        assert row[2] == "3"  # test videos
        assert all(re.fullmatch(r"[01]\.\d{3}", v) and 0 <= float(v) <= 1 for v in row[3:]), row
    # Sorted by K, then selector.
    assert [(int(r[1]), r[0]) for r in summary] == sorted((int(r[1]), r[0]) for r in summary)
    assert "| K | vs | recall difference [95% CI] | verdict |" in one
    # The header says what ran where.
    text = (first / "table.md").read_text()
    for needle in ("training seed: 0", "UTC", "torch ", "device: CPU", "wall time: fit ", "python -m trainer fit ",
                   "python -m trainer evaluate ", "--seed_everything 0", str(first / "seed0" / "checkpoints")):
        assert needle in text, needle
    # The best checkpoint, not last.ckpt, was evaluated.
    record = json.loads((first / "seed0" / "reproduce.json").read_text())
    assert Path(record["ckpt"]).name != "last.ckpt" and Path(record["ckpt"]).parent == first / "seed0" / "checkpoints"
    assert list((first / "seed0" / "logs").glob("*/version_*/metrics.csv"))  # logs stay in the run folder


def test_write_then_check_and_a_changed_number(tiny, tmp_path, monkeypatch, capsys):
    root, readme, first, _ = tiny
    text = readme.read_text()
    start, end = text.index("<!-- reproduce:tiny -->"), text.index("<!-- /reproduce:tiny -->")
    assert text[:start] == RESULTS_TEXT[: RESULTS_TEXT.index("<!-- reproduce:tiny -->")]
    assert text[end:] == RESULTS_TEXT[RESULTS_TEXT.index("<!-- /reproduce:tiny -->"):]
    block = text[start:end]
    assert "\n*Regenerate with `python -m trainer reproduce tiny --seed 0 --write`" in block
    assert body_of(block) == body_of((first / "table.md").read_text())

    # The CLI's check path against the first run's numbers (a regeneration gives the same: see above).
    real = reproduce.reproduce
    monkeypatch.setattr(reproduce, "reproduce", lambda spec, seeds, output, **kw: real(spec, seeds, first, **kw))
    edited = tmp_path / "RESULTS.md"
    line = next(x for x in block.splitlines() if x.startswith("| learned | 4 |"))
    changed = line.replace(line.split("|")[4], " 0.123 ")
    assert changed != line
    edited.write_text(text.replace(line, changed))
    assert main(["tiny", "--readme", str(edited), "--check", "--output", str(tmp_path / "c")]) == 1
    out = capsys.readouterr().out
    assert f"-{changed}\n" in out and f"+{line}\n" in out
    # Header edits (date, machine, times) are not compared.
    edited.write_text(text.replace("UTC", "UTC, edited by hand"))
    assert main(["tiny", "--readme", str(edited), "--check", "--output", str(tmp_path / "d")]) == 0


def test_the_tables_live_in_results_md_which_is_the_default_file(tmp_path, capsys):
    """Every table but the tests' own ``tiny`` has exactly one block in trainer/evaluation/RESULTS.md, the
    file ``--write`` and ``--check`` use without ``--readme``; README.md, the front door, holds none."""
    assert reproduce.RESULTS == "trainer/evaluation/RESULTS.md"
    for name in TABLES:
        if name != "tiny":
            reproduce.find_block(ROOT / reproduce.RESULTS, name)  # raises unless there is exactly one block
    assert not re.search(r"<!-- /?reproduce:[a-z_0-9]+ -->", (ROOT / "README.md").read_text())
    # Without --readme the command looks in RESULTS.md (which has no block for tiny) before running anything.
    assert main(["tiny", "--write", "--output", str(tmp_path / "out")]) == 2
    assert "trainer/evaluation/RESULTS.md needs exactly one block '<!-- reproduce:tiny -->'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_markers_and_unknown_table_are_clear_errors(tmp_path, capsys):
    readme = tmp_path / "RESULTS.md"
    readme.write_text("# no markers here\n")
    for mode in ("--write", "--check"):
        assert main(["tiny", "--readme", str(readme), mode, "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert "<!-- reproduce:tiny -->" in err and "<!-- /reproduce:tiny -->" in err
    assert not (tmp_path / "out").exists()  # nothing ran
    with pytest.raises(SystemExit) as exit_:
        main(["no_such_table"])
    assert exit_.value.code == 2
    known = "smoke_rl, tiny, smoke_budget, wide_budget, wide_heldout, tiny_reader, synthetic_joint"
    assert f"unknown table 'no_such_table'; known tables: {known}" in capsys.readouterr().err
    assert main(["--list"]) == 0
    assert "smoke_rl" in capsys.readouterr().out


def test_a_killed_run_continues_where_it_stopped(tiny, tmp_path, monkeypatch):
    """A killed evaluate continues with --resume; a killed fit continues from last.ckpt when that
    resumes bit-exactly (tests/test_exact_resume.py) and starts over when it does not."""
    _, _, first, _ = tiny
    spec = TABLES["tiny"]
    ran: list[list[str]] = []
    monkeypatch.setattr(reproduce, "run_step", lambda name, command: ran.append(command) or 1.0)
    # Killed during evaluate: the fit is recorded, the rows are partly written, no tables yet.
    run = tmp_path / "seed0"
    shutil.copytree(first / "seed0", run)
    record = json.loads((run / "reproduce.json").read_text())
    record["steps"] = [s for s in record["steps"] if s["name"] == "fit"]
    (run / "reproduce.json").write_text(json.dumps(record))
    (run / "eval" / "results.json").unlink()
    with pytest.raises(reproduce.ReproduceError, match="evaluate ended without"):  # the stub wrote nothing
        reproduce.run_seed(spec, 0, run)
    assert [c[3] for c in ran] == ["evaluate"] and "--resume" in ran[0]

    # Killed during fit; last.ckpt was written between steps (a regular save, SIGTERM): it continues.
    ran.clear()
    record["steps"] = []
    (run / "reproduce.json").write_text(json.dumps(record))
    last = run / "checkpoints" / "last.ckpt"
    with pytest.raises(reproduce.ReproduceError, match="evaluate ended without"):  # the stubs ran nothing
        reproduce.run_seed(spec, 0, run)
    assert [c[3] for c in ran] == ["fit", "evaluate"]
    assert ran[0] == reproduce.fit_command(spec, 0, run) + ["--ckpt_path", str(last)]
    assert [s["name"] for s in json.loads((run / "reproduce.json").read_text())["steps"]] == ["fit (resumed)", "evaluate"]

    # Killed during fit by an exception inside a step (Ctrl-C, a crash): last.ckpt says it would not
    # resume bit-exactly, so the fit starts over.
    ran.clear()
    (run / "reproduce.json").write_text(json.dumps(record))
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["callbacks"]["RngState"]["exact"] = False
    torch.save(checkpoint, last)
    with pytest.raises(reproduce.ReproduceError, match="last.ckpt not found"):  # the stub trained nothing
        reproduce.run_seed(spec, 0, run)
    assert [c[3] for c in ran] == ["fit"] and "--ckpt_path" not in ran[0]
    assert not any((run / name).exists() for name in ("checkpoints", "logs", "eval"))

    # Another table's or seed's folder is refused, and so is a folder with files but no record.
    with pytest.raises(reproduce.ReproduceError, match="other settings"):
        reproduce.run_seed(spec, 1, run)
    (run / "reproduce.json").unlink()
    (run / "checkpoints").mkdir()
    with pytest.raises(reproduce.ReproduceError, match="holds files but no reproduce.json"):
        reproduce.run_seed(spec, 0, run)
    assert ran == [reproduce.fit_command(spec, 0, run)]  # nothing more ran


# ------------------------------------------------------------------------------- reuse_fit


@pytest.fixture
def tiny_again(monkeypatch) -> TableSpec:
    """A table that evaluates the ``tiny`` table's training run: learned and uniform at K=2."""
    spec = dataclasses.replace(TABLES["tiny"], name="tiny_again", description="tiny's training run at K=2",
                               reuse_fit="tiny", fit_args=(), selectors=("learned", "uniform"), budgets=(2,))  # fmt: skip
    monkeypatch.setitem(TABLES, "tiny_again", spec)
    return spec


@pytest.mark.slow  # ~1 min; the next test covers the rule with a stubbed evaluation
def test_a_table_evaluates_another_tables_training_run(tiny, tiny_again, tmp_path, monkeypatch):
    """For real: tiny's finished fit (copied, not evaluated yet) is evaluated by tiny_again, then by tiny itself."""
    _, _, first, _ = tiny
    base = tmp_path / "tiny" / "seed0"  # the default --fit_from: the sibling of --output named after the base
    shutil.copytree(first / "seed0", base, ignore=shutil.ignore_patterns("eval", "table.md"))
    record = json.loads((base / "reproduce.json").read_text())
    (base / "reproduce.json").write_text(json.dumps({**{k: v for k, v in record.items() if k != "ckpt"},
                                                     "steps": [s for s in record["steps"] if s["name"] == "fit"]}))  # fmt: skip
    ran: list[str] = []
    real = reproduce.run_step
    monkeypatch.setattr(reproduce, "run_step", lambda name, command: ran.append(name) or real(name, command))

    assert main(["tiny_again", "--output", str(tmp_path / "tiny_again")]) == 0
    assert ran == ["evaluate"]  # the base run's fit had finished: nothing trains
    again = json.loads((tmp_path / "tiny_again" / "seed0" / "reproduce.json").read_text())
    assert again["fit_from"]["table"] == "tiny" and again["fit_from"]["run"] == str(base)
    assert Path(again["ckpt"]).parent == base / "checkpoints" and Path(again["ckpt"]).name != "last.ckpt"
    assert f"--ckpt {again['ckpt']} " in again["steps"][0]["command"]
    text = (tmp_path / "tiny_again" / "table.md").read_text()
    assert f"training run: table `tiny`'s (`python -m trainer reproduce tiny` trains it; this table evaluates it " \
           f"without training), in `{base}`" in text  # fmt: skip
    assert "wall time: fit (tiny) " in text and "python -m trainer fit " in text  # the base's fit, as it ran

    # The base table evaluates the same checkpoint, and does not train again either.
    ran.clear()
    assert main(["tiny", "--output", str(tmp_path / "tiny")]) == 0
    assert ran == ["evaluate"]
    assert json.loads((base / "reproduce.json").read_text())["ckpt"] == again["ckpt"]
    rows = {name: {(r["selector"], r["K"]): r for r in json.loads((run / "eval" / "results.json").read_text())["summary"]}
            for name, run in (("tiny", base), ("again", tmp_path / "tiny_again" / "seed0"))}  # fmt: skip
    for key in (("learned", 2), ("uniform", 2)):
        assert rows["again"][key]["recall"] == rows["tiny"][key]["recall"], key


def test_reuse_fit_trains_the_base_run_once_and_refuses_one_of_other_settings(tiny, tiny_again, tmp_path,
                                                                               monkeypatch, capsys):  # fmt: skip
    """Stubbed steps: a fit "trains" by copying tiny's checkpoints, an evaluate copies its tables."""
    _, _, first, _ = tiny
    ran: list[list[str]] = []

    def step(name, command):
        ran.append(command)
        flag, source = ("--checkpoint.dirpath", "checkpoints") if name.startswith("fit") else ("--output", "eval")
        shutil.copytree(first / "seed0" / source, command[command.index(flag) + 1])
        return 1.0

    monkeypatch.setattr(reproduce, "run_step", step)
    runs = tmp_path / "runs"
    assert main(["tiny_again", "--output", str(tmp_path / "a"), "--fit_from", str(runs), "--seeds", "2"]) == 0
    fits = [c for c in ran if c[3] == "fit"]
    assert fits == [reproduce.fit_command(TABLES["tiny"], seed, runs / f"seed{seed}") for seed in (0, 1)]
    for seed in (0, 1):
        base = json.loads((runs / f"seed{seed}" / "reproduce.json").read_text())
        assert (base["table"], base["seed"], [s["name"] for s in base["steps"]]) == ("tiny", seed, ["fit"])
        again = json.loads((tmp_path / "a" / f"seed{seed}" / "reproduce.json").read_text())
        assert Path(again["ckpt"]).parent == runs / f"seed{seed}" / "checkpoints"
    assert "training run: table `tiny`'s" in (tmp_path / "a" / "table.md").read_text()

    # Another table on the same runs trains nothing; the base table itself neither.
    ran.clear()
    assert main(["tiny_again", "--output", str(tmp_path / "b"), "--fit_from", str(runs), "--seeds", "2"]) == 0
    assert main(["tiny", "--output", str(runs), "--seeds", "2"]) == 0
    assert [c[3] for c in ran] == ["evaluate"] * 4

    # A base folder holding a run of other settings is refused before anything runs.
    ran.clear()
    path = runs / "seed0" / "reproduce.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "spec": {**reproduce._spec_json(TABLES["tiny"]),
                                                                          "fit_args": ["--trainer.max_epochs", "3"]}}))  # fmt: skip
    assert main(["tiny_again", "--output", str(tmp_path / "c"), "--fit_from", str(runs)]) == 2
    assert "holds a run of other settings (its spec differ" in capsys.readouterr().err and ran == []
    # --check trains the base run afresh too: a base folder with runs in it is refused.
    readme = tmp_path / "RESULTS.md"
    readme.write_text(RESULTS_TEXT.replace("reproduce:tiny", "reproduce:tiny_again"))
    assert main(["tiny_again", "--check", "--readme", str(readme), "--output", str(tmp_path / "d"),
                 "--fit_from", str(runs)]) == 2  # fmt: skip
    assert f"{runs} is not empty" in capsys.readouterr().err and ran == []
    # --fit_from belongs to tables that reuse a run; reuse_fit must name a table with the same model.
    with pytest.raises(SystemExit):
        main(["tiny", "--fit_from", str(runs)])
    broken = dataclasses.replace(tiny_again, config="configs/smoke_budget.yaml")
    with pytest.raises(ValueError, match="config must be tiny's"):
        reproduce.base_spec(broken)
    with pytest.raises(ValueError, match="no fit_args"):
        dataclasses.replace(tiny_again, fit_args=("--trainer.max_epochs", "1"))


def test_wide_heldout_evaluates_wide_budgets_run_on_the_held_out_family(tmp_path, monkeypatch):
    """A dry look at the commands, with a fake finished wide_budget run (training it takes ~10 min)."""
    held, wide = TABLES["wide_heldout"], TABLES["wide_budget"]
    assert reproduce.base_spec(held) is wide and reproduce.base_spec(wide) is None
    base = tmp_path / "wide_budget" / "seed0"
    (base / "checkpoints").mkdir(parents=True)
    best = base / "checkpoints" / "epoch=14-step=210.ckpt"
    best.write_bytes(b"")
    state = {"best_model_path": f"/elsewhere/{best.name}"}
    torch.save({"callbacks": {"ModelCheckpoint{'monitor': 'val/recall_mean'}": state}}, base / "checkpoints" / "last.ckpt")
    fit = {"name": "fit", "command": "python -m trainer fit --config configs/wide_budget.yaml", "seconds": 600.0,
           "finished": "2026-01-01 00:00 UTC", "machine": reproduce.machine()}  # fmt: skip
    (base / "reproduce.json").write_text(json.dumps({"table": "wide_budget", "seed": 0, "spec": reproduce._spec_json(wide),
                                                     "steps": [fit]}))  # fmt: skip
    ran: list[list[str]] = []
    monkeypatch.setattr(reproduce, "run_step", lambda name, command: ran.append(command) or 1.0)
    assert main(["wide_heldout", "--output", str(tmp_path / "wide_heldout")]) == 2  # the stub evaluated nothing
    assert len(ran) == 1  # wide_budget's fit had finished: only the evaluation ran
    assert ran[0][1:] == [
        "-m", "trainer", "evaluate", "--config", "configs/wide_budget.yaml", "--ckpt", str(best),
        "--selectors", "learned", "xcorr", "pixel_l1", "uniform", "random", "--budgets", "4", "8", "16", "32",
        "--share_decoder", "--split", "train", "--max_videos", "48", "--plot_videos", "2",
        "--data.synthetic", "configs/parts/synthetic_heldout.yaml", "--seed", "0", "--device", "cpu",
        "--output", str(tmp_path / "wide_heldout" / "seed0" / "eval"),
    ]  # fmt: skip
    # What would train wide_budget there; wide_heldout itself never trains.
    assert reproduce.fit_command(wide, 0, base)[1:] == [
        "-m", "trainer", "fit", "--config", "configs/wide_budget.yaml", "--seed_everything", "0",
        "--trainer.accelerator", "cpu", "--checkpoint.dirpath", str(base / "checkpoints"),
        "--trainer.logger.init_args.save_dir", str(base / "logs"),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="does not train"):
        reproduce.fit_command(held, 0, base)
    # The spec's overrides come right after the config, evaluate_args' own after them (a later value wins).
    spec = dataclasses.replace(TABLES["tiny"], evaluate_args=("--data.fps", "1", "--split", "val", "--share_decoder"))
    command = reproduce.evaluate_command(spec, best, tmp_path)
    pairs = [f"{k[2:]}={v}" for k, v in zip(command, command[1:]) if k.startswith(("--data.", "--model."))]
    assert pairs[: len(spec.overrides)] == list(spec.overrides) and pairs[-1] == "data.fps=1"
    assert command[command.index("--split") + 1] == "val" and "--share_decoder" in command
    with pytest.raises(ValueError, match="not --set"):
        dataclasses.replace(TABLES["tiny"], evaluate_args=("--set", "data.fps=1"))

    # The recorded command parses: evaluate rebuilds wide_budget's model on the held-out family's data.
    from trainer.cli_helpers import module_from_config

    at = ran[0].index("--data.synthetic")
    datamodule, module = module_from_config(held.config, None, ran[0][at : at + 2])
    heldout = datamodule.synthetic
    assert (heldout.seed, heldout.num_videos, heldout.event_kinds) == (12, 96, ["blink"])
    assert datamodule.fps == 4.0 and type(module).__name__ == "SelectorModule"  # the rest is wide_budget.yaml's


@pytest.mark.parametrize("name", ["smoke_budget", "wide_budget"])
def test_budget_table_configs_parse_and_train_at_the_tables_budgets(name):
    from trainer.cli_helpers import module_from_config

    spec = TABLES[name]
    _, module = module_from_config(spec.config, None, list(spec.overrides))
    low, high = module.budget_range
    assert low <= min(spec.budgets) and max(spec.budgets) <= high  # the one mask was trained at every K shown


def _check_spread(output: Path, seeds: tuple[int, ...]) -> str:
    """The spread table's means are the means of the seeds' own results; baselines show one value."""
    per_seed = {s: json.loads((output / f"seed{s}" / "eval" / "results.json").read_text())["summary"] for s in seeds}
    body = body_of((output / "table.md").read_text())
    columns = ("recall", "coverage")
    cells = {(r[0], r[1]): dict(zip(columns, r[3:5])) for r in _rows(body) if r[0] in TABLES["tiny"].selectors}
    assert len(cells) == 8
    for (name, k), shown in cells.items():
        for column in columns:
            values = [next(r[column] for r in per_seed[s] if (r["selector"], str(r["K"])) == (name, k)) for s in seeds]
            assert shown[column].split(" ")[0] == f"{statistics.fmean(values):.3f}", (name, k, column)
            if name != "learned":  # baselines do not depend on the training seed: one value
                assert len(set(values)) == 1 and shown[column] == f"{values[0]:.3f}"
            elif len(set(values)) > 1:
                low, high = f"{min(values):.3f}", f"{max(values):.3f}"
                assert shown[column].endswith(f"± {statistics.stdev(values):.3f} [{low}, {high}]")
    header = "| K | best baseline | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | CI > 0 | CI < 0 |"
    assert header in body
    return body


def test_seed_spread_from_finished_seed_folders(tiny, tmp_path, capfd):
    """Fast: seed 1 is seed 0's run with the learned numbers moved, so nothing trains."""
    _, _, first, _ = tiny
    shutil.copytree(first / "seed0", tmp_path / "seed0")
    shutil.copytree(first / "seed0", tmp_path / "seed1")
    record = json.loads((tmp_path / "seed1" / "reproduce.json").read_text())
    (tmp_path / "seed1" / "reproduce.json").write_text(json.dumps({**record, "seed": 1}))
    results = tmp_path / "seed1" / "eval" / "results.json"
    payload = json.loads(results.read_text())
    for row in payload["summary"]:
        if row["selector"] == "learned":
            row["recall"] = row["recall"] / 2
    results.write_text(json.dumps(payload))
    paired = tmp_path / "seed1" / "eval" / "paired" / "results.json"
    payload = json.loads(paired.read_text())
    for row in payload["summary"]:
        row.update(difference=0.25, low=0.125, high=0.5)
    paired.write_text(json.dumps(payload))

    assert main(["tiny", "--output", str(tmp_path), "--seeds", "2"]) == 0
    assert "$ python" not in capfd.readouterr().out
    body = _check_spread(tmp_path, (0, 1))
    assert "| learned | 4 | 3 | " in body and " ± " in body
    paired0 = json.loads((first / "seed0" / "eval" / "paired" / "results.json").read_text())["summary"]
    first_rows = {(p["K"], p["selector"]): p for p in paired0 if p["metric"] == "recall"}
    for row in _rows(body.split("| K | best baseline |")[1]):
        k, best, seed0, seed1, mean, above, below = row
        original = first_rows[(int(k), best)]
        assert seed0 == f"{original['difference']:+.3f}" and seed1 == "+0.250"
        assert mean == f"{(original['difference'] + 0.25) / 2:+.3f}"
        assert above == f"{(original['low'] > 0) + 1} of 2" and below == f"{int(original['high'] < 0)} of 2"


@pytest.mark.slow
def test_seeds_spread_matches_the_seed_runs_and_a_rerun_skips_them(tiny, capfd):
    _, _, first, _ = tiny
    # seed 0 is the fixture's finished run: only seed 1 trains.
    assert main(["tiny", "--output", str(first), "--seeds", "2"]) == 0
    out = capfd.readouterr().out
    assert "seed 0: evaluation finished" in out and "--seed_everything 1" in out and "--seed_everything 0" not in out
    assert sorted(p.name for p in first.glob("seed*")) == ["seed0", "seed1"]
    body = _check_spread(first, (0, 1))

    # A rerun runs nothing: both seeds' evaluations are finished.
    stamps = {p: p.stat().st_mtime_ns for p in first.glob("seed*/eval/results.json")}
    assert main(["tiny", "--output", str(first), "--seeds", "2"]) == 0
    out = capfd.readouterr().out
    assert "seed 0: evaluation finished" in out and "seed 1: evaluation finished" in out and "$ python" not in out
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    assert body_of((first / "table.md").read_text()) == body
