"""What the argparse commands share, so that no command imports another command's module.

* a selector from its command-line name (:func:`build_selector`: a short name of
  :data:`models.baselines.BASELINES`, ``learned`` or a class path);
* a training config's data module and LightningModule (:func:`module_from_config`), parsed by the
  training CLI itself;
* the options of commands that decode videos and run models (``--workers``, ``--device``,
  ``--num-shards``/``--shard``: evaluate, cache, select, caption) and of caption scoring
  (``--evaluator-version``, ``--soda``, ``--no-java``: evaluate, score);
* rows files: JSON lines, each flushed and synced to disk as it is written, that a killed run
  resumes from (``evaluate``'s ``rows.jsonl``, ``select``'s and ``caption``'s ``summary.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from models.baselines import BASELINES
from models.selectors import FrameSelector
from trainer.checkpointing import restore_trainable_state
from trainer.loading import import_class, read_checkpoint, selector_of

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------- models
def build_selector(name: str, module: Any) -> FrameSelector:
    """A selector from a short name, ``learned`` (the module's inference selector) or a class path.

    A class path must name a :class:`FrameSelector` of this project (the one allow-list of
    :mod:`trainer.loading`); it is built with no arguments.
    """
    if name == "learned":
        if module is None:
            raise ValueError("selector 'learned' needs --config (and usually --ckpt) of a trained module")
        return selector_of(module).eval()
    if name in BASELINES:
        return BASELINES[name]()
    if "." in name:
        return import_class(name, FrameSelector)()
    raise ValueError(f"unknown selector {name!r}: use one of {sorted(BASELINES)}, 'learned' or a class path")


def module_from_config(config: str | Path, ckpt: str | Path | None = None, sets: list[str] = ()) -> tuple[Any, Any]:
    """``(data module, LightningModule)`` of a training config, with ``KEY=VALUE`` overrides.

    The config is parsed by the training CLI itself (so it means what it means to ``fit``); the
    checkpoint's trainable weights, if given, are loaded on top (read by
    :func:`trainer.loading.read_checkpoint`, under its trust rule). The module is in eval mode.
    """
    # Deferred: the CLI module imports Lightning's CLI and every config class; select and caption never need it.
    from trainer.__main__ import main as cli_main

    checkpoint = read_checkpoint(ckpt) if ckpt is not None else None  # refused before the (slow) build
    overrides = []
    for kv in sets:
        if "=" not in kv:
            raise ValueError(f"--set takes KEY=VALUE, got {kv!r}")
        key, value = kv.split("=", 1)
        overrides += [f"--{key}", value]
    # The CLI is driven by ``args`` alone; with the calling command line still in sys.argv,
    # LightningCLI would warn that both are given.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = cli_main(["--config", str(config), *overrides], run=False)
    finally:
        sys.argv = argv
    module = cli.model
    if checkpoint is not None:
        restore_trainable_state(module, checkpoint)
    module.eval()
    return cli.datamodule, module


# --------------------------------------------------------------------------------------- options
def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU; anything else as torch reads it."""
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def add_run_arguments(parser: argparse.ArgumentParser, workers: int | None = None, shards: bool = False) -> None:
    """The options every command that decodes videos and runs models shares (evaluate, cache, select, caption).

    Args:
        parser: The command's parser.
        workers: Default ``--workers``; ``None``: the config's ``data.num_workers``.
        shards: Also ``--num-shards`` / ``--shard``, for commands whose runs split over processes or GPUs.
    """
    default = "data.num_workers of the config" if workers is None else f"{workers}; 0: the main process"
    parser.add_argument("--workers", type=int, default=workers, help=f"decoding processes (default: {default})")
    parser.add_argument("--device", default="auto",
                        help="where the models run: auto (the GPU if there is one), cpu, cuda, cuda:1")  # fmt: skip
    if shards:
        parser.add_argument("--num-shards", type=int, default=1, help="split the videos over this many processes")
        parser.add_argument("--shard", type=int, default=0, help="which shard this process runs (0-based)")


def check_shard(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses a ``--shard`` outside ``[0, --num-shards)``."""
    if not 0 <= args.shard < args.num_shards:
        parser.error(f"--shard must be in [0, {args.num_shards}), got {args.shard}")


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """The caption-scoring options ``score`` and ``evaluate`` share."""
    # Deferred: the caption metrics import pycocoevalcap and torchmetrics, which only these two commands need.
    from trainer.evaluation.caption_metrics import SODA_MODES

    parser.add_argument("--evaluator-version", default="2018", choices=["2018", "2019"],
                        help="densevid_eval form the caption scores follow")  # fmt: skip
    parser.add_argument("--soda", default="auto", choices=["auto", *SODA_MODES, "none"],
                        help="SODA_c mode with several reference files (see trainer.evaluation.caption_metrics)")  # fmt: skip
    parser.add_argument("--no-java", action="store_true",
                        help="skip METEOR, SODA_c and the PTB tokenizer (Java): approximate caption scores")  # fmt: skip


def protocol_options(args: argparse.Namespace) -> tuple[bool, str, str | None]:
    """``(java, version, soda)`` from :func:`add_protocol_arguments`' options.

    SODA_c runs in Java, so ``--no-java`` turns it off whatever ``--soda`` says.
    """
    java = not args.no_java
    return java, args.evaluator_version, None if args.soda == "none" or not java else args.soda


# --------------------------------------------------------------------------------------- rows files
def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of one rows file, in order, one line at a time (a torn last line is ignored)."""
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                return  # a run killed mid-write: repair_rows cuts it off before appending
            yield json.loads(line)


def repair_rows(path: Path, key: str = "video_id") -> set[str]:
    """Ids of the videos finished in ``path`` (each record's ``key``); a half-written last line is cut off.

    Raises:
        ValueError: If a complete line is not JSON (the file is not one this command wrote).
    """
    done: set[str] = set()
    good = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                break
            try:
                done.add(json.loads(line)[key])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path}: line {number} is not a record of this command ({err})") from err
            good += len(line)
    if good < path.stat().st_size:
        log.warning("%s: cutting off a half-written last line (the previous run was killed while writing it)", path)
        with open(path, "r+b") as f:
            f.truncate(good)
    return done


class RowsWriter:
    """Appends records as JSON lines, each flushed and synced to disk before the next video starts."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()
