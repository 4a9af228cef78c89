"""Regenerate a results table with one command: ``python -m trainer reproduce NAME``.

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
base folder ``--fit-from`` defaults to the sibling of ``--output`` named after the base table, so
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

Adding a table is one more :class:`TableSpec` in :data:`TABLES` and the two marker lines in
:data:`RESULTS`.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import difflib
import json
import os
import platform
import shlex
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from data.atomic import write_atomic


@dataclass(frozen=True)
class TableSpec:
    """One reproducible results table.

    Attributes:
        name: Command-line name, also the RESULTS.md marker ``<!-- reproduce:NAME -->``.
        description: One line for ``--list``.
        config: The config ``fit`` and ``evaluate`` both read.
        overrides: ``KEY=VALUE`` config overrides that define the data and the model: ``fit`` gets
            them as ``--KEY VALUE``, ``evaluate`` as ``--set KEY=VALUE`` (it must rebuild the same
            data and model).
        fit_args: Training-only ``fit`` flags (epochs, validation interval, ...).
        selectors: ``evaluate --selectors``.
        budgets: ``evaluate --budgets``.
        evaluate_args: Further ``evaluate`` flags (``--share-decoder``, ``--split``, ...).
        eval_seed: ``evaluate --seed`` (the random baseline's draws); fixed while training seeds vary.
        device: ``cpu`` or ``cuda``: where both ``fit`` and ``evaluate`` run, named in the header.
        columns: Summary columns shown after ``selector`` and ``K``; ``None``: every column that
            depends only on the seeds (no ``ms_per_video``/``frames_per_s``, no per-tIoU copies).
        paired_metrics: Metrics of the paired comparison table (``recall``, ``coverage``, ``nll``).
        layout: ``full``: the summary (every selector and K, ``columns``) and the paired table;
            ``compact``: one row per K with each selector's first paired metric and the
            difference with the best other selector at that K (one-seed tables only).
        reuse_fit: Another table whose training run (same seed) this table evaluates instead of
            training its own: ``config`` and ``overrides`` must be that table's (they rebuild its
            model) and ``fit_args`` empty; ``evaluate_args`` may add ``--set`` overrides (the data
            it is evaluated on), which join ``overrides`` in one ``--set``.
    """

    name: str
    description: str
    config: str
    selectors: tuple[str, ...]
    budgets: tuple[int, ...]
    overrides: tuple[str, ...] = ()
    fit_args: tuple[str, ...] = ()
    evaluate_args: tuple[str, ...] = ("--share-decoder",)
    eval_seed: int = 0
    device: str = "cpu"
    columns: tuple[str, ...] | None = None
    paired_metrics: tuple[str, ...] = ("recall",)
    layout: str = "full"
    reuse_fit: str | None = None

    def __post_init__(self) -> None:
        if self.layout not in ("full", "compact"):
            raise ValueError(f"TableSpec {self.name}: layout must be 'full' or 'compact', got {self.layout!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"TableSpec {self.name}: device must be 'cpu' or 'cuda', got {self.device!r}")
        bad = [o for o in self.overrides if "=" not in o]
        if bad:
            raise ValueError(f"TableSpec {self.name}: overrides are KEY=VALUE, got {bad}")
        _, sets = _split_sets(self.evaluate_args)
        bad = [o for o in sets if "=" not in o]
        if bad:
            raise ValueError(f"TableSpec {self.name}: evaluate --set values are KEY=VALUE, got {bad}")
        if self.reuse_fit is not None and self.fit_args:
            raise ValueError(f"TableSpec {self.name}: a table that reuses {self.reuse_fit}'s training run has no "
                             f"fit_args, got {self.fit_args}")  # fmt: skip


def _split_sets(args: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(the arguments without ``--set``, the values of every ``--set``): ``evaluate --set`` takes
    ``nargs="*"`` values and a second ``--set`` replaces the first, so a command has one ``--set``."""
    rest: list[str] = []
    sets: list[str] = []
    in_set = False
    for arg in args:
        if arg == "--set":
            in_set = True
        elif in_set and not arg.startswith("--"):
            sets.append(arg)
        else:
            in_set = False
            rest.append(arg)
    return rest, sets


@dataclass(frozen=True)
class Step:
    """One command of a :class:`CommandTable`: ``python -m MODULE ARGS``, writing into its own folder.

    Attributes:
        name: Step name, also its output (a folder or a file) in the seed folder, removed when an
            unfinished step runs again.
        module: What ``python -m`` runs.
        args: Its arguments. ``{out}`` becomes the step's folder, ``{seed}`` the seed, and
            ``{NAME}`` the seed folder of table ``NAME`` when the table uses it (directly or through
            the tables it uses: :func:`uses_chain`).
    """

    name: str
    module: str
    args: tuple[str, ...]

    def placeholders(self) -> set[str]:
        """The ``{...}`` fields of its arguments."""
        return {field for arg in self.args for _, field, _, _ in string.Formatter().parse(arg) if field is not None}

    def command(self, out: Path, seed: int, runs: dict[str, Path] | None = None) -> list[str]:
        """The command line, placeholders filled (``runs``: table name -> its seed folder)."""
        values = {"out": str(out), "seed": str(seed), **{name: str(path) for name, path in (runs or {}).items()}}
        return [sys.executable, "-m", self.module, *(a.format(**values) for a in self.args)]


