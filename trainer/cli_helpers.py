"""What the commands share, so that no command imports another command's module.

* their parsers (:func:`command_parser`, :func:`parse_command`; :func:`training_command` for the
  commands that read a training config): one syntax, ``fit``'s, for every ``python -m trainer``
  command, with ``--config`` and ``--print_config``;

* a selector from its command-line name (:func:`build_selector`: a short name of
  :data:`models.baselines.BASELINES`, ``learned`` or a class path);
* a training config's data module and LightningModule (:func:`module_from_config`), parsed by the
  training CLI itself;
* the options of commands that decode videos and run models (``--workers``, ``--device``,
  ``--num_shards``/``--shard``: evaluate, cache, select, caption) and of caption scoring
  (``--evaluator_version``, ``--soda``, ``--no_java``: evaluate, score);
* rows files: JSON lines, each flushed and synced to disk as it is written, that a killed run
  resumes from (``evaluate``'s ``rows.jsonl``, ``select``'s and ``caption``'s ``summary.jsonl``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

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


def module_from_config(config: str | Path, ckpt: str | Path | None = None, overrides: list[str] = ()) -> tuple[Any, Any]:
    """``(data module, LightningModule)`` of a training config, with ``fit``'s overrides.

    The config is parsed by the training CLI itself (so it means what it means to ``fit``); the
    checkpoint's trainable weights, if given, are loaded on top (read by
    :func:`trainer.loading.read_checkpoint`, under its trust rule). The module is in eval mode.

    Args:
        config: The training config (composed as ``fit`` composes it).
        ckpt: A checkpoint whose trainable weights to load.
        overrides: ``fit``'s override arguments, e.g. ``["--data.fps", "1"]``.
    """
    checkpoint = read_checkpoint(ckpt) if ckpt is not None else None  # refused before the (slow) build
    cli = training_command("module", lambda group: None, ["--config", str(config), *overrides])
    return cli.datamodule, with_checkpoint(cli.model, checkpoint)


def with_checkpoint(module: Any, checkpoint: dict[str, Any] | None) -> Any:
    """``module`` with ``checkpoint``'s trainable weights (if any), in eval mode."""
    if checkpoint is not None:
        restore_trainable_state(module, checkpoint)
    return module.eval()


# --------------------------------------------------------------------------------------- parsers
#: Help of every command's ``--config``.
CONFIG_HELP = ("a YAML file of options, as --print_config writes it; repeatable (later files win), and a file may "
               "list files it is composed of under config: [...]")  # fmt: skip


def command_parser(command: str, description: str) -> ArgumentParser:
    """The parser of a command that reads no training config: ``fit``'s syntax and files.

    Options are written as ``fit`` writes them (``--max_videos 3``, ``--budgets 4 8``; the older
    ``--max-videos`` spelling is kept as an alias); ``--config FILE`` reads them from YAML
    (repeatable, composed like ``fit``'s configs, see :func:`trainer.__main__.config_files`) and
    ``--print_config`` prints the parsed options as such a file. Parse with :func:`parse_command`.
    """
    parser = ArgumentParser(prog=f"python -m trainer {command}", description=description)
    parser.add_argument("-c", "--config", action=ActionConfigFile, help=CONFIG_HELP)
    return parser


def parse_command(parser: ArgumentParser, argv: list[str] | None) -> Namespace:
    """``parser``'s options from ``argv`` (default: the command line), config files composed first."""
    from trainer.__main__ import with_included_configs  # deferred: the CLI module imports Lightning's CLI

    args = list(sys.argv[1:] if argv is None else argv)
    refuse_set(parser, args)
    return parser.parse_args(with_included_configs(args))


