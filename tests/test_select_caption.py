"""``python -m trainer select`` and ``caption`` on video files: odd sizes and rates, bad files, every source form."""

import json
import shutil

import pytest
import srt
import torch
import webvtt
from helpers import fit_args, write_empty_video, write_moving_square
from PIL import Image

from data.decode import decode_video
from data.outputs import source_hash
from models.baselines import BASELINES
from trainer.__main__ import COMMANDS
from trainer.__main__ import main as cli_main
from trainer.loading import LoadError, load_selector, load_trained, load_vlm
from trainer.tools.caption import caption_events, srt_text, webvtt_text
from trainer.tools.caption import main as caption_main
from trainer.tools.export import main as export_main
from trainer.tools.select import choose_with_scores
from trainer.tools.select import main as select_main
from trainer.tools.video_files import output_names

ODD = (175, 97, 29.97)  # width, height, fps: odd sizes, the NTSC rate written exactly


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A folder: 175x97 at 29.97 fps (4 s), 61x47 MKV at 12.5 fps (3 s), a corrupt file, an empty one, a text file."""
    folder = tmp_path_factory.mktemp("videos")
    write_moving_square(folder / "a.mp4", *ODD, seconds=4.0, appear=(1.5, 2.5))
    write_moving_square(folder / "b.mkv", 61, 47, 12.5, seconds=3.0, appear=(0.5, 1.5))
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    write_empty_video(folder / "empty.mp4")
    (folder / "notes.txt").write_text("not a video")
    return folder


@pytest.fixture(scope="module")
def trained_mask(tmp_path_factory, tiny_model_dir, synthetic):
    """A 2-step smoke_rl run (importance model, no VLM): its last checkpoint and export folder."""
    tmp = tmp_path_factory.mktemp("mask")
    cli_main(["fit", *fit_args("smoke_rl.yaml", tmp, tiny_model_dir, synthetic, "--trainer.max_steps", "2",
                               "--trainer.limit_val_batches", "0")])  # fmt: skip
    ckpt = tmp / "ckpt" / "last.ckpt"
    export_main(["--ckpt", str(ckpt), "--output", str(tmp / "export")])
    return ckpt, tmp / "export"


@pytest.fixture(scope="module")
def captioner(tmp_path_factory, tiny_model_dir, synthetic):
    """A 2-step smoke run (tiny SmolVLM + LoRA): its checkpoint, merged export and adapter-only export."""
    tmp = tmp_path_factory.mktemp("captioner")
    cli_main(["fit", *fit_args("smoke.yaml", tmp, tiny_model_dir, synthetic, "--trainer.max_steps", "2",
                               "--trainer.limit_val_batches", "0", "--model.init_args.vlm.init_args.max_new_tokens",
                               "12")])  # fmt: skip
    ckpt = tmp / "ckpt" / "last.ckpt"
    export_main(["--ckpt", str(ckpt), "--output", str(tmp / "merged")])
    export_main(["--ckpt", str(ckpt), "--output", str(tmp / "adapter"), "--adapter_only"])
    return ckpt, tmp / "merged", tmp / "adapter"


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------------------- select
def test_select_xcorr_on_a_folder_writes_true_times_frames_and_plot_and_lists_bad_files(videos, tmp_path):
    out = tmp_path / "out"
    result = select_main(["--folder", str(videos), "-k", "4", "--selector", "xcorr", "--output", str(out),
                          "--workers", "1"])  # fmt: skip
    assert result["selected"] == 2 and "select" in COMMANDS
    reasons = {p.name: r for p, r in result["skipped"]}
    assert set(reasons) == {"corrupt.mp4", "empty.mp4"}  # notes.txt is not a video file
    assert "cannot decode" in reasons["corrupt.mp4"] and "no video stream" in reasons["empty.mp4"]
    summary = {line["video"].rsplit("/", 1)[1]: line for line in _lines(out / "summary.jsonl")}
    assert {n: s["status"] for n, s in summary.items()} == {"a.mp4": "ok", "b.mkv": "ok", "corrupt.mp4": "skipped",
                                                            "empty.mp4": "skipped"}  # fmt: skip
    assert summary["corrupt.mp4"]["reason"] == reasons["corrupt.mp4"]

    info = json.loads((out / "a" / "frames.json").read_text())
    video = decode_video(videos / "a.mp4", fps=2.0, size=64)
    idx, _, _, scores = choose_with_scores(BASELINES["xcorr"](), video.frames, video.timestamps, 4)
    assert info["indices"] == idx.tolist() == sorted(info["indices"]) and info["candidates"] == len(video) == 8
    # True presentation times of a 29.97 fps file: source frame n is shown at n * 100 / 2997 s.
    assert info["timestamps"] == [round(float(t), 6) for t in video.timestamps[idx]]
    assert all(abs(t * 29.97 - round(t * 29.97)) < 1e-3 for t in info["candidate_timestamps"])
    assert info["candidate_timestamps"][1] == round(15 * 100 / 2997, 6)  # 0.5005..., not the nominal 0.5
    assert info["candidate_scores"] == pytest.approx(scores.tolist()) and info["scores"] == pytest.approx(scores[idx].tolist())
    assert info["selector"]["class_path"] == "models.xcorr.CrossCorrelationSelector"
    assert info["selector"]["init_args"] == {"size": 64, "grayscale": False} and info["decode"]["fps"] == 2.0
    jpegs = sorted(p.name for p in (out / "a").glob("*.jpg"))
    assert jpegs == sorted(info["files"]) and len(jpegs) == 4
    with Image.open(out / "a" / jpegs[0]) as image:
        assert image.format == "JPEG" and image.size == (64, 36)  # 175x97 scaled to a 64-pixel longest edge, even
    with Image.open(out / "a" / "selection.png") as image:
        assert image.format == "PNG" and image.size[0] > 600
    b = json.loads((out / "b" / "frames.json").read_text())
    assert len(b["indices"]) == 4 and b["native_fps"] == 12.5 and b["timestamps"][0] >= 0.0
    run = json.loads((out / "run.json").read_text())
    assert run["totals"]["videos"] == 2 and run["totals"]["frames"] == 8 + 6
    with pytest.raises(SystemExit):  # the folder holds a run now
        select_main(["--folder", str(videos), "--output", str(out), "--workers", "0"])



def test_jpeg_size_writes_the_chosen_frames_again_from_the_file_at_the_same_times(videos, tmp_path, caplog):
    """``--jpeg_size native`` (or N) decodes the K chosen frames again at that size, the same frames
    as the selector chose; frame averaging, whose frames are averages, keeps the decoded size."""
    import numpy as np

    out = tmp_path / "native"
    select_main(["--video", str(videos / "a.mp4"), "-k", "3", "--fps", "2", "--output", str(out), "--workers", "0",
                 "--no_plot", "--jpeg_size", "native"])  # fmt: skip
    info = json.loads((out / "a" / "frames.json").read_text())
    assert info["jpeg_size"] == [175, 97] and info["decode"]["frame_size"] == 64
    full = decode_video(videos / "a.mp4", fps=2.0)
    for name, i in zip(info["files"], info["indices"]):
        with Image.open(out / "a" / name) as image:
            assert image.size == (175, 97)
            pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
        # JPEG is lossy: the frame it holds is the chosen one, not a neighbour (which differ by far more).
        error = {j: np.abs(pixels - full.frames[j].permute(1, 2, 0).numpy()).mean() for j in range(len(full))}
        assert min(error, key=error.get) == i and error[i] < 3.0
    assert json.loads((out / "run.json").read_text())["jpeg_size"] == "native"

    out = tmp_path / "sized"
    select_main(["--video", str(videos / "a.mp4"), "-k", "3", "--fps", "2", "--output", str(out), "--workers", "0",
                 "--no_plot", "--jpeg_size", "100", "--selector", "averaging"])  # fmt: skip
    assert json.loads((out / "a" / "frames.json").read_text())["jpeg_size"] == [64, 36]
    assert "not decoded frames" in caplog.text
    out = tmp_path / "sized_xcorr"
    select_main(["--video", str(videos / "a.mp4"), "-k", "3", "--fps", "2", "--output", str(out), "--workers", "0",
                 "--no_plot", "--jpeg_size", "100"])  # fmt: skip
    assert json.loads((out / "a" / "frames.json").read_text())["jpeg_size"] == [100, 56]
    with pytest.raises(SystemExit):
        select_main(["--video", str(videos / "a.mp4"), "--output", str(tmp_path / "bad"), "--jpeg_size", "huge"])

def test_fail_fast_stops_at_the_bad_file_and_keeps_what_was_written(videos, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        select_main(["--video", str(videos / "a.mp4"), str(videos / "corrupt.mp4"), str(videos / "b.mkv"), "-k", "3",
                     "--selector", "uniform", "--output", str(out), "--workers", "0", "--fail_fast", "--no_plot"])  # fmt: skip
    assert stopped.value.code == 1
    assert [line["status"] for line in _lines(out / "summary.jsonl")] == ["ok", "skipped"]
    assert json.loads((out / "a" / "frames.json").read_text())["indices"] == [1, 4, 6]  # uniform: centres of 3 bins of 8
    assert not (out / "b").exists() and not (out / "a" / "selection.png").exists()
    assert not [p for p in out.rglob(".*")]  # no temporary leftovers


def test_short_videos_are_skipped_with_the_budget_named_and_names_stay_unique(videos, tmp_path):
    sub = tmp_path / "in" / "sub"
    sub.mkdir(parents=True)
    shutil.copy(videos / "a.mp4", tmp_path / "in" / "a.mp4")
    shutil.copy(videos / "b.mkv", sub / "a.mkv")
    out = tmp_path / "out"
    result = select_main(["--folder", str(tmp_path / "in"), "--recursive", "-k", "7", "--selector", "pixel_l1",
                          "--output", str(out), "--workers", "0", "--no_plot"])  # fmt: skip
    assert result["selected"] == 1
    [(path, reason)] = result["skipped"]
    assert path.name == "a.mkv" and "6 candidate frames at 2 fps, fewer than K=7" in reason
    # Three videos named "a": each name carries the hash of its own path.
    paths = [tmp_path / "a.mp4", sub / "a.mkv", sub / "a.mp4"]
    assert output_names(paths) == [f"a-{source_hash(str(p))}" for p in paths]


def test_choose_with_scores_is_choose_plus_scores(trained_mask):
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (20, 3, 40, 56), dtype=torch.uint8, generator=g)
    stamps = torch.arange(20, dtype=torch.float64) * 0.5 + 0.25
    selectors = {name: make() for name, make in BASELINES.items()}
    selectors["learned"] = load_selector(trained_mask[0])
    for name, selector in selectors.items():
        idx, shown, times, scores = choose_with_scores(selector, frames, stamps, 5)
        want_idx, want_shown, want_times = selector.choose(frames, stamps, 5)
        assert torch.equal(idx, want_idx) and torch.equal(shown, want_shown) and torch.equal(times, want_times), name
        assert torch.allclose(scores, selector.scores(frames, stamps, 5).double()), name


def test_select_learned_from_checkpoint_export_and_hub_id_picks_the_trained_frames(trained_mask, videos, tmp_path, monkeypatch):
    ckpt, export = trained_mask
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda repo_id: str(export))
    picked = {}
    for name, source in {"ckpt": ckpt, "export": export, "hub": "someone/tiny-mask"}.items():
        select_main(["--video", str(videos / "a.mp4"), "-k", "3", "--from", str(source), "--output",
                     str(tmp_path / name), "--workers", "0", "--no_plot"])  # fmt: skip
        picked[name] = json.loads((tmp_path / name / "a" / "frames.json").read_text())
    video = decode_video(videos / "a.mp4", fps=2.0, size=64)
    expected = load_selector(ckpt).select(video.frames, video.timestamps, 3).tolist()
    assert picked["ckpt"]["indices"] == picked["export"]["indices"] == picked["hub"]["indices"] == expected
    assert picked["ckpt"]["selector"]["class_path"] == "models.importance.ImportanceSelector"
    assert picked["hub"]["selector"]["from"] == {"source": "someone/tiny-mask", "kind": "export"}


def test_select_arguments_are_checked(videos, tmp_path):
    base = ["--video", str(videos / "a.mp4"), "--output", str(tmp_path / "o"), "--workers", "0"]
    for bad in (["--selector", "learned"], ["--selector", "xcorr", "--from", str(tmp_path)], ["-k", "0"],
                ["--selector", "nope"], ["--fps", "-1"], ["--selector", "subprocess.Popen"]):  # fmt: skip
        with pytest.raises(SystemExit):
            select_main(base + bad)
    with pytest.raises(SystemExit):
        select_main(["--folder", str(tmp_path / "missing"), "--output", str(tmp_path / "o")])
    assert not (tmp_path / "o" / "summary.jsonl").exists()


# --------------------------------------------------------------------------------------- caption
def test_subtitles_round_trip_through_srt_and_webvtt_parsers():
    events = caption_events("00:01-00:03 a red square appears\n00:02-00:09 it moves --> right\nno time here\n"
                            "01:05-01:10 after the end", duration=4.004)  # fmt: skip
    assert events == [{"sentence": "a red square appears", "timestamp": [1.0, 3.0]},
                      {"sentence": "it moves --> right", "timestamp": [2.0, 4.004]}]  # fmt: skip
    cues = list(srt.parse(srt_text(events)))
    assert [(c.start.total_seconds(), c.end.total_seconds()) for c in cues] == [(1.0, 3.0), (2.0, 4.004)]
    assert [c.content for c in cues] == ["a red square appears", "it moves -> right"]
    vtt = webvtt.from_string(webvtt_text(events))
    assert [(c.start, c.end, c.text) for c in vtt] == [("00:00:01.000", "00:00:03.000", "a red square appears"),
                                                      ("00:00:02.000", "00:00:04.004", "it moves -> right")]  # fmt: skip
    assert webvtt_text(events).startswith("WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n")
    assert srt_text(events).startswith("1\n00:00:01,000 --> 00:00:03,000\na red square appears\n\n2\n")
    assert srt_text([{"sentence": "x", "timestamp": [3725.5, 3726.25]}]).splitlines()[1] == "01:02:05,500 --> 01:02:06,250"


def _seconds(stamp) -> float:
    return round(stamp.hours * 3600 + stamp.minutes * 60 + stamp.seconds + stamp.milliseconds / 1000, 3)


def _cue_times(folder, name):
    """Each cue's [start, end] in seconds, as the SRT parser and the WebVTT parser read the two files."""
    srt_times = [[round(c.start.total_seconds(), 3), round(c.end.total_seconds(), 3)]
                 for c in srt.parse((folder / f"{name}.srt").read_text())]  # fmt: skip
    vtt_times = [[_seconds(c.start_time), _seconds(c.end_time)] for c in webvtt.read(str(folder / f"{name}.vtt"))]
    return srt_times, vtt_times


