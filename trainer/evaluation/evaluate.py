"""Compare selectors at equal frame budgets over whole splits: ``python -m trainer evaluate``.

Every selector runs on the same videos at the same budgets K. Without a VLM it reports event
recall@K, temporal coverage and selection speed; with the config's VLM it adds the caption NLL
given the chosen frames and, with ``--generate``, dense-captioning scores of the generated captions
under the official ActivityNet protocol (:mod:`trainer.evaluation.caption_metrics`; ``--ref`` names the
official reference files, e.g. ``val_1.json val_2.json``).

It streams: a DataLoader decodes videos in worker processes while the selectors and the VLM run
on one video at a time (on the GPU when there is one), and each finished video is appended as one
JSON line to ``rows.jsonl`` in ``--output``, so memory does not grow with the split and a killed
run loses at most the video it was on. ``--resume`` skips the videos already there.
``--num_shards N --shard i`` splits the split over processes or GPUs (``rows.shard<i>of<N>.jsonl``);
the last shard to finish, or ``--merge``, builds the tables from every shard's rows:
``results.md``, ``results.csv``, ``results.json`` (aggregates and settings),
``recall_vs_budget.png``, with ``--generate`` one ActivityNet submission per selector and budget in
``captions/`` plus the references in ``references.json`` (both readable by
``python -m trainer score``), and for the first ``--plot_videos`` videos a figure with each
selector's score curve, the annotated events shaded, the chosen frames marked and a filmstrip
(``video_NAME.png``, ``NAME`` the video's id made safe by :func:`data.outputs.safe_names`; its
record in ``rows.jsonl`` names the file as ``plot``). A run in which no video could be evaluated
stops with an error (exit status 1) naming the first reasons; an ``--output`` that is a file or
cannot be written is refused (status 2) before any model loads.

Examples::

    python -m trainer evaluate --config configs/smoke_rl.yaml --ckpt checkpoints/smoke_rl/last.ckpt \\
        --selectors learned uniform pixel_l1 xcorr --budgets 4 8 16
    python -m trainer evaluate --config configs/smoke.yaml --ckpt checkpoints/smoke/last.ckpt \\
        --selectors uniform xcorr --budgets 4 --generate
    # one shard per GPU; the last one to finish writes the tables
    for i in 0 1 2 3; do CUDA_VISIBLE_DEVICES=$i python -m trainer evaluate --config ... \\
        --output outputs/eval/big --num_shards 4 --shard $i & done; wait
    # fit's overrides: the same run at 1 frame per second
    python -m trainer evaluate --config configs/smoke.yaml --data.fps 1 --selectors uniform xcorr
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from data.atomic import write_atomic
from data.outputs import check_writable, safe_names
from data.datamodule import SPLIT_STAGES, VideoItems, as_is, collate_videos, skip_report
from data.encodings import FrameEncodings
from models.prompting import format_dense_caption, parse_dense_caption
from models.selectors import FrameSelector, RandomSelector
from trainer.cli_helpers import (
    RowsWriter,
    add_protocol_arguments,
    add_run_arguments,
    build_selector,
    check_shard,
    command_parser,
    config_paths,
    given_configs,
    parse_command,
    protocol_options,
    read_records,
    repair_rows,
    resolve_device,
    training_command,
    training_overrides,
    with_checkpoint,
)
from trainer.evaluation.metrics import event_recall, paired_bootstrap_ci, temporal_coverage
from trainer.evaluation.tables import write_results
from trainer.loading import read_checkpoint, selector_of
from trainer.plots import plot_recall_vs_budget, plot_video
from trainer.predictions import write_predictions

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
# What a resumed run, or another shard, must share with the run that wrote ``run.json``.
RUN_KEYS = ("config", "ckpt", "split", "selectors", "budgets", "seed", "generate", "vlm", "share_decoder",
            "max_videos", "overrides", "num_shards", "videos_total")  # fmt: skip


def default_output(args: Any) -> str:
    """``outputs/eval/<name of the last config given>``."""
    return f"outputs/eval/{Path(config_paths(args)[-1]).stem}"


def _chosen(selector: FrameSelector, frames: torch.Tensor, stamps: torch.Tensor, k: int):
    """(shown frames, their times, indices, seconds spent) for one video."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # time this selection only, not queued GPU work
    start = time.perf_counter()
    with torch.no_grad():
        idx, shown, times = selector.choose(frames, stamps, k)  # one selection: scores are computed once
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return shown, times, idx, time.perf_counter() - start


