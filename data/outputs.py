"""Output folders and the names in them: one safe, unique name per video, and a folder checked up front.

A command that writes one file or folder per video (``select``, ``caption``, ``evaluate``'s plots)
names it after the video's id or file name, which come from the user's files or an annotation
file and may hold anything: ``x/../../ESCAPE``, ``..``, ``run.json``, a newline. :func:`safe_names`
turns them into names that stay inside the output folder, never replace the run's own files,
and never replace each other; the command keeps the original id or path in its JSON records.
:func:`check_writable` checks an output folder before any model loads, so a typo costs seconds.

(``data`` imports nothing from ``models`` or ``trainer``.)
"""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path

#: Longest name :func:`safe_names` gives, in UTF-8 bytes: with a prefix, a suffix and the hidden
#: temporary sibling of an atomic write (``.NAME.tmp-12345678.srt``) it stays far below the 255
#: bytes most file systems allow.
MAX_NAME_BYTES = 100
_HASH_CHARS = 8  # hex digits of sha256 (32 bits): a clash needs ~65,000 colliding names in one run
FALLBACK_NAME = "video"


def source_hash(source: str) -> str:
    """The short hash :func:`safe_names` appends: the first 8 hex digits of the source's sha256."""
    return hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:_HASH_CHARS]


def _cleaned(name: str) -> str:
    """``name`` with separators, control characters and undecodable bytes replaced, leading dots removed."""
    # Cc: control characters (NUL, newline, ...); Cs: a file name's undecodable bytes, which
    # Python holds as lone surrogates that cannot be written as UTF-8 text.
    chars = ["_" if c in "/\\" or unicodedata.category(c) in ("Cc", "Cs") else c for c in name]
    return "".join(chars).lstrip(".")


def _key(name: str) -> str:
    # Case-insensitive file systems (macOS, Windows) hold "Clip" and "clip" as one file, and
    # macOS stores names decomposed (NFD): compare names as those file systems do.
    return unicodedata.normalize("NFC", name).casefold()


def _cut(text: str, max_bytes: int) -> str:
    """The longest start of ``text`` that is at most ``max_bytes`` bytes of UTF-8 (whole characters)."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def safe_names(
    names: Sequence[str],
    sources: Sequence[str] | None = None,
    reserved: Collection[str] = (),
    taken: Collection[str] = (),
    max_bytes: int = MAX_NAME_BYTES,
) -> list[str]:
    """One file or folder name per entry of ``names``, safe to join to an output folder and unique in it.

    A name keeps its text where it can. It becomes ``NAME-HHHHHHHH``, ``HHHHHHHH`` being
    :func:`source_hash` of its source, when it had to be altered (a ``/`` or ``\\``, a control
    character or an undecodable byte became ``_``, leading dots were removed, it was longer than
    ``max_bytes``, nothing was left: ``video``), when it is one of ``reserved`` or ``taken``, or
    when two entries would get the same name (all of them get their hash, so a name does not
    depend on the order of the videos). Names are compared as a case-insensitive file system
    compares them. The same source given twice gets ``-2``, ``-3`` ... after its hash.

    Args:
        names: What each output would be called: a video id, a file's name without its suffix.
        sources: What each name stands for in full, hashed to tell names apart (a file's path;
            default: ``names`` themselves).
        reserved: The run's own file names, which no video may take (``run.json``, ...).
        taken: Names already used in the output folder (the videos a resumed run finished).
        max_bytes: Longest name in UTF-8 bytes, hash included (at least 16).

    Returns:
        The names, in order: no separators, no leading dot (so never ``.`` or ``..``, nor the
        hidden temporary name of an atomic write), no control characters, at most ``max_bytes``.
    """
    sources = list(names if sources is None else sources)
    if len(sources) != len(names):
        raise ValueError(f"{len(names)} names but {len(sources)} sources")
    if max_bytes < 2 * _HASH_CHARS:
        raise ValueError(f"max_bytes must be >= {2 * _HASH_CHARS}, got {max_bytes}")
    cleaned = [_cut(_cleaned(name), max_bytes) or FALLBACK_NAME for name in names]
    counts = Counter(_key(name) for name in cleaned)
    refused = {_key(name) for name in (*reserved, *taken)}
    used = set(refused)
    out = []
    for name, clean, source in zip(names, cleaned, sources):
        base = clean
        if clean != name or counts[_key(clean)] > 1 or _key(clean) in refused:
            base = f"{_cut(clean, max_bytes - _HASH_CHARS - 1)}-{source_hash(source)}"
        unique, n = base, 1
        while _key(unique) in used:
            n += 1
            unique = f"{_cut(base, max_bytes - len(f'-{n}'))}-{n}"
        used.add(_key(unique))
        out.append(unique)
    return out


def check_writable(path: str | Path) -> None:
    """Checks that ``path`` is, or can be made, a folder this process can write files in; creates nothing.

    A command calls it before any model loads, so that a read-only or mistyped output fails in
    seconds. It tries for real: a hidden file is created and removed in ``path``, or, where
    ``path`` does not exist yet, in the nearest folder above it (where ``mkdir`` will create it).
    That also catches a read-only file system and rules that permissions alone do not describe
    (ACLs, network mounts); the root user, whom permissions do not stop, is told only what the
    system refuses.

    Raises:
        NotADirectoryError: ``path``, or something above it, is a file.
        OSError: No file can be created there (``PermissionError``: read-only, or another user's).
    """
    path = Path(path).expanduser().absolute()
    existing = path
    while not (existing.exists() or existing.is_symlink()) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f" (on the way to {path})"
        raise NotADirectoryError(f"{existing} is a file, not a folder{where}")
    probe = existing / f".write-check-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as err:
        where = "" if existing == path else f", so {path} cannot be created"
        raise type(err)(f"cannot write in {existing}{where}: {err.strerror or err}") from err