def test_caption_writes_json_srt_and_vtt_with_the_same_times(captioner, videos, tmp_path, monkeypatch):
    """The tiny random VLM writes no parseable event lines, so its text is replaced by a fixed dense caption."""
    ckpt, _, _ = captioner
    text = "00:01-00:02 a red square appears\n00:02-00:05 it crosses the frame"
    monkeypatch.setattr("models.vlm.SmolVLM.generate", lambda self, frames, times, durations, **kw: [text] * len(frames))
    out = tmp_path / "out"
    result = caption_main(["--video", str(videos / "a.mp4"), str(videos / "corrupt.mp4"), str(videos / "b.mkv"),
                           "--from", str(ckpt), "--output", str(out), "--workers", "1"])  # fmt: skip
    assert result["captioned"] == 2 and [p.name for p, _ in result["skipped"]] == ["corrupt.mp4"]
    captions = json.loads((out / "captions.json").read_text())
    assert captions["version"] == "VERSION 1.0" and set(captions["results"]) == {"a", "b"}
    durations = {"a": decode_video(videos / "a.mp4").duration, "b": decode_video(videos / "b.mkv").duration}
    # Ends past the video are clipped to its length: 120 frames at 29.97 fps last 4.004 s, 38 at 12.5 fps 3.04 s.
    assert captions["results"]["a"][1]["timestamp"] == [2.0, round(durations["a"], 3)] == [2.0, 4.004]
    assert captions["results"]["b"][1]["timestamp"] == [2.0, round(durations["b"], 3)] == [2.0, 3.04]
    for name in ("a", "b"):
        events = captions["results"][name]
        srt_times, vtt_times = _cue_times(out, name)
        assert srt_times == vtt_times == [e["timestamp"] for e in events]
        assert [c.content for c in srt.parse((out / f"{name}.srt").read_text())] == [e["sentence"] for e in events]
        assert len(captions["frames"][name]) == 4  # K from the checkpoint (num_frames: 4)
    assert [line["status"] for line in _lines(out / "summary.jsonl")] == ["ok", "skipped", "ok"]


