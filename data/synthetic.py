"""Synthetic dense-captioning videos: real MP4 files with annotated events and distractors.

Each video shows a textured grey background. **Events** are saturated coloured shapes that
appear, move in one direction and disappear; each is captioned ("a red circle moves left").
**Distractors** change many pixels without being an event: camera pans over the background,
brightness flicker, sensor noise and hard scene cuts (the background is replaced). A selector
that reacts to raw pixel change is fooled by distractors; one that finds events is not.

Annotations are ActivityNet-Captions-style JSON with extra ground truth per video:
``informative_frames`` (per event, the ``[first, last]`` native frame index where the shape is
visible), ``key_times`` (event mid-points) and ``distractors`` (``{type, start, end}``).

Run ``python -m data.synthetic --output DIR`` to write a dataset by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from data.schema import Event, VideoSample, save_annotations

# At most 200 per channel, like the textures below: flicker (x1.25) then never clips, so a
# brightness change stays an affine change of the pixels, as it is for a real exposure change.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 30),
    "green": (30, 180, 40),
    "blue": (40, 60, 200),
    "yellow": (200, 190, 20),
    "magenta": (190, 30, 190),
    "cyan": (20, 190, 200),
}
SHAPES = ("circle", "square", "triangle")
MOTIONS: dict[str, tuple[float, float]] = {
    "moves left": (-1.0, 0.0),
    "moves right": (1.0, 0.0),
    "moves up": (0.0, -1.0),
    "moves down": (0.0, 1.0),
}


@dataclass
class SyntheticConfig:
    """Settings of the synthetic generator (all randomness flows from ``seed``).

    Attributes:
        num_videos: Videos to write.
        min_duration: Shortest video in seconds.
        max_duration: Longest video in seconds.
        fps: Native frame rate of the written MP4s.
        size: Frame width and height in pixels.
        min_events: Fewest events per video.
        max_events: Most events per video.
        min_event_len: Shortest event in seconds (short events are what uniform sampling misses).
        max_event_len: Longest event in seconds.
        pan_prob: Chance that a video has a camera pan.
        flicker_prob: Chance that a video has a brightness-flicker burst.
        cut_prob: Chance that a video has a hard scene cut with no event.
        noise_std: Std of per-pixel sensor noise (0-255 scale) on every frame.
        seed: Root seed.
    """

    num_videos: int = 16
    min_duration: float = 12.0
    max_duration: float = 20.0
    fps: float = 8.0
    size: int = 96
    min_events: int = 2
    max_events: int = 3
    min_event_len: float = 1.5
    max_event_len: float = 3.0
    pan_prob: float = 0.5
    flicker_prob: float = 0.5
    cut_prob: float = 0.5
    noise_std: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_videos < 1:
            raise ValueError(f"num_videos must be >= 1, got {self.num_videos}")
        if not 0 < self.min_duration <= self.max_duration:
            raise ValueError("need 0 < min_duration <= max_duration")
        if not 1 <= self.min_events <= self.max_events:
            raise ValueError("need 1 <= min_events <= max_events")
        if not 0 < self.min_event_len <= self.max_event_len:
            raise ValueError("need 0 < min_event_len <= max_event_len")
        # Events are laid out without overlap, each followed by a gap of at least 0.5 s.
        if self.max_events * (self.max_event_len + 0.5) > self.min_duration:
            raise ValueError(
                f"max_events * (max_event_len + 0.5) = {self.max_events * (self.max_event_len + 0.5)} s "
                f"does not fit in min_duration = {self.min_duration} s"
            )
        if self.size < 32:
            raise ValueError(f"size must be >= 32 pixels, got {self.size}")

    def fingerprint(self) -> str:
        """Short hash of the settings: datasets with different settings never share a folder."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth low-saturation texture (float32 HxWx3): sums of random low-frequency waves."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.full((height, width), rng.uniform(90, 130), np.float32)
    for _ in range(4):
        fx, fy = rng.uniform(-0.12, 0.12, size=2)
        base += rng.uniform(6, 16) * np.sin(fx * x + fy * y + rng.uniform(0, 2 * np.pi))
    tint = rng.uniform(-8, 8, size=3).astype(np.float32)  # grey with a faint tint: never a shape colour
    return np.clip(base[..., None] + tint, 0, 255)


