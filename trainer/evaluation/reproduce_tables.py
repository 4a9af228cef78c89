"""What each table of ``python -m trainer reproduce`` is: :class:`TableSpec` (``fit`` then
``evaluate``), :class:`CommandTable` (its own steps, with the function that makes its body) and
the registry :data:`TABLES`. Tooling for the project's own results (RESULTS.md), not an API.

Adding a table is one more entry in :data:`TABLES` and the two marker lines in RESULTS.md.
"""

from __future__ import annotations

import csv
import json
import string
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainer.evaluation.reproduce_markdown import ReproduceError, _fmt, _md_table, _signed, load_results, summary_body


@dataclass(frozen=True)
class TableSpec:
    """One reproducible results table.

    Attributes:
        name: Command-line name, also the RESULTS.md marker ``<!-- reproduce:NAME -->``.
        description: One line for ``--list``.
        config: The config ``fit`` and ``evaluate`` both read.
        overrides: ``KEY=VALUE`` config overrides that define the data and the model: ``fit`` and
            ``evaluate`` both get them as ``--KEY VALUE`` (evaluate must rebuild the same data and
            model).
        fit_args: Training-only ``fit`` flags (epochs, validation interval, ...).
        selectors: ``evaluate --selectors``.
        budgets: ``evaluate --budgets``.
        evaluate_args: Further ``evaluate`` flags (``--share_decoder``, ``--split``, ...), and
            evaluate-only config overrides in ``fit``'s syntax (``--data.fps 1``), which come after
            ``overrides`` (a later value of the same key wins).
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
            model) and ``fit_args`` empty; ``evaluate_args`` may add config overrides (the data it
            is evaluated on).
    """

    name: str
    description: str
    config: str
    selectors: tuple[str, ...]
    budgets: tuple[int, ...]
    overrides: tuple[str, ...] = ()
    fit_args: tuple[str, ...] = ()
    evaluate_args: tuple[str, ...] = ("--share_decoder",)
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
        if "--set" in self.evaluate_args:
            raise ValueError(f"TableSpec {self.name}: evaluate_args take fit's overrides (--data.fps 1), not --set")
        if self.reuse_fit is not None and self.fit_args:
            raise ValueError(f"TableSpec {self.name}: a table that reuses {self.reuse_fit}'s training run has no "
                             f"fit_args, got {self.fit_args}")  # fmt: skip


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


# The runs of the vlm_objectives table: (step, how the importance model was trained, the judge VLM).
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
    lines = _md_table(["importance model trained by", "judge VLM", *(f"recall@{k} (epoch {on})" for k in budgets)], rows)
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
            description="importance model (RL, smoke_rl.yaml) vs baselines on the 24 test videos, K=4/8/16",
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
            evaluate_args=("--share_decoder", "--plot_videos", "0"),  # figures cost more than the 3 videos
            columns=("videos", "recall", "coverage"),
        ),
        TableSpec(
            name="smoke_budget",
            description="one budget-aware importance model (RL, smoke_budget.yaml, K drawn from 2-16) vs baselines on the 24 test "
                        "videos, K=2/4/8/16",
            config="configs/smoke_budget.yaml",
            selectors=("learned", "xcorr", "pixel_l1", "flow", "uniform", "random"),
            budgets=(2, 4, 8, 16),
            layout="compact",
            columns=("videos", "recall", "coverage"),
        ),
        TableSpec(
            name="wide_budget",
            description="one budget-aware importance model for K=2-32 trained on the wide synthetic family (wide_budget.yaml) vs "
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
            evaluate_args=("--share_decoder", "--split", "train", "--max_videos", "48", "--plot_videos", "2",
                           "--data.synthetic", "configs/parts/synthetic_heldout.yaml"),  # fmt: skip
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
            description="importance model and LoRA trained jointly on the tiny reader (synthetic_joint.yaml) vs the "
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
                                            "--budgets", "4", "8", "--share_decoder", "--generate",
                                            "--device", "cpu", "--output", "{out}",
                                            "--model.init_args.vlm.init_args.model_name_or_path",
                                            "{tiny_reader}/reader")),),
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
                         "run it evaluates (add evaluate-only overrides, --KEY VALUE, to evaluate_args)")  # fmt: skip
    return base


for _spec in TABLES.values():
    # A broken reuse_fit or uses fails on import, not after hours of training.
    uses_chain(_spec) if isinstance(_spec, CommandTable) else base_spec(_spec)