def test_caption_json_keeps_the_videos_done_when_a_run_fails(captioner, videos, tmp_path, monkeypatch):
    """captions.json is rewritten at most every CAPTIONS_EVERY_SECONDS, and once more however the run
    ends: an error in the second video leaves the first one's events in it."""
    import trainer.tools.caption as caption

    ckpt, _, _ = captioner
    calls, fail_at = [], {2}

    def generate(self, frames, times, durations, **kw):
        calls.append(len(frames))
        if len(calls) in fail_at:
            raise RuntimeError("out of memory")
        return ["00:01-00:02 a red square appears"] * len(frames)

    monkeypatch.setattr("models.vlm.SmolVLM.generate", generate)
    writes = []
    real_write = caption.write_predictions
    monkeypatch.setattr(caption, "write_predictions", lambda preds, *a, **kw: (writes.append(len(preds)),
                                                                               real_write(preds, *a, **kw)))  # fmt: skip
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="out of memory"):
        caption_main(["--video", str(videos / "a.mp4"), str(videos / "b.mkv"), "--from", str(ckpt), "--output",
                      str(out), "--workers", "0"])  # fmt: skip
    assert writes == [1]  # not after the first video (within 30 s), once at the end with what was done
    captions = json.loads((out / "captions.json").read_text())
    assert list(captions["results"]) == ["a"] and captions["results"]["a"][0]["sentence"] == "a red square appears"

    # With no interval, after every video as well.
    monkeypatch.setattr(caption, "CAPTIONS_EVERY_SECONDS", 0.0)
    calls.clear(), writes.clear(), fail_at.clear()
    caption_main(["--video", str(videos / "a.mp4"), "--from", str(ckpt), "--output", str(tmp_path / "again"),
                  "--workers", "0"])  # fmt: skip
    assert writes == [1, 1]


