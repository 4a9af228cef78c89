"""``python -m trainer COMMAND``: ``fit|validate|test|predict --config configs/<name>.yaml`` and the tools.

``python -m trainer --help`` lists every command (:data:`COMMANDS`). All of them parse with
jsonargparse in one syntax, ``fit``'s: ``--config FILE`` (repeatable, composed), ``--KEY VALUE``
overrides, ``--print_config``.

``--config`` can be given several times (later files override earlier ones, key by key), and a
config can list the base files it is composed of (see :func:`with_included_configs`).

The training code lives in ``trainer/`` itself (the LightningModules, schedules, checkpoints,
loading); the tools that use it are commands next to the Lightning ones (parsed by
:mod:`trainer.cli_helpers`; ``evaluate`` and ``cache`` by this module's :class:`CommandCLI`), in
sub-packages:

* ``trainer.evaluation``: ``python -m trainer evaluate`` (selectors at equal budgets),
  ``python -m trainer score`` (official dense-caption scores), ``python -m trainer reproduce NAME``
  (fit and evaluate again for a table of trainer/evaluation/RESULTS.md), and the metrics they share;
* ``trainer.tools``: ``python -m trainer export`` (Hub folder), ``python -m trainer cache`` (fill the
  frame and feature caches), ``python -m trainer select`` and ``python -m trainer caption`` (a
  selector's frames and a trained VLM's dense captions for your own video files),
  ``python -m trainer scenes`` (their shots: scene lists as PySceneDetect writes them, contact sheets);
* ``trainer.benchmarks``: ``python -m trainer bench`` (selector speed and boundary quality),
  ``python -m trainer bench_boundaries`` (shot boundaries on whole clips, sources left out),
  ``python -m trainer bench_step``, ``python -m trainer realshape`` (real-shape stand-ins) and
  ``python -m trainer scale_plan``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from data.cache_export import ExportError
from data.datamodule import CacheMissError, DenseCaptionDataModule, NoUsableSamplesError
from trainer.checkpointing import FinalCheckpoint, RngState
from trainer.loading import LoadError, named_classes, read_checkpoint
from trainer.renames import check_renamed, check_renamed_flags, current_args, current_class_path
from trainer.predictions import DenseCaptionWriter


#: Every command: its module (``None``: LightningCLI's own subcommands) and what it does.
COMMANDS: dict[str, tuple[str | None, str]] = {
    "fit": (None, "train a LightningModule of a config (the captioner, a selector, or both)"),
    "validate": (None, "the validation loop of a config, from a checkpoint"),
    "test": (None, "the test loop of a config, from a checkpoint"),
    "predict": (None, "dense captions of a split, written as an ActivityNet submission"),
    "evaluate": ("trainer.evaluation.evaluate", "compare selectors at equal frame budgets over a split: tables, plots"),
    "score": ("trainer.evaluation.score", "official dense-caption scores of submission files"),
    "reproduce": ("trainer.evaluation.reproduce", "fit and evaluate again for a table of RESULTS.md (tooling)"),
    "export": ("trainer.tools.export", "a checkpoint as a Hugging Face Hub folder, optionally pushed"),
    "cache": ("trainer.tools.cache", "fill a config's frame and feature caches ahead of training"),
    "select": ("trainer.tools.select", "a selector's K frames of your own video files"),
    "caption": ("trainer.tools.caption", "dense captions of your own video files from a trained captioner"),
    "scenes": ("trainer.tools.scenes", "the shots of your own video files: scene lists and contact sheets"),
    "bench": ("trainer.benchmarks.bench", "selector speed and boundary quality"),
    "bench_boundaries": ("trainer.benchmarks.boundaries", "shot boundaries on whole real clips and left-out sources"),
    "bench_step": ("trainer.benchmarks.bench_step", "seconds per training step, cold and warm caches"),
    "bench_epoch": ("trainer.benchmarks.bench_epoch", "seconds per epoch: decoding, decode-free, the model-step floor"),
    "realshape": ("trainer.benchmarks.realshape", "fit steps with real-shape SmolVLM2 stand-ins (GPU)"),
    "scale_plan": ("trainer.benchmarks.scale_plan", "GPU-hours and data-loading bounds of the real-data recipes"),
}


class ConfigError(ValueError):
    """A config file that cannot be composed (its ``config:`` list, an include loop, a renamed class)."""


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
            check_flags(sys.argv[1:])
        elif isinstance(args, (list, tuple)):
            args = with_included_configs(args)
            check_flags(args)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        self._ckpt_hparams = None
        if ckpt_path and os.path.isfile(ckpt_path):  # what _parse_ckpt_path merges next
            checkpoint = read_checkpoint(ckpt_path, trusted=named_classes(self.config[subcommand]))
            self._ckpt_hparams = dict(checkpoint.get("hyper_parameters") or {})

    def _parse_ckpt_path(self) -> None:
        """LightningCLI's merge of a ``--ckpt_path`` checkpoint's hyperparameters into the config,
        with a module class renamed since the checkpoint was written read under its current name
        (:data:`trainer.renames.RENAMED_CLASSES`). The hyperparameters are the ones
        :meth:`parse_arguments` read and checked (the file is not loaded twice)."""
        hparams = getattr(self, "_ckpt_hparams", None)
        if not hparams:
            return
        subcommand = self.config.get("subcommand")
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        hparams = current_args(hparams)  # init args renamed since the checkpoint was written
        if "_class_path" in hparams:
            hparams = {"class_path": current_class_path(hparams.pop("_class_path")), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

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


class CommandCLI(FrameSelectCLI):
    """The training CLI, not run, with a command's own options on the same parser.

    ``evaluate`` and ``cache`` read a training config: they are parsed by this, so their
    ``--config`` files are the composed YAML files ``fit`` reads (their own options may sit at the
    top level of the same files), their overrides are ``fit``'s (``--data.fps 1``), and
    ``--print_config`` prints the training config and the command's options as one file.

    Args:
        command: The command's name (its options' help group).
        add_arguments: Adds the command's own options to the parser.
        check: Called with the parsed config and the parser before any class is instantiated
            (refuse bad options, with ``parser.error``, before a model loads).
        args: The command line after the command's name.
    """

    def __init__(
        self,
        command: str,
        add_arguments: Callable[[Any], None],
        check: Callable[[Any, Any], None] | None,
        args: list[str],
    ) -> None:
        self._command = command
        self._add_command_arguments = add_arguments
        self._check = check
        super().__init__(
            pl.LightningModule,
            DenseCaptionDataModule,
            subclass_mode_model=True,
            args=args,
            run=False,
            parser_kwargs={"prog": f"python -m trainer {command}"},
        )

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        self._add_command_arguments(parser.add_argument_group(f"{self._command} options"))

    def before_instantiate_classes(self) -> None:
        if self._check is not None:
            self._check(self.config, self.parser)


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


def check_flags(args: list[str] | tuple[str, ...]) -> None:
    """Refuses an override of a renamed init arg, naming the new one (:func:`trainer.renames.check_renamed_flags`).

    Raises:
        ConfigError: With the old flag and its new spelling.
    """
    try:
        check_renamed_flags(list(args))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def config_files(path: str, _seen: tuple[str, ...] = ()) -> list[str]:
    """The files ``--config path`` stands for: the ones it lists under ``config:`` (each expanded
    the same way, in order), then ``path`` itself.

    Raises:
        ConfigError: If ``config:`` is not a list of paths, a config lists itself (directly or
            through others), or it names a renamed class (:func:`trainer.loading.check_renamed`).
    """
    if not os.path.isfile(path):  # a YAML string, or a missing file that jsonargparse will report
        return [path]
    here = os.path.realpath(path)
    if here in _seen:
        raise ConfigError(f"config include loop: {' -> '.join((*_seen, here))}")
    with open(path) as f:
        content = yaml.safe_load(f)
    try:
        check_renamed(content, path)  # an old class name: the error names the new one
    except ValueError as err:
        raise ConfigError(str(err)) from None
    listed = content.get("config") if isinstance(content, dict) else None
    if listed is None:
        return [path]
    if not isinstance(listed, list) or not all(isinstance(entry, str) for entry in listed):
        raise ConfigError(f"{path}: 'config:' takes a list of paths, e.g. [base/trainer_cpu.yaml], got {listed!r}")
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


def usage() -> str:
    """What ``python -m trainer --help`` prints: every command, one line each."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join([
        "usage: python -m trainer COMMAND [--config FILE ...] [--KEY VALUE ...] [--print_config] [--help]",
        "",
        "commands:",
        *lines,
        "",
        "Every command takes --config FILE (YAML, repeatable, composable), fit's override syntax",
        "(--data.fps 1, --budgets 4 8) and --print_config. `python -m trainer COMMAND --help` lists its options.",
    ])


def run(argv: list[str]) -> int:
    """``python -m trainer ARGV``: the command ``argv[0]`` with the rest of the line; its exit status."""
    command = argv[0] if argv else ""
    if command in ("", "-h", "--help"):
        print(usage(), file=sys.stdout if command else sys.stderr)
        return 0 if command else 2
    if command not in COMMANDS:
        print(f"{usage()}\n\npython -m trainer: error: unknown command {command!r}", file=sys.stderr)
        return 2
    module = COMMANDS[command][0]
    try:
        if module is None:
            main()  # LightningCLI reads sys.argv itself
            return 0
        import importlib

        result = importlib.import_module(module).main(argv[1:])
        return result if isinstance(result, int) else 0
    except (LoadError, NoUsableSamplesError, CacheMissError, ExportError, ConfigError) as err:
        # A refused or unreadable trained result, a split with nothing to train on, a video missing
        # from the caches a run must read, a config that cannot be composed: the reason, not a traceback.
        print(f"python -m trainer {command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
