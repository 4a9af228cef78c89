"""The Markdown of ``python -m trainer reproduce``: table bodies (one seed, compact, spread over
seeds), headers (seeds, date, machine, times, commands) and the results blocks between
``<!-- reproduce:NAME -->`` markers of RESULTS.md. Tooling for the project's own results.
"""

from __future__ import annotations

import difflib
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data.atomic import write_atomic

# Summary columns that measure the machine, not the selectors: never in a table body.
TIMING_COLUMNS = ("ms_per_video", "frames_per_s")
RESULTS = "trainer/evaluation/RESULTS.md"  # the file with the tables' markers, relative to the repository root
RUN_RECORD = "reproduce.json"  # per seed folder: the steps that ran, their commands, times and machine


#: A :class:`~trainer.evaluation.reproduce_tables.TableSpec` or ``CommandTable`` (read by attribute here).
Table = Any


class ReproduceError(RuntimeError):
    """A failure the command reports in one line (exit code 2)."""


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


def shown_columns(spec: Table, summary: list[dict[str, Any]]) -> list[str]:
    """The metric columns of the body: the spec's that are present, or every seed-determined one."""
    present = list(dict.fromkeys(key for row in summary for key in row))
    if spec.columns is not None:
        return [c for c in spec.columns if c in present]
    return [c for c in present if c not in ("selector", "K", *TIMING_COLUMNS) and "@" not in c
            and all(isinstance(row.get(c), (int, float)) for row in summary if c in row)]  # fmt: skip


def _order(spec: Table, name: str) -> int:
    return spec.selectors.index(name) if name in spec.selectors else len(spec.selectors)


def compact_body(spec: Table, summary: list[dict[str, Any]], paired: dict[str, Any]) -> str:
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


def single_body(spec: Table, summary: list[dict[str, Any]], paired: dict[str, Any]) -> str:
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


def spread_body(spec: Table, seeds: list[int], results: dict[int, tuple[list, dict]]) -> str:
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


def _steps(spec: Table, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps a seed's numbers came from, each with its ``device``: for a table that reuses
    another's training run, that table's fit steps (named ``fit (TABLE)``) first."""
    base = record.get("fit_from")
    steps = [{**s, "device": spec.device} for s in record["steps"]]
    if not base:
        return steps
    return [{**s, "name": f"{s['name']} ({base['table']})", "device": base["device"]} for s in base["steps"]] + steps


def header(spec: Table, records: list[dict[str, Any]]) -> dict[str, Any]:
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


def _header_markdown(spec: Table, flags: str, facts: list[str], date: str, machines: list[str],
                     times: str, commands: list[str]) -> str:  # fmt: skip
    """The header of ``table.md``, as a list (``facts``: what the seeds and reused runs are), up to the body."""
    return "\n".join([f"# `{spec.name}`: {spec.description}", "",
                      f"- regenerate: `python -m trainer reproduce {spec.name}{flags}`", *(f"- {f}" for f in facts),
                      f"- finished: {date}", *(f"- machine: {m}" for m in machines), f"- wall time: {times}",
                      "- commands:", "", "```", *commands, "```", "", ""])  # fmt: skip


def _header_paragraph(spec: Table, flags: str, facts: str, date: str, machines: list[str],
                      times: str, commands: list[str], note: str = "") -> str:  # fmt: skip
    """The header of a results block: one short italic paragraph (``note``: after "Commands")."""
    return (f"*Regenerate with `python -m trainer reproduce {spec.name}{flags} --write` (compare: `--check`). "
            f"{facts}; {date}; {' / '.join(machines)}; {times}. Commands{note}: "
            + "; ".join(f"`{c}`" for c in commands) + ".*")  # fmt: skip


def _seed_flags(seeds: list[int]) -> str:
    return f" --seeds {len(seeds)} --seed {seeds[0]}" if len(seeds) > 1 else f" --seed {seeds[0]}"


def table_markdown(spec: Table, head: dict[str, Any], body: str) -> str:
    """``table.md``: the header as a list, then the body (the lines a ``--check`` compares)."""
    seeds = head["seeds"]
    facts = [f"training seed{'s' if len(seeds) > 1 else ''}: {_seed_list(seeds)} (`--seed_everything`); "
             f"evaluate `--seed {spec.eval_seed}`", *(line for line in [_fit_from_line(head)] if line)]  # fmt: skip
    times = ", ".join(f"seed {s} {n} {_duration(t)}" if len(seeds) > 1 else f"{n} {_duration(t)}"
                      for s, n, t, _ in head["steps"])  # fmt: skip
    commands = [c for _, _, _, c in head["steps"]]
    return _header_markdown(spec, _seed_flags(seeds), facts, head["date"], head["machines"], times, commands) + body


def readme_block(spec: Table, head: dict[str, Any], body: str) -> str:
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
