"""``python -m trainer evaluate``: tables, plots and numbers that match the metrics."""

import json
import statistics
from pathlib import Path

import pytest
import torch

from data.decode import decode_video
from data.schema import load_annotations
from models.selectors import uniform_indices
from trainer.evaluation.caption_metrics import evaluate_dense_captions
from trainer.evaluation.evaluate import iter_rows
from trainer.evaluation.evaluate import main as evaluate
from trainer.evaluation.metrics import event_recall
from trainer.predictions import read_predictions
from helpers import as_overrides

CONFIGS = Path(__file__).parents[1] / "configs"


def _sets(tmp_path, tiny_model_dir, synthetic, vlm: bool):
    _, paths, _ = synthetic
    sets = [f"data.train_file={paths['train']}", f"data.val_file={paths['val']}", f"data.test_file={paths['test']}",
            f"data.cache_dir={tmp_path / 'cache'}", "data.fps=2.0"]  # fmt: skip
    key = "vlm" if vlm else "encoder"
    return sets + [f"model.init_args.{key}.init_args.model_name_or_path={tiny_model_dir}"]


def test_evaluate_writes_tables_and_plots_with_correct_recall(tmp_path, tiny_model_dir, synthetic):
    out = tmp_path / "eval"
    result = evaluate([
        "--config", str(CONFIGS / "smoke_rl.yaml"), "--split", "val",
        "--selectors", "learned", "uniform", "xcorr", "models.selectors.RandomSelector",
        "--budgets", "2", "4", "500", "--output", str(out), "--plot_videos", "1", "--share_decoder",
        *as_overrides(_sets(tmp_path, tiny_model_dir, synthetic, vlm=False)),
    ])  # fmt: skip
    for name in ("results.md", "results.csv", "results.json", "recall_vs_budget.png", "rows.jsonl", "run.json"):
        assert (out / name).stat().st_size > 0, name
    assert len(list(out.glob("video_*.png"))) == 1
    payload = json.loads((out / "results.json").read_text())
    summary = {(s["selector"], s["K"]): s for s in payload["summary"]}
    # Budget 500 exceeds every video: skipped for all selectors alike, not silently truncated.
    assert set(summary) == {(n, k) for n in ("learned", "uniform", "xcorr", "models.selectors.RandomSelector")
                            for k in (2, 4)}  # fmt: skip
    assert all(0.0 <= s["recall"] <= 1.0 and 0.0 <= s["coverage"] <= 1.0 for s in summary.values())
    # Uniform recall recomputed independently from the annotations and the decoder.
    _, paths, _ = synthetic
    expected = []
    for sample in load_annotations(paths["val"]):
        stamps = decode_video(sample.video, fps=2.0, size=64).timestamps
        expected.append(event_recall(stamps[uniform_indices(len(stamps), 4)], sample.events).item())
    assert summary[("uniform", 4)]["recall"] == pytest.approx(sum(expected) / len(expected))
    assert summary[("uniform", 4)]["videos"] == len(expected)
    assert "| uniform | 4 |" in (out / "results.md").read_text()
    assert result["output"] == str(out)
    # Paired comparisons: learned minus each other selector on the same videos, with an interval.
    paired = json.loads((out / "paired" / "results.json").read_text())["summary"]
    rows = list(iter_rows(out))
    for p in (p for p in paired if p["metric"] == "recall"):
        mine = {r["video_id"]: r["recall"] for r in rows if r["selector"] == "learned" and r["K"] == p["K"]}
        other = {r["video_id"]: r["recall"] for r in rows if r["selector"] == p["selector"] and r["K"] == p["K"]}
        assert p["difference"] == pytest.approx(statistics.mean(mine[v] - other[v] for v in mine))
        assert p["low"] <= p["difference"] <= p["high"] and p["videos"] == len(mine)
        assert p["verdict"] == ("ahead" if p["low"] > 0 else "behind" if p["high"] < 0 else "no clear difference")
    assert {(p["selector"], p["K"]) for p in paired} == {(n, k) for n in ("uniform", "xcorr", "models.selectors.RandomSelector")
                                                         for k in (2, 4)}  # fmt: skip


