"""A tiny SmolVLM pre-trained to read the synthetic videos' frames: the CPU stand-in for SmolVLM2.

Which frames a selector picks can only change a VLM's caption loss if the VLM reads its frames.
The random tiny SmolVLM (:mod:`models.tiny`) does not learn to within a LoRA run: with 8 frames
it reaches the same loss on another video's pixels as on its own, using only the frame times
printed in the prompt. A real SmolVLM2 reads its frames because it was pre-trained to; this module
does the same for the tiny model, on CPU in a few minutes, by fine-tuning all of its weights on
synthetic videos in two stages:

1. **single events**: one frame from the middle of an event, target that event's caption line:
   the model learns to tell colours, shapes and motions from the image tokens;
2. **dense captions** from 8 frames chosen, per video, by a mix of policies (one frame per event,
   event centres plus uniform fill, random, uniform): the model learns to tie each caption line to
   the frame that shows it, whatever chose the frames.

The pre-training videos use their own generator seed, so they share no video with the configs'
datasets. On held-out videos the result is checked the way it matters: the caption loss with the
video's own frames against the loss with another video's frames at the same timestamps (a model
that ignores pixels scores both the same). Both numbers go to ``reader_report.json``.

Build it once (4-6 minutes on 2 CPU cores, most of it generating and decoding videos)::

    python -m models.tiny_reader --output ~/.cache/frame-selectors/tiny-smolvlm-reader

and point ``model_name_or_path`` at that folder (``configs/synthetic_joint.yaml`` does).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from data.atomic import write_atomic
from data.decode import decode_video
from data.schema import load_annotations
from data.synthetic import SyntheticConfig, generate_dataset
from models.decoders import uniform_indices
from models.prompting import format_dense_caption
from models.tiny import TinySettings, build_tiny_smolvlm
from models.vlm import LoraSettings, SmolVLM

DENSE_POLICIES = ("per_event", "events_then_uniform", "random", "uniform")


@dataclass
class ReaderSettings:
    """Recipe of the reader pre-training (defaults: the one measured in trainer/evaluation/RESULTS.md).

    Attributes:
        data: Synthetic videos to pre-train on; the seed must differ from the configs' datasets.
        held_out: Fraction of those videos kept out of training for the report.
        fps: Candidate frames per second (as ``data.fps`` in the configs).
        frame_size: Decoded frame size (as ``data.frame_size`` in the configs).
        single_steps: Stage-1 steps (one event, one frame).
        single_batch: Stage-1 batch size.
        dense_steps: Stage-2 steps (dense captions from ``frames`` frames).
        dense_batch: Stage-2 batch size.
        frames: Frames per video in stage 2.
        lr: Peak AdamW learning rate of both stages (linear warm-up, cosine decay).
        seed: Seed of the weight updates and frame policies.
        tiny: Sizes of the tiny SmolVLM that is pre-trained.
    """

    data: SyntheticConfig = field(
        default_factory=lambda: SyntheticConfig(
            num_videos=600,
            min_duration=16.0,
            max_duration=24.0,
            min_events=3,
            max_events=6,
            min_event_len=1.0,
            max_event_len=2.0,
            seed=1000,
        )
    )
    held_out: float = 0.1
    fps: float = 2.0
    frame_size: int = 64
    single_steps: int = 500
    single_batch: int = 16
    dense_steps: int = 1500
    dense_batch: int = 8
    frames: int = 8
    lr: float = 2e-3
    seed: int = 0
    tiny: TinySettings = field(default_factory=TinySettings)

    def __post_init__(self) -> None:
        if not 0.0 < self.held_out < 1.0:
            raise ValueError(f"held_out must be in (0, 1), got {self.held_out}")
        if min(self.single_batch, self.dense_batch, self.frames) < 1:
            raise ValueError("single_batch, dense_batch and frames must be >= 1")
        if self.single_steps < 0 or self.dense_steps < 0:
            raise ValueError("single_steps and dense_steps must be >= 0")


def event_centre_indices(timestamps: torch.Tensor, events: list[tuple[float, float, str]]) -> torch.Tensor:
    """Index of the frame nearest each event's midpoint, in event order."""
    centres = torch.tensor([(s + e) / 2 for s, e, _ in events], dtype=torch.float64)
    return (timestamps.double()[None, :] - centres[:, None]).abs().argmin(1)