def evaluate_video(
    item: dict[str, Any],
    selectors: dict[str, FrameSelector],
    budgets: list[int],
    vlm: Any = None,
    generate: bool = False,
    encodings: FrameEncodings | None = None,
) -> dict[str, Any]:
    """Runs every selector at every budget on one decoded video.

    Args:
        item: A dataset item (``video_id``, ``frames``, ``timestamps``, ``events``, ...).
        selectors: Name to selector.
        budgets: Frame budgets K; those above the video's frame count are left out for every
            selector alike.
        vlm: Optional :class:`models.vlm.SmolVLM` for caption NLL and generation.
        generate: Also generate dense captions (needs ``vlm``).
        encodings: The VLM's image-embedding stage: every selector and budget then reads the same
            per-frame rows, each frame encoded at most once (``None``: the VLM reads pixels).

    Returns:
        The video's record: ``video_id``, ``duration``, ``frames``, ``events`` (the references),
        ``rows`` (one per selector and budget: ``selector``, ``K``, ``recall``, ``coverage``,
        ``seconds``, ``chosen_times``, with a VLM ``nll``) and ``captions`` (``"name@K"`` to the
        generated events, with ``generate``).
    """
    frames, stamps, events = item["frames"], item["timestamps"], item["events"]
    record: dict[str, Any] = {"video_id": item["video_id"], "duration": item["duration"], "frames": len(stamps),
                              "events": events, "rows": [], "captions": {}}  # fmt: skip
    rows_of = None
    if encodings is not None and vlm is not None:
        rows_of = encodings.attach(collate_videos([item]))["image_embeds"][0]
    for name, selector in selectors.items():
        for k in budgets:
            if k > len(stamps):
                continue
            shown, times, idx, seconds = _chosen(selector, frames, stamps, k)
            row = {
                "selector": name,
                "K": k,
                "recall": event_recall(stamps[idx], events).item(),
                "coverage": temporal_coverage(times, item["duration"]).item(),
                "seconds": seconds,
                "chosen_times": [round(float(t), 3) for t in times],
            }
            if vlm is not None:
                if rows_of is not None and selector.shows_candidates:
                    visual = {"frames": None, "image_embeds": [rows_of.rows(idx)]}
                else:
                    visual = {"frames": [shown]}
                context = {"timestamps": [times], "durations": [item["duration"]], "queries": [item["query"]]}
                batch = vlm.build_batch(**visual, **context, targets=[format_dense_caption(events)])
                row["nll"] = vlm.sample_losses(batch).item()
                if generate:
                    text = vlm.generate(**visual, **context)[0]
                    record["captions"][f"{name}@{k}"] = [
                        {"sentence": e.caption, "timestamp": [e.start, e.end]} for e in parse_dense_caption(text)
                    ]
            record["rows"].append(row)
    return record


# ------------------------------------------------------------------------------- rows files


def rows_path(output: Path, shard: int = 0, num_shards: int = 1) -> Path:
    """The JSON-lines file a shard appends its finished videos to."""
    return output / ("rows.jsonl" if num_shards == 1 else f"rows.shard{shard}of{num_shards}.jsonl")


def iter_rows(output: str | Path) -> Iterator[dict[str, Any]]:
    """Every per-video, per-selector, per-budget row of a finished evaluation, with ``video_id`` and ``frames``."""
    for record in _all_records(Path(output)):
        for row in record.get("rows", []):
            yield {"video_id": record["video_id"], "frames": record["frames"], **row}


# ------------------------------------------------------------------------------- merge


def _run_meta(output: Path) -> dict[str, Any]:
    path = output / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {output} holds no evaluation run")
    return json.loads(path.read_text())


