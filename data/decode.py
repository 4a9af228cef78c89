"""PyAV video decoding at a target frame rate and size, keeping each frame's true timestamp.

Frames reach RGB through :mod:`data.pixels` (exact integer arithmetic on the decoder's YUV planes),
not swscale, so the pixels every selector and encoder sees are the same on every CPU.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from data.pixels import frames_to_rgb

# Bump when the pixels decode_video returns change for the same file and settings: caches of
# decoded frames and of features computed from them key on it (data.features).
PIXELS_VERSION = 2
# Frames are converted in batches of about this many source samples: one conversion per frame
# would cost more in numpy calls than decoding a small frame, one per video too much memory.
_BATCH_SAMPLES = 1 << 21


class VideoDecodeError(RuntimeError):
    """A video file exists but cannot be decoded (corrupt, no video stream, zero frames)."""


@dataclass
class DecodedVideo:
    """Frames of one video.

    Attributes:
        frames: ``uint8`` tensor ``(T, 3, H, W)``, RGB.
        timestamps: ``float64`` tensor ``(T,)``, presentation time of each frame in seconds.
        duration: Length of the video in seconds.
        native_fps: Frame rate of the file's video stream.
    """

    frames: torch.Tensor
    timestamps: torch.Tensor
    duration: float
    native_fps: float

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def _target_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(width, height) with the longest edge scaled to ``size``, aspect kept, both even."""
    if size is None:
        return width, height
    scale = size / max(width, height)
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


def _layout(frame: av.VideoFrame) -> tuple:
    """What frames converted together must share."""
    return frame.format.name, frame.width, frame.height, frame.colorspace, frame.color_range


def decode_video(
    path: str | Path,
    fps: float | None = None,
    size: int | None = None,
    max_frames: int | None = None,
    keep: Collection[int] | None = None,
) -> DecodedVideo:
    """Decodes a video, keeping frames at (at most) ``fps`` frames per second.

    Frame ``k`` of the output is the first source frame whose timestamp is ``>= k / fps``, so
    timestamps are the true presentation times, not the nominal grid. Pixels are converted and
    resized by :func:`data.pixels.frames_to_rgb`: bit-identical on every CPU for planar 8-bit YUV
    (what H.264 and most video gives), through swscale (not guaranteed so) for other formats.

    Args:
        path: Video file.
        fps: Target rate; ``None`` keeps every frame.
        size: Longest edge of the output frames in pixels; ``None`` keeps the native size.
        max_frames: Stop after this many output frames.
        keep: Only these output frames (numbered as without ``keep``), in order: the others are
            decoded but never converted to RGB, and decoding stops after the last one. For a
            few frames of a long video at full size (``select``'s JPEGs), where holding every
            frame would not fit in memory. ``duration`` then comes from the file's header, or
            ends at the last frame decoded if the header has none.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        VideoDecodeError: If the file cannot be decoded or holds no frames.
        ValueError: If the video has no frame numbered like one of ``keep``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frames: list[np.ndarray] = []
    stamps: list[float] = []
    wanted = None if keep is None else set(keep)
    if wanted is not None and (not wanted or min(wanted) < 0):
        raise ValueError(f"keep must name frames 0, 1, ..., got {sorted(wanted)[:5]}")
    count = 0  # output frames so far, kept or (with keep) not
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame-level threads: decoding is the I/O bottleneck
            native_fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            time_base = float(stream.time_base)
            w, h = _target_size(stream.codec_context.width, stream.codec_context.height, size)
            next_time = 0.0
            last_time = 0.0  # of any decoded frame, kept or skipped
            pending: list[av.VideoFrame] = []  # kept frames not yet converted, all of one layout

            def convert() -> None:
                if pending:
                    frames.extend(frames_to_rgb(pending, w, h))
                    pending.clear()

            for frame in container.decode(stream):
                t = frame.pts * time_base if frame.pts is not None else count / max(native_fps, 1.0)
                last_time = max(last_time, t)
                if fps is not None and t + 1e-6 < next_time:
                    continue
                if wanted is None or count in wanted:
                    if pending and _layout(frame) != _layout(pending[0]):
                        convert()
                    pending.append(frame)
                    stamps.append(t)
                    if len(pending) * frame.width * frame.height >= _BATCH_SAMPLES:
                        convert()
                count += 1
                if fps is not None:
                    # Skip to the next grid point after t: a slow source never yields duplicates.
                    next_time = (np.floor(t * fps + 1e-6) + 1) / fps
                if max_frames is not None and count >= max_frames:
                    break
                if wanted is not None and len(stamps) == len(wanted):
                    break
            convert()
            duration = float(stream.duration * time_base) if stream.duration else None
            if duration is None and container.duration:
                duration = container.duration / av.time_base
    except (av.error.FFmpegError, OSError, ValueError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise VideoDecodeError(f"{path}: cannot decode video ({type(err).__name__}: {err})") from err
    if not count:
        raise VideoDecodeError(f"{path}: video has zero decodable frames")
    if wanted is not None and len(frames) < len(wanted):
        missing = sorted(wanted)[len(frames):]
        rate = "" if fps is None else f" at {fps:g} fps"
        raise ValueError(f"{path}: has no frames {missing[:5]} (it holds {count}{rate})")
    if duration is None:
        duration = stamps[-1] + (1.0 / native_fps if native_fps else 0.0)
    # MP4 headers measure duration in decode order: with B-frames and a variable frame rate it
    # can end before the last frame is shown. A duration never ends before a frame it holds.
    duration = max(duration, last_time)
    array = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    return DecodedVideo(array, torch.tensor(stamps, dtype=torch.float64), float(duration), native_fps)
