"""Regenerate a results table with one command: ``python -m trainer reproduce NAME``.

Tooling for the project's own results, not an API: this module runs the steps and keeps the run
records; what each table is lives in :mod:`trainer.evaluation.reproduce_tables`, its Markdown in
:mod:`trainer.evaluation.reproduce_markdown`.

The tables live in ``trainer/evaluation/RESULTS.md`` (:data:`RESULTS`), each between its markers.

Each table is a :class:`TableSpec` in :data:`TABLES`: a config, the overrides that define its data
and model, training-only flags, and the ``evaluate`` arguments. The command runs, each as a
subprocess whose command line is printed first and whose output streams through:

1. ``python -m trainer fit`` with ``--seed_everything S``, checkpoints and logs in the run folder
   ``<output>/seed<S>/`` (nothing lands in the repository's ``checkpoints/`` or ``logs/``);
2. ``python -m trainer evaluate`` on the best checkpoint, read from the ``ModelCheckpoint`` state
   stored in ``last.ckpt`` (``best_model_path``), never guessed from file names.

It then writes ``<output>/table.md``: a header (table, seeds, date, machine, device, wall time per
step, the exact commands) and the table **body**, which holds only numbers that depend on the
seeds and the code (no timings), with fixed decimals. ``--seeds N`` trains with seeds
``S..S+N-1`` (``--seed S``, default 0; ``evaluate --seed`` stays the spec's) and writes the mean,
std and range over seeds instead, plus the learned selector's paired difference with the best
baseline at each K, seed by seed.

Interrupted runs: a seed whose evaluation finished is not run again; a killed ``evaluate``
continues with ``--resume`` (rows are per video, so nothing changes); a killed ``fit`` continues
with ``--ckpt_path last.ckpt`` when that checkpoint resumes bit-exactly
(:func:`trainer.checkpointing.resumes_exactly`: it holds the global RNG states and was written
between steps, by a regular save, SIGTERM or before a SIGKILL), and starts over otherwise (no
``last.ckpt``, or one that an exception such as Ctrl-C wrote in the middle of a step). Either
way the table does not depend on whether its run was interrupted. The run record
(``reproduce.json``) is written before the first step, and a seed folder that holds files but no
record, or a record of other settings, is refused, never reused or cleared.

A table can evaluate **another table's training run** (``TableSpec.reuse_fit``): seed ``S`` then
takes its checkpoint from that table's seed folder ``<fit-from>/seed<S>/``, trains it there first
(recorded in that folder's ``reproduce.json``, as that table's own command would) if it has not
finished, and evaluates it with its own selectors, budgets and ``evaluate`` arguments. The
base folder ``--fit_from`` defaults to the sibling of ``--output`` named after the base table, so
with the default layout ``outputs/reproduce/NAME`` both tables share ``outputs/reproduce/BASE``;
a base folder whose record holds other settings than the base table's spec is refused. The
header names the base table and its run folder.

**Command tables** (:class:`CommandTable`) are made by their own steps instead of ``fit`` then
``evaluate``: ``tiny_reader`` builds the tiny reader VLM (``python -m models.tiny_reader``) and
tabulates its reading check; ``synthetic_joint`` trains ``configs/synthetic_joint.yaml`` and
``configs/synthetic_uniform.yaml`` on the reader of ``tiny_reader``'s seed folder (built there
first if it is not) and tabulates their validation caption losses; ``synthetic_test`` evaluates
that joint run's adapter on the test split with ``--generate``; ``vlm_objectives`` trains masks by
ranking and by the caption-likelihood reward alone on the same reader. A table reads the
tables it uses (``CommandTable.uses``, and theirs in turn) as ``{NAME}`` in its steps; each runs
first in its own folder, the sibling named after it, unless it finished there. Each step writes
into its own folder of the seed folder; a finished step is read back, an unfinished one starts
over. They take one seed a run (``--seed S``).

Results blocks: ``--write`` puts the table between ``<!-- reproduce:NAME -->`` and
``<!-- /reproduce:NAME -->`` in :data:`RESULTS` (``--readme FILE``: another file with the
markers); ``--check`` regenerates it in a fresh folder (for a table that reuses another's training
run, that run is trained afresh too) and exits 1 with a unified diff when the body differs from
the file's (the header's date, machine and times are not compared), 0 when it is the same.

Examples::

    python -m trainer reproduce --list
    python -m trainer reproduce smoke_rl --write          # train, evaluate, update RESULTS.md
    python -m trainer reproduce smoke_rl --check          # does RESULTS.md still hold?
    python -m trainer reproduce smoke_rl --seeds 5        # spread over training seeds 0-4
    python -m trainer reproduce wide_heldout              # wide_budget's run (trained if needed), held-out family
    python -m trainer reproduce synthetic_joint --write   # the tiny reader (built if needed), then the two fits
    python -m trainer reproduce synthetic_test --write    # the reader and joint run (if needed), then evaluate --generate

Adding a table is one more :class:`~trainer.evaluation.reproduce_tables.TableSpec` in
:data:`~trainer.evaluation.reproduce_tables.TABLES` and the two marker lines in RESULTS.md.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from data.atomic import write_atomic
from trainer.cli_helpers import command_parser, parse_command
from trainer.evaluation.reproduce_tables import (
    base_spec,
    chain_folders,
    CommandTable,
    TABLES,
    TableSpec,
    uses_chain,
)
from trainer.evaluation.reproduce_markdown import (
    body_of,
    check_block,
    _duration,
    find_block,
    header,
    _header_markdown,
    _header_paragraph,
    load_results,
    _machine_line,
    readme_block,
    ReproduceError,
    RESULTS,
    RUN_RECORD,
    single_body,
    spread_body,
    table_markdown,
    write_block,
)


# ------------------------------------------------------------------------------- commands


def _display(command: list[str]) -> str:
    """The command as a user would type it (``python`` for this interpreter)."""
    return shlex.join(["python", *command[1:]])


def fit_command(spec: TableSpec, seed: int, run: Path, resume_from: Path | None = None) -> list[str]:
    """``fit`` with the spec's overrides, ``seed``, and checkpoints and logs inside ``run``;
    continuing ``resume_from`` (``--ckpt_path``) if given."""
    if spec.reuse_fit is not None:
        raise ValueError(f"{spec.name} does not train: it evaluates {spec.reuse_fit}'s training run")
    command = [sys.executable, "-m", "trainer", "fit", "--config", spec.config, *_overrides(spec), *spec.fit_args,
               "--seed_everything", str(seed), "--trainer.accelerator", "gpu" if spec.device == "cuda" else "cpu",
               "--checkpoint.dirpath", str(run / "checkpoints"),
               "--trainer.logger.init_args.save_dir", str(run / "logs")]  # fmt: skip
    if resume_from is not None:
        command += ["--ckpt_path", str(resume_from)]
    return command


def evaluate_command(spec: TableSpec, ckpt: Path, run: Path, resume: bool = False) -> list[str]:
    """``evaluate`` of ``ckpt`` into ``run/eval`` with the spec's selectors, budgets and overrides.

    The spec's ``overrides`` come right after the config, before its ``evaluate_args`` (whose
    config overrides then win over them).
    """
    command = [sys.executable, "-m", "trainer", "evaluate", "--config", spec.config, *_overrides(spec),
               "--ckpt", str(ckpt), "--selectors", *spec.selectors, "--budgets", *map(str, spec.budgets),
               *spec.evaluate_args, "--seed", str(spec.eval_seed), "--device", spec.device,
               "--output", str(run / "eval")]  # fmt: skip
    if resume:
        command.append("--resume")
    return command


def _overrides(spec: TableSpec) -> list[str]:
    """The spec's ``KEY=VALUE`` overrides as ``fit``'s arguments, ``--KEY VALUE``."""
    return [part for kv in spec.overrides for part in (f"--{kv.split('=', 1)[0]}", kv.split("=", 1)[1])]


def run_step(name: str, command: list[str]) -> float:
    """Runs one step with its output streaming through; returns its wall time in seconds.

    Raises:
        ReproduceError: Naming the step, its exit code and its command line, if it fails.
    """
    print(f"\n$ {_display(command)}", flush=True)
    start = time.perf_counter()
    code = subprocess.run(command).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        raise ReproduceError(f"step {name!r} failed with exit code {code}: {_display(command)}")
    return seconds


def best_checkpoint(checkpoints: Path) -> Path:
    """The best checkpoint of a finished ``fit``: ``best_model_path`` of its ``ModelCheckpoint`` state.

    ``last.ckpt`` stores every callback's state; the checkpoint callback's records the path of the
    best monitored score. Without a monitored metric that is the latest top-k save, and without
    any, ``last.ckpt`` itself.
    """
    import torch

    last = checkpoints / "last.ckpt"
    if not last.is_file():
        raise ReproduceError(f"{last} not found: the fit did not save a last checkpoint")
    states = torch.load(last, map_location="cpu", weights_only=True).get("callbacks", {})
    paths = [state["best_model_path"] for key, state in states.items()
             if key.startswith("ModelCheckpoint") and state.get("best_model_path")]  # fmt: skip
    if len(paths) > 1:
        raise ReproduceError(f"{last} has {len(paths)} ModelCheckpoint callbacks with a best model: {paths}")
    # The name from the state, the folder this run's: still right after the output folder moved.
    best = checkpoints / Path(paths[0]).name if paths else last
    if not best.is_file():
        raise ReproduceError(f"{last} names {best} as the best checkpoint, but it is not there")
    return best


# ------------------------------------------------------------------------------- one seed


def machine() -> dict[str, Any]:
    """What ran the steps: OS, CPU model and count, torch version and threads."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}  # fmt: skip


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _finished(run: Path) -> bool:
    """Whether the seed's evaluation wrote its tables (rows of every video, summary and paired)."""
    return (run / "eval" / "results.json").is_file() and (run / "eval" / "paired" / "results.json").is_file()


