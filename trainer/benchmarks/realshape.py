"""Speed and memory of the real SmolVLM2 shapes: ``python -m trainer realshape [--device cuda]``.

The command to run once on a GPU machine (no network needed, a few minutes): for each
random-weight stand-in with a published architecture (:mod:`models.standin`, built once under
``<cache>/standins/<shape>``), it trains the captioner of that size's own config
(``configs/smolvlm2_{256m,500m,2b}.yaml``: bf16, gradient checkpointing for 2.2B) for ``--steps``
batches at every K in ``--budgets``, and records :class:`trainer.profiling.ResourceReport`'s
figures (seconds per step, videos/s, peak memory). It then runs ``configs/smolvlm2_256m_ddp.yaml``
and ``configs/smolvlm2_2b_fsdp.yaml`` on this one device (their strategies' code paths; FSDP only
on CUDA).

Every run is ``python -m trainer fit --config CONFIG ...`` in a process of its own, the command a
user runs, pointed at the stand-in and at synthetic videos long enough for the largest K, so
each run's peak memory is its own. Writes ``--output`` (JSON) and a Markdown table beside it.

``--device cpu --steps 1`` runs the same on the CPU (float32) to check the command before it meets
a GPU; ``--shapes tiny`` uses the tiny model for a test that takes seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jsonargparse import Namespace

from trainer.cli_helpers import command_parser, parse_command

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHAPE_CONFIGS = {
    "tiny": "smolvlm2_256m.yaml",
    "smolvlm2-256m": "smolvlm2_256m.yaml",
    "smolvlm2-500m": "smolvlm2_500m.yaml",
    "smolvlm2-2.2b": "smolvlm2_2b.yaml",
}
STRATEGY_RUNS = {"ddp": ("smolvlm2_256m_ddp.yaml", "smolvlm2-256m"), "fsdp": ("smolvlm2_2b_fsdp.yaml", "smolvlm2-2.2b")}


def standin_folder(shape: str, device: str) -> Path:
    """The stand-in's folder, built on first use (bf16 weights, built on the GPU when there is one)."""
    from data.datamodule import default_cache_dir

    root = default_cache_dir() / "standins"
    if shape == "tiny":
        from models.tiny import ensure_tiny_smolvlm

        return ensure_tiny_smolvlm(root / "tiny")
    from models.standin import build_standin

    folder = root / shape
    if not (folder / "standin.json").is_file():
        build_standin(folder, shape, device=device, dtype="bfloat16" if device == "cuda" else "float32")
    return folder


def make_videos(root: Path, budget: int, count: int) -> Path:
    """Synthetic videos with at least ``budget`` candidate frames at 2 fps; returns the annotation folder."""
    from data.synthetic import SyntheticConfig, generate_dataset

    duration = max(budget / 2.0 + 2.0, 12.0)
    cfg = SyntheticConfig(num_videos=count, min_duration=duration, max_duration=duration, min_events=2, max_events=4,
                          max_event_len=2.0, seed=5)  # fmt: skip
    generate_dataset(root, cfg, splits={"train": 1.0}, progress=False)
    return root


def fit_command(config: str, model: str, budget: int, args: Namespace, work: Path, name: str) -> list[str]:
    """``python -m trainer fit`` on ``config``, pointed at the stand-in, the videos and ``work``."""
    train = str(work / "videos" / "train.json")
    cmd = [sys.executable, "-m", "trainer", "fit", "--config", str(CONFIGS / config),
           "--model.init_args.vlm.init_args.model_name_or_path", model, "--model.init_args.num_frames", str(budget),
           "--data.train_file", train, "--data.val_file", "null", "--data.test_file", train,
           "--data.video_root", "null", "--data.fps", "2.0", "--data.frame_size", "96",
           "--data.max_frames", str(max(args.budgets)), "--data.num_workers", str(args.workers),
           "--data.cache_dir", str(work / "cache"), "--trainer.max_steps", str(args.steps),
           "--trainer.accumulate_grad_batches", "1", "--trainer.limit_val_batches", "0", "--trainer.devices", "1",
           "--trainer.logger.init_args.save_dir", str(work / "logs"), "--trainer.enable_progress_bar", "false",
           "--checkpoint.dirpath", str(work / "ckpt" / name), "--checkpoint.monitor", "null", "--checkpoint.save_top_k", "1",
           "--trainer.callbacks+=trainer.profiling.ResourceReport",
           "--trainer.callbacks.output", str(work / f"{name}.json"),
           "--trainer.callbacks.warmup_batches", str(min(2, args.steps - 1))]  # fmt: skip
    if args.device == "cpu":
        cmd += ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true",
                "--model.init_args.vlm.init_args.dtype", "float32"]  # fmt: skip
    return cmd


