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
