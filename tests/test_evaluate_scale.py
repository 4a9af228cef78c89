"""``evaluate`` at dataset scale: flat memory, resume after a kill, shards, and clear errors for bad splits."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.datamodule import DenseCaptionDataModule
from data.schema import AnnotationError
from trainer.cli_helpers import repair_rows
from trainer.evaluation.evaluate import iter_rows
from trainer.evaluation.evaluate import main as evaluate
from helpers import as_overrides

REPO = Path(__file__).parents[1]
CONFIGS = REPO / "configs"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def _split(synthetic, tmp_path: Path, n: int) -> Path:
    """An annotation file of ``n`` videos: the synthetic val videos repeated under new ids."""
    _, paths, _ = synthetic
    source = Path(paths["val"])
    entries = list(json.loads(source.read_text()).items())
    videos = {}
    for i in range(n):
        vid, entry = entries[i % len(entries)]
        videos[f"{vid}_{i:04d}"] = {**entry, "video": str((source.parent / entry["video"]).resolve())}
    path = tmp_path / f"split{n}.json"
    path.write_text(json.dumps(videos))
    return path


def _args(tmp_path, tiny_model_dir, synthetic, test_file, output, *extra, fps=1.0, frame_size=64,
          selectors=("uniform", "pixel_l1")):  # fmt: skip
    _, paths, _ = synthetic
    return ["--config", str(CONFIGS / "smoke_rl.yaml"), "--split", "test", "--selectors", *selectors,
            "--budgets", "2", "4", "--plot_videos", "0", "--workers", "0", "--output", str(output), *extra,
            *as_overrides([f"data.train_file={paths['train']}", f"data.val_file={paths['val']}",
                           f"data.test_file={test_file}", f"data.cache_dir={tmp_path / 'cache'}", f"data.fps={fps}",
                           f"data.frame_size={frame_size}",
                           f"model.init_args.encoder.init_args.model_name_or_path={tiny_model_dir}"])]  # fmt: skip


def _peak_rss_kib(args: list[str], hold_videos: bool = False) -> int:
    """Peak RSS of an evaluate process; ``hold_videos`` keeps every decoded video, as the old evaluate did."""
    hold = (
        "import trainer.evaluation.evaluate as e\nheld = []\nrun = e.evaluate_video\n"
        "e.evaluate_video = lambda item, *a: (held.append(item), run(item, *a))[1]\n"
    )
    # VmHWM, not getrusage's ru_maxrss: the latter keeps the forking parent's (pytest's) RSS
    # across exec, so every child would report at least that.
    code = (
        f"import sys\n{hold if hold_videos else ''}from trainer.evaluation.evaluate import main\nmain(sys.argv[1:])\n"
        "print('PEAK', [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.rsplit("PEAK", 1)[1].split()[0])


def test_peak_memory_does_not_grow_with_the_number_of_videos(tmp_path, tiny_model_dir, synthetic):
    peaks = {}
    for n in (40, 400):
        out = tmp_path / f"eval{n}"
        # 4 fps at the videos' own 96 px: ~1 MiB of frames per video; the frame cache decodes
        # each of the 6 distinct files once, which keeps the test short.
        args = _args(tmp_path, tiny_model_dir, synthetic, _split(synthetic, tmp_path, n), out, fps=4.0, frame_size=96,
                     selectors=("uniform", "random"))  # memory is the point here, not selection time
        args += ["--data.frame_cache", "true"]
        peaks[n] = _peak_rss_kib(args)
        assert len(list(iter_rows(out))) == 2 * 2 * n  # two selectors, two budgets
        if n == 400:
            # The check can fail: an evaluate that holds every decoded video peaks >15% higher.
            peaks["held"] = _peak_rss_kib([*args, "--overwrite"], hold_videos=True)
    print("peak RSS KiB", peaks)
    assert peaks[400] <= 1.15 * peaks[40], peaks
    assert peaks["held"] > 1.15 * peaks[40], peaks


def test_a_killed_evaluate_resumes_without_redoing_finished_videos(tmp_path, tiny_model_dir, synthetic):
    n = 60
    test_file = _split(synthetic, tmp_path, n)
    out = tmp_path / "eval"
    args = _args(tmp_path, tiny_model_dir, synthetic, test_file, out)
    rows = out / "rows.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "trainer", "evaluate", *args], cwd=REPO, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not (rows.is_file() and rows.read_bytes().count(b"\n") >= 5):
            assert process.poll() is None, "evaluate ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        process.kill()  # SIGKILL: no handler runs, as with an OOM kill or a lost node
        process.wait()
    before = rows.read_bytes()
    finished = before.count(b"\n")
    assert 5 <= finished < n
    with open(rows, "ab") as f:  # and a line cut off half-way through its write
        f.write(b'{"video_id": "synth_7_00')

    with pytest.raises(FileExistsError, match="--resume"):
        evaluate(args)  # a rerun without --resume would throw finished work away
    with pytest.raises(ValueError, match="another evaluation"):
        evaluate([*args, "--budgets", "3"])  # nor may other settings mix with these rows
    result = evaluate([*args, "--resume"])
    assert result["resumed"] == finished and result["evaluated"] == n - finished
    after = rows.read_bytes()
    assert after.startswith(before[: before.rfind(b"\n") + 1])  # finished videos untouched
    ids = [json.loads(line)["video_id"] for line in after.splitlines()]
    assert len(ids) == len(set(ids)) == n

    fresh = evaluate(_args(tmp_path, tiny_model_dir, synthetic, test_file, tmp_path / "fresh"))
    # --overwrite starts over: the old run's tables go, and only the new rows remain.
    (tmp_path / "fresh" / "captions").mkdir()
    again = evaluate([*_args(tmp_path, tiny_model_dir, synthetic, test_file, tmp_path / "fresh"), "--overwrite"])
    assert again["resumed"] == 0 and again["evaluated"] == n and not (tmp_path / "fresh" / "captions").exists()
    assert (tmp_path / "fresh" / "rows.jsonl").read_bytes().count(b"\n") == n
    for a, b in zip(result["summary"], fresh["summary"]):
        assert (a["selector"], a["K"], a["videos"], a["recall"], a["coverage"]) == (
            b["selector"], b["K"], b["videos"], b["recall"], b["coverage"])  # fmt: skip


def test_shards_merge_to_the_single_process_tables(tmp_path, tiny_model_dir, synthetic):
    test_file = _split(synthetic, tmp_path, 7)
    single = evaluate(_args(tmp_path, tiny_model_dir, synthetic, test_file, tmp_path / "one"))["summary"]
    out = tmp_path / "sharded"
    first = evaluate(_args(tmp_path, tiny_model_dir, synthetic, test_file, out, "--num_shards", "3", "--shard", "2"))
    assert first["summary"] is None and first["evaluated"] == 2  # videos 2 and 5
    with pytest.raises(RuntimeError, match="unfinished shards"):
        evaluate(["--merge", "--output", str(out)])
    # This shard decodes in two worker processes: the same rows as decoding in the main process.
    evaluate(_args(tmp_path, tiny_model_dir, synthetic, test_file, out, "--num_shards", "3", "--shard", "0",
                   "--workers", "2"))  # fmt: skip
    last = evaluate(_args(tmp_path, tiny_model_dir, synthetic, test_file, out, "--num_shards", "3", "--shard", "1"))
    merged = evaluate(["--merge", "--output", str(out)])["summary"]
    for summary in (last["summary"], merged):
        assert [(s["selector"], s["K"], s["videos"], s["recall"], s["coverage"]) for s in summary] == [
            (s["selector"], s["K"], s["videos"], s["recall"], s["coverage"]) for s in single]  # fmt: skip
    # A shard with other settings cannot join the run.
    with pytest.raises(ValueError, match="budgets"):
        evaluate(_args(tmp_path, tiny_model_dir, synthetic, test_file, out, "--num_shards", "3", "--shard", "0",
                       "--budgets", "3", "--resume"))  # fmt: skip


def test_repair_rows_cuts_a_torn_line_and_rejects_foreign_files(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"video_id": "a"}\n{"video_id": "b"}\n{"video_')
    assert repair_rows(path) == {"a", "b"}
    assert path.read_bytes() == b'{"video_id": "a"}\n{"video_id": "b"}\n'
    path.write_bytes(b'{"video_id": "a"}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        repair_rows(path)


def test_a_split_of_undecodable_videos_is_an_error_with_reasons(tmp_path, tiny_model_dir, synthetic):
    videos = {}
    for i in range(4):
        (tmp_path / f"bad{i}.mp4").write_bytes(b"not a video")
        videos[f"bad{i}"] = {"video": f"bad{i}.mp4", "duration": 5.0, "timestamps": [[0, 1]], "sentences": ["x"]}
    test_file = tmp_path / "bad.json"
    test_file.write_text(json.dumps(videos))
    with pytest.raises(RuntimeError, match=r"no video of the test split could be evaluated: 4 skipped .*bad0"):
        evaluate(_args(tmp_path, tiny_model_dir, synthetic, test_file, tmp_path / "eval"))


def test_a_split_whose_videos_are_all_missing_fails_with_counts(tmp_path):
    videos = {f"v{i}": {"video": f"gone{i}.mp4", "duration": 5.0, "timestamps": [[0, 1]], "sentences": ["x"]}
              for i in range(50)}  # fmt: skip
    path = tmp_path / "missing.json"
    path.write_text(json.dumps(videos))
    data = DenseCaptionDataModule(test_file=str(path), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(AnnotationError, match=r"no usable samples in split 'test': 50 skipped \(50 not found\); first: v0"):
        data.setup("test")