def _open_record(spec: TableSpec, seed: int, run: Path) -> dict[str, Any]:
    """The run record of ``run`` (created, and written at once, when the folder is new or empty).

    Raises:
        ReproduceError: If ``run`` holds a record of another table, seed or spec, or files but no
            record (then nothing can say which settings made them).
    """
    record_path = run / RUN_RECORD
    now = {"table": spec.name, "seed": seed, "spec": _spec_json(spec)}
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        differs = [key for key in now if record.get(key) != now[key]]
        if differs:
            raise ReproduceError(f"{run} holds a run of other settings (its {', '.join(differs)} differ: table "
                                 f"{record.get('table')!r}, seed {record.get('seed')}); use another folder "
                                 "(--output, or --fit_from for a reused training run) or remove it")  # fmt: skip
        return record
    if run.is_dir() and any(run.iterdir()):
        raise ReproduceError(f"{run} holds files but no {RUN_RECORD}, so nothing says which settings made them; use "
                             "another folder (--output, or --fit_from for a reused training run) or remove it")  # fmt: skip
    run.mkdir(parents=True, exist_ok=True)
    record = {**now, "steps": []}
    write_atomic(record_path, json.dumps(record, indent=1))  # before any step: a folder with files has a record
    return record


def _step(record: dict[str, Any], run: Path, name: str, command: list[str]) -> None:
    """Runs one step and adds it (command, time, machine) to the record in ``run``."""
    seconds = run_step(name, command)
    record["steps"].append({"name": name, "command": _display(command), "seconds": seconds,
                            "finished": _utc_now(), "machine": machine()})  # fmt: skip
    write_atomic(run / RUN_RECORD, json.dumps(record, indent=1))


