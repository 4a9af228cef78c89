"""Score dense-caption submissions against reference files, no videos needed: ``python -m trainer score``.

Reads ActivityNet-format submissions (``{"results": {video_id: [{"sentence", "timestamp"}]}}``, as
``predict`` and ``evaluate --generate`` write them, or any other method's) and official reference
files, and writes the same tables as ``evaluate`` (``results.md``, ``results.csv``,
``results.json``): localisation precision/recall/F1, BLEU-1..4, METEOR, ROUGE-L, CIDEr and
SODA_c, under the official protocol of :mod:`trainer.evaluation.caption_metrics` (several reference files
as densevid_eval takes them; every reference video counts, a missing one scores 0).

Examples::

    python -m trainer score --pred outputs/predictions.json --ref val_1.json val_2.json
    python -m trainer score --pred a.json b.json --ref val_1.json val_2.json --output outputs/scores
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainer.evaluation.caption_metrics import (
    DEFAULT_TIOUS,
    MAX_PROPOSALS,
    SODA_MODES,
    evaluate_dense_captions,
    meteor_session,
    read_reference_file,
)
from trainer.predictions import read_predictions
from trainer.evaluation.tables import write_results


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """The caption-scoring options ``score`` and ``evaluate`` share."""
    parser.add_argument("--evaluator-version", default="2018", choices=["2018", "2019"],
                        help="densevid_eval form the caption scores follow")  # fmt: skip
    parser.add_argument("--soda", default="auto", choices=["auto", *SODA_MODES, "none"],
                        help="SODA_c mode with several reference files (see trainer.evaluation.caption_metrics)")  # fmt: skip
    parser.add_argument("--no-java", action="store_true",
                        help="skip METEOR, SODA_c and the PTB tokenizer (Java): approximate caption scores")  # fmt: skip


def protocol_options(args: argparse.Namespace) -> tuple[bool, str, str | None]:
    """``(java, version, soda)`` from :func:`add_protocol_arguments`' options.

    SODA_c runs in Java, so ``--no-java`` turns it off whatever ``--soda`` says.
    """
    java = not args.no_java
    return java, args.evaluator_version, None if args.soda == "none" or not java else args.soda


def score_files(
    predictions: list[str | Path],
    references: list[str | Path],
    tious: tuple[float, ...] = DEFAULT_TIOUS,
    java: bool = True,
    version: str = "2018",
    soda: str | None = "auto",
    max_proposals: int = MAX_PROPOSALS,
) -> list[dict[str, Any]]:
    """One table row per submission: its name, video counts and every score.

    Args:
        predictions: Submission files.
        references: Official reference files (e.g. ``val_1.json``, ``val_2.json``).
        tious: tIoU thresholds.
        java: Whether METEOR, SODA_c and the PTB tokenizer may run (approximate scores without).
        version: densevid_eval form to follow (``"2018"`` or ``"2019"``).
        soda: SODA_c mode (see :func:`trainer.evaluation.caption_metrics.evaluate_dense_captions`).
        max_proposals: Predictions kept per video.

    Returns:
        Rows with ``submission``, ``videos`` (with predictions, among the reference videos),
        ``reference_videos`` and the scores (fractions).

    Raises:
        ValueError: If two submissions share a file name (their rows could not be told apart).
    """
    names = [Path(p).stem for p in predictions]
    if len(set(names)) != len(names):
        raise ValueError(f"submissions need distinct file names to be told apart in the table: {names}")
    refs = [read_reference_file(path) for path in references]
    reference_videos = set().union(*refs)
    rows = []
    with meteor_session():  # one METEOR JVM for every submission
        for name, path in zip(names, predictions):
            submission = read_predictions(path)
            scores = evaluate_dense_captions(submission, refs, tious, meteor=java, ptb=java,
                                             max_proposals=max_proposals, version=version, soda=soda if java else None)  # fmt: skip
            covered = len(reference_videos & set(submission))
            rows.append({"submission": name, "videos": covered, "reference_videos": len(reference_videos), **scores})
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Entry point of ``python -m trainer score``; returns the table rows."""
    parser = argparse.ArgumentParser(prog="python -m trainer score", description=__doc__.split("\n")[0])
    parser.add_argument("--pred", nargs="+", required=True, help="submission JSON file(s)")
    parser.add_argument("--ref", nargs="+", required=True, help="reference file(s), e.g. val_1.json val_2.json")
    parser.add_argument("--output", default=None, help="folder for the tables (default: outputs/scores/<first pred>)")
    parser.add_argument("--tious", nargs="+", type=float, default=list(DEFAULT_TIOUS))
    parser.add_argument("--max-proposals", type=int, default=MAX_PROPOSALS, help="predictions kept per video")
    add_protocol_arguments(parser)
    args = parser.parse_args(argv)
    for path in [*args.pred, *args.ref]:
        if not Path(path).is_file():
            parser.error(f"file not found: {path}")
    java, version, soda = protocol_options(args)
    rows = score_files(args.pred, args.ref, tuple(args.tious), java, version, soda, args.max_proposals)
    output = Path(args.output or f"outputs/scores/{Path(args.pred[0]).stem}")
    meta = {"predictions": args.pred, "references": args.ref, "tious": args.tious, "version": version,
            "soda": soda, "java": java, "max_proposals": args.max_proposals}  # fmt: skip
    title = (f"Dense-caption scores against {', '.join(args.ref)} (densevid_eval {args.evaluator_version} protocol, "
             f"tIoU {', '.join(f'{t:g}' for t in args.tious)}; fractions, x100 for the usual tables).")  # fmt: skip
    write_results(output, rows, meta, title)
    print((output / "results.md").read_text())
    print(f"wrote {output}/results.{{md,csv,json}}")
    return rows


if __name__ == "__main__":
    main()
