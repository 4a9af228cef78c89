"""ActivityNet-Captions dense-captioning evaluation: event localisation and caption quality.

What is scored, and how, follows the official evaluator ``densevid_eval`` (``evaluate.py`` of
github.com/ranjaykrishna/densevid_eval in its 2018 form, the one the ActivityNet Challenge 2018 and
most later papers report), for one reference annotation per video:

* **Localisation** at each tIoU threshold (default 0.3, 0.5, 0.7, 0.9): per reference video,
  precision is the fraction of predictions that overlap *some* reference with tIoU >= threshold
  and recall the fraction of references overlapped by *some* prediction; both are averaged over
  the reference videos, then over thresholds. A video without predictions scores 0 for both.
  ``f1@t`` is the harmonic mean of ``precision@t`` and ``recall@t``, and ``f1`` their mean over
  thresholds (not part of densevid_eval; later evaluators such as PDVC's add it this way).
* **Captions** at each threshold: every prediction is paired with every reference it overlaps
  with tIoU >= threshold; a prediction that overlaps none is paired with the junk reference
  ``"abc123!@#"`` (so it scores about 0 and drags the video's scores down). The pairs of one
  video are scored as one corpus by coco-caption (``pycocoevalcap``): corpus BLEU-1..4 with the
  "closest" reference length, METEOR 1.5, ROUGE-L (mean over pairs, F-measure with beta 1.2) and
  CIDEr-D (coco-caption's ``Cider``: clipped tf-idf cosine with a length penalty, times 10).
  Video scores are averaged over the reference videos (a video without predictions scores 0),
  then over thresholds. This per-video averaging is the 2018 form of densevid_eval; its 2017 form
  scored all pairs of all videos as a single corpus, which gives different (higher) numbers.
  Because CIDEr-D takes its document frequencies from the pairs of one video, a video with a
  single pair always gets CIDEr 0.

Sentences are tokenised like densevid_eval: non-ASCII characters become spaces, then the Stanford
PTB tokenizer lowercases and splits them and punctuation tokens are dropped. The PTB tokenizer and
METEOR run in Java; without ``java`` on the PATH, sentences are tokenised by a simple lowercase
alphanumeric splitter instead (scores move slightly) and METEOR is left out, each with a warning.

Where this module differs from densevid_eval:

* tIoU is exact. densevid_eval divides by ``union + 1e-8`` and, for localisation, tests
  ``tIoU > threshold``, so a pair whose tIoU equals the threshold exactly does not count there;
  here it does (``>=``), for both localisation and captions.
* One reference annotation per video. densevid_eval can read several (``val_1``/``val_2``),
  takes the best localisation over them and pairs captions with references from all of them.
* A video in the references with no events is an error rather than a division by zero.
* Scores are fractions, not percentages as densevid_eval prints them.

SODA_c (Fujita et al., 2020) is not implemented.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from torchmetrics import Metric

DEFAULT_TIOUS = (0.3, 0.5, 0.7, 0.9)
# densevid_eval keeps only the first 1000 predictions of each video.
MAX_PROPOSALS = 1000
# The reference densevid_eval pairs with a prediction that overlaps no reference. It is used as
# already tokenised: the PTB tokenizer leaves it as this single token.
JUNK_REFERENCE = "abc123!@#"

# (start, end, sentence): the one event form everything below works on.
TimedSentence = tuple[float, float, str]


def tiou(a: Sequence[float], b: Sequence[float]) -> float:
    """Temporal intersection over union of two ``[start, end]`` segments.

    A segment with ``end <= start`` has no extent, so it overlaps nothing: its tIoU with anything,
    itself included, is 0 (as in densevid_eval, whose ``1e-8`` in the denominator gives 0 there).

    Args:
        a: First segment, ``[start, end]`` in seconds.
        b: Second segment.

    Returns:
        The tIoU in ``[0, 1]``.
    """
    (start_a, end_a), (start_b, end_b) = a, b
    intersection = max(0.0, min(end_a, end_b) - max(start_a, start_b))
    union = max(0.0, end_a - start_a) + max(0.0, end_b - start_b) - intersection
    return intersection / union if union > 0 else 0.0


def _event(event: Any) -> TimedSentence:
    """One event as ``(start, end, sentence)``.

    Accepts predictions (``{"sentence", "timestamp": [s, e]}``), the project's references
    (``{"start", "end", "caption"}``), objects with ``start``/``end``/``caption`` attributes
    (:class:`data.schema.Event`) and ``(start, end, sentence)`` sequences.
    """
    if isinstance(event, Mapping):
        start, end = event["timestamp"] if "timestamp" in event else (event["start"], event["end"])
        sentence = event["sentence"] if "sentence" in event else event["caption"]
    elif isinstance(event, Sequence):
        start, end, sentence = event
    else:
        start, end, sentence = event.start, event.end, event.caption
    return float(start), float(end), str(sentence)


def _events(video_events: Any) -> list[TimedSentence]:
    """All events of one video; also reads an official reference entry ``{"timestamps", "sentences"}``."""
    if isinstance(video_events, Mapping):
        return [
            (float(s), float(e), str(c)) for (s, e), c in zip(video_events["timestamps"], video_events["sentences"])
        ]
    return [_event(e) for e in video_events]


def _prepare(
    predictions: Mapping[str, Any], references: Mapping[str, Any], max_proposals: int
) -> tuple[dict[str, list[TimedSentence]], dict[str, list[TimedSentence]]]:
    """Normalises both sides and restricts predictions to the reference videos, as densevid_eval does."""
    refs = {vid: _events(events) for vid, events in references.items()}
    if not refs:
        raise ValueError("no reference videos to evaluate against")
    for vid, events in refs.items():
        if not events:
            raise ValueError(f"reference video {vid!r} has no events; dense-captioning scores are undefined for it")
    preds = {vid: _events(predictions[vid])[:max_proposals] for vid in refs if vid in predictions}
    return preds, refs


def _check_tious(tious: Sequence[float]) -> tuple[float, ...]:
    tious = tuple(float(t) for t in tious)
    if not tious or not all(0.0 < t <= 1.0 for t in tious):
        raise ValueError(f"tIoU thresholds must be a non-empty sequence of values in (0, 1], got {tious}")
    return tious


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def localization_scores(
    predictions: Mapping[str, Any],
    references: Mapping[str, Any],
    tious: Sequence[float] = DEFAULT_TIOUS,
    max_proposals: int = MAX_PROPOSALS,
) -> dict[str, float]:
    """Event localisation precision, recall and F1 per tIoU threshold and averaged over thresholds.

    Args:
        predictions: Video id to predicted events (``{"sentence", "timestamp": [s, e]}``).
        references: Video id to reference events (``{"start", "end", "caption"}``, either key style).
        tious: tIoU thresholds.
        max_proposals: Predictions kept per video (the first ones).

    Returns:
        ``precision@t``, ``recall@t``, ``f1@t`` for each threshold ``t`` and their means
        ``precision``, ``recall``, ``f1``.
    """
    tious = _check_tious(tious)
    preds, refs = _prepare(predictions, references, max_proposals)
    scores: dict[str, float] = {}
    for t in tious:
        precisions, recalls = [], []
        for vid, video_refs in refs.items():
            video_preds = preds.get(vid, [])
            # match[i][j]: prediction i overlaps reference j enough.
            match = [[tiou(p[:2], r[:2]) >= t for r in video_refs] for p in video_preds]
            precisions.append(_mean([any(row) for row in match]) if video_preds else 0.0)
            recalls.append(_mean([any(col) for col in zip(*match)]) if video_preds else 0.0)
        precision, recall = _mean(precisions), _mean(recalls)
        scores[f"precision@{t:g}"] = precision
        scores[f"recall@{t:g}"] = recall
        scores[f"f1@{t:g}"] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    for name in ("precision", "recall", "f1"):
        scores[name] = _mean([scores[f"{name}@{t:g}"] for t in tious])
    return scores


def _java_available() -> bool:
    # Looked up on every call (not at import) so that a missing or newly installed Java is noticed.
    return shutil.which("java") is not None


def simple_tokenize(sentence: str) -> str:
    """Lowercase alphanumeric words joined by spaces: the Java-free stand-in for the PTB tokenizer."""
    return " ".join(re.findall(r"[a-z0-9]+", sentence.lower()))


def _clean(sentence: str) -> str:
    # densevid_eval turns non-ASCII characters into spaces. Collapsing whitespace also keeps a
    # sentence on one line, which the line-based PTB tokenizer needs to stay aligned.
    return " ".join("".join(c if ord(c) < 128 else " " for c in sentence).split())


def _tokenize(sentences: set[str], ptb: bool) -> dict[str, str]:
    """Tokenised form of each sentence, by the PTB tokenizer (one Java call) or :func:`simple_tokenize`."""
    cleaned = {s: _clean(s) for s in sentences}
    if ptb:
        # Empty lines are left out: the PTB tokenizer's line-per-sentence output is only reliable for text.
        texts = sorted({c for c in cleaned.values() if c})
        try:
            tokens = PTBTokenizer().tokenize({i: [{"caption": text}] for i, text in enumerate(texts)})
            by_text = {text: tokens[i][0] for i, text in enumerate(texts)}
            by_text[""] = ""
            return {s: by_text[c] for s, c in cleaned.items()}
        except Exception as err:  # noqa: BLE001 - any failure of the Java tokenizer falls back
            warnings.warn(f"PTB tokenizer failed ({err!r}); using a simple lowercase tokenizer", stacklevel=3)
    return {s: simple_tokenize(c) for s, c in cleaned.items()}


@contextlib.contextmanager
def _meteor_scorer() -> Iterator[Meteor]:
    """A METEOR 1.5 scorer (one JVM, ~5-10 s to start) that is always shut down afterwards."""
    scorer = Meteor()
    try:
        yield scorer
    finally:
        # pycocoevalcap's Meteor.__del__ takes the scorer's lock; if scoring raised while holding it,
        # garbage collection would block forever, so release it and stop the JVM here.
        if scorer.lock.locked():
            scorer.lock.release()
        scorer.meteor_p.kill()
        scorer.meteor_p.wait()


def _caption_pairs(
    video_preds: list[TimedSentence], video_refs: list[TimedSentence], t: float
) -> list[tuple[str, str]]:
    """(prediction sentence, reference sentence) pairs of one video at threshold ``t``."""
    pairs: list[tuple[str, str]] = []
    for p_start, p_end, p_sentence in video_preds:
        matched = [r[2] for r in video_refs if tiou((p_start, p_end), r[:2]) >= t]
        pairs += [(p_sentence, r) for r in matched] or [(p_sentence, JUNK_REFERENCE)]
    return pairs


def _coco_scores(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr-D of one video's tokenised pairs, taken as one corpus; 0 without pairs."""
    if not pairs:
        return dict.fromkeys(["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"], 0.0)
    res = {i: [hyp] for i, (hyp, _) in enumerate(pairs)}
    gts = {i: [ref] for i, (_, ref) in enumerate(pairs)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"bleu{n}": float(b) for n, b in enumerate(bleu, start=1)}
    scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    scores["cider"] = float(Cider().compute_score(gts, res)[0])
    return scores


