"""The docs: README.md is a short front door, and every link, command, config and module that README.md
and the Markdown next to the code (``helpers.DOCS``) name exists. The composed ``fit`` commands they
name are parsed in ``test_configs.py``, every config in ``test_cli.py``."""

import importlib.util
import re
from pathlib import Path

import pytest

from helpers import DOCS, ROOT
from trainer.__main__ import COMMANDS

LIGHTNING_COMMANDS = {"fit", "validate", "test", "predict"}
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _prose(text: str) -> str:
    """``text`` without its fenced code blocks (a link there is code, not a link)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation other than ``-`` and ``_`` dropped, spaces to ``-``."""
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _prose(text), flags=re.M):
        found.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return found


def test_readme_is_a_front_door_of_at_most_250_lines():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move reference text next to its code"


def test_the_docs_are_the_readme_and_markdown_in_the_existing_folders():
    names = {_ids(d) for d in DOCS}
    assert {"README.md", "configs/README.md", "data/README.md", "models/README.md", "trainer/README.md",
            "trainer/evaluation/README.md", "trainer/evaluation/RESULTS.md", "trainer/benchmarks/README.md",
            "trainer/tools/README.md"} <= names  # fmt: skip


@pytest.mark.parametrize("doc", DOCS, ids=_ids)
def test_every_relative_link_points_to_a_file_and_its_anchor(doc):
    text = doc.read_text()
    broken = []
    for target in LINK.findall(_prose(text)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(f"{target}: no heading with anchor #{anchor} in {_ids(file)}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=_ids)
def test_every_command_config_and_module_named_exists(doc):
    text = doc.read_text()
    commands = set(re.findall(r"python -m trainer ([a-z_]+)", text))
    assert commands <= LIGHTNING_COMMANDS | set(COMMANDS), commands - LIGHTNING_COMMANDS - set(COMMANDS)
    modules = set(re.findall(r"python -m ((?:data|models|trainer)\.[a-z_.]+)", text))
    assert all(importlib.util.find_spec(m) for m in modules), modules
    configs = {c for c in re.findall(r"configs/[\w/.\-]+\.yaml", text)}
    missing = sorted(c for c in configs if not (ROOT / c).is_file())
    assert not missing, missing
