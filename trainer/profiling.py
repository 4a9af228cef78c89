"""Training speed and peak memory of a run, written to JSON: how the docs' per-model figures are made.

Add the callback to any ``fit`` for a short run::

    python -m trainer fit --config configs/smolvlm2_256m.yaml --trainer.max_steps 30 \\
        --trainer.callbacks+=trainer.profiling.ResourceReport \\
        --trainer.callbacks.output outputs/resources_256m.json

The first ``warmup_batches`` are not timed (CUDA context, cuDNN autotuning, feature caches
filling). ``seconds_per_batch`` is the step itself (forward, backward, optimizer, and encoding
the frames whose features or image embeddings are not cached yet, which happens inside the step);
``wall_seconds_per_batch`` runs from one batch's end to the next one's, so it includes loading
and decoding the videos. Memory is the peak over the whole run: CUDA allocated and reserved
bytes on a GPU, the process's peak resident set size on CPU.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch


class ResourceReport(pl.Callback):
    """Times training batches and records peak memory; writes one JSON report when training ends.

    Args:
        output: JSON file to write (rank 0 writes; figures are per rank).
        warmup_batches: Leading batches left out of the timing.
    """

    def __init__(self, output: str = "outputs/resources.json", warmup_batches: int = 3) -> None:
        if warmup_batches < 0:
            raise ValueError(f"warmup_batches must be >= 0, got {warmup_batches}")
        self.output = output
        self.warmup_batches = warmup_batches
        self._start = 0.0
        self._last_end: float | None = None
        self._seen = 0
        self.seconds: list[float] = []
        self.wall: list[float] = []
        self.videos = 0
        self.candidate_frames = 0
        self.report: dict[str, Any] = {}

    def _sync(self, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._sync(pl_module)
        now = time.perf_counter()
        previous, self._last_end = self._last_end, now
        self._seen += 1
        if self._seen <= self.warmup_batches:
            return
        self.seconds.append(now - self._start)
        if previous is not None:
            self.wall.append(now - previous)
        stamps = batch.get("timestamps", []) if isinstance(batch, dict) else []
        self.videos += len(stamps)
        # Timestamps, not frames: a video read from the caches alone has frames=None.
        self.candidate_frames += sum(len(t) for t in stamps)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        params = list(pl_module.parameters())
        total = sum(self.seconds)
        report: dict[str, Any] = {
            "module": type(pl_module).__name__,
            "model": _model_name(pl_module),
            "device": torch.cuda.get_device_name(pl_module.device) if pl_module.device.type == "cuda" else "cpu",
            "precision": str(trainer.precision),
            "world_size": trainer.world_size,
            "batch_size": _batch_size(trainer),
            "frames_shown": getattr(pl_module, "num_frames", None),
            "parameters": sum(p.numel() for p in params),
            "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
            "batches_timed": len(self.seconds),
            "seconds_per_batch": total / len(self.seconds) if self.seconds else None,
            "videos_per_s": self.videos / total if total > 0 else None,
            "candidate_frames_per_s": self.candidate_frames / total if total > 0 else None,
            "wall_seconds_per_batch": sum(self.wall) / len(self.wall) if self.wall else None,
        }
        if pl_module.device.type == "cuda":
            report["peak_allocated_gib"] = torch.cuda.max_memory_allocated(pl_module.device) / 2**30
            report["peak_reserved_gib"] = torch.cuda.max_memory_reserved(pl_module.device) / 2**30
        else:
            # ru_maxrss is KiB on Linux, bytes on macOS.
            scale = 1 if sys.platform == "darwin" else 1024
            report["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30
        self.report = report
        if trainer.is_global_zero:
            path = Path(self.output)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=1))
            rate = f"{report['videos_per_s']:.2f} videos/s" if report["videos_per_s"] else "no timed batches"
            print(f"resources: {rate}; report in {path}")


def _model_name(pl_module: pl.LightningModule) -> str | None:
    vlm = getattr(pl_module, "vlm", None)
    return getattr(vlm, "model_name_or_path", None)


def _batch_size(trainer: pl.Trainer) -> int | None:
    datamodule = getattr(trainer, "datamodule", None)
    return getattr(datamodule, "batch_size", None)