def _resumable(last: Path) -> str | None:
    """``None`` if the killed fit's ``last.ckpt`` resumes bit-exactly, else why it does not."""
    import torch

    from trainer.checkpointing import resumes_exactly

    if not last.is_file():
        return "no last.ckpt"
    try:
        checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a checkpoint cut off by the kill: start over
        return f"last.ckpt does not load ({type(err).__name__})"
    if not resumes_exactly(checkpoint):
        return "last.ckpt would not resume bit-exactly: written in the middle of a step (Ctrl-C, a crash) or without RNG states"
    return None


def _fit(spec: TableSpec, seed: int, run: Path, record: dict[str, Any]) -> None:
    """Trains ``spec``'s seed in ``run`` unless a fit finished there; a killed one continues or starts over."""
    if any(s["name"].startswith("fit") for s in record["steps"]):
        print(f"seed {seed}: fit finished in {run}, not run again", flush=True)
        return
    last = run / "checkpoints" / "last.ckpt"
    why = _resumable(last)
    if why is None:
        # The checkpoint holds the global RNG states and was written between steps
        # (trainer.checkpointing.RngState): the resumed fit ends with the unbroken run's weights.
        print(f"seed {seed}: continuing the interrupted fit from {last} (it resumes bit-exactly)", flush=True)
        shutil.rmtree(run / "eval", ignore_errors=True)  # cannot belong to an unfinished fit
        _step(record, run, "fit (resumed)", fit_command(spec, seed, run, resume_from=last))
        return
    leftovers = [run / name for name in ("checkpoints", "logs", "eval") if (run / name).exists()]
    if leftovers:
        print(f"seed {seed}: an interrupted fit left {', '.join(p.name for p in leftovers)}; starting it over "
              f"({why})", flush=True)  # fmt: skip
        for path in leftovers:
            shutil.rmtree(path)
    _step(record, run, "fit", fit_command(spec, seed, run))


