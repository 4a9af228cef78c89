"""Seconds per selector-training step, the VLM fed pixels vs each frame's precomputed embeddings.

``python -m trainer bench_step [--model DIR] [--frames 32] [--k 8] [--group 8] [--rank 6] [--batch 2]``

One training step of :class:`trainer.selector_module.SelectorModule` with every VLM-driven term on:
RL with ``--group`` rollouts per video rewarded by the caption likelihood, Frame-Voyager ranking of
``--rank`` candidate subsets, and the caption loss that trains LoRA, showing K of T candidate
frames, ``--batch`` videos per batch. The checkpoint defaults to the SmolVLM2-256M stand-in
(published architecture, random weights: :mod:`models.standin`), built once in the cache folder.

Four modes, each in a process of its own so that its peak RSS is its own:

* ``pixels-cold``: how training ran before encode-once. Every VLM forward runs the processor and
  the vision tower on its K frames, (G + R + 1) x K frame encodings per video, plus the T of the
  selector's features (``vlm.reuse_image_embeds: false``, feature cache empty).
* ``pixels-warm``: the same with the selector's features already cached.
* ``embeds-cold``: one vision pass over the T candidates gives the selector's features and the
  VLM's image embeddings; both are stored; every VLM forward reads embedding rows.
* ``embeds-warm``: both read from the cache: the vision tower does not run at all.

The step is timed from the start of the epoch to the end of the first batch, so it includes
loading the batch, encoding, forward, backward and the optimizer. Everything else (model
loading, video generation) is outside the timing. All modes run in one invocation, so their
ratios are comparable on a noisy machine; absolute seconds are not.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from jsonargparse import SUPPRESS, Namespace

from trainer.cli_helpers import command_parser, parse_command

MODES = ("pixels-cold", "pixels-warm", "embeds-cold", "embeds-warm")


def _one_step(args: Namespace, mode: str, workdir: Path) -> dict[str, Any]:
    """Builds the module and data, runs one training step, returns its figures."""
    import lightning.pytorch as pl
    from transformers.models.smolvlm import modeling_smolvlm

    from data.datamodule import DenseCaptionDataModule
    from models.encoders import FrameEncoder
    from models.importance import FrameImportanceModel
    from models.vlm import LoraSettings, SmolVLM
    from trainer.selector_module import ObjectiveSettings, SelectorModule

    pixels = mode.startswith("pixels")
    pl.seed_everything(0, verbose=False)
    vlm = SmolVLM(args.model, lora=LoraSettings(r=8, alpha=16, dropout=0.05), reuse_image_embeds=not pixels)
    encoder = FrameEncoder(args.model, pooling="mean_max")
    dim = encoder.encode(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), ("features",))["features"].shape[1]
    objective = ObjectiveSettings(
        group_size=args.group, coverage_reward=0.0, likelihood_reward=1.0, rank_weight=1.0,
        rank_candidates=args.rank, caption_weight=1.0, train_lora=True,
    )  # fmt: skip
    module = SelectorModule(
        FrameImportanceModel(feature_dim=dim, d_model=64, layers=2, heads=4), encoder, vlm=vlm,
        num_frames=args.k, eval_budgets=[args.k], objective=objective, reward_batch_size=args.group,
    )  # fmt: skip
    data = DenseCaptionDataModule(
        train_file=str(workdir / "videos" / "train.json"), cache_dir=str(workdir / ("cache-" + mode.split("-")[0])),
        fps=2.0, frame_size=64, max_frames=args.frames, batch_size=args.batch, feature_cache=True,
    )  # fmt: skip
    frames_encoded = []

    def count(_module, inputs, kwargs, _output):
        pixel_values = kwargs.get("pixel_values", inputs[0] if inputs else None)
        frames_encoded.append(int(pixel_values.shape[0]))

    hooks = [m.register_forward_hook(count, with_kwargs=True) for m in [*vlm.modules(), *encoder.modules()]
             if isinstance(m, modeling_smolvlm.SmolVLMVisionTransformer)]  # fmt: skip

    class Timer(pl.Callback):
        start = end = 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.end = time.perf_counter()

    timer = Timer()
    # max_steps counts training batches: one, on which the selector and LoRA both step.
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    for hook in hooks:
        hook.remove()
    seconds = timer.end - timer.start
    return {
        "mode": mode,
        "seconds_per_step": seconds,
        "seconds_per_video": seconds / args.batch,
        "frames_through_vision_tower": sum(frames_encoded),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30,
    }


def _prepare(args: Namespace, workdir: Path) -> None:
    from data.synthetic import SyntheticConfig, generate_dataset

    duration = max(args.frames / 2.0 + 1.0, 8.0)  # at 2 fps, at least T candidate frames (capped by max_frames)
    cfg = SyntheticConfig(num_videos=args.batch, min_duration=duration, max_duration=duration, min_events=2,
                          max_events=3, min_event_len=1.0, max_event_len=2.0, seed=11)  # fmt: skip
    generate_dataset(workdir / "videos", cfg, splits={"train": 1.0}, progress=False)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Entry point; returns one row per mode."""
    parser = command_parser("bench_step", __doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="SmolVLM checkpoint folder (default: the 256M stand-in)")
    parser.add_argument("--frames", type=int, default=32, help="candidate frames T per video")
    parser.add_argument("--k", type=int, default=8, help="frames K shown to the VLM")
    parser.add_argument("--group", type=int, default=8, help="RL rollouts G per video")
    parser.add_argument("--rank", type=int, default=6, help="ranking candidates R per video")
    parser.add_argument("--batch", type=int, default=2, help="videos per batch")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES,
                        help="run in this order: a warm mode reads what the cold one before it cached")  # fmt: skip
    parser.add_argument("--output", default="outputs/bench_step.json")
    parser.add_argument("--workdir", default=None, help="videos and caches (default: a temporary folder)")
    parser.add_argument("--one", default=None, help=SUPPRESS)  # internal: run one mode in this process
    args = parse_command(parser, argv)
    if args.one is not None:
        row = _one_step(args, args.one, Path(args.workdir))
        print("ROW " + json.dumps(row), flush=True)
        return [row]
    if args.model is None:
        from data.datamodule import default_cache_dir
        from models.standin import build_standin

        folder = default_cache_dir() / "standins" / "smolvlm2-256m"
        if not (folder / "standin.json").is_file():
            build_standin(folder, "smolvlm2-256m")
        args.model = str(folder)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        _prepare(args, workdir)
        for mode in args.modes:
            cmd = [sys.executable, "-m", "trainer.benchmarks.bench_step", "--one", mode, "--workdir", str(workdir),
                   "--model", args.model, "--frames", str(args.frames), "--k", str(args.k), "--group",
                   str(args.group), "--rank", str(args.rank), "--batch", str(args.batch)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            lines = [line for line in out.stdout.splitlines() if line.startswith("ROW ")]
            if out.returncode != 0 or not lines:
                raise RuntimeError(f"{mode} failed:\n{out.stderr[-4000:]}")
            rows.append(json.loads(lines[-1][4:]))
            print(f"{mode:12s} {rows[-1]['seconds_per_video']:8.1f} s/video", flush=True)
    by_mode = {r["mode"]: r for r in rows}
    print(f"\n{args.model}: one step, RL G={args.group} + ranking R={args.rank} + caption loss, "
          f"K={args.k} of T={args.frames}, batch {args.batch}, torch threads {torch.get_num_threads()}")  # fmt: skip
    print("| mode | s/step | s/video | frames through the vision tower | peak RSS GiB | speed-up |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        temperature = r["mode"].split("-")[1]
        base = by_mode.get(f"pixels-{temperature}")
        speedup = f"{base['seconds_per_step'] / r['seconds_per_step']:.1f}x" if base else ""
        print(f"| {r['mode']} | {r['seconds_per_step']:.1f} | {r['seconds_per_video']:.1f} | "
              f"{r['frames_through_vision_tower']} | {r['peak_rss_gib']:.2f} | {speedup} |")  # fmt: skip
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(args, k) for k in ("model", "frames", "k", "group", "rank", "batch")}
    path.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
