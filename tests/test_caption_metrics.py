"""Dense-captioning evaluation: tIoU, localisation precision/recall, caption scores, torchmetrics wrappers.

Expected values are worked out by hand in the comments. Caption scores use the pure-Python path
(``ptb=False, meteor=False``) unless a test is about Java.
"""

import math
import os
import shutil
import socket

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from data.schema import Event
from trainer.caption_metrics import (
    DenseCaptionMetric,
    LocalizationMetric,
    caption_scores,
    evaluate_dense_captions,
    localization_scores,
    tiou,
)

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")


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
        ([2, 6], [2, 6], 1.0),  # identical
        ([0, 4], [2, 6], 2 / 6),  # half of each overlaps: intersection 2, union 6
        ([0, 4], [0, 8], 0.5),  # nested: the inner one over the outer one
        ([1, 3], [0, 10], 0.2),
        ([0, 2], [5, 9], 0.0),  # disjoint
        ([0, 2], [2, 4], 0.0),  # touching
        ([3, 3], [0, 10], 0.0),  # zero-length inside a segment
        ([3, 3], [3, 3], 0.0),  # two identical points: nothing to overlap, no division by zero
        ([5, 1], [0, 10], 0.0),  # end before start: no extent
    ],
)
def test_tiou(a, b, expected):
    assert tiou(a, b) == pytest.approx(expected)
    assert tiou(b, a) == pytest.approx(expected)


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


def test_localization_missing_videos_ties_and_truncation():
    references = {"A": [ref(0, 10)], "B": [ref(0, 10)]}
    # B has no predictions: 0 precision and recall. Predictions for unknown videos are ignored.
    predictions = {"A": [pred(0, 5)], "C": [pred(0, 10)]}
    scores = localization_scores(predictions, references, tious=(0.5,))
    # tIoU of [0, 5] and [0, 10] is exactly 0.5, which counts (>=).
    assert scores["precision@0.5"] == pytest.approx(0.5)
    assert scores["recall@0.5"] == pytest.approx(0.5)
    # Only the first max_proposals predictions of a video count.
    scores = localization_scores({"A": [pred(50, 60), pred(0, 10)]}, {"A": [ref(0, 10)]}, (0.5,), max_proposals=1)
    assert scores["precision"] == 0.0 and scores["recall"] == 0.0


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
    assert ptb == pytest.approx(captions(PERFECT, REFERENCES))


@needs_java
@pytest.mark.slow  # starts METEOR's JVM: 5-10 s
def test_meteor_perfect_match():
    scores = caption_scores(PERFECT, REFERENCES, (0.5,), meteor=True, ptb=True)
    assert scores["meteor"] > 0.9
    swapped = {"v": [pred(0, 10, PASTA), pred(10, 20, HORSE)]}
    assert caption_scores(swapped, REFERENCES, (0.5,), meteor=True, ptb=True)["meteor"] < 0.5


def test_without_java_meteor_is_skipped_with_a_warning(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    with pytest.warns(UserWarning, match="METEOR skipped|PTB tokenizer") as record:
        scores = evaluate_dense_captions(PERFECT, REFERENCES, tious=(0.5,), meteor=True, ptb=True)
    messages = [str(w.message) for w in record]
    assert any(m.startswith("METEOR skipped") for m in messages) and any("PTB tokenizer" in m for m in messages)
    assert "meteor" not in scores
    assert scores["bleu4"] == pytest.approx(1.0) and scores["cider"] == pytest.approx(10.0)


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