def policy_indices(
    policy: str, timestamps: torch.Tensor, events: list, k: int, generator: torch.Generator
) -> torch.Tensor:
    """Sorted frame indices chosen by one of :data:`DENSE_POLICIES`.

    ``per_event`` is one frame per event (as many frames as events); ``events_then_uniform`` takes
    the event centres (at most ``k``) and fills up to ``k`` with uniform frames; ``random`` and
    ``uniform`` ignore the events.
    """
    t = len(timestamps)
    k = min(k, t)
    if policy == "per_event":
        return event_centre_indices(timestamps, events).unique()
    if policy == "events_then_uniform":
        chosen = event_centre_indices(timestamps, events).unique()[:k].tolist()
        fill = [i for i in uniform_indices(t, k).tolist() if i not in chosen]
        return torch.tensor(sorted(chosen + fill[: k - len(chosen)]))
    if policy == "random":
        return torch.randperm(t, generator=generator)[:k].sort().values
    if policy == "uniform":
        return uniform_indices(t, k)
    raise ValueError(f"unknown frame policy {policy!r}; expected one of {DENSE_POLICIES}")


def _decode_split(path: Path, fps: float, size: int, progress: bool, desc: str) -> list[dict[str, Any]]:
    samples = load_annotations(path)
    if progress:
        from tqdm.auto import tqdm

        samples = tqdm(samples, desc=desc, leave=False)
    items = []
    for s in samples:
        video = decode_video(s.video, fps=fps, size=size)
        items.append(
            {
                "frames": video.frames,
                "timestamps": video.timestamps,
                "duration": s.duration,
                "events": [(e.start, e.end, e.caption) for e in s.events],
            }
        )
    return items


def _caption(events: list) -> str:
    return format_dense_caption([{"start": s, "end": e, "caption": c} for s, e, c in events])


def _dense_batch(vlm: SmolVLM, items: list[dict], indices: list[torch.Tensor], pixels_from: list[dict] | None = None):
    """Inputs for dense captions; ``pixels_from`` swaps in other videos' pixels at the same times."""
    source = pixels_from or items
    frames = [s["frames"][i.clamp(max=len(s["frames"]) - 1)] for s, i in zip(source, indices)]
    stamps = [it["timestamps"][i] for it, i in zip(items, indices)]
    return vlm.build_batch(frames, stamps, [it["duration"] for it in items], [_caption(it["events"]) for it in items])


def _schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, min(50, steps // 10))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / max(steps, 1), 1.0)))
    )


def _train(vlm: SmolVLM, steps: int, lr: float, make_batch, progress: bool, desc: str) -> list[float]:
    params = [p for p in vlm.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = _schedule(optimizer, steps)
    losses = []
    bar = range(steps)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc=desc, leave=False)
    vlm.model.train()
    for _ in bar:
        loss = vlm(make_batch())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if progress:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return losses


@torch.no_grad()
def reading_report(vlm: SmolVLM, items: list[dict], k: int, batch_size: int = 16) -> dict[str, float]:
    """Mean caption loss on ``items`` with event-centre and uniform frames, own vs another video's pixels.

    The other video is the next one in ``items`` (a fixed derangement), shown at this video's
    frame times, so only the pixels change.
    """
    vlm.model.eval()
    generator = torch.Generator().manual_seed(0)
    report = {}
    others = items[1:] + items[:1]
    for policy in ("events_then_uniform", "uniform"):
        indices = [policy_indices(policy, it["timestamps"], it["events"], k, generator) for it in items]
        for swap in (False, True):
            losses = []
            for i in range(0, len(items), batch_size):
                chunk = slice(i, i + batch_size)
                pixels = others[chunk] if swap else None
                losses.append(vlm.sample_losses(_dense_batch(vlm, items[chunk], indices[chunk], pixels)))
            name = f"{policy}_{'other_pixels' if swap else 'own_pixels'}"
            report[name] = round(torch.cat(losses).mean().item(), 4)
    vlm.model.train()
    return report


