"""Seconds per training epoch on a warm cache: decoding every video, decode-free, and the model-step floor.

``python -m trainer bench_epoch [--model DIR] [--videos 4] [--batch 1]``

Generated 1280x720 30 fps H.264 clips of 60-120 s (synthetic, written once in ``--workdir``),
decoded at 1 fps and 384 px (the SmolVLM2 recipes' settings), with the SmolVLM2-256M stand-in
(published architecture, random weights: :mod:`models.standin`). Two families:

* ``captioner``: :class:`trainer.module.DenseCaptioner`, uniform selector, K=8, LoRA;
* ``rl_likelihood``: :class:`trainer.selector_module.SelectorModule`, RL with the caption
  likelihood as the reward (G=8), the caption loss on the importance model's frames, LoRA (the recipe's family).

For each: one epoch fills the caches (not compared), then ``--rounds`` rounds of three epochs in
one process: (a) ``decoding``: an epoch that decodes every video (as before decode-free epochs),
reading the encoder outputs from the warm cache; (b) ``decode_free``: the same epoch from the
caches alone; (c) ``floor``: the same items held in memory (no decode, no cache read): the model
step alone. Each round runs the modes in another order (a rotation), so no mode always pays for
coming first or last. Every epoch trains from the same weights and seed, so all see the same
batches. An epoch's seconds are split into the model step (``on_train_batch_start`` to ``_end``)
and the rest, the loader's share (fetching and collating items, decoding in (a)); compare them as
ratios within one run.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from pathlib import Path
from typing import Any

from trainer.cli_helpers import check_minimums, command_parser, parse_command

FAMILIES = ("captioner", "rl_likelihood")
MODES = ("decoding", "decode_free", "floor")


def _module(family: str, model: str, dim: int) -> Any:
    from models.encoders import FrameEncoder
    from models.importance import FrameImportanceModel
    from models.selectors import UniformSelector
    from models.vlm import LoraSettings, SmolVLM
    from trainer.module import DenseCaptioner
    from trainer.selector_module import ObjectiveSettings, SelectorModule

    vlm = SmolVLM(model, lora=LoraSettings(r=8, alpha=16, dropout=0.0))
    if family == "captioner":
        return DenseCaptioner(vlm, selector=UniformSelector(), num_frames=8)
    objective = ObjectiveSettings(group_size=8, coverage_reward=0.0, likelihood_reward=1.0, caption_weight=1.0,
                                  train_lora=True, teacher_weight=0.0)  # fmt: skip
    return SelectorModule(FrameImportanceModel(feature_dim=dim, d_model=64, layers=2, heads=4),
                          FrameEncoder(model, pooling="mean_max"), vlm=vlm, num_frames=8, eval_budgets=[8],
                          objective=objective, reward_batch_size=8, validation_baselines=False)  # fmt: skip


def _epoch(family: str, mode: str, args: Any, workdir: Path) -> dict[str, Any]:
    """Trains one epoch of ``family`` in ``mode`` from seeded fresh weights; returns its figures."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    import data.datamodule as dm
    from data.datamodule import DenseCaptionDataModule, collate_videos

    pl.seed_everything(0, verbose=False)
    module = _module(family, args.model, args.feature_dim)
    data = DenseCaptionDataModule(
        train_file=str(workdir / "videos" / "train.json"), cache_dir=str(workdir / f"cache-{family}"),
        fps=args.fps, frame_size=args.frame_size, max_frames=None, batch_size=args.batch, feature_cache=True,
    )  # fmt: skip
    decodes = []
    real = dm.decode_video
    dm.decode_video = lambda video, **kw: decodes.append(video) or real(video, **kw)
    if mode == "decoding":
        data.set_decode_free = lambda outputs, splits=("train",): None  # type: ignore[method-assign]
    if mode == "floor":  # the same items, read once from the caches before the clock starts, then from memory
        original = data.train_dataloader

        def from_memory() -> DataLoader:
            loader = original()
            items = [loader.dataset[i] for i in range(len(loader.dataset))]
            return DataLoader(items, batch_size=args.batch, sampler=loader.sampler, collate_fn=collate_videos)

        data.train_dataloader = from_memory  # type: ignore[method-assign]

    class Timer(pl.Callback):
        start = end = step = 0.0
        steps: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.start = time.perf_counter()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.step = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.steps.append(time.perf_counter() - self.step)

        def on_train_epoch_end(self, trainer, pl_module):
            self.end = time.perf_counter()

    timer = Timer()
    timer.steps = []
    gc.collect()  # the previous epoch's module and trainer are garbage: not collected inside this one's clock
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer], num_sanity_val_steps=0)  # fmt: skip
    try:
        trainer.fit(module, datamodule=data)
    finally:
        dm.decode_video = real
    loss = trainer.callback_metrics.get("train/loss")
    seconds = timer.end - timer.start
    return {"family": family, "mode": mode, "seconds_per_epoch": seconds, "step_seconds": sum(timer.steps),
            "loader_seconds": seconds - sum(timer.steps), "videos": args.videos, "videos_decoded": len(decodes), "train_loss": None if loss is None else float(loss),
            "weights": {k: v.detach().clone() for k, v in module.state_dict().items()}}  # fmt: skip