def test_caption_from_checkpoint_merged_and_adapter_only_exports_agree(captioner, videos, tmp_path):
    ckpt, merged, adapter = captioner
    outputs = {}
    for name, source in {"ckpt": ckpt, "merged": merged, "adapter": adapter}.items():
        caption_main(["--video", str(videos / "a.mp4"), "--from", str(source), "-k", "3", "--output",
                      str(tmp_path / name), "--workers", "0"])  # fmt: skip
        outputs[name] = json.loads((tmp_path / name / "captions.json").read_text())
        srt_times, vtt_times = _cue_times(tmp_path / name, "a")
        assert srt_times == vtt_times == [e["timestamp"] for e in outputs[name]["results"]["a"]]
    assert outputs["ckpt"]["raw_text"]["a"]  # the model wrote something
    assert outputs["ckpt"]["raw_text"] == outputs["merged"]["raw_text"] == outputs["adapter"]["raw_text"]
    assert outputs["ckpt"]["frames"] == outputs["merged"]["frames"] == outputs["adapter"]["frames"]
    assert len(outputs["ckpt"]["frames"]["a"]) == 3


def test_load_vlm_gives_the_same_logits_from_every_form(captioner):
    ckpt, merged, adapter = captioner
    vlms = [load_vlm(ckpt), load_vlm(merged), load_vlm(adapter)]
    assert not any(m.training for vlm in vlms for m in vlm.modules())
    frames = [torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))]
    batch = vlms[0].build_batch(frames, [torch.tensor([0.5, 1.5])], [2.0], ["00:00-00:01 a square"])
    losses = [vlm.sample_losses(batch) for vlm in vlms]
    assert torch.allclose(losses[0], losses[1], atol=1e-5) and torch.allclose(losses[0], losses[2], atol=1e-5)


