"""Decoder, synthetic generator, annotation schema and atomic writes."""

import json

import numpy as np
import pytest
import torch
from helpers import color_mask

from data.atomic import write_atomic
from data.datamodule import DenseCaptionDataModule, VideoCaptionDataset, collate_videos
from data.decode import VideoDecodeError, decode_video
from data.schema import (
    AnnotationError,
    Event,
    VideoSample,
    load_annotations,
    save_annotations,
)
from data.synthetic import COLORS, SyntheticConfig, generate_dataset


def all_samples(synthetic):
    _, paths, _ = synthetic
    return [s for p in paths.values() for s in load_annotations(p)]


def test_decoder_timestamps_and_shapes(synthetic):
    sample = all_samples(synthetic)[0]
    native = decode_video(sample.video)
    assert native.native_fps == pytest.approx(8.0)
    assert len(native) == int(round(sample.duration * 8))
    assert native.frames.dtype == torch.uint8 and native.frames.shape[1:] == (3, 96, 96)
    assert torch.allclose(native.timestamps, torch.arange(len(native), dtype=torch.float64) / 8)
    assert native.duration == pytest.approx(sample.duration)

    two = decode_video(sample.video, fps=2.0, size=64)
    assert two.frames.shape[1:] == (3, 64, 64)
    assert torch.allclose(two.timestamps, torch.arange(len(two), dtype=torch.float64) / 2)
    assert len(two) == int(np.ceil(sample.duration * 2))
    # A target rate above the native one never duplicates frames.
    assert len(decode_video(sample.video, fps=30.0)) == len(native)
    assert len(decode_video(sample.video, fps=2.0, max_frames=3)) == 3


def test_decoder_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        decode_video(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(VideoDecodeError, match="corrupt.mp4"):
        decode_video(corrupt)



def _color_pixels(frame: np.ndarray, rgb) -> int:
    return int(color_mask(frame, rgb).sum())


def test_generator_annotations_match_rendered_content(synthetic):
    samples = all_samples(synthetic)
    assert len(samples) == 6
    for sample in samples:
        video = decode_video(sample.video)
        frames = video.frames.permute(0, 2, 3, 1).numpy()
        inside = np.zeros(len(frames), bool)
        for event, (first, last), obj in zip(
            sample.events, sample.extra["informative_frames"], sample.extra["objects"]
        ):
            assert event.caption == f"a {obj['color']} {obj['shape']} {obj['motion']}"
            inside[first : last + 1] = True
            # The shape is on screen on every informative frame, in its annotated colour ...
            counts = [_color_pixels(frames[i], COLORS[obj["color"]]) for i in range(first, last + 1)]
            assert min(counts) > 40, (sample.video_id, event, counts)
            # ... and moves in the captioned direction.
            ys, xs = [], []
            for i in (first, last):
                yy, xx = np.nonzero(color_mask(frames[i], COLORS[obj["color"]]))
                ys.append(yy.mean()); xs.append(xx.mean())
            dx, dy = xs[1] - xs[0], ys[1] - ys[0]
            expected = {"moves left": dx < -10, "moves right": dx > 10, "moves up": dy < -10, "moves down": dy > 10}
            assert expected[obj["motion"]], (obj, dx, dy)
        # No saturated shape colour anywhere outside the events, despite flicker, pans and cuts.
        for i in np.nonzero(~inside)[0]:
            assert max(_color_pixels(frames[i], c) for c in COLORS.values()) < 5, (sample.video_id, i)
        kinds = {d["type"] for d in sample.extra["distractors"]}
        assert kinds == {"pan", "flicker", "cut"}


def test_cut_distractor_changes_the_picture(synthetic):
    sample = all_samples(synthetic)[0]
    video = decode_video(sample.video)
    cut = next(d for d in sample.extra["distractors"] if d["type"] == "cut")
    i = int(np.ceil(cut["start"] * 8))
    diffs = (video.frames[1:].float() - video.frames[:-1].float()).abs().mean((1, 2, 3))
    assert diffs[i - 1] > 3 * diffs.median()


def test_generator_is_deterministic_and_reuses_finished_data(tmp_path, synthetic):
    _, paths, cfg = synthetic
    again = generate_dataset(tmp_path, cfg, progress=False)
    a = json.loads(paths["train"].read_text())
    b = json.loads(again["train"].read_text())
    assert a == b
    mtime = again["train"].stat().st_mtime_ns
    generate_dataset(tmp_path, cfg, progress=False)
    assert again["train"].stat().st_mtime_ns == mtime


def test_synthetic_config_rejects_impossible_layouts():
    with pytest.raises(ValueError, match="does not fit"):
        SyntheticConfig(min_duration=4, max_duration=5, max_events=3, max_event_len=3)
    with pytest.raises(ValueError, match="num_videos"):
        SyntheticConfig(num_videos=0)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"duration": 10, "timestamps": [[5, 2]], "sentences": ["x"]}, r"events\[0\]: end=2.0 < start=5.0"),
        ({"duration": 10, "timestamps": [[1, 20]], "sentences": ["x"]}, "beyond the video duration"),
        ({"duration": 10, "timestamps": [], "sentences": []}, "'events' is empty"),
        ({"duration": 10, "timestamps": [[1, 2]], "sentences": [" "]}, "caption is empty"),
        ({"duration": 10, "timestamps": [[1, 2]], "sentences": ["a", "b"]}, "1 timestamps but 2 sentences"),
        ({"timestamps": [[1, 2]], "sentences": ["a"]}, "missing field 'duration'"),
        ({"duration": -1, "timestamps": [[1, 2]], "sentences": ["a"]}, "'duration' must be a positive"),
    ],
)
def test_bad_annotations_name_file_and_field(tmp_path, entry, message):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"vid1": entry}))
    with pytest.raises(AnnotationError, match=message) as info:
        load_annotations(path)
    assert "ann.json" in str(info.value) and "vid1" in str(info.value)