def _meteor_score(scorer: Meteor, pairs: list[tuple[str, str]]) -> float:
    """METEOR of one video's tokenised pairs, taken as one corpus; 0 without pairs."""
    if not pairs:
        return 0.0
    res = {i: [hyp] for i, (hyp, _) in enumerate(pairs)}
    gts = {i: [ref] for i, (_, ref) in enumerate(pairs)}
    return float(scorer.compute_score(gts, res)[0])


def caption_scores(
    predictions: Mapping[str, Any],
    references: Mapping[str, Any],
    tious: Sequence[float] = DEFAULT_TIOUS,
    meteor: bool = True,
    ptb: bool = True,
    max_proposals: int = MAX_PROPOSALS,
) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of the captions, densevid_eval style (see the module docstring).

    Args:
        predictions: Video id to predicted events (``{"sentence", "timestamp": [s, e]}``).
        references: Video id to reference events (``{"start", "end", "caption"}``, either key style).
        tious: tIoU thresholds at which predictions are paired with references.
        meteor: Whether to compute METEOR (needs Java; skipped with a warning without it).
        ptb: Whether to tokenise with the PTB tokenizer (needs Java; without it, or with ``False``,
            a simple lowercase tokenizer is used, which keeps everything in Python).
        max_proposals: Predictions kept per video (the first ones).

    Returns:
        ``bleu1``..``bleu4``, ``rouge_l``, ``cider`` and (when computed) ``meteor``, averaged over
        thresholds, and the same names suffixed ``@t`` for each threshold ``t``.
    """
    tious = _check_tious(tious)
    preds, refs = _prepare(predictions, references, max_proposals)
    java = _java_available()
    if meteor and not java:
        warnings.warn("METEOR skipped: it runs in Java and `java` is not on the PATH", stacklevel=2)
    if ptb and not java:
        warnings.warn("PTB tokenizer needs Java, which is missing; using a simple lowercase tokenizer", stacklevel=2)

    # Tokenise every distinct sentence once (one Java call), then pair the tokenised events.
    tokens = _tokenize({e[2] for events in (*preds.values(), *refs.values()) for e in events}, ptb and java)
    preds = {vid: [(s, e, tokens[c]) for s, e, c in events] for vid, events in preds.items()}
    refs = {vid: [(s, e, tokens[c]) for s, e, c in events] for vid, events in refs.items()}
    pairs = {t: [_caption_pairs(preds.get(vid, []), video_refs, t) for vid, video_refs in refs.items()] for t in tious}

    video_scores = {t: [_coco_scores(video_pairs) for video_pairs in pairs[t]] for t in tious}
    if meteor and java:
        try:
            with _meteor_scorer() as scorer:
                for t in tious:
                    for scores, video_pairs in zip(video_scores[t], pairs[t]):
                        scores["meteor"] = _meteor_score(scorer, video_pairs)
        except Exception as err:  # noqa: BLE001 - a broken METEOR must not cost the other scores
            warnings.warn(f"METEOR skipped: it failed ({err!r})", stacklevel=2)
            for t in tious:
                for scores in video_scores[t]:
                    scores.pop("meteor", None)

    per_threshold = {t: {n: _mean([s[n] for s in video_scores[t]]) for n in video_scores[t][0]} for t in tious}
    result = {name: _mean([per_threshold[t][name] for t in tious]) for name in per_threshold[tious[0]]}
    for t in tious:
        result.update({f"{name}@{t:g}": value for name, value in per_threshold[t].items()})
    return result


def evaluate_dense_captions(
    predictions: Mapping[str, Any],
    references: Mapping[str, Any],
    tious: Sequence[float] = DEFAULT_TIOUS,
    meteor: bool = True,
    ptb: bool = True,
    max_proposals: int = MAX_PROPOSALS,
) -> dict[str, float]:
    """Localisation and caption scores of dense-caption predictions, densevid_eval style.

    Args:
        predictions: Video id to predicted events, e.g. the ``results`` of an ActivityNet
            submission (:func:`trainer.predictions.read_predictions`).
        references: Video id to reference events: lists of ``{"start", "end", "caption"}`` (or
            ``{"timestamp", "sentence"}``) or official entries ``{"timestamps", "sentences"}``.
            Every reference video is scored; predictions for other videos are ignored.
        tious: tIoU thresholds to average over.
        meteor: Whether to compute METEOR (needs Java).
        ptb: Whether to tokenise with the PTB tokenizer (needs Java).
        max_proposals: Predictions kept per video (the first ones).

    Returns:
        The union of :func:`localization_scores` and :func:`caption_scores`: ``precision``,
        ``recall``, ``f1``, ``bleu1``..``bleu4``, ``meteor`` (when computed), ``rouge_l``,
        ``cider``, each also per threshold as ``name@t``. Fractions, not percentages.
    """
    return {
        **localization_scores(predictions, references, tious, max_proposals),
        **caption_scores(predictions, references, tious, meteor, ptb, max_proposals),
    }


class _VideoEventsMetric(Metric):
    """Accumulates (predicted events, reference events) per video across batches and processes.

    torchmetrics can only synchronise tensor states, but dense-caption scores need the whole text
    of every video at once (corpus BLEU, CIDEr document frequencies, a single METEOR process). So
    each ``update`` encodes its videos as JSON lines (one ``[video_id, predictions, references]``
    per line; JSON escapes newlines inside strings, so ``\\n`` only separates videos), stores the
    UTF-8 bytes as one uint8 tensor in a list state, and ``compute`` decodes them again. The state
    reduces by concatenation, so after a DDP sync every process holds every process's lines.

    Call ``update`` per batch and ``compute`` once per epoch; ``forward`` (``metric(...)``) would
    score every batch on its own, starting METEOR's JVM each time.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, tious: Sequence[float] = DEFAULT_TIOUS, max_proposals: int = MAX_PROPOSALS, **kwargs: Any):
        super().__init__(**kwargs)
        self.tious = _check_tious(tious)
        self.max_proposals = max_proposals
        self.add_state("encoded", default=[], dist_reduce_fx="cat")

    def update(
        self,
        predictions: Sequence[Sequence[Any]],
        references: Sequence[Sequence[Any]],
        video_ids: Sequence[str] | None = None,
    ) -> None:
        """Adds a batch of videos.

        Args:
            predictions: Per video, its predicted events (``{"sentence", "timestamp": [s, e]}``).
            references: Per video, its reference events (``{"start", "end", "caption"}``).
            video_ids: Optional ids. Videos seen again under the same id (a distributed sampler
                repeats some to even out its shards) are scored once; without ids, every video
                added counts separately.
        """
        if len(predictions) != len(references) or (video_ids is not None and len(video_ids) != len(predictions)):
            raise ValueError("predictions, references (and video_ids) must have one entry per video")
        ids = video_ids if video_ids is not None else [None] * len(predictions)
        lines = "".join(
            json.dumps([vid, _events(p), _events(r)]) + "\n" for vid, p, r in zip(ids, predictions, references)
        )
        self.encoded.append(torch.frombuffer(bytearray(lines.encode()), dtype=torch.uint8).to(self.device))

    def sync(self, *args: Any, **kwargs: Any) -> None:
        # A process that never called update would enter the all-gather with torchmetrics' stand-in
        # empty tensor, which is float32; all processes must gather the same dtype, so use uint8.
        if isinstance(self.encoded, list) and not self.encoded:
            self.encoded.append(torch.empty(0, dtype=torch.uint8, device=self.device))
        super().sync(*args, **kwargs)

    def _videos(self) -> tuple[dict[str, list], dict[str, list]]:
        """Decodes the state into video id to predictions and to references."""
        # A list of per-update tensors before a DDP sync, one concatenated tensor after it.
        chunks = self.encoded if isinstance(self.encoded, list) else [self.encoded]
        text = b"".join(chunk.cpu().numpy().tobytes() for chunk in chunks).decode()
        predictions, references = {}, {}
        for position, line in enumerate(text.split("\n")[:-1]):
            vid, preds, refs = json.loads(line)
            # Videos without an id are told apart by where they sit in the gathered stream.
            key = f"#{position}" if vid is None else vid
            predictions[key], references[key] = preds, refs
        if not references:
            raise ValueError(f"{type(self).__name__}.compute() called before any update()")
        return predictions, references