def _shard_sizes(meta: dict[str, Any]) -> list[int]:
    total, shards = meta["videos_total"], meta["num_shards"]
    return [len(range(shard, total, shards)) for shard in range(shards)]


def _progress(output: Path, meta: dict[str, Any]) -> list[tuple[int, int]]:
    """(finished, expected) videos per shard."""
    progress = []
    for shard, expected in enumerate(_shard_sizes(meta)):
        path = rows_path(output, shard, meta["num_shards"])
        # Complete lines only (a torn last line has no newline); no need to parse them to count.
        finished = path.read_bytes().count(b"\n") if path.is_file() else 0
        progress.append((finished, expected))
    return progress


def _all_records(output: Path, meta: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    meta = meta or _run_meta(output)
    for shard in range(meta["num_shards"]):
        path = rows_path(output, shard, meta["num_shards"])
        if path.is_file():
            yield from read_records(path)


def _official_references(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Video id to ``{"duration", "timestamps", "sentences"}`` (the ActivityNet reference format)."""
    return {
        vid: {"duration": r["duration"], "timestamps": [[e["start"], e["end"]] for e in r["events"]],
              "sentences": [e["caption"] for e in r["events"]]}
        for vid, r in records.items()
    }  # fmt: skip


# Per-video metrics compared selector against selector, and whether higher is better.
PAIRED = {"recall": True, "coverage": True, "nll": False}


def paired_differences(
    per_video: dict[tuple[str, int], dict[str, dict[str, float]]], against: str, level: float
) -> list[dict[str, Any]]:
    """``against`` minus every other selector at each K, on the videos both ran on, with intervals.

    Args:
        per_video: ``(selector, K)`` to video id to that video's metrics.
        against: The selector compared with all others.
        level: Interval coverage.

    Returns:
        Rows ``K``, ``selector`` (the other one), ``metric``, ``videos``, ``difference`` (mean of
        ``against - other``), ``low``, ``high`` and ``verdict``: ``ahead`` or ``behind`` when the
        interval excludes 0 (for NLL, lower is ahead), else ``no clear difference``.
    """
    rows = []
    for (name, k), videos in sorted(per_video.items(), key=lambda item: (item[0][1], item[0][0])):
        mine = per_video.get((against, k))
        if name == against or mine is None:
            continue
        common = sorted(set(videos) & set(mine))
        for metric, higher_is_better in PAIRED.items():
            if not common or metric not in videos[common[0]]:
                continue
            diff, low, high = paired_bootstrap_ci([mine[v][metric] for v in common],
                                                  [videos[v][metric] for v in common], level)  # fmt: skip
            better = low > 0 if higher_is_better else high < 0
            worse = high < 0 if higher_is_better else low > 0
            rows.append({"K": k, "selector": name, "metric": metric, "videos": len(common), "difference": diff,
                         "low": low, "high": high,
                         "verdict": "ahead" if better else "behind" if worse else "no clear difference"})  # fmt: skip
    return rows


def _score_key(
    key: str,
    predictions: dict[str, list],
    files: list[dict[str, Any]],
    by_key: dict[tuple[str, int], dict[str, Any]],
    output: Path,
    java: bool,
    version: str,
    soda: str | None,
) -> None:
    """Writes the submission of one ``selector@K`` and adds its caption scores to its summary row."""
    from trainer.evaluation.caption_metrics import evaluate_dense_captions

    name, _, k = key.rpartition("@")
    write_predictions([{"video_id": v, "events": e} for v, e in predictions.items()],
                      output / "captions" / f"{key}.json", details=f"frames chosen by {name}, K={k}")  # fmt: skip
    # Score the videos this selector and budget ran on; a reference file's other videos would
    # count as missed (0) under the official protocol.
    refs = [r for r in ({v: f[v] for v in predictions if v in f} for f in files) if r]
    scores = evaluate_dense_captions(predictions, refs, meteor=java, ptb=java, version=version, soda=soda)
    scores["soda_c_videos"] = int(scores.get("soda_c_videos", 0)) if "soda_c_videos" in scores else None
    by_key[(name, int(k))].update({_caption_key(key): v for key, v in scores.items() if v is not None})


def _caption_key(name: str) -> str:
    """Column name of a caption score: the captions' localisation is ``caption_precision`` etc.

    ``recall`` already names the selector's event recall@K in the same row.
    """
    return f"caption_{name}" if name.split("@")[0] in ("precision", "recall", "f1") else name


def merge(
    output: str | Path,
    references: list[str] | None = None,
    java: bool = True,
    version: str = "2018",
    soda: str | None = "auto",
    ci: float = 0.95,
    against: str | None = None,
) -> list[dict[str, Any]]:
    """Builds the tables and plots of a finished run (every shard) from its rows files.

    Reads the rows one line at a time: only per-(selector, K) sums and, with generated captions,
    their text are held.

    Args:
        output: The run's folder.
        references: Official reference files (e.g. ``val_1.json``, ``val_2.json``) to score
            generated captions against; ``None``: the split's own annotations.
        java: Whether METEOR, SODA_c and the PTB tokenizer may run (they need Java; without it
            the caption scores are approximate and the tables say so).
        version: densevid_eval form to follow (``"2018"`` or ``"2019"``).
        soda: SODA_c mode (see :func:`trainer.evaluation.caption_metrics.evaluate_dense_captions`).
        ci: Level of the paired bootstrap intervals in ``paired.md`` (0: none).
        against: The selector the others are compared with, video by video (default:
            ``learned`` if evaluated, else the first selector).

    Returns:
        The summary rows (one per selector and budget).

    Raises:
        RuntimeError: If a shard is unfinished, or no video of the split could be decoded or has
            enough candidate frames for any budget (nothing was evaluated).
    """
    output = Path(output)
    meta = _run_meta(output)
    unfinished = [f"shard {s}: {done}/{want}" for s, (done, want) in enumerate(_progress(output, meta)) if done < want]
    if unfinished:
        raise RuntimeError(f"{output}: unfinished shards ({', '.join(unfinished)}); run them (with --resume) first")
    sums: dict[tuple[str, int], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    captions: dict[str, dict[str, list]] = defaultdict(dict)
    caption_refs: dict[str, dict[str, Any]] = {}
    skipped: list[tuple[str, str]] = []
    per_video: dict[tuple[str, int], dict[str, dict[str, float]]] = defaultdict(dict)
    decoded = 0
    for record in _all_records(output, meta):
        if "skipped" in record:
            skipped.append((record["video_id"], record["skipped"]))
            continue
        decoded += 1
        for row in record["rows"]:
            per_video[(row["selector"], row["K"])][record["video_id"]] = {m: row[m] for m in PAIRED if m in row}
            group = sums[(row["selector"], row["K"])]
            group["videos"] += 1
            group["frames"] += record["frames"]
            for key in ("recall", "coverage", "seconds", "nll"):
                if key in row:
                    group[key] += row[key]
        for key, events in record["captions"].items():
            captions[key][record["video_id"]] = events
        if record["captions"]:
            caption_refs[record["video_id"]] = {k: record[k] for k in ("duration", "events")}
    if not decoded:
        raise RuntimeError(f"no video of the {meta['split']} split could be evaluated: {skip_report(skipped)}")
    if not sums:
        raise RuntimeError(f"none of the {decoded} videos of the {meta['split']} split has as many candidate frames as "
                           f"the smallest budget K={min(meta['budgets'])}: use smaller --budgets or a higher data.fps")  # fmt: skip

    summary = []
    for (name, k), group in sums.items():
        n = group["videos"]
        row = {"selector": name, "K": k, "videos": int(n), "recall": group["recall"] / n,
               "coverage": group["coverage"] / n, "ms_per_video": 1000 * group["seconds"] / n,
               "frames_per_s": group["frames"] / max(group["seconds"], 1e-9)}  # fmt: skip
        if "nll" in group:
            row["nll"] = group["nll"] / n
        summary.append(row)
    summary.sort(key=lambda s: (s["K"], s["selector"]))

    protocol = None
    if captions:
        from trainer.evaluation.caption_metrics import meteor_session, read_reference_file

        own = _official_references(caption_refs)
        write_atomic(output / "references.json", json.dumps(own, indent=1))
        files = [read_reference_file(path) for path in references] if references else [own]
        by_key = {(s["selector"], s["K"]): s for s in summary}
        session = meteor_session() if java else contextlib.nullcontext()
        with session:  # one METEOR JVM for every selector and budget
            for key, predictions in sorted(captions.items()):
                _score_key(key, predictions, files, by_key, output, java, version, soda)
        where = ", ".join(references) if references else "the split's own annotations"
        protocol = {"references": references or "split", "version": version, "soda": soda, "java": java}
        log.info("caption scores against %s (densevid_eval %s protocol)", where, version)

    title = (f"Evaluation of {decoded} videos ({meta['split']} split of `{meta['config']}`), seed {meta['seed']}"
             + (f"; {len(skipped)} videos could not be decoded and are not scored" if skipped else "") + ".")  # fmt: skip
    if protocol is not None:
        title += (f" Caption scores: densevid_eval {version} protocol against "
                  f"{', '.join(references) if references else 'the split annotations'}.")  # fmt: skip
    results_meta = {**meta, "videos": decoded, "skipped": len(skipped), "captions": protocol}
    if ci > 0:
        against = against or ("learned" if "learned" in meta["selectors"] else meta["selectors"][0])
        if against not in meta["selectors"]:
            raise ValueError(f"--against {against!r} is not one of the evaluated selectors {meta['selectors']}")
        paired = paired_differences(per_video, against, ci)
        results_meta["paired"] = {"against": against, "level": ci, "rows": paired}
        write_results(output / "paired", paired, {"against": against, "level": ci, "run": str(output)},
                      f"{against} minus each other selector, per video, at equal K ({decoded} videos; "
                      f"{ci:.0%} paired bootstrap intervals, 10,000 resamples, seed 0).")  # fmt: skip
    write_results(output, summary, results_meta, title)
    plot_recall_vs_budget(summary, output / "recall_vs_budget.png")
    return summary


def _start_run(output: Path, meta: dict[str, Any], path: Path, resume: bool, overwrite: bool) -> set[str]:
    """Checks ``output`` against this run, writes ``run.json``; returns the videos already finished."""
    previous = output / RUN_FILE
    if previous.is_file() and not overwrite:
        old = json.loads(previous.read_text())
        differs = [key for key in RUN_KEYS if old.get(key) != meta.get(key)]
        if differs:
            detail = ", ".join(f"{k}: {old.get(k)!r} there, {meta.get(k)!r} now" for k in differs)
            raise ValueError(f"{output} holds another evaluation ({detail}); use another --output or --overwrite")
    done: set[str] = set()
    if path.is_file() and path.stat().st_size and not overwrite:
        if not resume:
            raise FileExistsError(
                f"{path} already has finished videos: --resume continues that run, --overwrite starts it over"
            )
        done = repair_rows(path)
    elif path.is_file():
        path.unlink()
    if overwrite:  # tables of the run being replaced must not outlive it (other shards' rows stay)
        for name in ("results.md", "results.csv", "results.json", "references.json", "recall_vs_budget.png"):
            (output / name).unlink(missing_ok=True)
        for folder in ("captions", "paired"):
            shutil.rmtree(output / folder, ignore_errors=True)
    write_atomic(previous, json.dumps(meta, indent=1))
    return done


def add_arguments(parser: Any) -> None:
    """``evaluate``'s own options (beside the training config's, which ``fit`` reads)."""
    parser.add_argument("--ckpt", default=None, help="checkpoint of the trained module")
    parser.add_argument("--selectors", nargs="+", default=["uniform", "random", "pixel_l1", "xcorr"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[4, 8, 16])
    parser.add_argument("--split", default="test", choices=sorted(SPLIT_STAGES))
    parser.add_argument("--max_videos", "--max-videos", type=int, default=None, help="evaluate the split's first N videos")
    parser.add_argument("--output", default=None, help="folder (default outputs/eval/<config name>)")
    parser.add_argument("--no_vlm", "--no-vlm", action="store_true", help="skip caption NLL even if the config has a VLM")
    parser.add_argument("--generate", action="store_true", help="generate captions and score them (slow)")
    parser.add_argument("--ref", nargs="+", default=None, metavar="FILE",
                        help="official reference files for caption scores, e.g. val_1.json val_2.json "
                             "(default: the split's own annotations)")  # fmt: skip
    add_protocol_arguments(parser)
    parser.add_argument("--ci", type=float, default=0.95,
                        help="level of the paired bootstrap intervals against --against (paired.md; 0: none)")  # fmt: skip
    parser.add_argument("--against", default=None,
                        help="selector compared with every other, video by video (default: learned, else the first)")  # fmt: skip
    parser.add_argument("--plot_videos", "--plot-videos", type=int, default=3, help="videos to draw score curves for")
    parser.add_argument("--share_decoder", "--share-decoder", action="store_true",
                        help="score-based baselines use the learned selector's decoder (equal decoders)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    add_run_arguments(parser, shards=True)
    parser.add_argument("--resume", action="store_true", help="continue a killed run: skip finished videos")
    parser.add_argument("--overwrite", action="store_true", help="start over in an --output that holds a run")
    parser.add_argument("--merge", action="store_true",
                        help="only build the tables of --output from its rows (all shards finished; "
                             "then no training config is read)")  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m trainer evaluate``.

    The training config and its overrides are ``fit``'s (:func:`trainer.cli_helpers.training_command`):
    ``--config configs/smoke.yaml --data.fps 1``; ``evaluate``'s own options may sit in the same files.

    Returns:
        ``output``, ``summary`` (``None`` while other shards are unfinished), and this process's
        counts: ``evaluated`` videos, ``skipped`` bad videos, ``resumed`` (finished before it started).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    description = __doc__.split("\n")[0]
    if "--merge" in argv:  # the tables of a finished run: no training config, no model
        parser = command_parser("evaluate", description)
        add_arguments(parser)
        args = parse_command(parser, argv)
        if args.output is None:
            parser.error("--merge needs --output")
        try:
            check_writable(Path(args.output))
        except OSError as err:
            parser.error(str(err))
        java, version, soda = protocol_options(args)
        summary = merge(args.output, references=args.ref, java=java, version=version, soda=soda, ci=args.ci,
                        against=args.against)  # fmt: skip
        print((Path(args.output) / "results.md").read_text())
        return {"summary": summary, "output": args.output, "evaluated": 0, "skipped": 0, "resumed": 0}

    loaded: dict[str, Any] = {}

    def check(args: Any, parser: Any) -> None:  # before any model loads
        if not config_paths(args):
            parser.error("--config is required (it defines the data and, for 'learned', the model)")
        try:
            check_writable(Path(args.output or default_output(args)))
        except OSError as err:
            parser.error(str(err))
        if any(k < 1 for k in args.budgets):
            parser.error("--budgets must be positive")
        check_shard(parser, args)
        if args.resume and args.overwrite:
            parser.error("--resume and --overwrite exclude each other")
        loaded["checkpoint"] = read_checkpoint(args.ckpt) if args.ckpt else None  # refused before the build

    cli = training_command("evaluate", add_arguments, argv, check)
    args = cli.config
    datamodule, module = cli.datamodule, with_checkpoint(cli.model, loaded["checkpoint"])
    parser = cli.parser
    java, version, soda = protocol_options(args)
    scoring = {"references": args.ref, "java": java, "version": version, "soda": soda, "ci": args.ci,
               "against": args.against}  # fmt: skip
    output = Path(args.output or default_output(args))
    datamodule.set_frame_budget(1)  # short videos are skipped per budget, not dropped here
    datamodule.prepare_data()
    datamodule.setup(SPLIT_STAGES[args.split])
    dataset = datamodule.datasets[args.split]
    total = len(dataset) if args.max_videos is None else min(args.max_videos, len(dataset))

    selectors = {name: build_selector(name, module) for name in args.selectors}
    for selector in selectors.values():
        if isinstance(selector, RandomSelector):
            selector.seed = args.seed  # --seed decides the random baseline's draws too
    if args.share_decoder:
        if module is None or not hasattr(module, "inference_selector"):
            parser.error("--share_decoder: the config's module has no trained selector whose decoder to share")
        shared = selector_of(module).decoder
        for name, selector in selectors.items():
            if name != "learned" and hasattr(selector, "decoder"):
                selector.decoder = shared  # compare scores, not decoders
    vlm = None if args.no_vlm else getattr(module, "vlm", None)
    if args.generate and vlm is None:
        parser.error("--generate needs a config with a VLM")
    module.to(resolve_device(args.device))
    budgets = sorted(set(args.budgets))
    encodings = None
    if vlm is not None:
        vlm.check_frame_budget(max(budgets))  # before any video is decoded
        blocker = vlm.embeds_blocker()
        if blocker is None:
            # Rows the training run cached (data.feature_cache) are read in the workers; others
            # are computed once per video and frame, whatever the number of selectors and budgets.
            encodings = datamodule.set_frame_encoders(image_embeds=vlm.frame_encoder(), embed_all_frames=False)
        else:
            print(f"the VLM reads pixels: {blocker}")

    output.mkdir(parents=True, exist_ok=True)
    meta = {"config": " + ".join(given_configs(argv)), "ckpt": args.ckpt, "split": args.split, "selectors": args.selectors,
            "budgets": budgets, "seed": args.seed, "generate": args.generate, "vlm": vlm is not None,
            "share_decoder": args.share_decoder, "max_videos": args.max_videos,
            "overrides": training_overrides(argv, add_arguments),
            "num_shards": args.num_shards, "videos_total": total}  # fmt: skip
    path = rows_path(output, args.shard, args.num_shards)
    done = _start_run(output, meta, path, args.resume, args.overwrite)
    mine = list(range(args.shard, total, args.num_shards))
    plotted = mine[: args.plot_videos] if args.shard == 0 else []
    # Ids come from the annotation file: made safe (no separators, no "..") and unique as file names.
    names = safe_names([str(dataset.samples[i].video_id) for i in plotted])
    plots = {i: f"video_{name}.png" for i, name in zip(plotted, names)}
    todo = [i for i in mine if dataset.samples[i].video_id not in done]
    if done:
        print(f"resuming: {len(mine) - len(todo)} of this shard's {len(mine)} videos are finished")

    torch.manual_seed(args.seed)
    workers = datamodule.num_workers if args.workers is None else args.workers
    loader = DataLoader(VideoItems(dataset, todo), batch_size=None, collate_fn=as_is, num_workers=workers)
    writer = RowsWriter(path)
    evaluated = skipped = 0
    try:
        desc = "evaluating" if args.num_shards == 1 else f"evaluating shard {args.shard}/{args.num_shards}"
        for index, item in zip(todo, tqdm(loader, total=len(todo), desc=desc, unit="video")):
            if "skipped" in item:
                log.warning("skipping %s: %s", item["video_id"], item["skipped"])
                writer.append(item)
                skipped += 1
                continue
            record = evaluate_video(item, selectors, budgets, vlm, args.generate, encodings)
            plot = plots.get(index) if budgets[0] <= len(item["timestamps"]) else None
            if plot is not None:
                record["plot"] = plot  # the file's name beside the video's own id
            writer.append(record)
            evaluated += 1
            if plot is not None:
                plot_video(item, selectors, budgets[0], output / plot)
    finally:
        writer.close()
    result = {"output": str(output), "summary": None, "evaluated": evaluated, "skipped": skipped,
              "resumed": len(mine) - len(todo)}  # fmt: skip
    progress = _progress(output, meta)
    if all(done_ >= want for done_, want in progress):
        result["summary"] = merge(output, **scoring)
        print((output / "results.md").read_text())
        print(f"wrote {output}/results.{{md,csv,json}} and plots")
    else:
        left = sum(want - done_ for done_, want in progress)
        print(f"shard {args.shard} finished; {left} videos of other shards are left. When they are done the last "
              f"shard writes the tables, or run: python -m trainer evaluate --merge --output {output}")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