def fit_seed(spec: TableSpec, seed: int, run: Path) -> dict[str, Any]:
    """Trains one seed of ``spec`` in ``run`` (its seed folder) unless a fit finished there; returns its record."""
    record = _open_record(spec, seed, run)
    _fit(spec, seed, run, record)
    return record


def run_seed(spec: TableSpec, seed: int, run: Path, fit_run: Path | None = None) -> dict[str, Any]:
    """Trains and evaluates one seed in ``run``, skipping what an earlier run there finished.

    Args:
        spec: The table.
        seed: The training seed.
        run: The seed folder (``<output>/seed<S>``).
        fit_run: For a spec with ``reuse_fit``: the base table's seed folder, where its fit runs
            (recorded there, as by that table's own command) unless it finished, and whose best
            checkpoint this table evaluates. Its record must hold the base table's current spec.

    Returns:
        The run record (also ``run/reproduce.json``): ``table``, ``seed``, ``spec``, ``steps``
        (each ``name``, ``command``, ``seconds``, ``finished``, ``machine``), ``ckpt``, and for a
        spec with ``reuse_fit`` ``fit_from`` (the base ``table``, its ``run`` folder, ``device``
        and fit ``steps``).
    """
    try:
        base = base_spec(spec)
    except ValueError as err:
        raise ReproduceError(str(err)) from None
    if (base is None) != (fit_run is None):
        raise ValueError(f"{spec.name}: fit_run is the base run folder of a table with reuse_fit, and only of one")
    record = _open_record(spec, seed, run)
    if _finished(run) and any(s["name"].startswith("evaluate") for s in record["steps"]):
        print(f"seed {seed}: evaluation finished in {run}, not run again", flush=True)
        return record

    if base is None:
        _fit(spec, seed, run, record)
        checkpoints = run / "checkpoints"
    else:
        print(f"seed {seed}: {spec.name} evaluates table {base.name}'s training run in {fit_run}", flush=True)
        base_record = fit_seed(base, seed, fit_run)
        checkpoints = fit_run / "checkpoints"
        record["fit_from"] = {"table": base.name, "run": str(fit_run), "device": base.device,
                              "steps": [s for s in base_record["steps"] if s["name"].startswith("fit")]}  # fmt: skip
    ckpt = best_checkpoint(checkpoints)
    record["ckpt"] = str(ckpt)
    resume = (run / "eval" / "run.json").is_file()
    _step(record, run, "evaluate (resumed)" if resume else "evaluate", evaluate_command(spec, ckpt, run, resume=resume))
    if not _finished(run):
        raise ReproduceError(f"evaluate ended without writing {run / 'eval' / 'results.json'} and paired/results.json")
    return record


def run_commands(table: CommandTable, seed: int, runs: dict[str, Path]) -> dict[str, Any]:
    """Runs ``table``'s steps for one seed, skipping the ones that finished there.

    Args:
        table: The table.
        seed: The seed (``{seed}`` in the steps).
        runs: Table name -> seed folder (``<folder>/seed<S>``), for ``table`` and every table it
            uses (:func:`uses_chain`): a used table's steps run first in its folder unless they
            finished there (recorded there, as by its own command).

    Returns:
        The run record (also ``reproduce.json`` of ``table``'s seed folder): ``table``, ``seed``,
        ``spec``, ``steps`` and, for a table that uses another, ``uses``: that ``table``, its
        ``run``, ``steps`` and, if it uses yet another, ``uses`` likewise.
    """
    chain = uses_chain(table)
    missing = [t.name for t in (table, *chain) if t.name not in runs]
    if missing:
        raise ValueError(f"{table.name}: runs has no seed folder for {', '.join(missing)}")
    used_record = None
    if chain:
        used = chain[0]
        print(f"seed {seed}: {table.name} reads table {used.name}'s run in {runs[used.name]}", flush=True)
        used_record = run_commands(used, seed, runs)
    run = runs[table.name]
    record = _open_record(table, seed, run)
    if used_record is not None:
        record["uses"] = {"table": chain[0].name, "run": str(runs[chain[0].name]), "steps": used_record["steps"],
                          **({"uses": used_record["uses"]} if "uses" in used_record else {})}  # fmt: skip
    done = {s["name"] for s in record["steps"]}
    for step in table.steps:
        if step.name in done:
            print(f"seed {seed}: step {step.name} finished in {run}, not run again", flush=True)
            continue
        out = run / step.name
        if out.exists():  # a step that did not finish: its leftovers cannot be trusted
            print(f"seed {seed}: an interrupted step {step.name} left {out}; starting it over", flush=True)
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        _step(record, run, step.name, step.command(out, seed, runs))
    return record