def _prepare(args: Any, workdir: Path) -> None:
    from data.synthetic import SyntheticConfig, generate_dataset

    low, high = args.seconds
    cfg = SyntheticConfig(num_videos=args.videos, min_duration=low, max_duration=high, sizes=[args.height],
                          aspect_ratios=[16 / 9], fps_choices=[30.0], min_events=2, max_events=6 if low >= 30 else 2,
                          min_event_len=1.0, max_event_len=3.0 if low >= 30 else 2.0, seed=27)  # fmt: skip
    generate_dataset(workdir / "videos", cfg, splits={"train": 1.0}, progress=True)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Entry point; returns one row per family, round and mode (the cold fill included, as ``fill``)."""
    parser = command_parser("bench_epoch", __doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="SmolVLM checkpoint folder (default: the 256M stand-in)")
    parser.add_argument("--videos", type=int, default=4, help="generated 720p clips of 60-120 s")
    parser.add_argument("--batch", type=int, default=1, help="videos per batch")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three epochs, each in another order")
    parser.add_argument("--seconds", type=float, nargs=2, default=[60.0, 120.0], help="clip lengths, min max")
    parser.add_argument("--height", type=int, default=720, help="clip height (16:9, 30 fps)")
    parser.add_argument("--fps", type=float, default=1.0, help="candidate frames per second (data.fps)")
    parser.add_argument("--frame_size", type=int, default=384, help="decoded longest edge (data.frame_size)")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--output", default="outputs/bench_epoch.json")
    parser.add_argument("--workdir", default="outputs/bench_epoch", help="videos, caches and the stand-in (kept)")
    args = parse_command(parser, argv)
    check_minimums(parser, args, videos=1, batch=1, rounds=1)
    workdir = Path(args.workdir)
    if args.model is None:  # the stand-in bench_step builds, shared
        from data.datamodule import default_cache_dir
        from models.standin import build_standin

        folder = default_cache_dir() / "standins" / "smolvlm2-256m"
        if not (folder / "standin.json").is_file():
            build_standin(folder, "smolvlm2-256m")
        args.model = str(folder)
    import torch

    from models.encoders import FrameEncoder

    probe = FrameEncoder(args.model, pooling="mean_max")
    args.feature_dim = probe.encode(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), ("features",))["features"].shape[1]
    del probe
    _prepare(args, workdir)
    rows = []
    for family in args.families:
        fill = _epoch(family, "fill", args, workdir)
        fill.pop("weights")
        rows.append({**fill, "mode": "fill", "round": 0})
        reference = None  # every epoch starts from the same seeded weights: all must end with the same
        same = True
        for round_ in range(args.rounds):
            shift = round_ % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                row = _epoch(family, mode, args, workdir)
                weights = row.pop("weights")
                reference = reference if reference is not None else weights
                same = same and all(torch.equal(reference[k], weights[k]) for k in reference)
                rows.append({**row, "round": round_ + 1})
                print(json.dumps(rows[-1]), flush=True)
        for row in rows:
            if row["family"] == family and row["mode"] in MODES:
                row["same_weights"] = same
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return rows


def _spread(values: list[float], digits: int = 1) -> str:
    """``median (min-max)``, or the one value."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: seconds per epoch per family and mode (median and range over rounds), the loader's
    share of (b) and (c), and the per-round ratios (b)/(c) and (a)/(b)."""
    lines = ["| family | rounds | (a) decoding, s | (b) decode-free, s | (c) floor, s | loader in (b), s | "
             "loader in (c), s | (b)/(c) | (a)/(b) | videos decoded (a, b, c) | same weights |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for family in dict.fromkeys(r["family"] for r in rows):
        rounds: dict[int, dict[str, dict[str, Any]]] = {}
        for r in rows:
            if r["family"] == family and r["mode"] in MODES:
                rounds.setdefault(r["round"], {})[r["mode"]] = r
        complete = [by for by in rounds.values() if all(m in by for m in MODES)]
        if not complete:
            continue
        secs = {m: [by[m]["seconds_per_epoch"] for by in complete] for m in MODES}
        loader = {m: [by[m]["loader_seconds"] for by in complete] for m in MODES}
        bc = [b / c for b, c in zip(secs["decode_free"], secs["floor"])]
        ab = [a / b for a, b in zip(secs["decoding"], secs["decode_free"])]
        decoded = ", ".join(str(complete[0][m]["videos_decoded"]) for m in MODES)
        lines.append(f"| {family} | {len(complete)} | {_spread(secs['decoding'])} | {_spread(secs['decode_free'])} | "
                     f"{_spread(secs['floor'])} | {_spread(loader['decode_free'], 3)} | {_spread(loader['floor'], 3)} | "
                     f"{_spread(bc, 2)} | {_spread(ab, 2)} | {decoded} | {complete[0]['decoding'].get('same_weights')} |")  # fmt: skip
    return "\n".join(lines)

if __name__ == "__main__":
    main()
