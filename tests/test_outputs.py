"""``data.outputs``: names derived from video ids and file names stay inside the output folder, unique;
output folders are checked before any work; ``data.atomic.remove_leftovers`` clears killed writes."""

import hashlib

import pytest

from data.atomic import remove_leftovers, temp_sibling, write_atomic
from data.outputs import MAX_NAME_BYTES, check_writable, safe_names, source_hash

HOSTILE = ["x/../../../../ESCAPE", "/etc/passwd", "..", ".", "...", ".hidden", "a\\b", "nul\x00here", "new\nline",
           "run.json", "RUN.JSON", "", "é" * 80, "clip", "Clip", "bad\udcffbyte"]  # fmt: skip


def test_a_plain_name_stays_as_it_is():
    assert safe_names(["clip", "a b (1)", "Ünïcode-名前"]) == ["clip", "a b (1)", "Ünïcode-名前"]


def test_hostile_names_become_plain_unique_names_inside_the_folder(tmp_path):
    names = safe_names(HOSTILE, reserved=["run.json", "summary.jsonl"])
    assert len({n.casefold() for n in names}) == len(HOSTILE)  # unique, even on a case-insensitive disk
    for name in names:
        assert "/" not in name and "\\" not in name and not name.startswith(".") and name not in ("", ".", "..")
        assert not any(ord(c) < 32 for c in name) and len(name.encode("utf-8")) <= MAX_NAME_BYTES
        assert name.casefold() not in ("run.json", "summary.jsonl")
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()
        (tmp_path / name).write_text("x")  # a real file system takes every one of them
    assert len(list(tmp_path.iterdir())) == len(HOSTILE)
    # An altered, reserved or shared name carries the hash of its source: told apart, traceable.
    got = dict(zip(HOSTILE, names))
    assert got["x/../../../../ESCAPE"] == f"x_.._.._.._.._ESCAPE-{source_hash('x/../../../../ESCAPE')}"
    assert got[".."] == f"video-{source_hash('..')}" and got["."] == f"video-{source_hash('.')}"
    assert got[".hidden"] == f"hidden-{source_hash('.hidden')}"
    assert got["run.json"] == f"run.json-{source_hash('run.json')}"
    assert got["clip"] == f"clip-{source_hash('clip')}" and got["Clip"] == f"Clip-{source_hash('Clip')}"
    assert source_hash("clip") == hashlib.sha256(b"clip").hexdigest()[:8]


def test_long_names_are_cut_to_whole_characters_and_keep_their_hash():
    long = "é" * 300  # 600 bytes of UTF-8
    [name] = safe_names([long])
    assert name.endswith(f"-{source_hash(long)}") and name.startswith("é" * 45)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert safe_names(["a" * 100]) == ["a" * 100]  # at the limit: unchanged
    assert safe_names(["a" * 101]) == [f"{'a' * 91}-{source_hash('a' * 101)}"]


def test_the_same_stem_from_two_folders_gets_two_names_from_the_paths_whatever_the_order():
    names = safe_names(["clip", "clip", "other"], ["/in/a/clip.mp4", "/in/b/clip.mp4", "/in/other.mp4"])
    assert names == [f"clip-{source_hash('/in/a/clip.mp4')}", f"clip-{source_hash('/in/b/clip.mp4')}", "other"]
    assert safe_names(["clip", "clip"], ["/in/b/clip.mp4", "/in/a/clip.mp4"]) == names[1::-1]
    # The same file given twice: numbered after the hash.
    twice = safe_names(["clip", "clip"], ["/in/a/clip.mp4"] * 2)
    assert twice == [names[0], f"{names[0]}-2"]


def test_taken_names_are_not_given_again():
    assert safe_names(["a", "b"], taken=["A"]) == [f"a-{source_hash('a')}", "b"]
    with pytest.raises(ValueError, match="2 names but 1 sources"):
        safe_names(["a", "b"], ["a"])


def test_check_writable_refuses_a_file_and_a_path_under_a_file_and_creates_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        check_writable(tmp_path / "file")
    with pytest.raises(NotADirectoryError, match=r"file is a file, not a folder \(on the way to .*file/sub/out\)"):
        check_writable(tmp_path / "file" / "sub" / "out")
    check_writable(tmp_path / "new" / "deeper")
    check_writable(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing created, no probe left


def test_check_writable_refuses_a_read_only_folder(read_only_dir):
    with pytest.raises(PermissionError, match=r"cannot write in .*ro"):
        check_writable(read_only_dir)
    with pytest.raises(PermissionError, match=r"ro, so .*ro/out cannot be created"):
        check_writable(read_only_dir / "out")


def test_remove_leftovers_clears_killed_writes_and_nothing_else(tmp_path):
    keep = [write_atomic(tmp_path / "run.json", "{}"), tmp_path / ".hidden", tmp_path / "a.tmp-12345678",
            tmp_path / "clip"]  # fmt: skip
    keep[1].write_text("user's"), keep[2].write_text("not ours"), keep[3].mkdir()
    left = [temp_sibling(tmp_path / "run.json"), temp_sibling(tmp_path / "clip"), temp_sibling(tmp_path / "x.srt"),
            temp_sibling(tmp_path / "clip", "old"), temp_sibling(tmp_path / "a.b.c.vtt")]  # fmt: skip
    for path in left:
        if path.suffix:
            path.write_text("half")
        else:
            (path / "inner").mkdir(parents=True)
    inner = tmp_path / "clip" / temp_sibling(tmp_path / "clip" / "f.json").name
    inner.write_text("half")  # inside a video's folder: not this function's (the folder is replaced whole)
    assert sorted(remove_leftovers(tmp_path)) == sorted(left)
    assert sorted(tmp_path.iterdir()) == sorted(keep) and inner.exists()
    assert remove_leftovers(tmp_path / "missing") == []