def pretrain_tiny_reader(
    output: str | Path,
    settings: ReaderSettings | None = None,
    data_root: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Builds the tiny SmolVLM, pre-trains it to read frames, and saves it to ``output``.

    Args:
        output: Folder to write (replaced atomically when done).
        settings: Recipe.
        data_root: Where the pre-training videos go (default: a temporary folder, deleted after).
        progress: Show progress bars.

    Returns:
        The report also written to ``output/reader_report.json``: the recipe, the final training
        losses and :func:`reading_report` on the held-out videos.
    """
    s = settings or ReaderSettings()
    output = Path(output).expanduser()
    torch.manual_seed(s.seed)
    generator = torch.Generator().manual_seed(s.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(data_root) if data_root is not None else Path(tmp) / "videos"
        paths = generate_dataset(
            root / s.data.fingerprint(), s.data, splits={"train": 1.0 - s.held_out, "held_out": s.held_out}, progress=progress
        )
        train = _decode_split(paths["train"], s.fps, s.frame_size, progress, "decode train")
        held_out = _decode_split(paths["held_out"], s.fps, s.frame_size, progress, "decode held-out")
        if not train or not held_out:
            raise ValueError("the reader needs at least one training and one held-out video; raise data.num_videos")
        base = build_tiny_smolvlm(Path(tmp) / "base", s.tiny)
        vlm = SmolVLM(str(base), lora=LoraSettings(enabled=False))
    for p in vlm.model.parameters():  # full fine-tuning: this is pre-training, not the LoRA run
        p.requires_grad_(True)

    singles = [
        (it, int(i), ev)
        for it in train
        for i, ev in zip(event_centre_indices(it["timestamps"], it["events"]).tolist(), it["events"])
    ]

    def single_batch():
        picks = torch.randint(len(singles), (s.single_batch,), generator=generator).tolist()
        chosen = [singles[j] for j in picks]
        return vlm.build_batch(
            [it["frames"][i : i + 1] for it, i, _ in chosen],
            [it["timestamps"][i : i + 1] for it, i, _ in chosen],
            [it["duration"] for it, _, _ in chosen],
            [_caption([ev]) for _, _, ev in chosen],
        )

    def dense_batch():
        picks = torch.randint(len(train), (s.dense_batch,), generator=generator).tolist()
        items = [train[j] for j in picks]
        policies = torch.randint(len(DENSE_POLICIES), (len(items),), generator=generator).tolist()
        indices = [
            policy_indices(DENSE_POLICIES[p], it["timestamps"], it["events"], s.frames, generator)
            for p, it in zip(policies, items)
        ]
        return _dense_batch(vlm, items, indices)

    before = reading_report(vlm, held_out, s.frames)
    single_losses = _train(vlm, s.single_steps, s.lr, single_batch, progress, "reader stage 1: single events")
    dense_losses = _train(vlm, s.dense_steps, s.lr, dense_batch, progress, "reader stage 2: dense captions")
    report = {
        "settings": json.loads(json.dumps(asdict(s))),
        "train_videos": len(train),
        "held_out_videos": len(held_out),
        "final_single_loss": float(sum(single_losses[-20:]) / max(len(single_losses[-20:]), 1)),
        "final_dense_loss": float(sum(dense_losses[-20:]) / max(len(dense_losses[-20:]), 1)),
        "held_out_before": before,
        "held_out_after": reading_report(vlm, held_out, s.frames),
    }
    def save(folder: Path) -> None:
        vlm.model.save_pretrained(folder)
        vlm.processor.save_pretrained(folder)
        (folder / "reader_report.json").write_text(json.dumps(report, indent=1))

    # Built aside and renamed into place: at no point is there no reader, or half of one, at ``output``.
    write_atomic(output, save)
    return report


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m models.tiny_reader --output DIR [--videos N] [--single-steps N] [--dense-steps N] [--seed S]``."""
    parser = argparse.ArgumentParser(description="Pre-train the tiny SmolVLM to read synthetic frames.")
    parser.add_argument("--output", default="~/.cache/frame-selectors/tiny-smolvlm-reader")
    defaults = ReaderSettings()
    parser.add_argument("--videos", type=int, default=defaults.data.num_videos, help="synthetic pre-training videos")
    parser.add_argument("--single-steps", type=int, default=defaults.single_steps)
    parser.add_argument("--dense-steps", type=int, default=defaults.dense_steps)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the updates and frame policies (the initial weights are TinySettings.seed's)")
    parser.add_argument("--data-root", default=None, help="keep the pre-training videos here (default: temporary)")
    args = parser.parse_args(argv)
    data = SyntheticConfig(**{**asdict(defaults.data), "num_videos": args.videos})
    settings = ReaderSettings(data=data, single_steps=args.single_steps, dense_steps=args.dense_steps, seed=args.seed)
    report = pretrain_tiny_reader(args.output, settings, data_root=args.data_root)
    print(json.dumps({k: report[k] for k in ("held_out_before", "held_out_after")}, indent=1))
    print(f"wrote {Path(args.output).expanduser()}")


if __name__ == "__main__":
    main()