def run_one(cmd: list[str], report: Path, timeout: float) -> dict[str, Any]:
    """Runs one fit; its ResourceReport, or the tail of its error."""
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "TQDM_DISABLE": "1"})
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout:.0f} s"}
    row: dict[str, Any] = {"wall_s": round(time.perf_counter() - start, 1)}
    if out.returncode != 0 or not report.is_file():
        return {**row, "status": "failed", "error": (out.stderr or out.stdout)[-3000:]}
    return {**row, "status": "ok", **json.loads(report.read_text())}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Entry point; returns one row per run."""
    parser = command_parser("realshape", __doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--shapes", nargs="+", default=["smolvlm2-256m", "smolvlm2-500m", "smolvlm2-2.2b"],
                        choices=sorted(SHAPE_CONFIGS))  # fmt: skip
    parser.add_argument("--budgets", nargs="+", type=int, default=[8, 32], help="frames K shown to the VLM")
    parser.add_argument("--steps", type=int, default=5, help="training batches per run (the first ones are warm-up)")
    parser.add_argument("--strategies", nargs="*", default=["ddp", "fsdp"], choices=sorted(STRATEGY_RUNS))
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers per run")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per run")
    parser.add_argument("--workdir", default="outputs/realshape")
    parser.add_argument("--output", default="outputs/realshape.json")
    args = parse_command(parser, argv)
    if args.steps < 1 or min(args.budgets) < 1:
        parser.error("--steps and --budgets must be positive")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device here (use --device cpu to check the command)")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    make_videos(work / "videos", max(args.budgets), count=8)
    plan = [(shape, SHAPE_CONFIGS[shape], k) for shape in args.shapes for k in args.budgets]
    for strategy in args.strategies:
        config, shape = STRATEGY_RUNS[strategy]
        if strategy == "fsdp" and args.device == "cpu":
            print("fsdp: skipped on the CPU (FSDP needs CUDA)")
            continue
        plan.append((shape if shape in args.shapes else args.shapes[0], config, min(args.budgets)))
    rows = []
    for shape, config, k in plan:
        model = str(standin_folder(shape, args.device))
        name = f"{Path(config).stem}-{shape}-k{k}"
        report = work / f"{name}.json"
        report.unlink(missing_ok=True)
        row = {"shape": shape, "config": config, "K": k, **run_one(fit_command(config, model, k, args, work, name), report, args.timeout)}
        rows.append(row)
        speed = f"{row['seconds_per_batch']:.3f} s/step" if row.get("seconds_per_batch") else row["status"]
        print(f"{name}: {speed}", flush=True)
    lines = ["| config | stand-in | K | batch | precision | s/step | videos/s | peak memory GiB | status |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        memory = r.get("peak_allocated_gib", r.get("peak_rss_gib"))
        kind = "allocated" if "peak_allocated_gib" in r else "RSS"
        lines.append(
            f"| {r['config']} | {r['shape']} | {r['K']} | {r.get('batch_size', '')} | {r.get('precision', '')} | "
            + (f"{r['seconds_per_batch']:.3f} | {r['videos_per_s']:.2f} | {memory:.2f} ({kind}) | ok |"
               if r["status"] == "ok" and r.get("seconds_per_batch") else f" | | | {r['status']} |")
        )  # fmt: skip
    device = next((r["device"] for r in rows if r.get("device")), args.device)
    table = f"{device}, {args.steps} steps per run, {time.strftime('%Y-%m-%d')}\n\n" + "\n".join(lines) + "\n"
    print(table)
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"device": device, "steps": args.steps, "rows": rows}, indent=1))
    path.with_suffix(".md").write_text(table)
    return rows


if __name__ == "__main__":
    main()
