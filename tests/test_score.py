"""``python -m trainer score``: tables for any ActivityNet submission, several reference files."""

import json
import shutil
from pathlib import Path

import pytest

from trainer.evaluation.caption_metrics import evaluate_dense_captions
from trainer.evaluation.score import main as score

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "densecap"

VAL_1 = {
    "v1": {"duration": 20.0, "timestamps": [[0.0, 5.0], [10.0, 15.0]], "sentences": ["a man opens a door", "he sits"]},
    "v2": {"duration": 10.0, "timestamps": [[2.0, 6.0]], "sentences": ["a dog runs on the grass"]},
}
VAL_2 = {"v1": {"duration": 20.0, "timestamps": [[0.0, 9.0]], "sentences": ["someone opens a door and sits"]}}
SUBMISSION = {
    "version": "VERSION 1.0",
    "results": {"v1": [{"sentence": "a man opens a door", "timestamp": [0.0, 5.0]},
                       {"sentence": "a cat sleeps", "timestamp": [16.0, 19.0]}]},
    "external_data": {"used": False, "details": ""},
}  # fmt: skip


def _write(tmp_path, name, payload):
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return str(path)


def test_score_writes_the_tables_of_the_official_protocol(tmp_path):
    refs = [_write(tmp_path, "val_1.json", VAL_1), _write(tmp_path, "val_2.json", VAL_2)]
    pred = _write(tmp_path, "mine.json", SUBMISSION)
    out = tmp_path / "scores"
    rows = score(["--pred", pred, "--ref", *refs, "--output", str(out), "--no-java", "--tious", "0.3", "0.7"])
    expected = evaluate_dense_captions(SUBMISSION["results"], [VAL_1, VAL_2], (0.3, 0.7), meteor=False, ptb=False)
    (row,) = rows
    assert row["submission"] == "mine" and row["videos"] == 1 and row["reference_videos"] == 2
    assert {k: row[k] for k in expected} == pytest.approx(expected)
    # v2 has no prediction: 0 for it. v1's first prediction matches val_1's first event exactly
    # (recall 1/2 there) and overlaps val_2's only event with tIoU 5/9: recall 1/1 at 0.3, 0 at 0.7.
    # The best file per video gives v1 recall 1 at 0.3 and 1/2 at 0.7; the union of both files'
    # events would give 2/3 and 1/3.
    assert row["recall@0.3"] == pytest.approx((1 + 0) / 2) and row["recall@0.7"] == pytest.approx((0.5 + 0) / 2)
    assert row["precision@0.3"] == pytest.approx((0.5 + 0) / 2)  # the cat overlaps nothing
    payload = json.loads((out / "results.json").read_text())
    assert payload["approximate_caption_scores"] is True and payload["meta"]["references"] == refs
    markdown = (out / "results.md").read_text()
    assert "APPROXIMATE" in markdown and "| mine | 1 | 2 |" in markdown
    assert "meteor" not in row and "soda_c" not in row
    assert (out / "results.csv").read_text().startswith("submission,videos,reference_videos,")


def test_score_rejects_what_it_cannot_read(tmp_path):
    refs = _write(tmp_path, "val_1.json", VAL_1)
    with pytest.raises(SystemExit):
        score(["--pred", str(tmp_path / "missing.json"), "--ref", refs])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = _write(tmp_path / "a", "x.json", SUBMISSION), _write(tmp_path / "b", "x.json", SUBMISSION)
    with pytest.raises(ValueError, match="distinct file names"):
        score(["--pred", a, b, "--ref", refs, "--no-java", "--output", str(tmp_path / "out")])
    with pytest.raises(ValueError):  # a submission given as a reference
        score(["--pred", a, "--ref", a, "--no-java", "--output", str(tmp_path / "out")])


@pytest.mark.slow
@pytest.mark.skipif(not FIXTURE.is_dir(), reason="needs ../shared/fixtures/densecap")
def test_score_matches_the_official_evaluator_on_real_annotations(tmp_path):
    from trainer.evaluation.caption_metrics import java_available

    if not java_available():
        pytest.skip("needs Java")
    out = tmp_path / "scores"
    (row,) = score(["--pred", str(FIXTURE / "pred_b_perturbed.json"), "--ref", str(FIXTURE / "refs_val1_sub100.json"),
                    str(FIXTURE / "refs_val2_sub100.json"), "--output", str(out), "--soda", "best"])  # fmt: skip
    expected = json.loads((FIXTURE / "expected_scores.json").read_text())
    official = expected["densevid_eval"]["2018/b_perturbed/v12"]["mean"]
    names = {"recall": "Recall", "precision": "Precision", "meteor": "METEOR", "cider": "CIDEr", "bleu4": "Bleu_4"}
    for ours, theirs in names.items():
        assert 100 * row[ours] == pytest.approx(100 * official[theirs], abs=1e-3), ours
    assert row["soda_c"] == pytest.approx(expected["soda_c"]["b_perturbed_v12mr"]["f1"], abs=1e-5)
    assert "APPROXIMATE" not in (out / "results.md").read_text()
    shutil.rmtree(out)