def training_command(
    command: str,
    add_arguments: Callable[[Any], None],
    argv: list[str] | None,
    check: Callable[[Namespace, ArgumentParser], None] | None = None,
) -> Any:
    """Parses a command that reads a training config with the training CLI, and builds its classes.

    The command's options join ``fit``'s on one parser (:class:`trainer.__main__.CommandCLI`):
    ``--config`` takes the composed training configs, overrides are ``fit``'s (``--data.fps 1``),
    ``--print_config`` prints training config and options as one file.

    Args:
        command: The command's name.
        add_arguments: Adds the command's options to a parser (or group).
        argv: The command line after the command's name (default: the process's).
        check: Called with the parsed config and parser before the model is built.

    Returns:
        The CLI: ``config`` (with the command's options at the top level), ``datamodule``,
        ``model`` (instantiated, not in eval mode, no checkpoint loaded).
    """
    from trainer.__main__ import CommandCLI  # deferred: the CLI module imports Lightning's CLI and every config class

    args = list(sys.argv[1:] if argv is None else argv)
    refuse_set(ArgumentParser(prog=f"python -m trainer {command}"), args)  # before LightningCLI calls it unknown
    # The CLI is driven by ``args`` alone; with the calling command line still in sys.argv,
    # LightningCLI would warn that both are given.
    saved, sys.argv = sys.argv, sys.argv[:1]
    try:
        return CommandCLI(command, add_arguments, check, args)
    finally:
        sys.argv = saved


def refuse_set(parser: Any, args: list[str]) -> None:
    """``--set KEY=VALUE`` (the old override syntax) is an error that shows the new one."""
    if "--set" in args:
        after = args[args.index("--set") + 1 :]
        pairs = after[: next((i for i, a in enumerate(after) if a.startswith("-")), len(after))]
        new = " ".join(f"--{k} {v}" for k, v in (p.split("=", 1) for p in pairs if "=" in p)) or "--data.fps 1"
        parser.error(f"--set is gone: overrides are written as fit writes them, e.g. {new}")


def given_configs(argv: list[str]) -> list[str]:
    """The ``--config`` values of a command line, as the user wrote them (before composition)."""
    given = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("--config", "-c")]
    return given + [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]


def training_overrides(argv: list[str], add_arguments: Callable[[Any], None]) -> list[str]:
    """The arguments of a training command's line that override the training config (``--data.fps 1``).

    Everything but ``--config`` and the options ``add_arguments`` adds, with their values.
    """
    own = ArgumentParser()
    add_arguments(own)
    skip = {*own._option_string_actions, "--config", "-c"}
    kept: list[str] = []
    keep = True
    for arg in argv:
        if arg.startswith("-") and not _is_number(arg):
            keep = arg.split("=", 1)[0] not in skip
        if keep:
            kept.append(arg)
    return kept


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def config_paths(config: Namespace) -> list[str]:
    """The config files a parsed command read, as given (``config: [...]`` includes expanded)."""
    return [str(path) for path in (config.get("config") or []) if path is not None]


