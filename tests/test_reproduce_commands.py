"""``python -m trainer reproduce`` for tables made by their own commands (``CommandTable``): the tiny
reader's reading check regenerated bit-exactly twice, the joint caption-loss table's body and its
``fit`` steps, a step that was cut off, and the errors.

The reader runs for real on 10 short-trained videos (two builds, ~25 s in all on 2 idle CPU cores:
marked slow); a cheap ``json.tool`` step covers the same command flow in the default run.
"""

import csv
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from trainer.evaluation import reproduce, reproduce_tables
from trainer.evaluation.reproduce import TABLES, CommandTable, ReproduceError, body_of, main
from trainer.evaluation.reproduce_tables import Step, joint_body

ROOT = Path(__file__).parents[1]
RESULTS_TEXT = "# project\n\n<!-- reproduce:reader_small -->\nold\n<!-- /reproduce:reader_small -->\n"
SMALL_READER = CommandTable(
    name="reader_small",
    description="the tiny reader on 10 videos, 2 + 2 steps",
    steps=(Step("reader", "models.tiny_reader", ("--output", "{out}", "--seed", "{seed}", "--videos", "10",
                                                 "--single-steps", "2", "--dense-steps", "2")),),  # fmt: skip
    body=reproduce_tables.reader_body,
)


@pytest.fixture
def small_reader(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setitem(TABLES, SMALL_READER.name, SMALL_READER)
    return SMALL_READER


def _rows(body: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in body.splitlines() if line.startswith("| ")]


@pytest.mark.slow  # two reader builds, ~25 s on 2 idle cores; the default run covers the command flow below
def test_reader_table_is_regenerated_bit_exactly_and_a_rerun_skips_its_step(small_reader, tmp_path, capfd):
    readme = tmp_path / "RESULTS.md"
    readme.write_text(RESULTS_TEXT)
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["reader_small", "--output", str(first), "--readme", str(readme), "--write"]) == 0
    assert main(["reader_small", "--output", str(second), "--readme", str(readme), "--check"]) == 0
    one, two = (body_of((run / "table.md").read_text()) for run in (first, second))
    assert one.encode() == two.encode()

    # The body holds the report's numbers, to its 4 decimals.
    report = json.loads((first / "seed0" / "reader" / "reader_report.json").read_text())
    rows = _rows(one)
    assert rows[0] == ["frames (K=8)", "own pixels", "another video's pixels"]
    before, after = report["held_out_before"], report["held_out_after"]
    assert rows[1:] == [
        ["random tiny SmolVLM, uniform", f"{before['uniform_own_pixels']:.4f}", f"{before['uniform_other_pixels']:.4f}"],
        ["reader, uniform", f"{after['uniform_own_pixels']:.4f}", f"{after['uniform_other_pixels']:.4f}"],
        ["reader, event centres + uniform fill", f"{after['events_then_uniform_own_pixels']:.4f}",
         f"{after['events_then_uniform_other_pixels']:.4f}"],
    ]  # fmt: skip
    assert f"on {report['held_out_videos']} held-out videos" in one
    block = readme.read_text()
    assert "*Regenerate with `python -m trainer reproduce reader_small --seed 0 --write`" in block
    assert "python -m models.tiny_reader --output" in block and body_of(block.split("-->", 1)[1]).startswith(one[:40])
    text = (first / "table.md").read_text()
    assert "- seed: 0" in text and "wall time: reader " in text and "UTC" in text

    # A rerun in the same folder reads the finished step back.
    capfd.readouterr()
    assert main(["reader_small", "--output", str(first)]) == 0
    assert "step reader finished" in capfd.readouterr().out