def _used_records(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``uses`` entries of a command table's run record, farthest table first."""
    used, chain = record.get("uses"), []
    while used:
        chain.insert(0, used)
        used = used.get("uses")
    return chain


def command_table_markdown(table: CommandTable, record: dict[str, Any], body: str) -> tuple[str, str]:
    """(``table.md``, results block) of a command table's seed: header (seed, date, machine, times,
    commands, the used tables' steps first), then the body."""
    used = _used_records(record)
    steps = [{**s, "name": f"{s['name']} ({u['table']})"} for u in used for s in u["steps"]] + record["steps"]
    seed = record["seed"]
    date = max(s["finished"] for s in steps)
    machines = list(dict.fromkeys(_machine_line(s["machine"], "cpu") for s in steps))
    times = ", ".join(f"{s['name']} {_duration(s['seconds'])}" for s in steps)
    commands = [s["command"] for s in steps]
    reused = [f"reads table `{u['table']}`'s run (`python -m trainer reproduce {u['table']}` builds it), in "
              f"`{u['run']}`" for u in reversed(used)]  # fmt: skip
    flags = f" --seed {seed}"
    markdown = _header_markdown(table, flags, [f"seed: {seed}", *reused], date, machines, times, commands) + body
    return markdown, f"{_header_paragraph(table, flags, f'Seed {seed}', date, machines, times, commands)}\n\n{body}"


def reproduce_commands(table: CommandTable, seed: int, output: Path, uses_from: Path | None = None) -> tuple[str, str]:
    """Runs a command table's seed (skipping finished steps) and writes ``output/table.md``; returns
    (table.md, results block). ``uses_from``: the folder of the used table's runs (default: the
    sibling of ``output`` named after it; the tables further down the chain: :func:`chain_folders`)."""
    runs = {name: folder / f"seed{seed}" for name, folder in chain_folders(table, output, uses_from).items()}
    run = runs[table.name]
    record = run_commands(table, seed, runs)
    body = table.body(run)
    markdown, block = command_table_markdown(table, record, body)
    write_atomic(run / "table.md", markdown)
    write_atomic(output / "table.md", markdown)
    print(f"\nwrote {output / 'table.md'}\n\n{body}", flush=True)
    return markdown, block


def _spec_json(spec: TableSpec | CommandTable) -> dict[str, Any]:
    """The spec as JSON data (tuples as lists, functions by name), stored with each run and compared on reruns."""

    def plain(value: Any) -> Any:
        if hasattr(value, "__dataclass_fields__"):
            return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
        if callable(value):
            return f"{value.__module__}.{value.__qualname__}"
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return plain(spec)


# ------------------------------------------------------------------------------- command


def reproduce(spec: TableSpec, seeds: list[int], output: Path, fit_from: Path | None = None) -> tuple[str, str]:
    """Runs every seed (skipping finished ones) and writes ``output/table.md``; returns (table.md, results block).

    ``fit_from``: for a table with ``reuse_fit``, the folder of the base table's runs (its
    ``seed<S>`` folders); default the sibling of ``output`` named after the base table.
    """
    base = base_spec(spec)
    if base is not None and fit_from is None:
        fit_from = output.parent / base.name
    records = [run_seed(spec, seed, output / f"seed{seed}", None if base is None else fit_from / f"seed{seed}")
               for seed in seeds]  # fmt: skip
    results = {seed: load_results(output / f"seed{seed}") for seed in seeds}
    for seed, record in zip(seeds, records):
        seed_body = single_body(spec, *results[seed])
        write_atomic(output / f"seed{seed}" / "table.md", table_markdown(spec, header(spec, [record]), seed_body))
    body = single_body(spec, *results[seeds[0]]) if len(seeds) == 1 else spread_body(spec, seeds, results)
    head = header(spec, records)
    markdown = table_markdown(spec, head, body)
    write_atomic(output / "table.md", markdown)
    print(f"\nwrote {output / 'table.md'}\n\n{body}", flush=True)
    return markdown, readme_block(spec, head, body)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 done or equal, 1 ``--check`` found a difference, 2 error)."""
    parser = command_parser("reproduce", __doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", help="the table (see --list)")
    parser.add_argument("--list", action="store_true", help="list the tables and exit")
    parser.add_argument("--output", default=None, help="run folder (default outputs/reproduce/NAME)")
    parser.add_argument("--seeds", type=int, default=1, help="training runs, seeds --seed, --seed + 1, ...")
    parser.add_argument("--seed", type=int, default=0, help="the (first) training seed")
    parser.add_argument("--readme", default=RESULTS, metavar="FILE",
                        help=f"file with the reproduce:NAME markers (default: {RESULTS})")
    parser.add_argument("--fit_from", "--fit-from", default=None, metavar="DIR",
                        help="for a table that evaluates another table's training run or reads another table's "
                             "output (--list says which): the folder of that table's runs, DIR/seed<S> (default: "
                             "the sibling of --output named after that table, e.g. outputs/reproduce/wide_budget)")  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true",
                      help="replace the table's block in --readme with the regenerated table")
    mode.add_argument("--check", action="store_true",
                      help="regenerate in a fresh folder; exit 1 with a diff if the block's body in --readme "
                           "differs")  # fmt: skip
    args = parse_command(parser, argv)
    if args.list:
        for spec in TABLES.values():
            if isinstance(spec, CommandTable):
                reused = f" [reads table {spec.uses}'s run]" if spec.uses else ""
            else:
                reused = f" [evaluates table {spec.reuse_fit}'s training run]" if spec.reuse_fit else ""
            print(f"{spec.name:15s} {spec.description}{reused}")
        return 0
    if args.name is None:
        parser.error("give a table name (see --list)")
    if args.name not in TABLES:
        parser.error(f"unknown table {args.name!r}; known tables: {', '.join(TABLES)}")
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    spec = TABLES[args.name]
    commands = isinstance(spec, CommandTable)
    if args.fit_from is not None and (spec.uses if commands else spec.reuse_fit) is None:
        parser.error(f"--fit_from: table {spec.name} uses no other table's run")
    if commands and args.seeds != 1:
        parser.error(f"--seeds: table {spec.name} is made by its own commands, one seed a run (use --seed S)")
    seeds = list(range(args.seed, args.seed + args.seeds))
    readme = Path(args.readme)
    fresh = None
    try:
        base = next(iter(uses_chain(spec)), None) if commands else base_spec(spec)
        if spec.config is not None and not Path(spec.config).is_file():
            raise ReproduceError(f"{spec.config} not found: run this command from the repository root")
        if args.write or args.check:
            find_block(readme, spec.name)  # fail before hours of training, not after
        if args.check:
            # Regenerate from scratch: a folder holding finished seeds would only be read back.
            if args.output is not None:
                output = Path(args.output)
            else:
                fresh = Path(tempfile.mkdtemp(prefix=f"reproduce-{spec.name}-"))
                output = fresh / spec.name  # a reused training run goes next to it, as fresh
        else:
            output = Path(args.output or f"outputs/reproduce/{spec.name}")
        fit_from = None
        if base is not None:
            fit_from = Path(args.fit_from) if args.fit_from is not None else output.parent / base.name
        if args.check:
            folders = {output: "--output"}
            if commands:
                folders.update({f: f"the folder of {n}'s runs" for n, f in chain_folders(spec, output, fit_from).items()
                                if n != spec.name})  # fmt: skip
            elif fit_from is not None:
                folders[fit_from] = f"the folder of {base.name}'s runs"
            for folder, what in folders.items():
                if folder.exists() and any(folder.iterdir()):
                    raise ReproduceError(f"--check regenerates into empty folders (training runs included); {what} "
                                         f"{folder} is not empty")  # fmt: skip
        if commands:
            _, block = reproduce_commands(spec, seeds[0], output, uses_from=fit_from)
        else:
            _, block = reproduce(spec, seeds, output, fit_from=fit_from)
        if args.write:
            write_block(readme, spec.name, block)
            print(f"wrote the {spec.name} block of {readme}")
        if args.check:
            diff = check_block(readme, spec.name, body_of(block))
            if diff:
                print(f"{readme}: the {spec.name} table differs from the one regenerated in {output}:\n{diff}")
                return 1
            print(f"{readme}: the {spec.name} table is reproduced exactly")
            if fresh is not None:
                shutil.rmtree(fresh, ignore_errors=True)
    except (ReproduceError, ValueError) as err:  # ValueError: a TableSpec that does not hold together
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
