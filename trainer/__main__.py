"""``python -m trainer fit|validate|test|predict --config configs/<name>.yaml``.

``--config`` can be given several times (later files override earlier ones, key by key), and a
config can list the base files it is composed of (see :func:`with_included_configs`).

The training code lives in ``trainer/`` itself (the LightningModules, schedules, checkpoints,
loading); the tools that use it are plain argparse commands next to the Lightning ones, in
sub-packages:

* ``trainer.evaluation``: ``python -m trainer evaluate`` (selectors at equal budgets),
  ``python -m trainer score`` (official dense-caption scores), ``python -m trainer reproduce NAME``
  (fit and evaluate again for a table of trainer/evaluation/RESULTS.md), and the metrics they share;
* ``trainer.tools``: ``python -m trainer export`` (Hub folder), ``python -m trainer cache`` (fill the
  frame and feature caches), ``python -m trainer select`` and ``python -m trainer caption`` (a
  selector's frames and a trained VLM's dense captions for your own video files);
* ``trainer.benchmarks``: ``python -m trainer bench`` (selector speed and boundary quality),
  ``python -m trainer bench_step``, ``python -m trainer realshape`` (real-shape stand-ins) and
  ``python -m trainer scale_plan``.
"""

from __future__ import annotations

import os
import sys

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from data.datamodule import DenseCaptionDataModule, NoUsableSamplesError
from trainer.checkpointing import FinalCheckpoint, RngState
from trainer.loading import LoadError, named_classes, read_checkpoint
from trainer.predictions import DenseCaptionWriter


#: The argparse commands next to LightningCLI's fit/validate/test/predict, and their modules.
COMMANDS = {
    "evaluate": "trainer.evaluation.evaluate",
    "score": "trainer.evaluation.score",
    "reproduce": "trainer.evaluation.reproduce",
    "export": "trainer.tools.export",
    "cache": "trainer.tools.cache",
    "select": "trainer.tools.select",
    "caption": "trainer.tools.caption",
    "bench": "trainer.benchmarks.bench",
    "bench_step": "trainer.benchmarks.bench_step",
    "realshape": "trainer.benchmarks.realshape",
    "scale_plan": "trainer.benchmarks.scale_plan",
}


