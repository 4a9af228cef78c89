"""decode_video's pixels: pinned from the decoder's YUV planes, the same on every CPU, in any batching."""

import hashlib
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import data.decode
import data.synthetic as synthetic
from data.decode import decode_video
from data.pixels import frames_to_rgb
from data.synthetic import SyntheticConfig, write_video


def pattern(i: int, height: int = 32, width: int = 48) -> np.ndarray:
    """Frame ``i`` of a fixed test video, in integer arithmetic: gradients, a moving block, colours."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([(x * 5 + i * 9) % 256, (y * 7) % 256, ((x + y) * 3 + 40) % 256], -1)
    frame[8:20, 4 + 3 * i : 16 + 3 * i] = (200, 30, 30)
    return frame.astype(np.uint8)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("decode") / "pattern.mp4"
    write_video(path, [pattern(i) for i in range(6)], 8.0)
    return path


# Frame 3 of `video`, measured with PyAV 18.1 (its bundled libx264, core 165): the sha256 of its
# YUV planes as the decoder gives them (bit-exact by the H.264 standard; write_video's encoding is
# CPU-independent, but another libx264 build may encode otherwise), and of decode_video's RGB
# at its own size and at 32 px. The RGB comes from those planes in data.pixels' integer arithmetic,
# so an exact hash of it holds on every CPU (it would not for swscale's conversion).
PLANES_SHA = "e3e0e88b444fd5af"
RGB_SHA = {None: "4e91b74a801ddc3e", 32: "2306e7d90505f84a"}


def test_a_decoded_frame_is_pinned_from_its_yuv_planes(video):
    with av.open(str(video)) as container:
        frame = [f for f in container.decode(video=0)][3]
    assert frame.format.name == "yuv444p"
    assert sha(frame.to_ndarray().tobytes()) == PLANES_SHA
    for size, expected in RGB_SHA.items():
        decoded = decode_video(video, size=size).frames[3].permute(1, 2, 0).numpy()
        assert sha(decoded.tobytes()) == expected
        assert np.array_equal(decoded, frames_to_rgb([frame], decoded.shape[1], decoded.shape[0])[0])
    # Faithful to the frames written: the codec's loss, the YUV round trip's rounding, no more.
    assert np.abs(decode_video(video).frames[3].permute(1, 2, 0).numpy().astype(int) - pattern(3)).mean() < 2


def test_write_video_gives_the_same_bytes_every_time(tmp_path, monkeypatch):
    # Video 1 of this dataset came out of libx264 differently from one encoding to the next in one
    # process (its default SIMD paths; measured 2026-12-07), before write_video asked for
    # x264's CPU-independent mode on one thread.
    captured = {}
    monkeypatch.setattr(synthetic, "write_video", lambda path, frames, fps: captured.update(frames=frames, fps=fps))
    synthetic.generate_video(SyntheticConfig(num_videos=2, seed=3), 1, tmp_path)
    digests = set()
    for _ in range(4):
        write_video(tmp_path / "v.mp4", captured["frames"], captured["fps"])
        digests.add(sha((tmp_path / "v.mp4").read_bytes()))
    assert len(digests) == 1


def test_batches_and_keep_do_not_change_pixels(video, monkeypatch):
    whole = decode_video(video, size=32)
    converted = []
    convert = data.decode.frames_to_rgb

    def counting(frames, width, height):
        converted.append(len(frames))
        return convert(frames, width, height)

    monkeypatch.setattr(data.decode, "frames_to_rgb", counting)
    monkeypatch.setattr(data.decode, "_BATCH_SAMPLES", 2 * 48 * 32)  # two frames per conversion
    batched = decode_video(video, size=32)
    assert converted == [2, 2, 2]
    assert torch.equal(batched.frames, whole.frames) and torch.equal(batched.timestamps, whole.timestamps)
    converted.clear()
    kept = decode_video(video, size=32, keep=[1, 4])
    assert sum(converted) == 2  # only the named frames are converted
    assert torch.equal(kept.frames, whole.frames[[1, 4]]) and torch.equal(kept.timestamps, whole.timestamps[[1, 4]])