def test_caption_refuses_a_result_without_a_vlm(trained_mask, captioner, videos, tmp_path, capsys):
    mask_ckpt, mask_export = trained_mask
    with pytest.raises(LoadError, match="no VLM"):
        load_vlm(load_trained(mask_ckpt))
    with pytest.raises(LoadError, match="frame selector only"):
        load_vlm(mask_export)
    for source in (mask_ckpt, mask_export):
        with pytest.raises(SystemExit):
            caption_main(["--video", str(videos / "a.mp4"), "--from", str(source), "--output", str(tmp_path / "o")])
        assert "no VLM" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was written


# --------------------------------------------------------------------------------------- names, resume, exit codes
def _tree(root):
    return {p.relative_to(root) for p in root.rglob("*")}


def _hostile_inputs(videos, folder):
    """Copies of a.mp4 whose names once escaped, replaced or collided: (--folder files, --video files)."""
    for sub in ("one", "two"):
        (folder / sub).mkdir(parents=True)
        shutil.copy(videos / "a.mp4", folder / sub / "clip.mp4")  # the same stem in two folders
    named = ["a.mp4", "run.json.mp4", "summary.jsonl.mp4", "captions.json.mp4", "Clip.mp4", "new\nline.mp4",
             "x" * 200 + ".mp4"]  # fmt: skip
    for name in named:
        shutil.copy(videos / "a.mp4", folder / name)
    hidden = [folder / n for n in ("..mp4", "...mp4", ".hidden.mp4")]  # a folder leaves hidden files out: named
    for path in hidden:
        shutil.copy(videos / "a.mp4", path)
    return sorted([folder / "one" / "clip.mp4", folder / "two" / "clip.mp4"] + [folder / n for n in named]), hidden