def _shape_mask(shape: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    if shape == "square":
        return (np.abs(x - cx) <= r * 0.85) & (np.abs(y - cy) <= r * 0.85)
    # Upward triangle: inside the band below the apex and between the two slanted edges.
    top, bottom = cy - r, cy + r
    half_width = (y - top) / (2 * r) * r
    return (y >= top) & (y <= bottom) & (np.abs(x - cx) <= half_width)


@dataclass
class _EventPlan:
    start: float
    end: float
    color: str
    shape: str
    motion: str
    x0: float
    y0: float
    radius: float

    @property
    def caption(self) -> str:
        return f"a {self.color} {self.shape} {self.motion}"

    def center(self, t: float, size: int) -> tuple[float, float]:
        dx, dy = MOTIONS[self.motion]
        progress = (t - self.start) / max(self.end - self.start, 1e-6)
        travel = 0.45 * size
        return self.x0 + dx * travel * progress, self.y0 + dy * travel * progress


def _plan_events(rng: np.random.Generator, cfg: SyntheticConfig, duration: float) -> list[_EventPlan]:
    n = int(rng.integers(cfg.min_events, cfg.max_events + 1))
    lengths = rng.uniform(cfg.min_event_len, cfg.max_event_len, size=n)
    slack = duration - lengths.sum() - 0.5 * (n + 1)
    # Random gaps that add up to the slack: events spread over the whole video, never overlap.
    gaps = rng.dirichlet(np.ones(n + 1)) * slack + 0.5
    colors = rng.choice(list(COLORS), size=n, replace=False)
    plans, t = [], 0.0
    for i in range(n):
        t += gaps[i]
        motion = str(rng.choice(list(MOTIONS)))
        dx, dy = MOTIONS[motion]
        size = cfg.size
        # Start on the side opposite the motion so the shape crosses the frame and stays inside.
        x0 = size * (0.5 - 0.22 * dx) + rng.uniform(-0.05, 0.05) * size * (dx == 0)
        y0 = size * (0.5 - 0.22 * dy) + rng.uniform(-0.05, 0.05) * size * (dy == 0)
        plans.append(
            _EventPlan(
                start=round(float(t), 3),
                end=round(float(t + lengths[i]), 3),
                color=str(colors[i]),
                shape=str(rng.choice(SHAPES)),
                motion=motion,
                x0=float(x0),
                y0=float(y0),
                radius=float(rng.uniform(0.11, 0.15) * size),
            )
        )
        t += lengths[i]
    return plans


def _plan_distractors(rng: np.random.Generator, cfg: SyntheticConfig, duration: float) -> list[dict]:
    out = []
    for kind, prob in (("pan", cfg.pan_prob), ("flicker", cfg.flicker_prob), ("cut", cfg.cut_prob)):
        if rng.random() < prob:
            if kind == "cut":
                t = float(rng.uniform(0.2, 0.8) * duration)
                out.append({"type": "cut", "start": round(t, 3), "end": round(t, 3)})
            else:
                # Pans are slow camera moves (half a frame over 3-5 s); flicker comes in bursts.
                low, high = (3.0, 5.0) if kind == "pan" else (1.5, 3.0)
                length = min(float(rng.uniform(low, high)), duration / 2)  # short videos too
                start = float(rng.uniform(0, duration - length))
                out.append({"type": kind, "start": round(start, 3), "end": round(start + length, 3)})
    return out


def render_frame(
    t: float,
    size: int,
    events: list[_EventPlan],
    distractors: list[dict],
    textures: tuple[np.ndarray, np.ndarray],
    noise: np.ndarray,
) -> np.ndarray:
    """Renders the frame at time ``t`` (uint8 HxWx3)."""
    texture = textures[0]
    for d in distractors:
        if d["type"] == "cut" and t >= d["start"]:
            texture = textures[1]
    offset = 0
    for d in distractors:
        if d["type"] == "pan":
            # The camera slides over the (twice as wide) texture during the pan and stays there after.
            progress = min(max((t - d["start"]) / (d["end"] - d["start"]), 0.0), 1.0)
            offset = int(round(progress * size * 0.5))
    frame = texture[:size, offset : offset + size].copy()
    for e in events:
        if e.start <= t <= e.end:
            cx, cy = e.center(t, size)
            frame[_shape_mask(e.shape, size, cx, cy, e.radius)] = COLORS[e.color]
    for d in distractors:
        if d["type"] == "flicker" and d["start"] <= t <= d["end"]:
            # Alternating bright/dark frames: big global pixel change, nothing happens.
            frame *= 1.25 if int(t * 8) % 2 == 0 else 0.75
    frame += noise
    return np.clip(frame, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Writes RGB frames as an H.264 MP4 (to a temp file first, so a crash leaves no half file)."""
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv444p"  # no chroma subsampling: small coloured shapes keep their colour
        stream.options = {"crf": "12", "preset": "veryfast"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)


def generate_video(cfg: SyntheticConfig, index: int, video_dir: Path) -> VideoSample:
    """Renders video ``index`` of the dataset and returns its annotated sample."""
    rng = np.random.default_rng([cfg.seed, index])
    duration = float(np.round(rng.uniform(cfg.min_duration, cfg.max_duration), 2))
    num_frames = int(math.floor(duration * cfg.fps))
    duration = num_frames / cfg.fps
    events = _plan_events(rng, cfg, duration)
    distractors = _plan_distractors(rng, cfg, duration)
    textures = (_texture(rng, cfg.size, 2 * cfg.size), _texture(rng, cfg.size, 2 * cfg.size))
    frames = []
    for i in range(num_frames):
        noise = rng.normal(0, cfg.noise_std, size=(cfg.size, cfg.size, 3)).astype(np.float32)
        frames.append(render_frame(i / cfg.fps, cfg.size, events, distractors, textures, noise))
    video_id = f"synth_{cfg.seed}_{index:05d}"
    path = video_dir / f"{video_id}.mp4"
    write_video(path, frames, cfg.fps)
    informative = [
        [int(math.ceil(e.start * cfg.fps)), min(int(math.floor(e.end * cfg.fps)), num_frames - 1)] for e in events
    ]
    return VideoSample(
        video_id=video_id,
        video=str(path),
        duration=duration,
        events=[Event(e.start, e.end, e.caption) for e in events],
        fps=cfg.fps,
        extra={
            "informative_frames": informative,
            "key_times": [round((e.start + e.end) / 2, 3) for e in events],
            "distractors": distractors,
            "objects": [{"color": e.color, "shape": e.shape, "motion": e.motion} for e in events],
        },
    )


def generate_dataset(
    root: str | Path,
    cfg: SyntheticConfig,
    splits: dict[str, float] | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Writes ``cfg.num_videos`` videos and one annotation file per split under ``root``.

    Re-running with the same settings reuses the finished dataset (a ``done.json`` marker is
    written last, so an interrupted run is redone, never half-used).

    Args:
        root: Output folder (created).
        cfg: Generator settings.
        splits: Split name to fraction of videos (default train 0.7 / val 0.15 / test 0.15).
        progress: Show a progress bar.

    Returns:
        Split name to annotation file path.
    """
    splits = splits or {"train": 0.7, "val": 0.15, "test": 0.15}
    root = Path(root)
    marker = root / "done.json"
    paths = {name: root / f"{name}.json" for name in splits}
    if marker.is_file() and json.loads(marker.read_text()) == {"config": asdict(cfg), "splits": splits}:
        return paths
    video_dir = root / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    indices = range(cfg.num_videos)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=f"synthetic videos -> {root}", leave=False)
    samples = [generate_video(cfg, i, video_dir) for i in indices]
    for s in samples:  # annotation files hold paths relative to their folder: the dataset can move
        s.video = str(Path(s.video).relative_to(root))
    start = 0
    names = list(splits)
    for j, name in enumerate(names):
        count = len(samples) - start if j == len(names) - 1 else int(round(splits[name] * len(samples)))
        save_annotations(samples[start : start + count], paths[name])
        start += count
    marker.write_text(json.dumps({"config": asdict(cfg), "splits": splits}))
    return paths


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m data.synthetic --output DIR [--num-videos N] [--seed S]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--num-videos", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = generate_dataset(args.output, SyntheticConfig(num_videos=args.num_videos, seed=args.seed))
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
