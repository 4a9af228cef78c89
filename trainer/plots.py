"""The figures the commands draw: recall against budget (``evaluate``), and per video each
selector's score curve with its chosen frames and a filmstrip of them (``evaluate``, ``select``).

matplotlib is imported when a figure is drawn (with the ``Agg`` backend: no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from data.atomic import write_atomic
from models.selectors import FrameSelector


def plot_recall_vs_budget(summary: list[dict[str, Any]], path: Path) -> None:
    """One PNG: event recall@K against the budget K, one line per selector (``evaluate``'s summary rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(s["selector"] for s in summary):
        points = sorted((s["K"], s["recall"]) for s in summary if s["selector"] == name)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set_xlabel("frame budget K")
    ax.set_ylabel("event recall@K")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_video(item: dict[str, Any], selectors: dict[str, FrameSelector], k: int, path: Path) -> None:
    """Per selector: score curve over time, events shaded, chosen frames marked, and a filmstrip."""
    rows = []
    for name, selector in selectors.items():
        with torch.no_grad():
            # A budget-aware importance model ranks frames differently per K: show the curve it decodes at this K.
            scores = selector.scores(item["frames"], item["timestamps"], k).float().cpu()
            idx, shown, _ = selector.choose(item["frames"], item["timestamps"], k)
        rows.append((name, scores, idx, shown))
    plot_selection(path, str(item["video_id"]), item["timestamps"], item["duration"], rows, k, item["events"])


def plot_selection(
    path: Path,
    title: str,
    timestamps: torch.Tensor,
    duration: float,
    rows: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]],
    k: int,
    events: list[dict[str, Any]] = (),
) -> None:
    """One PNG: per selector its score curve, the chosen frames marked, and a filmstrip of what it shows.

    Args:
        path: PNG to write (atomically).
        title: What the figure is of (a video id or file name).
        timestamps: Every candidate frame's time in seconds ``(T,)``.
        duration: The video's length in seconds (the time axis).
        rows: Per selector ``(name, scores (T,), chosen indices (K,), shown frames uint8 (K, 3, H, W))``.
        k: The frame budget (for the title).
        events: Annotated events (``start``, ``end``) to shade; none for a video without annotations.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stamps = timestamps.double().numpy()
    fig, axes = plt.subplots(len(rows), 2, figsize=(13, 1.7 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]})  # fmt: skip
    for (name, scores, idx, shown), (curve, strip) in zip(rows, axes):
        scores = scores.double()
        scores = (scores - scores.min()) / (scores.max() - scores.min() + 1e-9)  # curves of any scale side by side
        for e in events:
            curve.axvspan(e["start"], e["end"], color="tab:green", alpha=0.2)
        curve.plot(stamps, scores.numpy(), color="tab:blue", lw=1)
        curve.scatter(stamps[idx.numpy()], scores[idx].numpy(), color="tab:red", zorder=3, s=18)
        curve.set_xlim(0, duration)
        curve.set_yticks([])
        curve.set_ylabel(name, rotation=0, ha="right", va="center")
        # A white column between frames, so that frames of one scene do not run into each other.
        gap = torch.full((3, shown.shape[2], max(1, shown.shape[3] // 32)), 255, dtype=torch.uint8)
        pieces = [piece for frame in shown for piece in (frame, gap)][:-1]
        strip.imshow(torch.cat(pieces, dim=2).permute(1, 2, 0).numpy())
        step = shown.shape[3] + gap.shape[2]
        strip.set_xticks([i * step + shown.shape[3] / 2 for i in range(len(shown))],
                         [f"{stamps[i]:.1f}s" for i in idx.tolist()], fontsize=7)  # fmt: skip
        strip.set_yticks([])
        strip.tick_params(length=0)
        for spine in strip.spines.values():
            spine.set_visible(False)
    shaded = "green: events, " if events else ""
    axes[0][0].set_title(f"{title}: scores ({shaded}red: chosen, K={k})")
    axes[0][1].set_title("chosen frames")
    axes[-1][0].set_xlabel("time (s)")
    fig.tight_layout()
    write_atomic(Path(path), lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