def _check_nothing_escaped_or_lost(tmp_path, before, out, inputs, lines):
    """Every new file lies under ``out``; every input has its own ok line, output and original path."""
    new = [tmp_path / p for p in _tree(tmp_path) - before]
    assert new and all(p == out or out in p.parents or p in out.parents for p in new)  # the folders up to it, too
    assert sorted(line["video"] for line in lines) == sorted(str(p) for p in inputs)
    assert all(line["status"] == "ok" for line in lines)
    names = [line["output"] for line in lines]
    assert len({n.casefold() for n in names}) == len(inputs)
    for name in names:
        assert "/" not in name and not name.startswith(".") and (out / name).resolve().parent == out.resolve()
    assert (out / "run.json").is_file() and (out / "summary.jsonl").is_file()
    return dict(zip((line["video"] for line in lines), names))


def test_select_names_from_hostile_file_names_stay_inside_output_and_lose_nothing(videos, tmp_path):
    folder_inputs, hidden = _hostile_inputs(videos, tmp_path / "in")
    out = tmp_path / "run" / "out"  # "..", were it a name, would be tmp_path / "run"
    before = _tree(tmp_path)
    result = select_main(["--folder", str(tmp_path / "in"), "--recursive", "--video", *map(str, hidden), "-k", "2",
                          "--selector", "uniform", "--output", str(out), "--workers", "0", "--no_plot"])  # fmt: skip
    inputs = folder_inputs + hidden
    assert result["selected"] == len(inputs) == 12 and not result["skipped"]
    lines = _lines(out / "summary.jsonl")
    names = _check_nothing_escaped_or_lost(tmp_path, before, out, inputs, lines)
    for video, name in names.items():
        assert json.loads((out / name / "frames.json").read_text())["video"] == video  # the original path kept
    assert sorted(p.name for p in out.iterdir()) == sorted([*names.values(), "run.json", "summary.jsonl"])
    assert names[str(tmp_path / "in" / "a.mp4")] == "a"  # a plain name stays plain
    clip = str(tmp_path / "in" / "one" / "clip.mp4")
    assert names[clip] == f"clip-{source_hash(clip)}"  # clip, Clip and clip: told apart by their paths
    assert names[str(hidden[0])] == f"video-{source_hash(str(hidden[0]))}"  # "..mp4" (stem ".")
    assert names[str(tmp_path / "in" / "run.json.mp4")].startswith("run.json-")