def test_annotation_round_trip_sorts_events(tmp_path):
    sample = VideoSample("v", "clips/v.mp4", 12.0, [Event(5, 6, "b"), Event(1, 2, "a")], query="q")
    save_annotations([sample], tmp_path / "a.json")
    (loaded,) = load_annotations(tmp_path / "a.json")
    assert [e.caption for e in loaded.events] == ["a", "b"]
    assert loaded.video == str(tmp_path / "clips/v.mp4") and loaded.query == "q"


def test_dataset_skips_or_raises_on_bad_videos(tmp_path, synthetic, caplog):
    good = all_samples(synthetic)[0]
    missing = VideoSample("gone", str(tmp_path / "gone.mp4"), 5.0, [Event(0, 1, "x")])
    short = VideoSample(good.video_id, good.video, good.duration, good.events)
    ds = VideoCaptionDataset([good, missing], fps=2.0, frame_size=32)
    batch = collate_videos([ds[0], ds[1]])
    assert batch["video_id"] == [good.video_id] and "gone.mp4" in caplog.text
    with pytest.raises(FileNotFoundError, match="gone.mp4"):
        VideoCaptionDataset([missing], fps=2.0, frame_size=32, skip_bad_samples=False)[0]
    # Fewer decoded frames than the budget K is a bad sample too.
    with pytest.raises(VideoDecodeError, match="frame budget K=500"):
        VideoCaptionDataset([short], fps=2.0, frame_size=32, min_frames=500, skip_bad_samples=False)[0]


def test_datamodule_drops_missing_videos_with_a_record(tmp_path, synthetic):
    good = all_samples(synthetic)[:2]
    bad = VideoSample("gone", str(tmp_path / "gone.mp4"), 5.0, [Event(0, 1, "x")])
    save_annotations(good + [bad], tmp_path / "train.json")
    dm = DenseCaptionDataModule(train_file=str(tmp_path / "train.json"), batch_size=2)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 2 and dm.skipped[0][0] == "gone"
    strict = DenseCaptionDataModule(train_file=str(tmp_path / "train.json"), skip_bad_samples=False)
    with pytest.raises(FileNotFoundError, match="gone.mp4"):
        strict.setup("fit")


def test_write_atomic_writes_text_bytes_and_what_a_function_writes(tmp_path):
    assert write_atomic(tmp_path / "a" / "b.json", json.dumps({"x": 1})) == tmp_path / "a" / "b.json"
    assert json.loads((tmp_path / "a" / "b.json").read_text()) == {"x": 1}  # parent folder created
    write_atomic(tmp_path / "c.bin", b"\x00\x01")
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01"
    seen = []

    def save(tmp):
        seen.append(tmp)
        torch.save({"w": torch.ones(2)}, tmp)

    write_atomic(tmp_path / "state.pt", save)
    assert seen[0].parent == tmp_path and seen[0].suffix == ".pt"  # a sibling that keeps the suffix (PyAV needs it)
    assert torch.equal(torch.load(tmp_path / "state.pt")["w"], torch.ones(2))
    write_atomic(tmp_path / "c.bin", "replaced")
    assert (tmp_path / "c.bin").read_text() == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c.bin", "state.pt"]  # no temporary files left


def test_write_atomic_replaces_folders_whole_and_keeps_the_old_on_failure(tmp_path):
    target = tmp_path / "export"

    def folder(files):
        def write(tmp):
            tmp.mkdir()
            for name, text in files.items():
                (tmp / name).write_text(text)
        return write

    write_atomic(target, folder({"old.txt": "1", "keep.txt": "1"}))
    write_atomic(target, folder({"new.txt": "2"}))
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]  # replaced as a whole, not merged

    def half_folder(tmp):
        folder({"half.txt": "3"})(tmp)
        raise RuntimeError("writer failed")

    def half_file(tmp):
        tmp.write_text("half")
        raise RuntimeError("writer failed")

    (tmp_path / "file.txt").write_text("previous")
    for path, writer in ((target, half_folder), (tmp_path / "file.txt", half_file)):
        with pytest.raises(RuntimeError, match="writer failed"):
            write_atomic(path, writer)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert (tmp_path / "file.txt").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "file.txt"]  # nothing half-written left
    with pytest.raises(FileNotFoundError, match="wrote nothing"):
        write_atomic(tmp_path / "empty", lambda tmp: None)
