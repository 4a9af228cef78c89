"""``python -m trainer cache`` counts what it stored, not what it computed, and says when a cache cannot be written."""

import errno
import os
from pathlib import Path

import pytest

from data.features import PerFrameCache
from data.schema import load_annotations
from trainer.tools.cache import main as cache

CONFIGS = Path(__file__).parents[1] / "configs"


def _args(synthetic, tiny_model_dir, cache_dir):
    _, paths, _ = synthetic
    sets = [f"data.train_file={paths['train']}", f"data.val_file={paths['val']}", f"data.test_file={paths['test']}",
            f"data.cache_dir={cache_dir}", "data.fps=2.0", "data.frame_cache=true",
            f"model.init_args.encoder.init_args.model_name_or_path={tiny_model_dir}",
            f"model.init_args.vlm.init_args.model_name_or_path={tiny_model_dir}"]  # fmt: skip
    return ["--config", str(CONFIGS / "smoke_joint.yaml"), "--splits", "val", "test", "--workers", "0", "--set", *sets]


def _videos(synthetic) -> list[str]:
    _, paths, _ = synthetic
    return [s.video for split in ("val", "test") for s in load_annotations(paths[split])]


def test_a_cache_dir_that_is_a_file_is_refused_before_any_video_is_decoded(tmp_path, synthetic, tiny_model_dir,
                                                                           capsys, monkeypatch):  # fmt: skip
    monkeypatch.setattr("trainer.tools.cache.fill", lambda *a, **kw: pytest.fail("videos were decoded"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as refused:
        cache(_args(synthetic, tiny_model_dir, tmp_path / "file" / "cache"))
    assert refused.value.code == 2
    assert f"data.cache_dir: {tmp_path / 'file'} is a file, not a folder" in capsys.readouterr().err


def test_a_read_only_cache_dir_is_refused_before_any_video_is_decoded(tmp_path, synthetic, tiny_model_dir, capsys,
                                                                     monkeypatch):  # fmt: skip
    monkeypatch.setattr("trainer.tools.cache.fill", lambda *a, **kw: pytest.fail("videos were decoded"))
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    try:
        if os.access(readonly, os.W_OK):
            pytest.skip("this user writes in read-only folders (root); the test of a file in the way covers root")
        with pytest.raises(SystemExit) as refused:
            cache(_args(synthetic, tiny_model_dir, readonly))
        assert refused.value.code == 2 and f"data.cache_dir: cannot write in {readonly}" in capsys.readouterr().err
    finally:
        readonly.chmod(0o755)


def test_writes_that_fail_are_counted_and_exit_1_naming_the_videos(tmp_path, synthetic, tiny_model_dir, capsys,
                                                                   monkeypatch):  # fmt: skip
    """A full disk: the stores log each failed write and carry on; the command must not report success."""
    videos = _videos(synthetic)
    real_store = PerFrameCache._store
    full = {videos[1]}  # the disk fills up before the second video's entries

    def store(self, video, *args, **kwargs):
        if str(video) in full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_store(self, video, *args, **kwargs)

    monkeypatch.setattr(PerFrameCache, "_store", store)
    with pytest.raises(SystemExit) as failed:
        cache(_args(synthetic, tiny_model_dir, tmp_path / "cache"))
    out, err = capsys.readouterr()
    assert failed.value.code == 1
    assert f"{len(videos)} videos" in out and "encoded now: 2; stored: 1; not stored: 1" in out
    assert f"1 of {len(videos)} videos could not be stored" in err
    assert "no frames, features, image_embeds entry" in err

    full.update(videos)  # nothing can be written at all
    with pytest.raises(SystemExit) as failed:
        cache(_args(synthetic, tiny_model_dir, tmp_path / "cache2"))
    assert failed.value.code == 1 and "stored: 0; not stored: 2" in capsys.readouterr().out

    full.clear()  # the disk has room again: a rerun stores what is missing, and says so
    report = cache(_args(synthetic, tiny_model_dir, tmp_path / "cache"))
    assert report["stored"] == report["videos"] == len(videos) and not report["unstored"]
    assert report["encoded"] == 1  # the first video's entries were already on disk
    assert all(stats["entries"] == len(videos) for stats in report["stats"].values())