def test_select_resume_skips_finished_videos_and_removes_a_killed_run_s_leftovers(videos, tmp_path, capsys):
    shutil.copy(videos / "a.mp4", tmp_path / "c.mp4")
    inputs = [str(videos / "a.mp4"), str(videos / "corrupt.mp4"), str(videos / "b.mkv"), str(tmp_path / "c.mp4")]
    out = tmp_path / "out"
    base = ["-k", "3", "--selector", "uniform", "--output", str(out), "--workers", "0", "--no_plot"]
    select_main(["--video", *inputs[:3], *base])
    finished = (out / "a" / "frames.json").stat().st_mtime_ns
    # A run killed while writing b's line and c's folder: a torn line, a hidden temporary folder.
    lines = (out / "summary.jsonl").read_bytes().splitlines(keepends=True)
    (out / "summary.jsonl").write_bytes(b"".join(lines[:2]) + lines[2][:20])
    (out / ".c.tmp-0123abcd").mkdir()
    (out / ".c.tmp-0123abcd" / "frames.json").write_text("{")
    (out / ".summary.tmp-89abcdef.jsonl").write_text("half")
    with pytest.raises(SystemExit) as refused:  # finished work is never thrown away by accident
        select_main(["--video", *inputs, *base])
    assert refused.value.code == 2 and "--resume continues it" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        select_main(["--video", *inputs, *base, "--resume", "-k", "2"])
    assert refused.value.code == 2 and "k: 3 there, 2 now" in capsys.readouterr().err

    result = select_main(["--video", *inputs, *base, "--resume"])
    assert result["resumed"] == 2 and result["selected"] == 2 and not result["skipped"]  # b and c; corrupt stays skipped
    assert (out / "a" / "frames.json").stat().st_mtime_ns == finished  # not redone
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    lines = _lines(out / "summary.jsonl")
    assert [(line["video"], line["status"]) for line in lines] == [
        (inputs[0], "ok"), (inputs[1], "skipped"), (inputs[2], "ok"), (inputs[3], "ok")]  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c", "run.json", "summary.jsonl"]
    assert json.loads((out / "c" / "frames.json").read_text())["indices"] == [1, 4, 6]


