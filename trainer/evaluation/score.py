"""Score dense-caption submissions against reference files, no videos needed: ``python -m trainer score``.

Reads ActivityNet-format submissions (``{"results": {video_id: [{"sentence", "timestamp"}]}}``, as
``predict`` and ``evaluate --generate`` write them, or any other method's) and official reference
files, and writes the same tables as ``evaluate`` (``results.md``, ``results.csv``,
``results.json``): localisation precision/recall/F1, BLEU-1..4, METEOR, ROUGE-L, CIDEr and
SODA_c, under the official protocol of :mod:`trainer.evaluation.caption_metrics` (several reference files
as densevid_eval takes them; every reference video counts, a missing one scores 0).

Every file is checked before anything is scored: a file that breaks the format stops the command
with exit code 2 and one line naming the file, the video id, the proposal's (or reference event's)
index and the field. Reversed (``start > end``) and negative timestamps are scored as densevid_eval
scores them (a reversed segment overlaps nothing), counted per file in ``results.md`` and
``results.json`` (``meta.unusual_timestamps``), and warned about on stderr.

Examples::

    python -m trainer score --pred outputs/predictions.json --ref val_1.json val_2.json
    python -m trainer score --pred a.json b.json --ref val_1.json val_2.json --output outputs/scores
"""

from __future__ import annotations

from argparse import ArgumentTypeError

import sys
from pathlib import Path
from typing import Any

from trainer.cli_helpers import add_protocol_arguments, command_parser, parse_command, protocol_options
from trainer.evaluation.caption_metrics import (
    DEFAULT_TIOUS,
    MAX_PROPOSALS,
    DenseCaptionFormatError,
    evaluate_dense_captions,
    meteor_session,
    read_reference_file,
    read_submission_file,
    unusual_timestamps,
)
from trainer.evaluation.tables import write_results


def score_files(
    predictions: list[str | Path],
    references: list[str | Path],
    tious: tuple[float, ...] = DEFAULT_TIOUS,
    java: bool = True,
    version: str = "2018",
    soda: str | None = "auto",
    max_proposals: int = MAX_PROPOSALS,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """One table row per submission: its name, video counts and every score.

    Every file is read and checked before the first is scored.

    Args:
        predictions: Submission files.
        references: Official reference files (e.g. ``val_1.json``, ``val_2.json``).
        tious: tIoU thresholds.
        java: Whether METEOR, SODA_c and the PTB tokenizer may run (approximate scores without).
        version: densevid_eval form to follow (``"2018"`` or ``"2019"``).
        soda: SODA_c mode (see :func:`trainer.evaluation.caption_metrics.evaluate_dense_captions`).
        max_proposals: Predictions kept per video (at least 1).

    Returns:
        Rows with ``submission``, ``videos`` (with predictions, among the reference videos),
        ``reference_videos`` and the scores (fractions); and per file (as given), its counts of
        reversed and negative timestamps (:func:`~trainer.evaluation.caption_metrics.unusual_timestamps`).

    Raises:
        DenseCaptionFormatError: If a file breaks the format (the message names the file, video,
            index and field).
        ValueError: If two submissions share a file name (their rows could not be told apart), or
            ``max_proposals`` is below 1 (checked by the scoring functions).
    """
    names = [Path(p).stem for p in predictions]
    if len(set(names)) != len(names):
        raise ValueError(f"submissions need distinct file names to be told apart in the table: {names}")
    refs = [read_reference_file(path) for path in references]
    submissions = [read_submission_file(path) for path in predictions]
    unusual = {str(path): unusual_timestamps(content) for path, content in zip([*predictions, *references],
                                                                               [*submissions, *refs])}  # fmt: skip
    reference_videos = set().union(*refs)
    rows = []
    with meteor_session():  # one METEOR JVM for every submission
        for name, submission in zip(names, submissions):
            scores = evaluate_dense_captions(submission, refs, tious, meteor=java, ptb=java,
                                             max_proposals=max_proposals, version=version, soda=soda if java else None)  # fmt: skip
            covered = len(reference_videos & set(submission))
            rows.append({"submission": name, "videos": covered, "reference_videos": len(reference_videos), **scores})
    return rows, unusual


def _unusual_note(unusual: dict[str, dict[str, int]]) -> str:
    """One sentence on the files with reversed or negative timestamps; empty when none has any."""
    flagged = [f"`{path}`: {c['reversed']} reversed (start > end), {c['negative']} negative"
               for path, c in unusual.items() if c["reversed"] or c["negative"]]  # fmt: skip
    if not flagged:
        return ""
    return ("Timestamps scored as densevid_eval scores them (a reversed segment overlaps nothing, a negative "
            f"time counts as it is): {'; '.join(flagged)}.")  # fmt: skip


def _tiou(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value <= 1.0:  # NaN fails this too
        raise ArgumentTypeError(f"a tIoU threshold is in (0, 1], got {text}")
    return value


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise ArgumentTypeError(f"must be at least 1, got {value} (densevid_eval keeps 1000)")
    return value


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Entry point of ``python -m trainer score``; returns the table rows."""
    parser = command_parser("score", __doc__.split("\n")[0])
    parser.add_argument("--pred", nargs="+", required=True, help="submission JSON file(s)")
    parser.add_argument("--ref", nargs="+", required=True, help="reference file(s), e.g. val_1.json val_2.json")
    parser.add_argument("--output", default=None, help="folder for the tables (default: outputs/scores/<first pred>)")
    parser.add_argument("--tious", nargs="+", type=_tiou, default=list(DEFAULT_TIOUS),
                        help="tIoU thresholds, each in (0, 1]")  # fmt: skip
    parser.add_argument("--max_proposals", "--max-proposals", type=_at_least_one, default=MAX_PROPOSALS,
                        help="predictions kept per video, the first ones (at least 1)")  # fmt: skip
    add_protocol_arguments(parser)
    args = parse_command(parser, argv)
    for path in [*args.pred, *args.ref]:
        if not Path(path).is_file():
            parser.error(f"file not found: {path}")
    java, version, soda = protocol_options(args)
    try:
        rows, unusual = score_files(args.pred, args.ref, tuple(args.tious), java, version, soda, args.max_proposals)
    except DenseCaptionFormatError as err:
        # A data error, not a usage error: one line in argparse's form, no usage text, no traceback.
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    note = _unusual_note(unusual)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    output = Path(args.output or f"outputs/scores/{Path(args.pred[0]).stem}")
    meta = {"predictions": args.pred, "references": args.ref, "tious": args.tious, "version": version,
            "soda": soda, "java": java, "max_proposals": args.max_proposals, "unusual_timestamps": unusual}  # fmt: skip
    title = (f"Dense-caption scores against {', '.join(args.ref)} (densevid_eval {args.evaluator_version} protocol, "
             f"tIoU {', '.join(f'{t:g}' for t in args.tious)}; fractions, x100 for the usual tables).")  # fmt: skip
    if note:
        title += f"\n\n{note}"
    write_results(output, rows, meta, title)
    print((output / "results.md").read_text())
    print(f"wrote {output}/results.{{md,csv,json}}")
    return rows


if __name__ == "__main__":
    main()