class LocalizationMetric(_VideoEventsMetric):
    """Event localisation precision/recall/F1 over tIoU thresholds (:func:`localization_scores`).

    Args:
        tious: tIoU thresholds.
        max_proposals: Predictions kept per video.
        **kwargs: Passed to :class:`torchmetrics.Metric`.
    """

    def compute(self) -> dict[str, float]:
        """Scores of every video added since the last ``reset`` (on all processes)."""
        predictions, references = self._videos()
        return localization_scores(predictions, references, self.tious, self.max_proposals)


class DenseCaptionMetric(_VideoEventsMetric):
    """Localisation and caption scores of dense captions (:func:`evaluate_dense_captions`).

    Args:
        tious: tIoU thresholds.
        meteor: Whether to compute METEOR (needs Java).
        ptb: Whether to tokenise with the PTB tokenizer (needs Java).
        max_proposals: Predictions kept per video.
        **kwargs: Passed to :class:`torchmetrics.Metric`.
    """

    def __init__(
        self,
        tious: Sequence[float] = DEFAULT_TIOUS,
        meteor: bool = True,
        ptb: bool = True,
        max_proposals: int = MAX_PROPOSALS,
        **kwargs: Any,
    ):
        super().__init__(tious, max_proposals, **kwargs)
        self.meteor = meteor
        self.ptb = ptb

    def compute(self) -> dict[str, float]:
        """Scores of every video added since the last ``reset`` (on all processes)."""
        predictions, references = self._videos()
        return evaluate_dense_captions(
            predictions,
            references,
            self.tious,
            self.meteor,
            self.ptb,
            self.max_proposals,
        )