def test_a_step_without_a_recorded_end_starts_over(monkeypatch, tmp_path, capfd):
    """A step's output that the run record does not list as finished (a killed run) is removed and
    the step runs again; finished steps are read back."""
    monkeypatch.chdir(ROOT)
    source = tmp_path / "numbers.json"
    source.write_text('{"value": 0.25}')
    table = CommandTable("copy", "a copy of a JSON file", (Step("copied.json", "json.tool", (str(source), "{out}")),),
                         body=lambda run: f"| value |\n|---|\n| {json.loads((run / 'copied.json').read_text())['value']} |\n")  # fmt: skip
    monkeypatch.setitem(TABLES, "copy", table)
    out = tmp_path / "out"
    assert main(["copy", "--output", str(out)]) == 0
    assert body_of((out / "table.md").read_text()) == "| value |\n|---|\n| 0.25 |\n"
    record_path = out / "seed0" / "reproduce.json"
    record = json.loads(record_path.read_text())
    assert [s["name"] for s in record["steps"]] == ["copied.json"] and "json.tool" in record["steps"][0]["command"]
    capfd.readouterr()
    assert main(["copy", "--output", str(out)]) == 0
    assert "step copied.json finished" in capfd.readouterr().out

    record["steps"] = []  # as if the run was killed before the step's end was recorded
    record_path.write_text(json.dumps(record))
    (out / "seed0" / "copied.json").write_text('{"value": "stale"}')
    assert main(["copy", "--output", str(out)]) == 0
    assert "starting it over" in capfd.readouterr().out
    assert body_of((out / "table.md").read_text()) == "| value |\n|---|\n| 0.25 |\n"
    # Another table's record in the folder is refused, not overwritten.
    monkeypatch.setitem(TABLES, "copy", CommandTable("copy", "other", (Step("other", "json.tool", ()),), body=table.body))
    assert main(["copy", "--output", str(out)]) == 2
    assert "holds a run of other settings" in capfd.readouterr().err


