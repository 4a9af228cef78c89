"""Decoder robustness (variable frame rate, zero frames) and the decoded-frame cache."""

import logging
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data import datamodule
from data.datamodule import DenseCaptionDataModule, VideoCaptionDataset, collate_videos
from data.decode import VideoDecodeError, decode_video
from data.features import FrameCache
from data.schema import Event, VideoSample, load_annotations, save_annotations

# Irregular presentation times in milliseconds: bursts, long gaps and a frame just after a grid point.
VFR_PTS_MS = [0, 40, 200, 230, 900, 1000, 1500, 2600, 2640, 3100]
MS = Fraction(1, 1000)


def write_vfr_video(path, pts_ms: list[int], size: int = 32) -> None:
    """H.264 MP4 whose frame ``i`` is flat grey ``20 * i`` shown at ``pts_ms[i]`` milliseconds."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)  # nominal only: each frame carries its own pts
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = MS
        for i, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, MS
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def vfr_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    write_vfr_video(path, VFR_PTS_MS)
    return path


def grey_levels(frames: torch.Tensor) -> list[int]:
    """Index ``i`` of each flat grey frame ``20 * i`` (codec noise is far below the 20-level steps)."""
    return [round(float(f.float().mean()) / 20) for f in frames]


def test_container_keeps_the_irregular_timestamps(vfr_video):
    # Guards the test itself: without this the decoder checks below could pass on a constant-rate file.
    with av.open(str(vfr_video)) as container:
        stream = container.streams.video[0]
        stamps = [float(frame.pts * stream.time_base) for frame in container.decode(stream)]
    assert stamps == pytest.approx([p / 1000 for p in VFR_PTS_MS], abs=1e-9)


def test_variable_frame_rate_video_keeps_true_timestamps(vfr_video):
    every = decode_video(vfr_video)
    expected = torch.tensor(VFR_PTS_MS, dtype=torch.float64) / 1000
    assert every.timestamps.dtype == torch.float64
    assert torch.allclose(every.timestamps, expected, rtol=0, atol=1e-9)
    assert grey_levels(every.frames) == list(range(len(VFR_PTS_MS)))
    # The header's duration ends before the last frame (B-frames reorder a variable-rate stream):
    # the decoder never reports a video shorter than the frames it returns.
    last = VFR_PTS_MS[-1] / 1000
    assert last <= every.duration < last + 0.5
    assert every.native_fps > 0

    two = decode_video(vfr_video, fps=2.0)
    # The first frame at or after each 0.5 s grid point, each frame once: 2.0 and 2.5 both get 2.6.
    grid = np.arange(0, last + 1e-9, 0.5)
    first_after = [next(p for p in VFR_PTS_MS if p / 1000 >= g - 1e-9) for g in grid]
    wanted = list(dict.fromkeys(first_after))
    assert wanted == [0, 900, 1000, 1500, 2600, 3100]
    assert torch.allclose(two.timestamps, torch.tensor(wanted, dtype=torch.float64) / 1000, rtol=0, atol=1e-9)
    assert grey_levels(two.frames) == [VFR_PTS_MS.index(p) for p in wanted]  # the frames shown at those times
    assert two.duration == pytest.approx(every.duration)

    capped = decode_video(vfr_video, fps=2.0, max_frames=3)
    assert torch.equal(capped.timestamps, two.timestamps[:3])
    assert capped.duration >= capped.timestamps[-1]



def test_keep_returns_only_those_frames_with_their_times_and_pixels(vfr_video):
    """``keep`` picks output frames by their number without it, at any fps and size, and names
    a frame the video does not have."""
    for fps, size in ((None, None), (2.0, 32)):
        every = decode_video(vfr_video, fps=fps, size=size)
        picked = decode_video(vfr_video, fps=fps, size=size, keep=[4, 1, 4])
        assert torch.equal(picked.frames, every.frames[[1, 4]])
        assert torch.equal(picked.timestamps, every.timestamps[[1, 4]])
        assert picked.native_fps == every.native_fps and picked.duration >= float(picked.timestamps[-1])
    with pytest.raises(ValueError, match=r"has no frames \[6\] \(it holds 6 at 2 fps\)"):
        decode_video(vfr_video, fps=2.0, keep=[0, 6])
    with pytest.raises(ValueError, match="keep must name frames"):
        decode_video(vfr_video, keep=[])

def write_empty_video(path) -> None:
    """An AVI with one video stream and no packets (an MP4 muxer would drop the empty stream)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        container.start_encoding()


