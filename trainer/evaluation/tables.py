"""The result tables ``evaluate`` and ``score`` write: ``results.md``, ``results.csv``, ``results.json``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from data.atomic import write_atomic

APPROXIMATE_BANNER = [
    "> **APPROXIMATE CAPTION SCORES — NOT COMPARABLE TO PUBLISHED NUMBERS.**",
    "> Java was not available (or `--no_java` was given): METEOR and SODA_c are left out and sentences were",
    "> tokenised without the PTB tokenizer, so BLEU, ROUGE-L and CIDEr move too. Install the project as",
    "> README says (it brings a Java runtime) and run again for the official scores.",
]


def write_results(output: Path, summary: list[dict[str, Any]], meta: dict[str, Any], title: str) -> None:
    """Writes one summary table three ways.

    ``results.json`` has ``meta`` and every summary value; ``results.csv`` every column;
    ``results.md`` a title line and the columns without per-threshold copies (``name@t``), which
    the CSV and JSON keep. Rows whose caption scores are approximate (``approximate`` is true: no
    Java) put a banner above the Markdown table, so the numbers cannot be mistaken for official ones.

    Args:
        output: Folder to write into (created).
        summary: One dict per table row.
        meta: What produced the table (command arguments, counts); stored in the JSON.
        title: First line of the Markdown file.
    """
    output.mkdir(parents=True, exist_ok=True)
    approximate = any(row.get("approximate") for row in summary)
    rows = [{k: v for k, v in row.items() if k != "approximate"} for row in summary]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    write_atomic(
        output / "results.json",
        json.dumps({"meta": meta, "approximate_caption_scores": approximate, "summary": rows}, indent=1),
    )
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(output / "results.csv", text.getvalue())

    def fmt(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    shown = [c for c in columns if "@" not in c]
    lines = [title, ""]
    if approximate:
        lines += [*APPROXIMATE_BANNER, ""]
    lines += ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in shown) + " |" for row in rows]
    write_atomic(output / "results.md", "\n".join(lines) + "\n")