def _write_metrics(step: Path, name: str, rows: list[dict]) -> None:
    folder = step / "logs" / name / "version_0"
    folder.mkdir(parents=True)
    keys = sorted({k for r in rows for k in r})
    with (folder / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def test_joint_body_pairs_each_validation_of_the_two_runs(tmp_path):
    # Lightning's CSV rows: training rows without validation keys, validation rows at 0-based epochs.
    _write_metrics(tmp_path / "joint", "synthetic_joint", [
        {"epoch": 0, "step": 10, "train/loss": 1.0},
        {"epoch": 5, "step": 251, "val/caption_loss": 0.42648, "val_baseline/uniform_caption_loss": 0.464},
        {"epoch": 11, "step": 503, "val/caption_loss": 0.4291, "val_baseline/uniform_caption_loss": 0.4781},
    ])  # fmt: skip
    _write_metrics(tmp_path / "uniform", "synthetic_uniform", [
        {"epoch": 5, "step": 251, "val/loss": 0.453},
        {"epoch": 11, "step": 503, "val/loss": 0.4612},
    ])  # fmt: skip
    rows = _rows(joint_body(tmp_path))
    assert rows[1:] == [["6", "0.426", "0.453", "-0.027", "0.464"], ["12", "0.429", "0.461", "-0.032", "0.478"]]

    # Runs that validated at other epochs cannot be paired.
    (tmp_path / "uniform" / "logs" / "synthetic_uniform" / "version_0" / "metrics.csv").write_text(
        "epoch,step,val/loss\n5,251,0.453\n")
    with pytest.raises(ReproduceError, match="different epochs"):
        joint_body(tmp_path)
    # A second version folder (a fit run twice into one folder) is refused, not guessed.
    _write_metrics(tmp_path / "joint", "synthetic_joint_again", [{"epoch": 5, "val/caption_loss": 0.5}])
    with pytest.raises(ReproduceError, match="expected one metrics.csv"):
        joint_body(tmp_path)


@pytest.mark.parametrize("name", ["synthetic_joint", "vlm_objectives"])
def test_fit_steps_parse_and_keep_every_output_in_the_run_folder(monkeypatch, tmp_path, name):
    """The ``fit`` commands of the tables that train on the reader parse, train on the reader of
    ``tiny_reader``'s seed folder (or a random tiny SmolVLM built in the step's folder) with the
    step's overrides, and write checkpoints, logs and predictions inside their step folder."""
    import contextlib
    import io

    import yaml

    from trainer.__main__ import main as trainer_main

    monkeypatch.chdir(ROOT)
    table = TABLES[name]
    assert reproduce.uses_chain(table) == [TABLES["tiny_reader"]]
    runs = {"tiny_reader": tmp_path / "tiny_reader" / "seed3", name: tmp_path / name / "seed3"}
    m = "model.init_args."
    expected = {  # step -> (config, VLM folder, {dotted config key: value})
        "joint": ("configs/synthetic_joint.yaml", runs["tiny_reader"] / "reader", {}),
        "uniform": ("configs/synthetic_uniform.yaml", runs["tiny_reader"] / "reader", {}),
        "ranking": ("configs/synthetic_ranking.yaml", runs["tiny_reader"] / "reader",
                    {m + "objective.rank_weight": 1.0, "trainer.check_val_every_n_epoch": 3}),
        "ranking_random": ("configs/synthetic_ranking.yaml", runs[name] / "ranking_random" / "tiny-smolvlm",
                           {m + "vlm.init_args.build_tiny": True, m + "objective.rank_weight": 1.0}),
        # Validated at epochs 3 and 6, as the ranking runs, for one table.
        "likelihood_rl": ("configs/synthetic_joint.yaml", runs["tiny_reader"] / "reader",
                          {m + "objective.coverage_reward": 0.0, m + "objective.likelihood_reward": 1.0,
                           m + "objective.caption_weight": 0.0, m + "objective.train_lora": False,
                           m + "vlm.init_args.lora.enabled": False, "trainer.max_epochs": 6,
                           "trainer.check_val_every_n_epoch": 3}),
    }  # fmt: skip
    for step in table.steps:
        config, vlm, values = expected[step.name]
        out = runs[name] / step.name
        command = step.command(out, 3, runs)
        assert command[1:5] == ["-m", "trainer", "fit", "--config"] and command[5] == config
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_:
            trainer_main(command[3:] + ["--print_config"])
        assert exit_.value.code in (0, None)
        cfg = yaml.safe_load(printed.getvalue())
        assert cfg["seed_everything"] == 3
        assert cfg["model"]["init_args"]["vlm"]["init_args"]["model_name_or_path"] == str(vlm)
        for key, value in values.items():
            node = cfg
            for part in key.split("."):
                node = node[part]
            assert node == value, (step.name, key)
        assert cfg["checkpoint"]["dirpath"] == str(out / "checkpoints")
        assert cfg["trainer"]["logger"]["init_args"]["save_dir"] == str(out / "logs")
        assert cfg["predictions"]["output"] == str(out / "predictions.json")


def test_command_table_errors(small_reader, tmp_path, capsys):
    with pytest.raises(ValueError, match="distinct names"):
        CommandTable("t", "d", (Step("a", "m", ()), Step("a", "m", ())), body=reproduce_tables.reader_body)
    with pytest.raises(SystemExit):
        main(["reader_small", "--seeds", "2"])
    assert "one seed a run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reader_small", "--fit_from", str(tmp_path)])
    assert "uses no other table's run" in capsys.readouterr().err
    # Tables that do not hold together fail where they are checked, before anything runs.
    broken = CommandTable("broken", "d", (Step("a", "m", ("{tiny_reader}",)),), body=reproduce_tables.reader_body, uses="nope")
    with pytest.raises(ValueError, match="uses names no command table"):
        reproduce.uses_chain(broken)
    unused = CommandTable("unused", "d", (Step("a", "m", ("{reader_small}/x",)),), body=reproduce_tables.reader_body)
    with pytest.raises(ValueError, match=r"reads \{reader_small\}, which is neither"):
        reproduce.uses_chain(unused)
    looped = CommandTable("looped", "d", (Step("a", "m", ()),), body=reproduce_tables.reader_body, uses="looped_too")
    with pytest.MonkeyPatch.context() as m:
        m.setitem(TABLES, "looped", looped)
        m.setitem(TABLES, "looped_too", CommandTable("looped_too", "d", (Step("b", "m", ()),),
                                                     body=reproduce_tables.reader_body, uses="looped"))  # fmt: skip
        with pytest.raises(ValueError, match="come back to looped"):
            reproduce.uses_chain(looped)
    assert os.listdir(tmp_path) == []


def _copy_table(name: str, source: str, uses: str | None = None) -> CommandTable:
    """A cheap command table: its one step copies the JSON file ``source`` (placeholders allowed)."""
    return CommandTable(name, f"a copy of {source}", (Step("copied.json", "json.tool", (source, "{out}")),),
                        body=lambda run: f"| value |\n|---|\n| {json.loads((run / 'copied.json').read_text())['value']} |\n",
                        uses=uses)  # fmt: skip