def test_select_exits_1_naming_the_reasons_when_no_video_could_be_used(videos, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--video", str(videos / "corrupt.mp4"), str(videos / "empty.mp4"), "--output", str(out), "--workers", "0"]
    with pytest.raises(SystemExit) as failed:
        select_main(args)
    err = capsys.readouterr().err
    assert failed.value.code == 1 and "none of the 2 videos could be used (2 skipped)" in err
    assert f"{videos / 'corrupt.mp4'}: " in err and "cannot decode" in err and "no video stream" in err
    assert [line["status"] for line in _lines(out / "summary.jsonl")] == ["skipped", "skipped"]
    with pytest.raises(SystemExit) as failed:  # resumed: still nothing done, still an error
        select_main([*args, "--resume"])
    assert failed.value.code == 1 and "none of the 2 videos" in capsys.readouterr().err


def _refused_before_any_model_loads(monkeypatch, capsys, videos, command, output):
    """``select`` or ``caption`` into ``output``: its exit status and message (no model may load first)."""

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("trainer.tools.select.make_selector", no_model)
    monkeypatch.setattr("trainer.tools.caption.load_trained", no_model)
    main = select_main if command == "select" else caption_main
    source = [] if command == "select" else ["--from", str(output.parent / "model")]
    with pytest.raises(SystemExit) as refused:
        main(["--video", str(videos / "a.mp4"), "--output", str(output), *source])
    return refused.value.code, capsys.readouterr().err


@pytest.mark.parametrize("command", ["select", "caption"])
def test_an_output_that_is_a_file_is_refused_before_any_model_loads(videos, tmp_path, capsys, monkeypatch, command):
    (tmp_path / "file").write_text("x")
    code, err = _refused_before_any_model_loads(monkeypatch, capsys, videos, command, tmp_path / "file")
    assert code == 2 and f"{tmp_path / 'file'} is a file, not a folder" in err
    code, err = _refused_before_any_model_loads(monkeypatch, capsys, videos, command, tmp_path / "file" / "sub")
    assert code == 2 and f"is a file, not a folder (on the way to {tmp_path / 'file' / 'sub'})" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("command", ["select", "caption"])
def test_a_read_only_output_is_refused_before_any_model_loads(videos, read_only_dir, capsys, monkeypatch, command):
    code, err = _refused_before_any_model_loads(monkeypatch, capsys, videos, command, read_only_dir / "out")
    assert code == 2 and f"cannot write in {read_only_dir}" in err
    assert not list(read_only_dir.iterdir())


def test_caption_names_from_hostile_file_names_stay_inside_output_and_lose_nothing(captioner, videos, tmp_path,
                                                                                   monkeypatch):  # fmt: skip
    ckpt, _, _ = captioner
    text = "00:01-00:02 a red square appears"
    monkeypatch.setattr("models.vlm.SmolVLM.generate", lambda self, frames, times, durations, **kw: [text] * len(frames))
    folder_inputs, hidden = _hostile_inputs(videos, tmp_path / "in")
    out = tmp_path / "run" / "out"
    before = _tree(tmp_path)
    result = caption_main(["--folder", str(tmp_path / "in"), "--recursive", "--video", *map(str, hidden), "--from",
                           str(ckpt), "-k", "2", "--output", str(out), "--workers", "0"])  # fmt: skip
    inputs = folder_inputs + hidden
    assert result["captioned"] == len(inputs)
    lines = _lines(out / "summary.jsonl")
    names = _check_nothing_escaped_or_lost(tmp_path, before, out, inputs, lines)
    assert all(line["video_id"] == line["output"] for line in lines)
    captions = json.loads((out / "captions.json").read_text())
    assert sorted(captions["results"]) == sorted(names.values())  # captions.json is not replaced by a video
    files = {"captions.json", "run.json", "summary.jsonl", *(f"{n}.{s}" for n in names.values() for s in ("srt", "vtt"))}
    assert {p.name for p in out.iterdir()} == files
    assert names[str(tmp_path / "in" / "captions.json.mp4")].startswith("captions.json-")


def test_caption_resume_keeps_earlier_captions_and_exits_1_when_nothing_was_captioned(captioner, videos, tmp_path,
                                                                                       monkeypatch, capsys):  # fmt: skip
    ckpt, _, _ = captioner
    said = iter(["00:01-00:02 first run's caption", "00:00-00:01 second run's caption"])
    monkeypatch.setattr("models.vlm.SmolVLM.generate", lambda self, frames, *a, **kw: [next(said)] * len(frames))
    out = tmp_path / "out"
    base = ["--from", str(ckpt), "-k", "2", "--output", str(out), "--workers", "0"]
    caption_main(["--video", str(videos / "a.mp4"), *base])
    first = json.loads((out / "captions.json").read_text())["results"]["a"]
    (out / ".b.tmp-0123abcd.srt").write_text("half")  # a killed write
    result = caption_main(["--video", str(videos / "a.mp4"), str(videos / "b.mkv"), *base, "--resume"])
    assert result["resumed"] == 1 and result["captioned"] == 1
    results = json.loads((out / "captions.json").read_text())["results"]
    assert results == {"a": first, "b": [{"sentence": "second run's caption", "timestamp": [0.0, 1.0]}]}
    assert first == [{"sentence": "first run's caption", "timestamp": [1.0, 2.0]}]
    assert not (out / ".b.tmp-0123abcd.srt").exists() and (out / "b.srt").is_file()

    with pytest.raises(SystemExit) as failed:
        caption_main(["--video", str(videos / "corrupt.mp4"), *base[:-3], str(tmp_path / "bad"), "--workers", "0"])
    assert failed.value.code == 1 and "none of the 1 videos could be used" in capsys.readouterr().err
    assert json.loads((tmp_path / "bad" / "captions.json").read_text())["results"] == {}