class FrameSelectCLI(LightningCLI):
    """Sets checkpoint defaults and adds the prediction writer and the checkpoint callbacks.

    Every run gets :class:`~trainer.checkpointing.FinalCheckpoint` (``last.ckpt`` is the final
    state) and :class:`~trainer.checkpointing.RngState` (checkpoints hold the global RNG states, so
    ``fit --ckpt_path`` resumes bit-exactly), whatever the config's ``trainer.callbacks``.

    The LightningModule is chosen by the config (``model: {class_path, init_args}``), so one CLI
    trains the captioner and the selectors alike. The frame budget reaches the data module at
    runtime (:meth:`DenseCaptionDataModule.set_frame_budget`), not through an argument link,
    because not every module has a ``num_frames``.
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # One last.ckpt that each run overwrites: "resume from checkpoints/last.ckpt" stays true.
        parser.set_defaults(
            {
                "checkpoint.dirpath": "checkpoints",
                "checkpoint.save_last": True,
                "checkpoint.enable_version_counter": False,
                # SIGTERM (preemption, Ctrl-C) or a crash writes last.ckpt before the process exits.
                "checkpoint.save_on_exception": True,
            }
        )
        parser.add_lightning_class_args(DenseCaptionWriter, "predictions")
        parser.add_lightning_class_args(FinalCheckpoint, "final_checkpoint")
        parser.add_lightning_class_args(RngState, "rng_state")

    def parse_arguments(self, parser, args) -> None:
        """LightningCLI's parse, with each ``--config FILE`` preceded by the configs FILE lists.

        A ``--ckpt_path`` file's recorded hyperparameters are then checked
        (:func:`trainer.loading.read_checkpoint`): LightningCLI merges them into the config and
        instantiates them right after this, so a class they name outside the allow-list is refused
        here. The config and command line themselves are the user's and are not checked, and a class
        they name may appear in the checkpoint too (resuming your own run with your own optimizer).
        """
        if args is None:  # the command line: expanded in place, so LightningCLI still reads sys.argv
            sys.argv[1:] = with_included_configs(sys.argv[1:])
        elif isinstance(args, (list, tuple)):
            args = with_included_configs(args)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and os.path.isfile(ckpt_path):  # what LightningCLI._parse_ckpt_path reads next
            read_checkpoint(ckpt_path, trusted=named_classes(self.config[subcommand]))

    def instantiate_classes(self) -> None:
        """LightningCLI's, with a trained result refused while building the config (a
        :class:`~trainer.loading.TrainedSelector` whose source names code) raised as that
        :class:`~trainer.loading.LoadError`, not inside jsonargparse's union-type report."""
        try:
            super().instantiate_classes()
        except Exception as err:
            cause = err
            while cause is not None and not isinstance(cause, LoadError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            raise cause from None


def with_included_configs(args: list[str] | tuple[str, ...]) -> list[str]:
    """``args`` with every ``--config FILE`` replaced by ``--config`` for each of :func:`config_files`.

    A config composes others by listing them, relative to itself, under a top-level ``config:``::

        config: [base/trainer_cpu.yaml, base/data_synthetic.yaml]
        trainer:
          max_epochs: 8

    ``--config configs/smoke.yaml`` then is ``--config configs/base/trainer_cpu.yaml --config
    configs/base/data_synthetic.yaml --config configs/smoke.yaml``. LightningCLI merges repeated
    ``--config`` left to right, nested keys included: the file's own values win, and its
    ``trainer:`` block keeps the trainer settings of the bases that it does not set.

    (jsonargparse 4 itself only reads a single path under ``config:``, and the including file's
    top-level blocks then replace the included file's whole blocks; a list it leaves alone.
    jsonargparse 5's ``__include__`` is meant to do this natively.)
    """
    out: list[str] = []
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--config", "-c") and i + 1 < len(args):
            out += [flag for path in config_files(args[i + 1]) for flag in (arg, path)]
            i += 2
            continue
        if arg.startswith("--config="):
            out += [f"--config={path}" for path in config_files(arg[len("--config=") :])]
        else:
            out.append(arg)
        i += 1
    return out


def config_files(path: str, _seen: tuple[str, ...] = ()) -> list[str]:
    """The files ``--config path`` stands for: the ones it lists under ``config:`` (each expanded
    the same way, in order), then ``path`` itself.

    Raises:
        ValueError: If ``config:`` is not a list of paths, or a config lists itself (directly or
            through others).
    """
    if not os.path.isfile(path):  # a YAML string, or a missing file that jsonargparse will report
        return [path]
    here = os.path.realpath(path)
    if here in _seen:
        raise ValueError(f"config include loop: {' -> '.join((*_seen, here))}")
    with open(path) as f:
        content = yaml.safe_load(f)
    listed = content.get("config") if isinstance(content, dict) else None
    if listed is None:
        return [path]
    if not isinstance(listed, list) or not all(isinstance(entry, str) for entry in listed):
        raise ValueError(f"{path}: 'config:' takes a list of paths, e.g. [base/trainer_cpu.yaml], got {listed!r}")
    folder = os.path.dirname(path)
    return [
        *(p for entry in listed for p in config_files(os.path.normpath(os.path.join(folder, entry)), (*_seen, here))),
        path,
    ]


def main(args: list[str] | None = None, run: bool = True) -> FrameSelectCLI:
    """Entry point; ``args``/``run`` let tests drive the CLI in-process."""
    cli = FrameSelectCLI(
        pl.LightningModule,
        DenseCaptionDataModule,
        subclass_mode_model=True,
        args=args,
        run=run,
    )
    _close_process_group()
    return cli


def _close_process_group() -> None:
    """Tears the process group down while the interpreter is still whole.

    Lightning only registers this for NCCL. A gloo group left to interpreter finalization lets its
    C++ worker threads die unjoined, and the process aborts ("terminate called without an active
    exception", exit -6) after the run itself succeeded. The barrier keeps one rank from tearing
    down while another is still in a collective.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        if command in COMMANDS:
            import importlib

            result = importlib.import_module(COMMANDS[command]).main(sys.argv[2:])
            sys.exit(result if isinstance(result, int) else 0)
        else:
            main()
    except (LoadError, NoUsableSamplesError) as err:
        # A refused or unreadable trained result, a split with nothing to train on: the reason, not a traceback.
        print(f"python -m trainer {command}: error: {err}", file=sys.stderr)
        sys.exit(2)