def test_a_chain_of_used_tables_runs_bottom_up_in_sibling_folders_and_heads_the_header(monkeypatch, tmp_path, capfd):
    """``top`` uses ``middle``, which uses ``bottom``: the steps may read any table of the chain,
    each table runs in the sibling folder its own command would use (or below ``--fit_from``), the
    header lists the chain's steps farthest first, and a rerun runs nothing again."""
    monkeypatch.chdir(ROOT)
    source = tmp_path / "numbers.json"
    source.write_text('{"value": 0.5}')
    for table in (_copy_table("bottom", str(source)), _copy_table("middle", "{bottom}/copied.json", uses="bottom"),
                  _copy_table("top", "{bottom}/copied.json", uses="middle")):  # fmt: skip
        monkeypatch.setitem(TABLES, table.name, table)
    assert [t.name for t in reproduce.uses_chain(TABLES["top"])] == ["middle", "bottom"]
    out = tmp_path / "runs" / "top"
    assert reproduce.chain_folders(TABLES["top"], out) == {
        "top": out, "middle": tmp_path / "runs" / "middle", "bottom": tmp_path / "runs" / "bottom"}
    assert main(["top", "--output", str(out)]) == 0
    for name in ("top", "middle", "bottom"):
        assert json.loads((tmp_path / "runs" / name / "seed0" / "copied.json").read_text()) == {"value": 0.5}
    record = json.loads((out / "seed0" / "reproduce.json").read_text())
    assert record["uses"]["table"] == "middle" and record["uses"]["uses"]["table"] == "bottom"
    header = (out / "table.md").read_text()
    times = next(line for line in header.splitlines() if line.startswith("- wall time: "))
    assert re.findall(r"copied\.json(?: \((\w+)\))?", times) == ["bottom", "middle", ""]
    assert "reads table `middle`'s run" in header and "reads table `bottom`'s run" in header
    assert body_of(header) == "| value |\n|---|\n| 0.5 |\n"
    capfd.readouterr()
    assert main(["top", "--output", str(out)]) == 0
    assert capfd.readouterr().out.count("finished in") == 3

    # --fit_from moves the used table, and the tables below it go next to that folder.
    elsewhere = tmp_path / "elsewhere" / "middle_runs"
    assert reproduce.chain_folders(TABLES["top"], out, elsewhere)["bottom"] == tmp_path / "elsewhere" / "bottom"
    # --check regenerates the whole chain: a non-empty folder anywhere in it is refused.
    readme = tmp_path / "RESULTS.md"
    readme.write_text("<!-- reproduce:top -->\n<!-- /reproduce:top -->\n")
    fresh = tmp_path / "fresh" / "top"
    (tmp_path / "fresh" / "bottom").mkdir(parents=True)
    (tmp_path / "fresh" / "bottom" / "left.txt").write_text("x")
    assert main(["top", "--output", str(fresh), "--check", "--readme", str(readme)]) == 2
    assert "bottom's runs" in capfd.readouterr().err


