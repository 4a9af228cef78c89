"""``python -m trainer score``: tables for any ActivityNet submission, several reference files."""

import json
import shutil
from pathlib import Path

import pytest

from trainer.evaluation.caption_metrics import DEFAULT_TIOUS, evaluate_dense_captions, tiou
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
    rows = score(["--pred", pred, "--ref", *refs, "--output", str(out), "--no_java", "--tious", "0.3", "0.7"])
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
        score(["--pred", a, b, "--ref", refs, "--no_java", "--output", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_info:  # a submission given as a reference
        score(["--pred", a, "--ref", a, "--no_java", "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2


def _proposal(timestamp=(0.0, 5.0), sentence="a man opens a door"):
    return {"timestamp": list(timestamp) if isinstance(timestamp, tuple) else timestamp, "sentence": sentence}


def _submission(*proposals):
    return {"version": "VERSION 1.0", "results": {"v1": [_proposal(), *proposals]}}


# (what is written as the submission, what the one error line must say after the file's path)
MALFORMED_SUBMISSIONS = {
    "no results": ({"version": "VERSION 1.0"}, "expected an object with 'results'"),
    "a list, not an object": ([SUBMISSION], "expected an object with 'results'"),
    "results not an object": ({"results": [["v1", []]]}, "field 'results': expected an object"),
    "video not a list": ({"results": {"v1": _proposal()}}, "video 'v1': expected a list of proposals"),
    "proposal not an object": (_submission([0.0, 5.0, "x"]), "video 'v1', proposal 1: expected an object"),
    "no timestamp": (_submission({"start": 0.0, "end": 1.0, "sentence": "x"}), "proposal 1: field 'timestamp' is missing"),
    "one number": (_submission(_proposal([1.0])), "proposal 1, field 'timestamp': not a [start, end] pair"),
    "three numbers": (_submission(_proposal([1.0, 2.0, 3.0])), "proposal 1, field 'timestamp': not a [start, end] pair"),
    "a string": (_submission(_proposal("0.0-5.0")), "proposal 1, field 'timestamp': not a [start, end] pair"),
    "strings inside": (_submission(_proposal(["0", "5"])), "proposal 1, field 'timestamp': expected numbers"),
    "a boolean inside": (_submission(_proposal([False, 5.0])), "proposal 1, field 'timestamp': expected numbers"),
    "a dict inside": (_submission(_proposal([{"s": 0}, 5.0])), "proposal 1, field 'timestamp': expected numbers"),
    "NaN": (_submission(_proposal((float("nan"), 5.0))), "proposal 1, field 'timestamp': nan is not a finite number"),
    "Infinity": (_submission(_proposal((0.0, float("inf")))), "proposal 1, field 'timestamp': inf is not a finite number"),
    "null sentence": (_submission(_proposal(sentence=None)), "proposal 1, field 'sentence': expected a string, got None"),
    "numeric sentence": (_submission(_proposal(sentence=3)), "proposal 1, field 'sentence': expected a string, got 3"),
    "no sentence": (_submission({"timestamp": [0.0, 1.0]}), "proposal 1: field 'sentence' is missing"),
}  # fmt: skip


def _refused(capsys, argv):
    """Runs ``score`` expecting exit code 2; returns its stderr, checked to be one line without a traceback."""
    with pytest.raises(SystemExit) as exit_info:
        score(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("python -m trainer score: error: ")
    return err


@pytest.mark.parametrize("case", MALFORMED_SUBMISSIONS)
def test_a_malformed_submission_is_refused_with_the_file_video_index_and_field(tmp_path, capsys, case):
    payload, message = MALFORMED_SUBMISSIONS[case]
    refs = _write(tmp_path, "val_1.json", VAL_1)
    pred = _write(tmp_path, "bad.json", payload)
    out = tmp_path / "out"
    err = _refused(capsys, ["--pred", pred, "--ref", refs, "--no_java", "--output", str(out)])
    assert f"{pred}: " in err and message in err
    assert not out.exists()  # refused before anything was written


MALFORMED_REFERENCES = {
    "NaN": ({"v1": {"duration": 9.0, "timestamps": [[0.0, float("nan")]], "sentences": ["x"]}},
            "video 'v1', event 0, field 'timestamps': nan is not a finite number"),
    "three numbers": ({"v1": {"timestamps": [[0.0, 1.0], [0.0, 1.0, 2.0]], "sentences": ["x", "y"]}},
                      "video 'v1', event 1, field 'timestamps': not a [start, end] pair"),
    "null sentence": ({"v1": {"timestamps": [[0.0, 1.0]], "sentences": [None]}},
                      "video 'v1', event 0, field 'sentences': expected a string, got None"),
    "sentences not a list": ({"v1": {"timestamps": [[0.0, 1.0]], "sentences": "x"}},
                             "video 'v1', field 'sentences': expected a list"),
    "infinite duration": ({"v1": {"duration": float("inf"), "timestamps": [[0.0, 1.0]], "sentences": ["x"]}},
                          "video 'v1', field 'duration': expected a finite number"),
    "no events": ({"v1": {"timestamps": [], "sentences": []}}, "video 'v1': has no events"),
    "a submission": (SUBMISSION, "this is a predictions file"),
}  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED_REFERENCES)
def test_a_malformed_reference_file_is_refused_the_same_way(tmp_path, capsys, case):
    content, message = MALFORMED_REFERENCES[case]
    refs = [_write(tmp_path, "val_1.json", VAL_1), _write(tmp_path, "val_2.json", content)]
    pred = _write(tmp_path, "mine.json", SUBMISSION)
    err = _refused(capsys, ["--pred", pred, "--ref", *refs, "--no_java", "--output", str(tmp_path / "out")])
    assert f"{refs[1]}: " in err and message in err


def test_a_file_that_is_not_json_is_refused(tmp_path, capsys):
    pred = tmp_path / "mine.json"
    pred.write_text('{"results": {"v1": [')
    err = _refused(capsys, ["--pred", str(pred), "--ref", _write(tmp_path, "val_1.json", VAL_1), "--no_java"])
    assert f"{pred}: not a JSON file" in err


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_max_proposals_below_one_is_refused(tmp_path, capsys, value):
    refs, pred = _write(tmp_path, "val_1.json", VAL_1), _write(tmp_path, "mine.json", SUBMISSION)
    with pytest.raises(SystemExit) as exit_info:
        score(["--pred", pred, "--ref", refs, "--no_java", "--max_proposals", value])
    assert exit_info.value.code == 2 and "--max_proposals" in capsys.readouterr().err
    # The library refuses it too: a slice [:0] or [:-1] would drop predictions without a word.
    with pytest.raises(ValueError, match="max_proposals must be at least 1"):
        evaluate_dense_captions(SUBMISSION["results"], VAL_1, meteor=False, ptb=False, max_proposals=0)


@pytest.mark.parametrize("value", ["0", "1.5", "nan", "-0.3"])
def test_a_tiou_outside_zero_one_is_refused_with_a_usage_error(tmp_path, capsys, value):
    refs, pred = _write(tmp_path, "val_1.json", VAL_1), _write(tmp_path, "mine.json", SUBMISSION)
    with pytest.raises(SystemExit) as exit_info:
        score(["--pred", pred, "--ref", refs, "--no_java", "--tious", "0.5", value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--tious" in err and "(0, 1]" in err and "Traceback" not in err


def test_reversed_and_negative_timestamps_are_scored_as_densevid_eval_does_and_reported(tmp_path, capsys):
    # v1's events are [0, 5] and [10, 15]. The reversed copy of the first overlaps nothing (tIoU 0,
    # as densevid_eval computes it); the negative one [-1, 4] overlaps [0, 5] with tIoU 4/6.
    odd = {"results": {"v1": [_proposal((5.0, 0.0)), _proposal((-1.0, 4.0)), _proposal((15.0, 10.0), "he sits")]}}
    reference = {**VAL_1, "v2": {**VAL_1["v2"], "timestamps": [[-2.0, 6.0]]}}
    refs, pred = _write(tmp_path, "val_1.json", reference), _write(tmp_path, "odd.json", odd)
    out = tmp_path / "scores"
    (row,) = score(["--pred", pred, "--ref", refs, "--no_java", "--tious", "0.5", "--output", str(out)])
    # Precision on v1: 1 of 3 proposals covers an event; v2 has none: (1/3 + 0) / 2.
    assert row["precision"] == pytest.approx(1 / 6) and row["recall"] == pytest.approx((1 / 2 + 0) / 2)
    counts = json.loads((out / "results.json").read_text())["meta"]["unusual_timestamps"]
    assert counts == {pred: {"reversed": 2, "negative": 1}, refs: {"reversed": 0, "negative": 1}}
    markdown = (out / "results.md").read_text()
    assert f"`{pred}`: 2 reversed (start > end), 1 negative" in markdown
    assert f"`{refs}`: 0 reversed (start > end), 1 negative" in markdown
    assert "warning:" in capsys.readouterr().err
    # A clean run says nothing of it.
    score(["--pred", _write(tmp_path, "mine.json", SUBMISSION), "--ref", _write(tmp_path, "v.json", VAL_1),
           "--no_java", "--output", str(tmp_path / "clean")])  # fmt: skip
    assert "start > end" not in (tmp_path / "clean" / "results.md").read_text()
    assert "warning:" not in capsys.readouterr().err


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="needs ../shared/fixtures/densecap")
def test_a_perfect_submission_on_real_annotations_scores_one(tmp_path):
    reference = FIXTURE / "refs_val1_sub100.json"
    truth = json.loads(reference.read_text())
    perfect = {"results": {vid: [{"timestamp": t, "sentence": s} for t, s in zip(v["timestamps"], v["sentences"])]
                           for vid, v in truth.items()}}  # fmt: skip
    pred = _write(tmp_path, "perfect.json", perfect)
    (row,) = score(["--pred", pred, "--ref", str(reference), "--no_java", "--output", str(tmp_path / "out")])
    assert row["videos"] == row["reference_videos"] == 100
    assert row["precision"] == pytest.approx(1.0) and row["recall"] == pytest.approx(1.0)
    # (caption scores stay below 1: ActivityNet events overlap, so a sentence is also paired with its neighbours')
    # One proposal kept per video: precision stays 1, recall falls to the share of each video's
    # events that its first event covers (itself, and any it overlaps enough: ActivityNet events overlap).
    (first,) = score(["--pred", pred, "--ref", str(reference), "--no_java", "--max_proposals", "1",
                      "--output", str(tmp_path / "one")])  # fmt: skip
    expected_recall = sum(
        sum(tiou(v["timestamps"][0], segment) > t for segment in v["timestamps"]) / len(v["timestamps"])
        for t in DEFAULT_TIOUS for v in truth.values()
    ) / (len(DEFAULT_TIOUS) * len(truth))
    assert expected_recall < 0.6
    assert first["precision"] == pytest.approx(1.0) and first["recall"] == pytest.approx(expected_recall)


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
