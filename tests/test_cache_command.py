"""``python -m trainer cache`` counts what it stored, not what it computed, and says when a cache cannot be written."""

import errno

import pytest
from helpers import cache_args

from data.features import PerFrameCache
from data.schema import load_annotations
from trainer.tools.cache import main as cache



def _videos(synthetic) -> list[str]:
    _, paths, _ = synthetic
    return [s.video for split in ("val", "test") for s in load_annotations(paths[split])]


def test_a_cache_dir_that_is_a_file_is_refused_before_any_video_is_decoded(tmp_path, synthetic, tiny_model_dir,
                                                                           capsys, monkeypatch):  # fmt: skip
    monkeypatch.setattr("trainer.tools.cache.fill", lambda *a, **kw: pytest.fail("videos were decoded"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as refused:
        cache(cache_args(synthetic, tiny_model_dir, tmp_path / "file" / "cache"))
    assert refused.value.code == 2
    assert f"data.cache_dir: {tmp_path / 'file'} is a file, not a folder" in capsys.readouterr().err


def test_a_read_only_cache_dir_is_refused_before_any_video_is_decoded(read_only_dir, synthetic, tiny_model_dir,
                                                                     capsys, monkeypatch):  # fmt: skip
    monkeypatch.setattr("trainer.tools.cache.fill", lambda *a, **kw: pytest.fail("videos were decoded"))
    with pytest.raises(SystemExit) as refused:
        cache(cache_args(synthetic, tiny_model_dir, read_only_dir))
    assert refused.value.code == 2 and f"data.cache_dir: cannot write in {read_only_dir}" in capsys.readouterr().err


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
        cache(cache_args(synthetic, tiny_model_dir, tmp_path / "cache"))
    out, err = capsys.readouterr()
    assert failed.value.code == 1
    assert f"{len(videos)} videos" in out and "encoded now: 2; stored: 1; not stored: 1" in out
    assert f"1 of {len(videos)} videos could not be stored" in err
    assert "no frames, features, image_embeds, baseline_scores_pixel_l1, baseline_scores_xcorr entry" in err

    full.update(videos)  # nothing can be written at all
    with pytest.raises(SystemExit) as failed:
        cache(cache_args(synthetic, tiny_model_dir, tmp_path / "cache2"))
    assert failed.value.code == 1 and "stored: 0; not stored: 2" in capsys.readouterr().out

    full.clear()  # the disk has room again: a rerun stores what is missing, and says so
    report = cache(cache_args(synthetic, tiny_model_dir, tmp_path / "cache"))
    assert report["stored"] == report["videos"] == len(videos) and not report["unstored"]
    assert report["encoded"] == 1  # the first video's entries were already on disk
    assert all(stats["entries"] == len(videos) for stats in report["stats"].values())


def test_launcher_shards_come_from_the_environment_and_explicit_ones_win():
    from jsonargparse import Namespace

    from trainer.cli_helpers import check_shard, launcher_shard

    assert launcher_shard({}) is None
    assert launcher_shard({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"}) == (3, 8, "torchrun")
    assert launcher_shard({"SLURM_PROCID": "5", "SLURM_NTASKS": "64"}) == (5, 64, "SLURM")
    with pytest.raises(ValueError, match="RANK=2 is not in"):
        launcher_shard({"RANK": "2", "WORLD_SIZE": "2"})

    class Parser:
        def error(self, message):
            raise SystemExit(message)

    env = {"RANK": "1", "WORLD_SIZE": "2"}
    with pytest.MonkeyPatch.context() as m:
        for key, value in env.items():
            m.setenv(key, value)
        args = Namespace(num_shards=None, shard=None)
        check_shard(Parser(), args)
        assert (args.shard, args.num_shards) == (1, 2)
        args = Namespace(num_shards=4, shard=3)  # written on the command line: it wins
        check_shard(Parser(), args)
        assert (args.shard, args.num_shards) == (3, 4)
        with pytest.raises(SystemExit, match="--shard needs --num_shards"):
            check_shard(Parser(), Namespace(num_shards=None, shard=1))
    args = Namespace(num_shards=None, shard=None)
    check_shard(Parser(), args)
    assert (args.shard, args.num_shards) == (0, 1)


def test_torchrun_with_two_processes_encodes_every_video_exactly_once(tmp_path, synthetic, tiny_model_dir):
    import os
    import re
    import subprocess
    import sys

    from helpers import ROOT

    cache_dir = tmp_path / "cache"
    args = cache_args(synthetic, tiny_model_dir, cache_dir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "0",
               "-m", "trainer", "cache", *args]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = re.findall(r"shard (\d) of 2: (\d+) videos in \d+ s; encoded now: (\d+)", done.stdout)
    assert sorted(shard for shard, _, _ in lines) == ["0", "1"], done.stdout[-2000:]
    videos = _videos(synthetic)
    assert sum(int(n) for _, n, _ in lines) == len(videos)  # the shards split the videos
    assert sum(int(e) for _, _, e in lines) == len(videos)  # and each was encoded by one process only
    # frames, features, embeddings and the two pixel baselines' scores (read by validation)
    assert len(list(cache_dir.rglob("dataset_info.json"))) == 5 * len(videos)
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and sum(int(e) for *_, e in re.findall(r"encoded now: (\d+)", again.stdout)) == 0
