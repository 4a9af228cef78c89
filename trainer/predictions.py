"""Dense-caption predictions as ActivityNet-Captions submission JSON.

Format (what the ActivityNet dense-captioning evaluator reads)::

    {"version": "VERSION 1.0",
     "results": {"video_id": [{"sentence": "...", "timestamp": [start, end]}, ...]},
     "external_data": {"used": false, "details": "..."}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from data.atomic import write_atomic


def write_predictions(predictions: list[dict[str, Any]], path: str | Path, details: str = "") -> Path:
    """Writes per-video predictions (``video_id``, ``events``, optional extras) atomically."""
    payload = {
        "version": "VERSION 1.0",
        "results": {p["video_id"]: p["events"] for p in predictions},
        "external_data": {"used": False, "details": details},
        # Not part of the ActivityNet format; evaluators ignore unknown keys. Kept for inspection.
        "frames": {p["video_id"]: p.get("frame_times", []) for p in predictions},
        "raw_text": {p["video_id"]: p.get("text", "") for p in predictions},
    }
    return write_atomic(path, json.dumps(payload, indent=1))


def read_predictions(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Reads a submission file back: video id to ``[{"sentence", "timestamp": [s, e]}]``."""
    payload = json.loads(Path(path).read_text())
    if "results" not in payload:
        raise ValueError(f"{path}: not an ActivityNet-style prediction file (no 'results')")
    return payload["results"]


class DenseCaptionWriter(BasePredictionWriter):
    """Writes ``predict`` outputs to one ActivityNet-style JSON file at the end of the epoch.

    Args:
        output: Target JSON path.
    """

    def __init__(self, output: str = "outputs/predictions.json") -> None:
        super().__init__(write_interval="epoch")
        self.output = output

    def write_on_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        flat = [p for batch in predictions for p in batch]
        if trainer.world_size > 1:
            # Each rank captioned its own shard: gather them all, and let rank 0 alone write the file
            # (a padded DistributedSampler repeats a few videos; the dict keeps one per id).
            shards: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(shards, flat)
            flat = list({p["video_id"]: p for shard in shards for p in shard}.values())
        if trainer.is_global_zero:
            details = f"frames selected by {type(pl_module.inference_selector()).__name__}, K={pl_module.num_frames}"
            path = write_predictions(flat, self.output, details)
            print(f"wrote {len(flat)} dense captions to {path}")