# --------------------------------------------------------------------------------------- options
#: What launchers set in each process: (rank, world size, local rank) variables, and the launcher's name.
#: torchrun (and Lightning's DDP processes) set RANK/WORLD_SIZE/LOCAL_RANK; SLURM's srun its own.
LAUNCHERS = (("RANK", "WORLD_SIZE", "LOCAL_RANK", "torchrun"), ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM"))


def launcher_shard(environ: dict[str, str] | None = None) -> tuple[int, int, str] | None:
    """``(shard, num_shards, launcher)`` of a process started by torchrun or SLURM, else ``None``.

    Each process of a launch is one shard: its rank among the world size. A launch of one
    process (an interactive SLURM allocation, say) counts too, as one shard of one.
    """
    environ = os.environ if environ is None else environ
    for rank, world, _, name in LAUNCHERS:
        if rank in environ and world in environ:
            shard, shards = int(environ[rank]), int(environ[world])
            if not 0 <= shard < shards:
                raise ValueError(f"{name}: {rank}={shard} is not in [0, {world}={shards})")
            return shard, shards, name
    return None


def resolve_device(name: str, environ: dict[str, str] | None = None) -> torch.device:
    """``auto``: the GPU when there is one (under a launcher, the process's local rank's GPU), else
    the CPU; anything else as torch reads it."""
    if name != "auto":
        return torch.device(name)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    environ = os.environ if environ is None else environ
    for rank, world, local, _ in LAUNCHERS:
        if rank in environ and world in environ and local in environ:
            return torch.device(f"cuda:{int(environ[local]) % torch.cuda.device_count()}")  # one GPU each
    return torch.device("cuda")


def add_run_arguments(parser: Any, workers: int | None = None, shards: bool = False) -> None:
    """The options every command that decodes videos and runs models shares (evaluate, cache, select, caption).

    Args:
        parser: The command's parser.
        workers: Default ``--workers``; ``None``: the config's ``data.num_workers``.
        shards: Also ``--num_shards`` / ``--shard``, for commands whose runs split over processes or GPUs.
    """
    default = "data.num_workers of the config" if workers is None else f"{workers}; 0: the main process"
    parser.add_argument("--workers", type=int, default=workers, help=f"decoding processes (default: {default})")
    parser.add_argument("--device", default="auto",
                        help="where the models run: auto (the GPU if there is one), cpu, cuda, cuda:1")  # fmt: skip
    if shards:
        parser.add_argument("--num_shards", "--num-shards", type=int, default=None,
                            help="split the videos over this many processes (default: the launch's world size "
                                 "under torchrun or SLURM, else 1)")  # fmt: skip
        parser.add_argument("--shard", type=int, default=None,
                            help="which shard this process runs, 0-based (default: its rank under torchrun or "
                                 "SLURM, else 0)")  # fmt: skip


def check_minimums(parser: Any, args: Namespace, **minimums: float) -> None:
    """Refuses (a parser error, exit 2) the first option below its minimum: ``--NAME must be >= LOW,
    got VALUE`` (``-k`` for a one-letter option). An option left at ``None`` is not checked."""
    for name, low in minimums.items():
        value = getattr(args, name)
        if value is not None and value < low:
            parser.error(f"{'-' if len(name) == 1 else '--'}{name} must be >= {low}, got {value}")


def check_shard(parser: Any, args: Namespace) -> None:
    """Fills ``--num_shards``/``--shard`` left out from the launcher (:func:`launcher_shard`; else
    one shard), and refuses a ``--shard`` outside ``[0, --num_shards)``."""
    try:
        launched = launcher_shard()
    except ValueError as err:
        parser.error(str(err))
    if args.num_shards is None and args.shard is None and launched is not None:
        args.shard, args.num_shards, _ = launched
    elif args.num_shards is None and args.shard is not None:
        parser.error("--shard needs --num_shards")
    args.num_shards = 1 if args.num_shards is None else args.num_shards
    args.shard = 0 if args.shard is None else args.shard
    check_minimums(parser, args, num_shards=1)
    if not 0 <= args.shard < args.num_shards:
        parser.error(f"--shard must be in [0, --num_shards={args.num_shards}), got {args.shard}")


def add_protocol_arguments(parser: Any) -> None:
    """The caption-scoring options ``score`` and ``evaluate`` share."""
    # Deferred: the caption metrics import pycocoevalcap and torchmetrics, which only these two commands need.
    from trainer.evaluation.caption_metrics import SODA_MODES

    parser.add_argument("--evaluator_version", "--evaluator-version", default="2018", choices=["2018", "2019"],
                        help="densevid_eval form the caption scores follow")  # fmt: skip
    parser.add_argument("--soda", default="auto", choices=["auto", *SODA_MODES, "none"],
                        help="SODA_c mode with several reference files (see trainer.evaluation.caption_metrics)")  # fmt: skip
    parser.add_argument("--no_java", "--no-java", action="store_true",
                        help="skip METEOR, SODA_c and the PTB tokenizer (Java): approximate caption scores")  # fmt: skip


def protocol_options(args: Namespace) -> tuple[bool, str, str | None]:
    """``(java, version, soda)`` from :func:`add_protocol_arguments`' options.

    SODA_c runs in Java, so ``--no_java`` turns it off whatever ``--soda`` says.
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