def test_objectives_body_gives_each_runs_recall_per_validation_and_checks_the_baselines_agree(tmp_path):
    steps = [step for step, _, _ in reproduce_tables._OBJECTIVE_RUNS]
    baselines = {f"val_baseline/{name}_recall@{k}": value for name, k, value in
                 [("xcorr", 4, 0.472), ("xcorr", 8, 0.864), ("pixel_l1", 4, 0.491), ("pixel_l1", 8, 0.795),
                  ("uniform", 4, 0.393), ("uniform", 8, 0.655)]}  # fmt: skip
    for i, step in enumerate(steps):
        _write_metrics(tmp_path / step, step, [
            {"epoch": 0, "step": 10, "train/loss": 1.0},
            {"epoch": 2, "step": 125, "val/recall@4": 0.5 + i / 10, "val/recall@8": 0.8, **baselines},
            {"epoch": 5, "step": 251, "val/recall@4": 0.55 + i / 10, "val/recall@8": 0.8049, **baselines},
        ])  # fmt: skip
    rows = _rows(reproduce_tables.objectives_body(tmp_path))
    assert rows[0] == ["importance model trained by", "judge VLM", "recall@4 (epoch 3 / 6)", "recall@8 (epoch 3 / 6)"]
    assert rows[1:] == [
        ["ranking by caption loss", "tiny reader", "0.500 / 0.550", "0.800 / 0.805"],
        ["ranking by caption loss", "random tiny SmolVLM", "0.600 / 0.650", "0.800 / 0.805"],
        ["RL, caption log-likelihood reward", "tiny reader", "0.700 / 0.750", "0.800 / 0.805"],
        ["baselines: xcorr, pixel L1, uniform", "", "0.472, 0.491, 0.393", "0.864, 0.795, 0.655"],
    ]
    # A run that validated at other epochs, or whose baselines differ (other validation videos), is refused.
    shutil.rmtree(tmp_path / "likelihood_rl")
    _write_metrics(tmp_path / "likelihood_rl", "x", [{"epoch": 2, "val/recall@4": 0.5, "val/recall@8": 0.8,
                                                      **baselines}])  # fmt: skip
    with pytest.raises(ReproduceError, match="different epochs"):
        reproduce_tables.objectives_body(tmp_path)
    shutil.rmtree(tmp_path / "likelihood_rl")
    _write_metrics(tmp_path / "likelihood_rl", "x", [{"epoch": e, "val/recall@4": 0.5, "val/recall@8": 0.8,
                                                      **baselines, "val_baseline/xcorr_recall@4": 0.4}
                                                     for e in (2, 5)])  # fmt: skip
    with pytest.raises(ReproduceError, match=r"xcorr@4: \[0.4, 0.472\]"):
        reproduce_tables.objectives_body(tmp_path)


def test_test_split_body_reads_the_evaluation_of_the_step_named_eval(tmp_path):
    """``synthetic_test``'s body: the summary's recall, coverage, NLL and caption scores, and the
    paired recall and NLL differences; its evaluate step reads both used tables' folders."""
    summary = [{"selector": s, "K": 4, "videos": 2, "recall": r, "coverage": 0.5, "nll": n, "meteor": 0.04,
                "cider": 0.3, "soda_c": 0.05, "ms_per_video": 9.0} for s, r, n in [("xcorr", 0.5, 0.6), ("learned", 0.75, 0.58)]]  # fmt: skip
    paired = {"meta": {"against": "learned", "level": 0.95}, "summary": [
        {"K": 4, "selector": "xcorr", "metric": m, "videos": 2, "difference": d, "low": d - 0.1, "high": d + 0.1,
         "verdict": v} for m, d, v in [("recall", 0.25, "ahead"), ("coverage", 0.0, "no clear difference"),
                                        ("nll", -0.02, "no clear difference")]]}  # fmt: skip
    (tmp_path / "eval" / "paired").mkdir(parents=True)
    (tmp_path / "eval" / "results.json").write_text(json.dumps({"summary": summary}))
    (tmp_path / "eval" / "paired" / "results.json").write_text(json.dumps(paired))
    rows = _rows(reproduce_tables.test_split_body(tmp_path))
    assert rows[0] == ["selector", "K", "recall", "coverage", "nll", "meteor", "cider", "soda_c"]
    assert rows[1:3] == [["learned", "4", "0.750", "0.500", "0.580", "0.040", "0.300", "0.050"],
                         ["xcorr", "4", "0.500", "0.500", "0.600", "0.040", "0.300", "0.050"]]  # fmt: skip
    assert ["4", "xcorr", "+0.250 [+0.150, +0.350]", "ahead"] in rows
    assert ["4", "xcorr", "-0.020 [-0.120, +0.080]", "no clear difference"] in rows
    assert not any("coverage difference" in r[2] for r in rows)  # coverage is not among its paired metrics

    table = TABLES["synthetic_test"]
    assert [t.name for t in reproduce.uses_chain(table)] == ["synthetic_joint", "tiny_reader"]
    runs = {name: tmp_path / name / "seed0" for name in ("synthetic_test", "synthetic_joint", "tiny_reader")}
    command = table.steps[0].command(runs["synthetic_test"] / "eval", 0, runs)
    assert command[command.index("--ckpt") + 1] == str(runs["synthetic_joint"] / "joint/checkpoints/last.ckpt")
    assert command[-2:] == ["--model.init_args.vlm.init_args.model_name_or_path", str(runs["tiny_reader"] / "reader")]
    assert command[command.index("--output") + 1] == str(runs["synthetic_test"] / "eval")