def test_evaluate_with_vlm_reports_caption_nll_and_caption_scores(tmp_path, tiny_model_dir, synthetic):
    out = tmp_path / "eval"
    evaluate([
        "--config", str(CONFIGS / "smoke.yaml"), "--split", "test", "--selectors", "uniform", "xcorr",
        "--budgets", "4", "--output", str(out), "--plot_videos", "0", "--generate", "--no_java",
        *as_overrides(_sets(tmp_path, tiny_model_dir, synthetic, vlm=True)),
    ])  # fmt: skip
    payload = json.loads((out / "results.json").read_text())
    summary = payload["summary"]
    assert {s["selector"] for s in summary} == {"uniform", "xcorr"}
    assert payload["approximate_caption_scores"] and "APPROXIMATE" in (out / "results.md").read_text()
    # The table's caption scores are the official-protocol scores of the captions it generated,
    # which it also wrote as submissions, against references it wrote in the official format.
    references = json.loads((out / "references.json").read_text())
    assert set(references) == {r["video_id"] for r in iter_rows(out)}
    for s in summary:
        generated = read_predictions(out / "captions" / f"{s['selector']}@4.json")
        assert set(generated) == set(references)
        expected = evaluate_dense_captions(generated, [references], meteor=False, ptb=False)
        assert s["bleu4"] == pytest.approx(expected["bleu4"])
        assert s["caption_recall"] == pytest.approx(expected["recall"])
        assert s["caption_precision@0.5"] == pytest.approx(expected["precision@0.5"])
        # ``recall`` stays the selector's event recall@K (a caption score of the same name once overwrote it).
        assert s["recall"] == pytest.approx(statistics.mean(r["recall"] for r in iter_rows(out) if r["selector"] == s["selector"]))
    assert all(torch.isfinite(torch.tensor(s["nll"])) and s["nll"] > 0 for s in summary)
    # Merging again against official reference files: a second copy changes nothing (best over
    # identical files) and a reference video that was not evaluated is not counted as missed.
    extra = {**references, "not_evaluated": {"duration": 5.0, "timestamps": [[0, 1]], "sentences": ["x"]}}
    (tmp_path / "val_1.json").write_text(json.dumps(extra))
    merged = evaluate(["--merge", "--output", str(out), "--no_java", "--ref", str(tmp_path / "val_1.json"),
                       str(out / "references.json")])["summary"]  # fmt: skip
    for a, b in zip(merged, summary):
        keys = ("recall", "caption_recall", "caption_precision", "bleu4", "cider")
        assert {k: a[k] for k in keys} == pytest.approx({k: b[k] for k in keys})
    for s in summary:  # an untrained tiny VLM writes nothing parseable: every score is a real 0..1 number
        for key in ("caption_precision", "caption_recall", "bleu4", "rouge_l", "cider"):
            assert 0.0 <= s[key] <= 10.0, (key, s[key])
        assert "meteor" not in s  # --no_java


def test_unknown_selector_is_a_clear_error(tmp_path, tiny_model_dir, synthetic):
    with pytest.raises(ValueError, match="unknown selector 'nope'"):
        evaluate(["--config", str(CONFIGS / "smoke_rl.yaml"), "--selectors", "nope", "--output", str(tmp_path),
                  *as_overrides(_sets(tmp_path, tiny_model_dir, synthetic, vlm=False))])  # fmt: skip


def test_evaluate_is_reproducible_with_a_seed(tmp_path, tiny_model_dir, synthetic):
    def run(name, seed):
        out = tmp_path / name
        evaluate(["--config", str(CONFIGS / "smoke_rl.yaml"), "--split", "val", "--selectors", "random", "uniform",
                  "--budgets", "2", "3", "--output", str(out), "--plot_videos", "0", "--seed", str(seed),
                  *as_overrides(_sets(tmp_path, tiny_model_dir, synthetic, vlm=False))])  # fmt: skip
        rows = list(iter_rows(out))
        return [(r["video_id"], r["selector"], r["K"], r["chosen_times"], r["recall"]) for r in rows]

    first = run("a", 0)
    assert first == run("b", 0)
    other = run("c", 1)
    assert [r for r in first if r[1] == "uniform"] == [r for r in other if r[1] == "uniform"]
    assert [r for r in first if r[1] == "random"] != [r for r in other if r[1] == "random"]


