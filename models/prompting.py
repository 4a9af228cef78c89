"""Dense-caption text format shared by training targets, generation parsing and prediction files.

A dense caption is one event per line, ``MM:SS-MM:SS caption``, ordered by start time. The
same format is what SmolVLM2 sees as frame labels (``Frame from MM:SS:``), so the model can tie
caption times to the timestamps of the frames it was shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_INSTRUCTION = (
    "Describe every event in this video, one per line, as MM:SS-MM:SS followed by a short caption."
)

_LINE = re.compile(r"^\s*(\d{1,3}):(\d{2})\s*-\s*(\d{1,3}):(\d{2})\s*[:\-]?\s*(.+?)\s*$")


@dataclass
class CaptionLine:
    """One parsed event: times in seconds and its caption."""

    start: float
    end: float
    caption: str


def format_timestamp(seconds: float) -> str:
    """``MM:SS`` with the seconds truncated, exactly as SmolVLM2's ``Frame from MM:SS:`` labels."""
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def format_dense_caption(events: list[dict] | list) -> str:
    """Formats events (objects or dicts with ``start``, ``end``, ``caption``) one per line."""

    def get(e, key):
        return e[key] if isinstance(e, dict) else getattr(e, key)

    ordered = sorted(events, key=lambda e: (get(e, "start"), get(e, "end")))
    return "\n".join(
        f"{format_timestamp(get(e, 'start'))}-{format_timestamp(get(e, 'end'))} {get(e, 'caption').strip()}"
        for e in ordered
    )


def parse_dense_caption(text: str) -> list[CaptionLine]:
    """Parses generated text back into events; lines that do not match the format are dropped.

    Start and end are swapped if the model wrote them the wrong way round.
    """
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        start = int(m.group(1)) * 60 + int(m.group(2))
        end = int(m.group(3)) * 60 + int(m.group(4))
        out.append(CaptionLine(float(min(start, end)), float(max(start, end)), m.group(5)))
    return out
