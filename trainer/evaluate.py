"""Compare selectors at equal frame budgets: ``python -m trainer evaluate --config CONFIG ...``.

Every selector runs on the same videos at the same budgets K. Without a VLM it reports event
recall@K, temporal coverage and selection speed; with the config's VLM it adds the caption NLL
given the chosen frames and, with ``--generate``, ActivityNet-style dense-captioning scores of
the generated captions. Results go to ``--output`` as ``results.md`` (table), ``results.csv``,
``results.json`` (aggregates and per-video rows) and PNG plots: recall vs budget per selector, and
per video the selectors' score curves with ground-truth events shaded, chosen frames marked and a
filmstrip of the chosen frames.

Examples::

    python -m trainer evaluate --config configs/smoke_rl.yaml --ckpt checkpoints/smoke_rl/last.ckpt \\
        --selectors learned uniform pixel_l1 xcorr --budgets 4 8 16
    python -m trainer evaluate --config configs/smoke.yaml --ckpt checkpoints/smoke/last.ckpt \\
        --selectors uniform xcorr --budgets 4 --generate
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from data.datamodule import collate_videos
from data.encodings import FrameEncodings
from models.prompting import format_dense_caption, parse_dense_caption
from models.selectors import (
    FrameAveragingSelector,
    FrameSelector,
    OpticalFlowSelector,
    PixelDiffSelector,
    RandomSelector,
    UniformSelector,
)
from models.xcorr import CrossCorrelationSelector
from trainer.checkpointing import restore_trainable_state
from trainer.metrics import event_recall, temporal_coverage

# Short names for the baselines; anything else is a dotted class path (built with no arguments)
# or "learned" (the selector of the evaluated checkpoint).
BASELINES = {
    "uniform": UniformSelector,
    "random": RandomSelector,
    "pixel_l1": lambda: PixelDiffSelector(p=1),
    "pixel_l2": lambda: PixelDiffSelector(p=2),
    "flow": OpticalFlowSelector,
    "averaging": FrameAveragingSelector,
    "xcorr": lambda: CrossCorrelationSelector(size=64, grayscale=False),
    "xcorr_gray": lambda: CrossCorrelationSelector(size=128),
}


def learned_selector(module: Any) -> FrameSelector:
    """The selector a trained module uses at inference, as a :class:`FrameSelector`."""
    if hasattr(module, "encoder") and hasattr(module, "decoder"):  # SelectorTrainer
        from models.importance import ImportanceSelector

        return ImportanceSelector(module.selector, module.encoder, decoder=module.decoder).eval()
    return module.selector


def build_selector(name: str, module: Any) -> FrameSelector:
    """A selector from a short name, ``learned`` or a dotted class path."""
    if name == "learned":
        if module is None:
            raise ValueError("selector 'learned' needs --config (and usually --ckpt) of a trained module")
        return learned_selector(module)
    if name in BASELINES:
        return BASELINES[name]()
    if "." in name:
        module_name, _, cls = name.rpartition(".")
        return getattr(importlib.import_module(module_name), cls)()
    raise ValueError(f"unknown selector {name!r}: use one of {sorted(BASELINES)}, 'learned' or a class path")


def _chosen(selector: FrameSelector, frames: torch.Tensor, stamps: torch.Tensor, k: int):
    """(shown frames, their times, indices, seconds spent) for one video."""
    start = time.perf_counter()
    with torch.no_grad():
        idx, shown, times = selector.choose(frames, stamps, k)  # one selection: scores are computed once
    return shown, times, idx, time.perf_counter() - start


def evaluate_selectors(
    items: list[dict[str, Any]],
    selectors: dict[str, FrameSelector],
    budgets: list[int],
    vlm: Any = None,
    generate: bool = False,
    seed: int = 0,
    encodings: FrameEncodings | None = None,
) -> tuple[list[dict[str, Any]], dict[tuple[str, int], dict[str, list]]]:
    """Runs every selector at every budget on every video.

    Args:
        items: Decoded videos (dataset items: ``frames``, ``timestamps``, ``events``, ...).
        selectors: Name to selector.
        budgets: Frame budgets K.
        vlm: Optional :class:`models.vlm.SmolVLM` for caption NLL and generation.
        generate: Also generate dense captions (needs ``vlm``).
        seed: Seed for anything random (random selector, sampling-free generation).
        encodings: The VLM's image embeddings stage: every selector and budget then reads the
            same per-frame rows, each frame encoded at most once per video (``None``: pixels).

    Returns:
        Per-video rows, and per (selector, K) the predictions/references for caption scoring.
    """
    torch.manual_seed(seed)
    rows: list[dict[str, Any]] = []
    captions: dict[tuple[str, int], dict[str, list]] = defaultdict(lambda: {"pred": {}, "ref": {}})
    for item in tqdm(items, desc="evaluating videos"):
        frames, stamps, events = item["frames"], item["timestamps"], item["events"]
        rows_of = None
        if encodings is not None and vlm is not None:
            rows_of = encodings.attach(collate_videos([item]))["image_embeds"][0]
        for name, selector in selectors.items():
            for k in budgets:
                if k > len(stamps):
                    continue  # the same videos are skipped for every selector at this budget
                shown, times, idx, seconds = _chosen(selector, frames, stamps, k)
                row = {
                    "video_id": item["video_id"],
                    "selector": name,
                    "K": k,
                    "recall": event_recall(stamps[idx], events).item(),
                    "coverage": temporal_coverage(times, item["duration"]).item(),
                    "seconds": seconds,
                    "frames": len(stamps),
                    "chosen_times": [round(float(t), 3) for t in times],
                }
                if vlm is not None:
                    target = format_dense_caption(events)
                    if rows_of is not None and selector.shows_candidates:
                        visual = {"frames": None, "image_embeds": [rows_of.rows(idx)]}
                    else:
                        visual = {"frames": [shown]}
                    batch = vlm.build_batch(**visual, timestamps=[times], durations=[item["duration"]],
                                            targets=[target], queries=[item["query"]])  # fmt: skip
                    row["nll"] = vlm.sample_losses(batch).item()
                    if generate:
                        text = vlm.generate(**visual, timestamps=[times], durations=[item["duration"]],
                                            queries=[item["query"]])[0]  # fmt: skip
                        pred = [{"sentence": e.caption, "timestamp": [e.start, e.end]} for e in parse_dense_caption(text)]
                        captions[(name, k)]["pred"][item["video_id"]] = pred
                        captions[(name, k)]["ref"][item["video_id"]] = events
                rows.append(row)
    return rows, captions


def aggregate(rows: list[dict[str, Any]], captions: dict, java: bool = True) -> list[dict[str, Any]]:
    """Mean metrics per (selector, K); frames/s is candidate frames scored per second of selection."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["selector"], row["K"])].append(row)
    out = []
    for (name, k), group in groups.items():
        seconds = sum(r["seconds"] for r in group)
        summary = {
            "selector": name,
            "K": k,
            "videos": len(group),
            "recall": sum(r["recall"] for r in group) / len(group),
            "coverage": sum(r["coverage"] for r in group) / len(group),
            "ms_per_video": 1000 * seconds / len(group),
            "frames_per_s": sum(r["frames"] for r in group) / max(seconds, 1e-9),
        }
        if "nll" in group[0]:
            summary["nll"] = sum(r["nll"] for r in group) / len(group)
        if (name, k) in captions:
            from trainer.caption_metrics import evaluate_dense_captions

            scores = evaluate_dense_captions(
                captions[(name, k)]["pred"], captions[(name, k)]["ref"], meteor=java, ptb=java
            )
            summary.update({key: value for key, value in scores.items() if value is not None})
        out.append(summary)
    return sorted(out, key=lambda s: (s["K"], s["selector"]))