def test_paired_bootstrap_interval_on_known_cases():
    from trainer.evaluation.metrics import paired_bootstrap_ci

    # A constant difference has no spread: the interval is that difference.
    assert paired_bootstrap_ci([0.5, 0.7, 0.9], [0.4, 0.6, 0.8]) == pytest.approx((0.1, 0.1, 0.1))
    # Large n: the bootstrap interval of a mean is mean +- 1.96 sd / sqrt(n) (central limit theorem).
    g = torch.Generator().manual_seed(1)
    a = (torch.randn(2000, generator=g, dtype=torch.float64) + 0.1).tolist()
    mean, low, high = paired_bootstrap_ci(a, [0.0] * 2000, level=0.95, resamples=4000)
    half = 1.96 * torch.tensor(a).std().item() / 2000**0.5
    assert mean == pytest.approx(sum(a) / 2000)
    assert low == pytest.approx(mean - half, abs=0.15 * half) and high == pytest.approx(mean + half, abs=0.15 * half)
    assert paired_bootstrap_ci(a, [0.0] * 2000, seed=3) == paired_bootstrap_ci(a, [0.0] * 2000, seed=3)
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap_ci([1.0], [1.0, 2.0])


def _tree(root):
    return {p.relative_to(root) for p in root.rglob("*")}


def test_plot_names_from_hostile_video_ids_stay_inside_output_and_keep_the_ids(tmp_path, tiny_model_dir, synthetic):
    """Ids come from the annotation file: ``x/../../../../ESCAPE`` once put its plot beside ``tmp_path``."""
    _, paths, _ = synthetic
    sample = next(iter(json.loads(paths["test"].read_text()).values()))
    video = str((paths["test"].parent / sample["video"]).resolve())
    ids = ["x/../../../../ESCAPE", "/abs/olute", "..", ".", ".hidden", "run.json", "results.md", "dup", "DUP",
           "y" * 300]  # fmt: skip
    hostile = tmp_path / "run" / "hostile.json"
    hostile.parent.mkdir()
    hostile.write_text(json.dumps({i: {**sample, "video": video} for i in ids}))
    out = tmp_path / "run" / "deep" / "out"
    before = _tree(tmp_path)
    result = evaluate(["--config", str(CONFIGS / "smoke_rl.yaml"), "--split", "test", "--selectors", "uniform",
                       "--budgets", "2", "--output", str(out), "--plot_videos", str(len(ids)), "--ci", "0",
                       *as_overrides([*_sets(tmp_path, tiny_model_dir, synthetic, vlm=False), f"data.test_file={hostile}"])])  # fmt: skip
    assert result["evaluated"] == len(ids)
    new = [tmp_path / p for p in _tree(tmp_path) - before]
    assert all(out in p.parents or p in (out, *out.parents) or tmp_path / "cache" in (p, *p.parents) for p in new)
    records = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert [r["video_id"] for r in records] == ids  # the ids as the annotation file has them
    plots = [r["plot"] for r in records]
    assert sorted(p.name for p in out.glob("video_*.png")) == sorted(plots) and len(set(plots)) == len(ids)
    for plot in plots:
        assert "/" not in plot and (out / plot).resolve().parent == out.resolve() and len(plot.encode()) <= 110
    assert plots[ids.index("dup")] != plots[ids.index("DUP")]  # one file on a case-insensitive disk otherwise


def test_an_output_that_is_a_file_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("trainer.__main__.FrameSelectCLI.instantiate_classes", no_model)
    (tmp_path / "file").write_text("x")
    for output in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(SystemExit) as refused:
            evaluate(["--config", str(CONFIGS / "smoke_rl.yaml"), "--output", str(output)])
        assert refused.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        evaluate(["--merge", "--output", str(tmp_path / "file")])
    assert refused.value.code == 2


def test_a_budget_above_every_video_is_an_error_not_an_empty_table(tmp_path, tiny_model_dir, synthetic):
    out = tmp_path / "eval"
    with pytest.raises(RuntimeError, match=r"none of the \d+ videos of the val split has as many candidate frames "
                                           r"as the smallest budget K=500"):  # fmt: skip
        evaluate(["--config", str(CONFIGS / "smoke_rl.yaml"), "--split", "val", "--selectors", "uniform", "--budgets",
                  "500", "--output", str(out), *as_overrides(_sets(tmp_path, tiny_model_dir, synthetic, vlm=False))])  # fmt: skip
    assert not (out / "results.md").exists()