def write_truncated_video(path) -> None:
    """The first half of a valid MP4: the index (``moov``, written last) is gone."""
    whole = path.with_name("whole.mp4")
    write_vfr_video(whole, VFR_PTS_MS)
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])


@pytest.mark.parametrize("name, write", [("empty.avi", write_empty_video), ("cut.mp4", write_truncated_video)])
def test_video_without_frames_is_a_named_decode_error(tmp_path, caplog, name, write):
    path = tmp_path / name
    write(path)
    if name == "empty.avi":  # really a video stream with zero packets, not an unreadable file
        with av.open(str(path)) as container:
            assert len(container.streams.video) == 1
            assert sum(p.size > 0 for p in container.demux(container.streams.video[0])) == 0
    with pytest.raises(VideoDecodeError, match=name):
        decode_video(path)

    sample = VideoSample("no_frames", str(path), 3.0, [Event(0, 1, "x")])
    with caplog.at_level(logging.WARNING, logger="data.datamodule"):
        assert VideoCaptionDataset([sample], fps=2.0, frame_size=32)[0] is None
    assert "skipping sample no_frames" in caplog.text and name in caplog.text
    with pytest.raises(VideoDecodeError, match=name):
        VideoCaptionDataset([sample], fps=2.0, frame_size=32, skip_bad_samples=False)[0]


# ----------------------------------------------------------------------------- frame cache
@pytest.fixture
def video(synthetic):
    _, paths, _ = synthetic
    return load_annotations(paths["train"])[0]


@pytest.fixture
def counted_decodes(monkeypatch):
    """Calls of the data module's ``decode_video`` (the paths decoded)."""
    calls = []
    real = datamodule.decode_video

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(datamodule, "decode_video", counting)
    return calls


def test_second_read_comes_from_the_cache_bit_identical(tmp_path, video, counted_decodes):
    cache = FrameCache(tmp_path, fps=2.0, frame_size=32, max_frames=12)
    ds = VideoCaptionDataset([video], fps=2.0, frame_size=32, max_frames=12, frame_cache=cache)

    first, second = ds[0], ds[0]

    assert len(counted_decodes) == 1
    fresh = decode_video(video.video, fps=2.0, size=32, max_frames=12)
    for item in (first, second):
        assert item["frames"].dtype == torch.uint8 and torch.equal(item["frames"], fresh.frames)
        assert item["timestamps"].dtype == torch.float64 and torch.equal(item["timestamps"], fresh.timestamps)
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["entries"]) == (1, 1, 1)
    assert stats["bytes"] >= fresh.frames.numel() and stats["compute_seconds"] > 0
    assert cache.directory == tmp_path / "fps2_size32_max12"

    # Another run (a new instance) reads the same entry, duration and native rate included.
    cached = FrameCache(tmp_path, fps=2.0, frame_size=32, max_frames=12).get(video.video)
    assert torch.equal(cached.frames, fresh.frames) and torch.equal(cached.timestamps, fresh.timestamps)
    assert (cached.duration, cached.native_fps) == (fresh.duration, fresh.native_fps)