def write_tables(
    summary: list[dict[str, Any]], rows: list[dict[str, Any]], captions: dict, output: Path, meta: dict
) -> None:
    """``results.json`` (everything, generated captions included), ``results.csv`` and ``results.md``."""
    columns = list(dict.fromkeys(key for s in summary for key in s))
    generated = {f"{name}@{k}": value for (name, k), value in captions.items()}
    payload = {"meta": meta, "summary": summary, "videos": rows, "captions": generated}
    (output / "results.json").write_text(json.dumps(payload, indent=1))
    with open(output / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(summary)

    def fmt(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = [
        f"Evaluation of {meta['videos']} videos ({meta['split']} split of `{meta['config']}`), seed {meta['seed']}.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(fmt(s.get(c, "")) for c in columns) + " |" for s in summary]
    (output / "results.md").write_text("\n".join(lines) + "\n")


def plot_recall_vs_budget(summary: list[dict[str, Any]], path: Path) -> None:
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames, stamps = item["frames"], item["timestamps"].numpy()
    fig, axes = plt.subplots(
        len(selectors), 2, figsize=(13, 1.7 * len(selectors)), squeeze=False, gridspec_kw={"width_ratios": [3, 2]}
    )
    for row, (name, selector) in enumerate(selectors.items()):
        curve, strip = axes[row]
        with torch.no_grad():
            scores = selector.scores(frames, item["timestamps"]).float().cpu()
        scores = (scores - scores.min()) / (scores.max() - scores.min() + 1e-9)
        shown, times, idx, _ = _chosen(selector, frames, item["timestamps"], k)
        for e in item["events"]:
            curve.axvspan(e["start"], e["end"], color="tab:green", alpha=0.2)
        curve.plot(stamps, scores.numpy(), color="tab:blue", lw=1)
        curve.scatter(times.numpy(), scores[idx].numpy(), color="tab:red", zorder=3, s=18)
        curve.set_xlim(0, item["duration"])
        curve.set_yticks([])
        curve.set_ylabel(name, rotation=0, ha="right", va="center")
        strip.imshow(torch.cat(list(shown), dim=2).permute(1, 2, 0).numpy())
        strip.set_axis_off()
    axes[0][0].set_title(f"{item['video_id']}: scores (green: events, red: chosen, K={k})")
    axes[0][1].set_title("chosen frames")
    axes[-1][0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load_trained(config: str | None, ckpt: str | None, overrides: list[str]):
    """(data module, LightningModule or None) from a config, with checkpoint weights if given."""
    from trainer.__main__ import main as cli_main

    if config is None:
        raise ValueError("--config is required (it defines the data and, for 'learned', the model)")
    # The CLI is driven by ``args`` alone; with the evaluate/export command line still in
    # sys.argv, LightningCLI would warn that both are given.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = cli_main(["--config", config, *overrides], run=False)
    finally:
        sys.argv = argv
    module = cli.model
    if ckpt is not None:
        restore_trainable_state(module, torch.load(ckpt, map_location="cpu", weights_only=True))
    module.eval()
    return cli.datamodule, module


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m trainer evaluate``; returns the written summary."""
    parser = argparse.ArgumentParser(prog="python -m trainer evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="training config: data (and model for 'learned'/VLM)")
    parser.add_argument("--ckpt", default=None, help="checkpoint of the trained module")
    parser.add_argument("--selectors", nargs="+", default=["uniform", "random", "pixel_l1", "xcorr"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[4, 8, 16])
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--max-videos", type=int, default=None)
    parser.add_argument("--output", default=None, help="folder (default outputs/eval/<config name>)")
    parser.add_argument("--no-vlm", action="store_true", help="skip caption NLL even if the config has a VLM")
    parser.add_argument("--generate", action="store_true", help="generate captions and score them (slow)")
    parser.add_argument("--no-java", action="store_true",
                        help="skip METEOR and the PTB tokenizer (both run in Java; fast, pure-Python scores)")  # fmt: skip
    parser.add_argument("--plot-videos", type=int, default=3, help="videos to draw score curves for")
    parser.add_argument("--share-decoder", action="store_true",
                        help="score-based baselines use the learned selector's decoder (equal decoders)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. data.fps=1")  # fmt: skip
    args = parser.parse_args(argv)
    if any(k < 1 for k in args.budgets):
        parser.error("--budgets must be positive")
    overrides = [part for kv in args.set for part in (f"--{kv.split('=', 1)[0]}", kv.split("=", 1)[1])]
    datamodule, module = load_trained(args.config, args.ckpt, overrides)
    datamodule.set_frame_budget(1)  # short videos are skipped per budget below, not dropped here
    datamodule.prepare_data()
    datamodule.setup({"train": "fit", "val": "validate", "test": "test"}[args.split])
    dataset = datamodule.datasets[args.split]
    indices = range(len(dataset) if args.max_videos is None else min(args.max_videos, len(dataset)))
    items = [item for item in (dataset[i] for i in indices) if item is not None]
    if not items:
        raise RuntimeError(f"no decodable videos in the {args.split} split")
    selectors = {name: build_selector(name, module) for name in args.selectors}
    for selector in selectors.values():
        if isinstance(selector, RandomSelector):
            selector.seed = args.seed  # --seed decides the random baseline's draws too
    if args.share_decoder:
        shared = getattr(module, "decoder", None) or getattr(getattr(module, "selector", None), "decoder", None)
        if shared is None:
            parser.error("--share-decoder: the checkpoint's module has no decoder to share")
        for name, selector in selectors.items():
            if name != "learned" and hasattr(selector, "decoder"):
                selector.decoder = shared  # compare scores, not decoders
    vlm = None if args.no_vlm else getattr(module, "vlm", None)
    if args.generate and vlm is None:
        parser.error("--generate needs a config with a VLM")
    encodings = None
    if vlm is not None:
        vlm.check_frame_budget(max(args.budgets))  # before any video is decoded
        blocker = vlm.embeds_blocker()
        if blocker is None:
            # Rows the training run cached (data.feature_cache) are read; others are computed
            # once per video and frame, whatever the number of selectors and budgets.
            encodings = datamodule.set_frame_encoders(image_embeds=vlm.frame_encoder(), embed_all_frames=False)
        else:
            print(f"the VLM reads pixels: {blocker}")
    budgets = sorted(set(args.budgets))
    rows, captions = evaluate_selectors(items, selectors, budgets, vlm, args.generate, args.seed, encodings)
    summary = aggregate(rows, captions, java=not args.no_java)
    output = Path(args.output or f"outputs/eval/{Path(args.config).stem}")
    output.mkdir(parents=True, exist_ok=True)
    meta = {"config": args.config, "ckpt": args.ckpt, "split": args.split, "videos": len(items), "seed": args.seed,
            "budgets": sorted(set(args.budgets)), "selectors": args.selectors,
            "shared_decoder": args.share_decoder}  # fmt: skip
    write_tables(summary, rows, captions, output, meta)
    plot_recall_vs_budget(summary, output / "recall_vs_budget.png")
    k_plot = min(args.budgets)
    for item in items[: args.plot_videos]:
        if k_plot <= len(item["timestamps"]):
            plot_video(item, selectors, k_plot, output / f"video_{item['video_id']}.png")
    print((output / "results.md").read_text())
    print(f"wrote {output}/results.{{md,csv,json}} and plots")
    return {"summary": summary, "output": str(output)}


if __name__ == "__main__":
    main()
