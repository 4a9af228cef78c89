"""Atomic writes: build a file or folder at a temporary sibling, then rename it into place.

A reader, or a crash half-way, never sees a half-written file: the old content stays until the
new one is complete, and a failed write leaves nothing behind. One helper for every writer::

    write_atomic(path, "text")                                  # str: written as UTF-8 text
    write_atomic(path, json.dumps(payload, indent=1))           # JSON is text
    write_atomic(path, b"...")                                  # bytes
    write_atomic(path, lambda tmp: torch.save(state, tmp))      # a library writes the file ...
    write_atomic(folder, lambda tmp: model.save_pretrained(tmp))  # ... or a whole folder

(``data`` imports nothing from ``models`` or ``trainer``; both use this module.)
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def temp_sibling(path: Path, tag: str = "tmp") -> Path:
    """A hidden, unique name next to ``path``: same filesystem (so the rename is atomic), no clash
    between concurrent writers, and the same suffix (writers such as PyAV pick the format by it)."""
    return path.with_name(f".{path.stem}.{tag}-{uuid.uuid4().hex[:8]}{path.suffix}")


#: What :func:`temp_sibling` names look like: ``.STEM.TAG-8 hex digits`` and the suffix, if any.
_TEMP_NAME = re.compile(r"\..*\.(tmp|old)-[0-9a-f]{8}(\.[^.]*)?")


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Removes the temporary siblings a killed writer left in ``folder`` (not in its subfolders).

    A write killed half-way (SIGKILL, power loss) leaves its hidden ``.NAME.tmp-1a2b3c4d``
    behind, and one killed between the two renames of a folder, the old folder as
    ``.NAME.old-1a2b3c4d``. Call this only where no other writer is at work: a command resuming
    or starting over in its own output folder.

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    leftovers = [p for p in folder.iterdir() if _TEMP_NAME.fullmatch(p.name)] if folder.is_dir() else []
    for path in leftovers:
        _remove(path)
    return leftovers


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_atomic(path: str | Path, content: str | bytes | Callable[[Path], Any]) -> Path:
    """Writes ``content`` to ``path`` through a temporary sibling and a rename.

    Args:
        path: The file or folder to write; its parent folder is created.
        content: Text (written as UTF-8), bytes, or a function that writes the file or folder at
            the temporary path it is given (which does not exist yet).

    Returns:
        ``path``.

    A file replaces an existing file in one ``os.replace``. A folder replaces an existing one in
    two renames: the old one steps aside, the new one takes its place (or, if that fails, the old
    one comes back), and only then is the old one deleted, so ``path`` is never half of either.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        if isinstance(content, str):
            tmp.write_text(content, encoding="utf-8")
        elif isinstance(content, (bytes, bytearray, memoryview)):
            tmp.write_bytes(content)
        else:
            content(tmp)
            if not tmp.exists() and not tmp.is_symlink():
                raise FileNotFoundError(f"the writer for {path} wrote nothing at the temporary path {tmp}")
        _move_into_place(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def _move_into_place(tmp: Path, path: Path) -> None:
    if not tmp.is_dir() or not path.exists():
        os.replace(tmp, path)  # atomic for files, and for a folder where nothing is yet
        return
    old = temp_sibling(path, "old")
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    _remove(old)