@pytest.mark.parametrize("fps, size", [(4.0, 32), (2.0, 48)])
def test_other_decode_settings_use_another_entry(tmp_path, video, counted_decodes, fps, size):
    base = FrameCache(tmp_path, fps=2.0, frame_size=32, max_frames=None)
    VideoCaptionDataset([video], fps=2.0, frame_size=32, frame_cache=base)[0]
    other = FrameCache(tmp_path, fps=fps, frame_size=size, max_frames=None)
    assert other.directory != base.directory and other.key(video.video) == base.key(video.video)
    assert other.get(video.video) is None

    item = VideoCaptionDataset([video], fps=fps, frame_size=size, frame_cache=other)[0]
    assert len(counted_decodes) == 2  # decoded again, at the new settings
    assert torch.equal(item["frames"], decode_video(video.video, fps=fps, size=size).frames)
    assert base.stats()["entries"] == other.stats()["entries"] == 1
    with pytest.raises(ValueError, match="decode settings"):
        VideoCaptionDataset([video], fps=2.0, frame_size=32, frame_cache=other)


def test_dataloader_workers_share_one_entry(tmp_path, video):
    cache = FrameCache(tmp_path, fps=2.0, frame_size=32, max_frames=None)
    ds = VideoCaptionDataset([video] * 6, fps=2.0, frame_size=32, frame_cache=cache)
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate_videos)

    batches = list(loader)  # both workers miss at first and race to publish the same entry

    fresh = decode_video(video.video, fps=2.0, size=32)
    assert len(batches) == 6
    for batch in batches:
        assert torch.equal(batch["frames"][0], fresh.frames)
        assert torch.equal(batch["timestamps"][0], fresh.timestamps)
    assert sorted(p.name for p in cache.directory.iterdir()) == [cache.key(video.video)]  # no temp folders left
    assert cache.get(video.video) is not None


@pytest.mark.parametrize("damage", ["truncate data", "delete state", "garble description"])
def test_corrupt_entry_is_decoded_again(tmp_path, video, counted_decodes, damage):
    cache = FrameCache(tmp_path, fps=2.0, frame_size=32, max_frames=None)
    ds = VideoCaptionDataset([video], fps=2.0, frame_size=32, frame_cache=cache)
    expected = ds[0]["frames"]
    entry = cache.entry_path(video.video)
    data = next(entry.glob("*.arrow"))
    if damage == "truncate data":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif damage == "delete state":
        (entry / "state.json").unlink()
    else:  # readable table, but the recorded frame shape no longer fits it
        info = entry / "dataset_info.json"
        text = info.read_text()
        assert '\\"shape\\": [3, ' in text
        info.write_text(text.replace('\\"shape\\": [3, ', '\\"shape\\": [5, '))

    assert cache.get(video.video) is None
    assert torch.equal(ds[0]["frames"], expected)
    assert len(counted_decodes) == 2
    assert torch.equal(cache.get(video.video).frames, expected)  # rewritten


def test_failed_cache_write_still_returns_the_frames(tmp_path, video, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the cache folder cannot be created under a file
    cache = FrameCache(blocker, fps=2.0, frame_size=32, max_frames=None)
    with caplog.at_level(logging.WARNING, logger="data.features"):
        item = VideoCaptionDataset([video], fps=2.0, frame_size=32, frame_cache=cache)[0]
    assert torch.equal(item["frames"], decode_video(video.video, fps=2.0, size=32).frames)
    assert "cannot store" in caplog.text


def test_datamodule_frame_cache_is_opt_in_and_reports(tmp_path, synthetic, caplog):
    _, paths, _ = synthetic
    samples = load_annotations(paths["train"])[:2]
    save_annotations(samples, tmp_path / "train.json")
    assert DenseCaptionDataModule(train_file=str(tmp_path / "train.json")).frame_cache is None

    train = str(tmp_path / "train.json")
    dm = DenseCaptionDataModule(train_file=train, cache_dir=str(tmp_path / "c"), frame_cache=True)
    with caplog.at_level(logging.INFO, logger="data.datamodule"):
        dm.setup("fit")
    assert "frame cache" in caplog.text and "0 entries" in caplog.text
    ds = dm.datasets["train"]
    assert ds.frame_cache is dm.frame_cache
    assert dm.frame_cache.directory == tmp_path / "c" / "frames" / "fps2_size64_max128"
    for i in range(len(ds)):
        ds[i]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="data.datamodule"):
        dm.setup("fit")  # datasets already built: only the report again
    assert "2 entries" in caplog.text and "2 misses" in caplog.text