@dataclass(frozen=True)
class CommandTable:
    """A results table made by its own commands, not by ``fit`` then ``evaluate`` (:class:`TableSpec`).

    The steps run in order in the seed folder ``<output>/seed<S>/<step name>/``; a finished step
    (in the run record) is not run again, an unfinished one starts over in an emptied folder.
    ``body`` reads the seed folder and returns the table body, numbers only (no timings): a
    ``--check`` compares it digit for digit, so every step must be deterministic for a seed.

    Attributes:
        name: Command-line name, also the RESULTS.md marker ``<!-- reproduce:NAME -->``.
        description: One line for ``--list``.
        steps: The commands, in order.
        body: Seed folder -> table body (markdown).
        uses: Another command table whose seed folder (same seed) the steps read, as ``{NAME}``: it
            runs there first unless it finished, as that table's own command would run it (and so
            on down its own ``uses``; the steps may read any table of that chain).
        config: A file the steps need, checked before anything runs (relative to the repository root).
    """

    name: str
    description: str
    steps: tuple[Step, ...]
    body: Callable[[Path], str]
    uses: str | None = None
    config: str | None = None

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"CommandTable {self.name}: steps need distinct names, got {names}")


def reader_body(run: Path) -> str:
    """The tiny reader's reading check: caption loss with each video's own frames vs another video's."""
    report = json.loads((run / "reader" / "reader_report.json").read_text())
    before, after = report["held_out_before"], report["held_out_after"]
    rows = [("random tiny SmolVLM, uniform", before, "uniform"), ("reader, uniform", after, "uniform"),
            ("reader, event centres + uniform fill", after, "events_then_uniform")]  # fmt: skip
    lines = _md_table([f"frames (K={report['settings']['frames']})", "own pixels", "another video's pixels"],
                      # The report's own 4 decimals: rounding them again to 3 could round a half twice.
                      [[name, f"{r[f'{policy}_own_pixels']:.4f}", f"{r[f'{policy}_other_pixels']:.4f}"]
                       for name, r, policy in rows])  # fmt: skip
    lines += ["", f"Mean caption loss on {report['held_out_videos']} held-out videos (the reader trained on "
                  f"{report['train_videos']}); another video's pixels are shown at this video's frame times."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _metrics(step: Path) -> list[dict[str, str]]:
    """The rows of the one ``metrics.csv`` a ``fit`` step wrote under ``step/logs``."""
    paths = sorted(step.glob("logs/*/version_*/metrics.csv"))
    if len(paths) != 1:
        raise ReproduceError(f"expected one metrics.csv under {step / 'logs'}, found {len(paths)}")
    with paths[0].open(newline="") as f:
        return list(csv.DictReader(f))


def _per_validation(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    """``{epochs trained: value}`` of a validation metric (Lightning logs 0-based epoch indices)."""
    return {int(r["epoch"]) + 1: float(r[key]) for r in rows if r.get(key)}


def joint_body(run: Path) -> str:
    """Validation caption loss of the joint run (learned frames) against the uniform run, per validation."""
    joint, uniform = _metrics(run / "joint"), _metrics(run / "uniform")
    learned = _per_validation(joint, "val/caption_loss")
    on_uniform = _per_validation(joint, "val_baseline/uniform_caption_loss")
    baseline = _per_validation(uniform, "val/loss")
    if not learned or set(learned) != set(baseline) or set(learned) != set(on_uniform):
        raise ReproduceError(f"the runs validated at different epochs: joint {sorted(learned)} (uniform frames "
                             f"{sorted(on_uniform)}), uniform run {sorted(baseline)}")  # fmt: skip
    lines = _md_table(["epoch", "joint: learned frames (`val/caption_loss`)", "uniform run (`val/loss`)",
                       "joint − uniform run", "joint adapter on uniform frames"],
                      [[str(e), _fmt(learned[e]), _fmt(baseline[e]), _signed(learned[e] - baseline[e]),
                        _fmt(on_uniform[e])] for e in sorted(learned)])  # fmt: skip
    return "\n".join(lines) + "\n"


def test_split_body(run: Path) -> str:
    """``synthetic_test``: the joint adapter given each selector's frames on the test split: event
    recall, coverage, caption NLL and the scores of its generated captions, then learned minus
    each baseline video by video (recall, NLL)."""
    summary, paired = load_results(run)
    return summary_body(summary, paired, ("recall", "coverage", "nll", "meteor", "cider", "soda_c"), ("recall", "nll"))


# The runs of the vlm_objectives table: (step, how the mask was trained, the judge VLM).
_OBJECTIVE_RUNS = (("ranking", "ranking by caption loss", "tiny reader"),
                   ("ranking_random", "ranking by caption loss", "random tiny SmolVLM"),
                   ("likelihood_rl", "RL, caption log-likelihood reward", "tiny reader"))  # fmt: skip
_OBJECTIVE_BASELINES = (("xcorr", "xcorr"), ("pixel_l1", "pixel L1"), ("uniform", "uniform"))


def objectives_body(run: Path) -> str:
    """Validation event recall of masks trained by VLM-driven objectives alone, at each validation,
    and the score baselines (the same in every run: same validation videos and deterministic)."""
    budgets = (4, 8)
    rows, epochs, baselines = [], None, {}
    for step, trained_by, judge in _OBJECTIVE_RUNS:
        metrics = _metrics(run / step)
        recall = {k: _per_validation(metrics, f"val/recall@{k}") for k in budgets}
        if epochs is None:
            epochs = sorted(recall[budgets[0]])
        if not epochs or any(sorted(recall[k]) != epochs for k in budgets):
            raise ReproduceError(f"the runs validated at different epochs: {step} {sorted(recall[budgets[0]])}, "
                                 f"expected {epochs}")  # fmt: skip
        rows.append([trained_by, judge, *(" / ".join(_fmt(recall[k][e]) for e in epochs) for k in budgets)])
        for name, _ in _OBJECTIVE_BASELINES:
            for k in budgets:
                values = _per_validation(metrics, f"val_baseline/{name}_recall@{k}").values()
                baselines.setdefault((name, k), set()).update(values)
    differ = [f"{name}@{k}: {sorted(v)}" for (name, k), v in baselines.items() if len(v) != 1]
    if differ:
        raise ReproduceError(f"a baseline's validation recall differs between validations or runs: {differ}")
    rows.append(["baselines: " + ", ".join(label for _, label in _OBJECTIVE_BASELINES), "",
                 *(", ".join(_fmt(next(iter(baselines[(name, k)]))) for name, _ in _OBJECTIVE_BASELINES)
                   for k in budgets)])  # fmt: skip
    on = " / ".join(str(e) for e in epochs)
    lines = _md_table(["mask trained by", "judge VLM", *(f"recall@{k} (epoch {on})" for k in budgets)], rows)
    lines += ["", "Validation event recall on the configs' validation split (the same videos in every run); the masks "
                  "see no annotation of event times."]  # fmt: skip
    return "\n".join(lines) + "\n"


_READER_ARGS = ("--output", "{out}", "--seed", "{seed}")


def _fit_step(name: str, config: str, *overrides: str, vlm: str = "{tiny_reader}/reader") -> Step:
    """``fit`` of ``config`` plus ``overrides`` (flags) with the VLM at ``vlm`` (default: the reader of
    table ``tiny_reader``'s seed folder), checkpoints, logs and predictions inside the step's folder
    (nothing lands in the repository's folders)."""
    return Step(name, "trainer", ("fit", "--config", config, "--seed_everything", "{seed}",
                                  "--model.init_args.vlm.init_args.model_name_or_path", vlm, *overrides,
                                  "--checkpoint.dirpath", "{out}/checkpoints",
                                  "--trainer.logger.init_args.save_dir", "{out}/logs",
                                  "--predictions.output", "{out}/predictions.json"))  # fmt: skip


TABLES: dict[str, TableSpec | CommandTable] = {
    spec.name: spec
    for spec in (
        TableSpec(
            name="smoke_rl",
            description="learned importance mask (RL, smoke_rl.yaml) vs baselines on the 24 test videos, K=4/8/16",
            config="configs/smoke_rl.yaml",
            selectors=("learned", "uniform", "random", "pixel_l1", "flow", "xcorr"),
            budgets=(4, 8, 16),
            columns=("videos", "recall", "coverage"),
        ),
        TableSpec(
            name="tiny",
            description="smoke_rl.yaml shrunk to 16 short videos and 2 epochs: a CPU run of well under a minute",
            config="configs/smoke_rl.yaml",
            overrides=(
                "data.synthetic.num_videos=16",  # 11 train / 2 val / 3 test
                "data.synthetic.min_duration=8",  # 3 events x (2 s + 0.5 s gap) fit in 8 s
                "data.synthetic.max_duration=10",
                "data.synthetic.min_events=2",
                "data.synthetic.max_events=3",
                "model.init_args.eval_budgets=[2,4]",
            ),
            fit_args=("--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1"),
            selectors=("learned", "uniform", "random", "xcorr"),
            budgets=(2, 4),
            evaluate_args=("--share-decoder", "--plot-videos", "0"),  # figures cost more than the 3 videos
            columns=("videos", "recall", "coverage"),
        ),
        TableSpec(
            name="smoke_budget",
            description="one budget-aware mask (RL, smoke_budget.yaml, K drawn from 2-16) vs baselines on the 24 test "
                        "videos, K=2/4/8/16",
            config="configs/smoke_budget.yaml",
            selectors=("learned", "xcorr", "pixel_l1", "flow", "uniform", "random"),
            budgets=(2, 4, 8, 16),
            layout="compact",
            columns=("videos", "recall", "coverage"),
        ),
        TableSpec(
            name="wide_budget",
            description="one budget-aware mask for K=2-32 trained on the wide synthetic family (wide_budget.yaml) vs "
                        "baselines on its 24 test videos, K=4/8/16/32",
            config="configs/wide_budget.yaml",
            selectors=("learned", "xcorr", "pixel_l1", "flow", "uniform", "random"),
            budgets=(4, 8, 16, 32),
            layout="compact",
            columns=("videos", "recall", "coverage"),
        ),
        TableSpec(
            name="wide_heldout",
            description="wide_budget's mask vs baselines on the held-out synthetic family (parts/synthetic_heldout"
                        ".yaml), K=4/8/16/32: the first 48 videos of its train split, as unseen as its test split (no "
                        "video of the family was trained on); no flow (20 s per 29.97 fps video on 2 CPU cores)",
            config="configs/wide_budget.yaml",
            reuse_fit="wide_budget",
            selectors=("learned", "xcorr", "pixel_l1", "uniform", "random"),
            budgets=(4, 8, 16, 32),
            evaluate_args=("--share-decoder", "--split", "train", "--max-videos", "48", "--plot-videos", "2",
                           "--set", "data.synthetic=configs/parts/synthetic_heldout.yaml"),  # fmt: skip
            layout="compact",
            columns=("videos", "recall", "coverage"),
        ),
        CommandTable(
            name="tiny_reader",
            description="the tiny reader VLM (python -m models.tiny_reader): caption loss on held-out videos with "
                        "their own frames vs another video's, K=8",
            steps=(Step("reader", "models.tiny_reader", _READER_ARGS),),
            body=reader_body,
        ),
        CommandTable(
            name="synthetic_joint",
            description="importance mask and LoRA trained jointly on the tiny reader (synthetic_joint.yaml) vs the "
                        "same LoRA run on uniform frames (synthetic_uniform.yaml): validation caption loss",
            steps=(_fit_step("joint", "configs/synthetic_joint.yaml"),
                   _fit_step("uniform", "configs/synthetic_uniform.yaml")),
            body=joint_body,
            uses="tiny_reader",
            config="configs/synthetic_joint.yaml",
        ),
        CommandTable(
            name="synthetic_test",
            description="synthetic_joint's adapter (final checkpoint) given each selector's frames on the 72 test "
                        "videos: event recall, caption NLL and the official scores of its generated dense captions",
            steps=(Step("eval", "trainer", ("evaluate", "--config", "configs/synthetic_joint.yaml",
                                            "--ckpt", "{synthetic_joint}/joint/checkpoints/last.ckpt",
                                            "--selectors", "learned", "uniform", "pixel_l1", "xcorr",
                                            "--budgets", "4", "8", "--share-decoder", "--generate",
                                            "--device", "cpu", "--output", "{out}", "--set",
                                            "model.init_args.vlm.init_args.model_name_or_path={tiny_reader}/reader")),),
            body=test_split_body,
            uses="synthetic_joint",
            config="configs/synthetic_joint.yaml",
        ),
        CommandTable(
            name="vlm_objectives",
            description="importance masks trained by VLM-driven objectives alone (Frame-Voyager ranking by the "
                        "reader's or a random tiny SmolVLM's caption loss; RL with the reader's caption likelihood as "
                        "the only reward): validation event recall",
            steps=(_fit_step("ranking", "configs/synthetic_ranking.yaml"),
                   # The random tiny SmolVLM is built in the step's folder (models.tiny, fixed seed).
                   _fit_step("ranking_random", "configs/synthetic_ranking.yaml",
                             "--model.init_args.vlm.init_args.build_tiny", "true", vlm="{out}/tiny-smolvlm"),
                   _fit_step("likelihood_rl", "configs/synthetic_joint.yaml",
                             "--model.init_args.objective.coverage_reward", "0",
                             "--model.init_args.objective.likelihood_reward", "1",
                             "--model.init_args.objective.caption_weight", "0",
                             "--model.init_args.objective.train_lora", "false",
                             "--model.init_args.vlm.init_args.lora.enabled", "false",
                             "--trainer.max_epochs", "6", "--trainer.check_val_every_n_epoch", "3")),
            body=objectives_body,
            uses="tiny_reader",
            config="configs/synthetic_ranking.yaml",
        ),
    )
}


def uses_chain(table: CommandTable) -> list[CommandTable]:
    """The command tables whose seed folders ``table``'s steps may read: the one it uses, the one
    that one uses, and so on (nearest first; empty when it uses none).

    Raises:
        ValueError: If a table of the chain is unknown or not a command table, the chain comes
            back to a table, or a step's placeholder is neither ``out``, ``seed`` nor a table of
            the chain.
    """
    chain: list[CommandTable] = []
    current = table
    while current.uses is not None:
        used = TABLES.get(current.uses)
        if not isinstance(used, CommandTable):
            raise ValueError(f"CommandTable {current.name}: uses names no command table: {current.uses!r}")
        if used.name == table.name or used in chain:
            raise ValueError(f"CommandTable {table.name}: its uses come back to {used.name}")
        chain.append(used)
        current = used
    known = {"out", "seed", *(t.name for t in chain)}
    for step in table.steps:
        unknown = sorted(step.placeholders() - known)
        if unknown:
            raise ValueError(f"CommandTable {table.name}: step {step.name} reads {{{unknown[0]}}}, which is neither "
                             f"{{out}}, {{seed}} nor a table it uses ({', '.join(t.name for t in chain) or 'none'})")  # fmt: skip
    return chain


def chain_folders(table: CommandTable, output: Path, uses_from: Path | None = None) -> dict[str, Path]:
    """Table name -> the folder of its runs, for ``table`` (``output``) and every table it uses.

    The used table's folder is ``uses_from`` (default: the sibling of ``output`` named after it),
    and each further table's is the sibling of the one before, named after it: where that table's
    own command, run with the default ``--output``, would look for it.
    """
    folders = {table.name: output}
    previous = output
    for i, used in enumerate(uses_chain(table)):
        previous = uses_from if i == 0 and uses_from is not None else previous.parent / used.name
        folders[used.name] = previous
    return folders


def base_spec(spec: TableSpec) -> TableSpec | None:
    """The table whose training run ``spec`` evaluates (``None``: it trains its own).

    Raises:
        ValueError: If that table is unknown, reuses yet another table's run, or builds another
            model or data (``config`` and ``overrides`` must be the same: evaluate rebuilds the
            model from them).
    """
    if spec.reuse_fit is None:
        return None
    base = TABLES.get(spec.reuse_fit)
    if base is None:
        raise ValueError(f"TableSpec {spec.name}: reuse_fit names an unknown table {spec.reuse_fit!r}")
    if base.reuse_fit is not None:
        raise ValueError(f"TableSpec {spec.name}: {base.name} reuses {base.reuse_fit}'s run itself; name that table")
    differs = [f for f in ("config", "overrides") if getattr(spec, f) != getattr(base, f)]
    if differs:
        raise ValueError(f"TableSpec {spec.name}: its {' and '.join(differs)} must be {base.name}'s, whose training "
                         "run it evaluates (add evaluate-only overrides with --set in evaluate_args)")  # fmt: skip
    return base


for _spec in TABLES.values():
    # A broken reuse_fit or uses fails on import, not after hours of training.
    uses_chain(_spec) if isinstance(_spec, CommandTable) else base_spec(_spec)

# Summary columns that measure the machine, not the selectors: never in a table body.
TIMING_COLUMNS = ("ms_per_video", "frames_per_s")
RESULTS = "trainer/evaluation/RESULTS.md"  # the file with the tables' markers, relative to the repository root
RUN_RECORD = "reproduce.json"  # per seed folder: the steps that ran, their commands, times and machine


class ReproduceError(RuntimeError):
    """A failure the command reports in one line (exit code 2)."""


# ------------------------------------------------------------------------------- commands


def _display(command: list[str]) -> str:
    """The command as a user would type it (``python`` for this interpreter)."""
    return shlex.join(["python", *command[1:]])


def fit_command(spec: TableSpec, seed: int, run: Path, resume_from: Path | None = None) -> list[str]:
    """``fit`` with the spec's overrides, ``seed``, and checkpoints and logs inside ``run``;
    continuing ``resume_from`` (``--ckpt_path``) if given."""
    if spec.reuse_fit is not None:
        raise ValueError(f"{spec.name} does not train: it evaluates {spec.reuse_fit}'s training run")
    overrides = [part for kv in spec.overrides for part in (f"--{kv.split('=', 1)[0]}", kv.split("=", 1)[1])]
    command = [sys.executable, "-m", "trainer", "fit", "--config", spec.config, *overrides, *spec.fit_args,
               "--seed_everything", str(seed), "--trainer.accelerator", "gpu" if spec.device == "cuda" else "cpu",
               "--checkpoint.dirpath", str(run / "checkpoints"),
               "--trainer.logger.init_args.save_dir", str(run / "logs")]  # fmt: skip
    if resume_from is not None:
        command += ["--ckpt_path", str(resume_from)]
    return command


def evaluate_command(spec: TableSpec, ckpt: Path, run: Path, resume: bool = False) -> list[str]:
    """``evaluate`` of ``ckpt`` into ``run/eval`` with the spec's selectors, budgets and overrides.

    The spec's ``overrides`` and any ``--set`` values in its ``evaluate_args`` go into one ``--set``
    at the end, overrides first (a later value of the same key wins).
    """
    args, sets = _split_sets(spec.evaluate_args)
    command = [sys.executable, "-m", "trainer", "evaluate", "--config", spec.config, "--ckpt", str(ckpt),
               "--selectors", *spec.selectors, "--budgets", *map(str, spec.budgets), *args,
               "--seed", str(spec.eval_seed), "--device", spec.device, "--output", str(run / "eval")]  # fmt: skip
    if resume:
        command.append("--resume")
    if spec.overrides or sets:
        command += ["--set", *spec.overrides, *sets]
    return command


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
                                 "(--output, or --fit-from for a reused training run) or remove it")  # fmt: skip
        return record
    if run.is_dir() and any(run.iterdir()):
        raise ReproduceError(f"{run} holds files but no {RUN_RECORD}, so nothing says which settings made them; use "
                             "another folder (--output, or --fit-from for a reused training run) or remove it")  # fmt: skip
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


# ------------------------------------------------------------------------------- tables


def _fmt(value: Any) -> str:
    # round(.) + 0.0 turns -0.0 (e.g. a -1e-17 mean) into 0.0: no "-0.000" cells.
    return f"{round(value, 3) + 0.0:.3f}" if isinstance(value, float) else str(value)


def _signed(value: float) -> str:
    return f"{round(value, 3) + 0.0:+.3f}"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def load_results(run: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(summary rows, paired results JSON) of a seed's finished evaluation."""
    summary = json.loads((run / "eval" / "results.json").read_text())["summary"]
    paired = json.loads((run / "eval" / "paired" / "results.json").read_text())
    return summary, paired


def shown_columns(spec: TableSpec, summary: list[dict[str, Any]]) -> list[str]:
    """The metric columns of the body: the spec's that are present, or every seed-determined one."""
    present = list(dict.fromkeys(key for row in summary for key in row))
    if spec.columns is not None:
        return [c for c in spec.columns if c in present]
    return [c for c in present if c not in ("selector", "K", *TIMING_COLUMNS) and "@" not in c
            and all(isinstance(row.get(c), (int, float)) for row in summary if c in row)]  # fmt: skip


def _order(spec: TableSpec, name: str) -> int:
    return spec.selectors.index(name) if name in spec.selectors else len(spec.selectors)


def compact_body(spec: TableSpec, summary: list[dict[str, Any]], paired: dict[str, Any]) -> str:
    """One row per K: each selector's metric, and the paired difference with the best other selector."""
    metric, against = spec.paired_metrics[0], paired["meta"]["against"]
    value = {(s["selector"], s["K"]): s[metric] for s in summary if metric in s}
    others = sorted({name for name, _ in value if name != against}, key=lambda n: (_order(spec, n), n))
    level = paired["meta"]["level"]
    rows = []
    for k in sorted({k for _, k in value}):
        best = max((n for n in others if (n, k) in value), key=lambda n: value[(n, k)])  # first in order on ties
        p = next(p for p in paired["summary"] if p["K"] == k and p["selector"] == best and p["metric"] == metric)
        rows.append([str(k), *(_fmt(value.get((n, k), "")) for n in (against, *others)),
                     f"vs {best}: {_signed(p['difference'])} [{_signed(p['low'])}, {_signed(p['high'])}]", p["verdict"]])  # fmt: skip
    header = ["K", against, *others, f"{against} − best other [{level:.0%} CI]", "verdict"]
    return "\n".join(_md_table(header, rows)) + "\n"


def single_body(spec: TableSpec, summary: list[dict[str, Any]], paired: dict[str, Any]) -> str:
    """The body of a one-seed table: the summary (sorted by K, then selector) and the paired differences."""
    if spec.layout == "compact":
        return compact_body(spec, summary, paired)
    return summary_body(summary, paired, shown_columns(spec, summary), spec.paired_metrics,
                        key=lambda name: _order(spec, name))  # fmt: skip


def summary_body(summary: list[dict[str, Any]], paired: dict[str, Any], columns: list[str] | tuple[str, ...],
                 paired_metrics: tuple[str, ...], key: Callable[[str], Any] = str) -> str:  # fmt: skip
    """An evaluation's summary (``columns`` after ``selector`` and ``K``, rows sorted by K, then
    selector) and, per metric of ``paired_metrics``, the paired differences (selectors by ``key``)."""
    rows = sorted(summary, key=lambda s: (s["K"], s["selector"]))
    lines = _md_table(["selector", "K", *columns], [[s["selector"], str(s["K"]), *(_fmt(s.get(c, "")) for c in columns)]
                                                    for s in rows])  # fmt: skip
    against, level = paired["meta"]["against"], paired["meta"]["level"]
    videos = max((p["videos"] for p in paired["summary"]), default=0)
    for metric in paired_metrics:
        found = [p for p in paired["summary"] if p["metric"] == metric]
        if not found:
            continue
        found.sort(key=lambda p: (p["K"], key(p["selector"]), p["selector"]))
        lines += ["", f"{against} minus each other selector, paired video by video ({level:.0%} percentile-bootstrap "
                      f"intervals over {videos} videos, 10,000 resamples, seed 0):", ""]  # fmt: skip
        lines += _md_table(
            ["K", "vs", f"{metric} difference [{level:.0%} CI]", "verdict"],
            [[str(p["K"]), p["selector"], f"{_signed(p['difference'])} [{_signed(p['low'])}, {_signed(p['high'])}]",
              p["verdict"]] for p in found],
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def _spread(values: list[float]) -> str:
    """``mean ± std [min, max]`` over seeds (sample std), or the value alone when every seed agrees."""
    if all(v == values[0] for v in values):
        return _fmt(values[0])
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{_fmt(statistics.fmean(values))} ± {_fmt(std)} [{_fmt(min(values))}, {_fmt(max(values))}]"


def spread_body(spec: TableSpec, seeds: list[int], results: dict[int, tuple[list, dict]]) -> str:
    """The body of a multi-seed table: each metric's spread over training seeds, then learned vs the best baseline."""
    by_key: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
    for seed in seeds:
        for row in results[seed][0]:
            by_key.setdefault((row["selector"], row["K"]), {})[seed] = row
    columns = shown_columns(spec, [row for seed in seeds for row in results[seed][0]])
    rows = []
    for (name, k), per_seed in sorted(by_key.items(), key=lambda item: (item[0][1], item[0][0])):
        if len(per_seed) != len(seeds):
            raise ReproduceError(f"{name} at K={k} is missing from seeds {sorted(set(seeds) - set(per_seed))}")
        rows.append([name, str(k), *(_spread([per_seed[s][c] for s in seeds]) if c in per_seed[seeds[0]] else ""
                                     for c in columns)])  # fmt: skip
    lines = _md_table(["selector", "K", *columns], rows)
    lines += ["", f"Mean ± std (n-1) [min, max] over training seeds {_seed_list(seeds)}; a single value: every seed "
                  "gave it."]  # fmt: skip

    against, level = results[seeds[0]][1]["meta"]["against"], results[seeds[0]][1]["meta"]["level"]
    for metric in spec.paired_metrics:
        table = []
        for k in sorted({k for _, k in by_key}):
            others = [n for n, kk in by_key if kk == k and n != against and metric in by_key[(n, k)][seeds[0]]]
            if not others or (against, k) not in by_key:
                continue
            # The best baseline by mean over seeds; ties go to the one named first in the spec.
            best = max(others, key=lambda n: (statistics.fmean(by_key[(n, k)][s][metric] for s in seeds),
                                              -_order(spec, n)))  # fmt: skip
            diffs = []
            for s in seeds:
                match = [p for p in results[s][1]["summary"]
                         if (p["K"], p["selector"], p["metric"]) == (k, best, metric)]  # fmt: skip
                if len(match) != 1:
                    raise ReproduceError(f"seed {s}: no paired {metric} row for {against} vs {best} at K={k}")
                diffs.append(match[0])
            above = sum(p["low"] > 0 for p in diffs)
            below = sum(p["high"] < 0 for p in diffs)
            table.append([str(k), best, *(_signed(p["difference"]) for p in diffs),
                          _signed(statistics.fmean(p["difference"] for p in diffs)),
                          f"{above} of {len(seeds)}", f"{below} of {len(seeds)}"])  # fmt: skip
        if table:
            lines += ["", f"{against} minus the best other selector at each K (highest mean {metric} over seeds), "
                          f"paired video by video per seed; the last columns count the seeds whose {level:.0%} "
                          f"interval lies above or below 0:", ""]  # fmt: skip
            lines += _md_table(["K", "best baseline", *(f"seed {s}" for s in seeds), "mean", "CI > 0", "CI < 0"], table)
    return "\n".join(lines) + "\n"


def _seed_list(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {round(seconds % 60)} s"


def _machine_line(m: dict[str, Any], device: str) -> str:
    used = f"CUDA ({m['cuda']})" if device == "cuda" else "CPU"
    return (f"{m['platform']}; {m['cpu']} x {m['cpus']} (torch threads {m['torch_threads']}); "
            f"torch {m['torch']}; device: {used}")  # fmt: skip


def _steps(spec: TableSpec, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps a seed's numbers came from, each with its ``device``: for a table that reuses
    another's training run, that table's fit steps (named ``fit (TABLE)``) first."""
    base = record.get("fit_from")
    steps = [{**s, "device": spec.device} for s in record["steps"]]
    if not base:
        return steps
    return [{**s, "name": f"{s['name']} ({base['table']})", "device": base["device"]} for s in base["steps"]] + steps


def header(spec: TableSpec, records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the header says: seeds, date, machines, per-step times and commands, the reused training run."""
    steps = [(r["seed"], s) for r in records for s in _steps(spec, r)]
    return {
        "seeds": [r["seed"] for r in records],
        "date": max(s["finished"] for _, s in steps),
        "machines": list(dict.fromkeys(_machine_line(s["machine"], s["device"]) for _, s in steps)),
        "steps": [(seed, s["name"], s["seconds"], s["command"]) for seed, s in steps],
        "fit_from": [(r["seed"], r["fit_from"]["table"], r["fit_from"]["run"]) for r in records if r.get("fit_from")],
    }


def _fit_from_line(head: dict[str, Any]) -> str | None:
    """``training run: table T's ...`` for a table that reuses another's training run."""
    if not head.get("fit_from"):
        return None
    table = head["fit_from"][0][1]
    folders = ", ".join(f"`{run}`" for _, _, run in head["fit_from"])
    return (f"training run: table `{table}`'s (`python -m trainer reproduce {table}` trains it; this table evaluates "
            f"it without training), in {folders}")  # fmt: skip


def _header_markdown(spec: TableSpec | CommandTable, flags: str, facts: list[str], date: str, machines: list[str],
                     times: str, commands: list[str]) -> str:  # fmt: skip
    """The header of ``table.md``, as a list (``facts``: what the seeds and reused runs are), up to the body."""
    return "\n".join([f"# `{spec.name}`: {spec.description}", "",
                      f"- regenerate: `python -m trainer reproduce {spec.name}{flags}`", *(f"- {f}" for f in facts),
                      f"- finished: {date}", *(f"- machine: {m}" for m in machines), f"- wall time: {times}",
                      "- commands:", "", "```", *commands, "```", "", ""])  # fmt: skip


def _header_paragraph(spec: TableSpec | CommandTable, flags: str, facts: str, date: str, machines: list[str],
                      times: str, commands: list[str], note: str = "") -> str:  # fmt: skip
    """The header of a results block: one short italic paragraph (``note``: after "Commands")."""
    return (f"*Regenerate with `python -m trainer reproduce {spec.name}{flags} --write` (compare: `--check`). "
            f"{facts}; {date}; {' / '.join(machines)}; {times}. Commands{note}: "
            + "; ".join(f"`{c}`" for c in commands) + ".*")  # fmt: skip


def _seed_flags(seeds: list[int]) -> str:
    return f" --seeds {len(seeds)} --seed {seeds[0]}" if len(seeds) > 1 else f" --seed {seeds[0]}"


def table_markdown(spec: TableSpec, head: dict[str, Any], body: str) -> str:
    """``table.md``: the header as a list, then the body (the lines a ``--check`` compares)."""
    seeds = head["seeds"]
    facts = [f"training seed{'s' if len(seeds) > 1 else ''}: {_seed_list(seeds)} (`--seed_everything`); "
             f"evaluate `--seed {spec.eval_seed}`", *(line for line in [_fit_from_line(head)] if line)]  # fmt: skip
    times = ", ".join(f"seed {s} {n} {_duration(t)}" if len(seeds) > 1 else f"{n} {_duration(t)}"
                      for s, n, t, _ in head["steps"])  # fmt: skip
    commands = [c for _, _, _, c in head["steps"]]
    return _header_markdown(spec, _seed_flags(seeds), facts, head["date"], head["machines"], times, commands) + body


def readme_block(spec: TableSpec, head: dict[str, Any], body: str) -> str:
    """The results block: the header as one short italic paragraph, then the body.

    With several seeds the paragraph gives the first seed's commands (the others differ only in
    ``--seed_everything`` and the seed folder) and each step's range of wall times.
    """
    seeds = head["seeds"]
    first = [(n, t, c) for s, n, t, c in head["steps"] if s == seeds[0]]
    if len(seeds) == 1:
        times, others = ", ".join(f"{n} {_duration(t)}" for n, t, _ in first), ""
    else:
        per_step: dict[str, list[float]] = {}
        for _, n, t, _ in head["steps"]:
            per_step.setdefault(n, []).append(t)
        times = ", ".join(f"{n} {_duration(min(t))}" + (f" to {_duration(max(t))}" if len(t) > 1 else "")
                          for n, t in per_step.items()) + " per seed"  # fmt: skip
        others = f" (seed {seeds[0]}; the other seeds' commands differ only in `--seed_everything` and the seed folder)"
    plural = "s" if len(seeds) > 1 else ""
    reused = (f"The training run{plural} of table `{head['fit_from'][0][1]}`, evaluated here without training. "
              if head.get("fit_from") else "")  # fmt: skip
    facts = f"{reused}Training seed{plural} {_seed_list(seeds)}, evaluate seed {spec.eval_seed}"
    paragraph = _header_paragraph(spec, _seed_flags(seeds), facts, head["date"], head["machines"], times,
                                  [c for _, _, c in first], others)  # fmt: skip
    return f"{paragraph}\n\n{body}"


def body_of(text: str) -> str:
    """The body of a generated table or results block: from its first table line (``|``) on."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        return ""
    return "\n".join(lines[start:]).strip("\n") + "\n"


# ------------------------------------------------------------------------------- results blocks


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- reproduce:{name} -->", f"<!-- /reproduce:{name} -->"


def find_block(readme: Path, name: str) -> tuple[str, int, int]:
    """(file text, start, end) of the text between the table's markers.

    Raises:
        ReproduceError: If the file or either marker is missing, or a marker is there twice.
    """
    if not readme.is_file():
        raise ReproduceError(f"{readme} not found")
    text = readme.read_text()
    opening, closing = _markers(name)
    counts = {m: text.count(m) for m in (opening, closing)}
    if counts[opening] != 1 or counts[closing] != 1 or text.index(opening) > text.index(closing):
        raise ReproduceError(
            f"{readme} needs exactly one block '{opening}' ... '{closing}' (found {counts[opening]} opening and "
            f"{counts[closing]} closing markers): put these two lines, each on its own line, around the table")
    start = text.index(opening) + len(opening)
    return text, start, text.index(closing)


def write_block(readme: Path, name: str, block: str) -> None:
    text, start, end = find_block(readme, name)
    write_atomic(readme, text[:start] + "\n" + block.strip("\n") + "\n" + text[end:])


def check_block(readme: Path, name: str, body: str) -> str:
    """A unified diff of the results block's body against ``body`` (empty when they are the same)."""
    text, start, end = find_block(readme, name)
    current = body_of(text[start:end])
    return "".join(difflib.unified_diff(current.splitlines(keepends=True), body.splitlines(keepends=True),
                                        f"{readme} (reproduce:{name})", "regenerated"))  # fmt: skip


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
    parser = argparse.ArgumentParser(prog="python -m trainer reproduce", description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", help="the table (see --list)")
    parser.add_argument("--list", action="store_true", help="list the tables and exit")
    parser.add_argument("--output", default=None, help="run folder (default outputs/reproduce/NAME)")
    parser.add_argument("--seeds", type=int, default=1, help="training runs, seeds --seed, --seed + 1, ...")
    parser.add_argument("--seed", type=int, default=0, help="the (first) training seed")
    parser.add_argument("--readme", default=RESULTS, metavar="FILE",
                        help=f"file with the reproduce:NAME markers (default: {RESULTS})")
    parser.add_argument("--fit-from", default=None, metavar="DIR",
                        help="for a table that evaluates another table's training run or reads another table's "
                             "output (--list says which): the folder of that table's runs, DIR/seed<S> (default: "
                             "the sibling of --output named after that table, e.g. outputs/reproduce/wide_budget)")  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true",
                      help="replace the table's block in --readme with the regenerated table")
    mode.add_argument("--check", action="store_true",
                      help="regenerate in a fresh folder; exit 1 with a diff if the block's body in --readme "
                           "differs")  # fmt: skip
    args = parser.parse_args(argv)
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
        parser.error(f"--fit-from: table {spec.name} uses no other table's run")
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
