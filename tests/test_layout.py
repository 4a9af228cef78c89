"""Architecture rules that keep the layout honest."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_models_never_import_lightning():
    modules = [f"models.{p.stem}" for p in (ROOT / "models").glob("*.py") if p.stem != "__init__"]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')]\n"
        + "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(modules) >= 4


def test_data_never_imports_models_or_trainer():
    """``data/`` is the bottom layer: models and trainer build on it, never the other way round."""
    import ast

    offenders = []
    for path in (ROOT / "data").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("models", "trainer")]
    assert not offenders, offenders


def _imports(path: Path, package: str) -> set[str]:
    """Project modules ``path`` imports anywhere: at module level and inside functions alike.

    An import deferred into a function (to keep a heavy library out of start-up) still makes the
    two modules depend on each other, so it counts.
    """
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else f"{package}.{node.module}"
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _project_modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts): p for top in ("data", "models", "trainer")
            for p in (ROOT / top).rglob("*.py") if p.stem != "__init__"}  # fmt: skip


def test_no_import_circle_between_project_modules():
    """The imports of data/, models/ and trainer/, those inside functions included, form no cycle."""
    modules = _project_modules()
    graph = {m: sorted(i for i in _imports(p, m.rpartition(".")[0]) if i in modules and i != m)
             for m, p in modules.items()}  # fmt: skip
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n] if n in path else [m, n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles
    assert len(modules) >= 30 and any(graph.values())


def test_no_command_module_uses_another_as_a_library():
    """A command's module (``python -m trainer NAME``) imports nothing from another command's module
    but its ``main`` (``bench`` times the ``select`` command itself): what two commands share lives
    in a module of its own (:mod:`trainer.cli_helpers`, :mod:`trainer.plots`, ...)."""
    import ast

    commands = {}
    for node in ast.parse((ROOT / "trainer" / "__main__.py").read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(getattr(t, "id", None) == "COMMANDS" for t in targets):
            commands = ast.literal_eval(node.value)
    modules = {module for module, _ in commands.values() if module is not None}
    offenders = []
    for module in sorted(modules):
        path = ROOT / Path(*module.split(".")).with_suffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                offenders += [f"{module}: import {a.name}" for a in node.names if a.name in modules - {module}]
            elif isinstance(node, ast.ImportFrom) and node.module in modules - {module}:
                offenders += [f"{module}: {node.module}.{a.name}" for a in node.names if a.name != "main"]
    assert not offenders, offenders
    assert len(modules) >= 10


def test_no_module_over_700_lines_without_a_reason_in_its_docstring():
    """A module of data/, models/ or trainer/ longer than ~700 lines says why in its docstring."""
    import ast

    unexplained = []
    for module, path in _project_modules().items():
        lines = path.read_text().count("\n")
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > 720 and "Why this size" not in doc:
            unexplained.append(f"{module}: {lines} lines")
    assert not unexplained, unexplained
