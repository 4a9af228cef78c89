"""Synthetic dense-captioning videos: real MP4 files with annotated events and distractors.

Why this size (about 800 lines): one generator whose default settings must keep rendering the
first version's videos bit for bit; every distractor and event kind draws from streams defined
here, and splitting them would hide which stream a setting consumes.

Each video shows a textured grey background. **Events** are saturated coloured shapes; each is
captioned. By default they appear, move in one direction and disappear ("a red circle moves
left"); ``event_kinds`` adds shapes that appear and stay still ("a green triangle appears"),
blink ("a red circle blinks") or grow ("a blue square grows"). **Distractors** change many
pixels without being an event: camera pans over the background, brightness flicker, sensor noise
and hard scene cuts (the background is replaced); optionally a large grey occluder sweeping
across, camera zoom, fade to black, camera shake, a gradual cross-fade to a new background and a
slow illumination drift. A selector that reacts to raw pixel change is fooled by distractors; one
that finds events is not.

Videos can differ in frame size, aspect ratio, frame rate (29.97 included) and length
(``sizes``, ``aspect_ratios``, ``fps_choices``, ``long_video_prob``), so that two settings can
describe two *families* of conditions: train on one, hold the other out.

Annotations are ActivityNet-Captions-style JSON with extra ground truth per video:
``informative_frames`` (per event, the ``[first, last]`` native frame index of its span; a
blinking shape is off on some frames between them), ``key_times`` (event mid-points),
``distractors`` (``{type, start, end}``), ``objects`` (colour, shape, caption verb as
``motion`` and, with ``event_kinds`` set, ``kind``) and, with ``sizes`` or ``aspect_ratios``
set, ``frame_size`` (``[width, height]``).

Defaults render the frames and annotations of the first version of this generator bit for bit:
the new settings draw their random numbers from their own streams (:func:`_stream`), never from
the one the original layout, textures and noise come from, and
:meth:`SyntheticConfig.fingerprint` hashes them only when they differ from their defaults, so
existing cached datasets keep their folders. The MP4 files changed once, when their encoding was
made independent of the CPU (``WRITER_VERSION`` 2, see :func:`write_video`).

Run ``python -m data.synthetic --output DIR`` to write a dataset by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import zlib
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from data.atomic import write_atomic
from data.pixels import rgb_to_yuv444
from data.schema import Event, VideoSample, save_annotations

# Bump when write_video's bytes change for the same frames: cached datasets are then written again.
# 2: YUV from data.pixels and x264's CPU-independent single-thread mode (1 left both to the CPU).
WRITER_VERSION = 2
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
EVENT_KINDS = ("move", "static", "blink", "grow")
# Caption verb of the still kinds ("move" takes its direction from MOTIONS). Kept out of MOTIONS:
# models/tiny.py trains the tiny tokenizer on MOTIONS, and its vocabulary must not change.
VERBS: dict[str, str] = {"static": "appears", "blink": "blinks", "grow": "grows"}
# Distractor kinds added after pan/flicker/cut, each switched on by ``<kind>_prob``, with the
# span of one occurrence in seconds (at most half the video).
NEW_DISTRACTORS: dict[str, tuple[float, float]] = {
    "occluder": (0.6, 1.5),  # sweeps across quickly
    "zoom": (2.0, 4.0),
    "fade": (1.0, 2.5),
    "shake": (1.0, 2.5),
    "dissolve": (1.0, 2.0),
    "drift": (4.0, 8.0),  # slow
}
# Fields added after the first version: left out of the fingerprint while at their defaults.
WIDENING_FIELDS = (
    *(f"{kind}_prob" for kind in NEW_DISTRACTORS),
    "distractor_strength",
    "event_kinds",
    "radius_range",
    "sizes",
    "aspect_ratios",
    "fps_choices",
    "long_video_prob",
    "long_duration",
)


@dataclass
class SyntheticConfig:
    """Settings of the synthetic generator (all randomness flows from ``seed``).

    Attributes:
        num_videos: Videos to write.
        min_duration: Shortest video in seconds (long videos aside).
        max_duration: Longest video in seconds (long videos aside).
        fps: Native frame rate of the written MP4s (when ``fps_choices`` is ``None``).
        size: Frame width and height in pixels (when ``sizes`` is ``None``).
        min_events: Fewest events per video.
        max_events: Most events per video (long videos get proportionally more).
        min_event_len: Shortest event in seconds (short events are what uniform sampling misses).
        max_event_len: Longest event in seconds.
        pan_prob: Chance that a video has a camera pan.
        flicker_prob: Chance that a video has a brightness-flicker burst.
        cut_prob: Chance that a video has a hard scene cut with no event.
        noise_std: Std of per-pixel sensor noise (0-255 scale) on every frame.
        seed: Root seed.
        occluder_prob: Chance that a large grey textured bar or blob (never an event colour)
            sweeps across the frame in 0.6-1.5 s: big foreground motion that is no event. It
            passes behind the events, so a shape stays visible on its informative frames.
        zoom_prob: Chance of a camera zoom in or out over the background (2-4 s, then held).
        fade_prob: Chance of a fade to black and back (1-2.5 s, placed between events).
        shake_prob: Chance of a camera-shake burst: a random offset each frame for 1-2.5 s.
        dissolve_prob: Chance of a gradual cross-fade to a new background over 1-2 s: a scene
            change with no event.
        drift_prob: Chance of a slow global illumination and colour drift (4-8 s, there and back).
        distractor_strength: ``[low, high]``: each video draws one multiplier in this range
            for the strength of all its distractors (flicker amplitude, pan distance, noise std,
            occluder size, zoom amount, fade depth, shake amplitude, drift amount; cuts and
            dissolves have none). ``[1, 1]`` is the original strength.
        event_kinds: Kinds each event is drawn from: ``move`` (crosses the frame), ``static``
            (appears and stays still), ``blink`` (stays still, flashes on and off 2-4 times),
            ``grow`` (grows from 30% to full size).
        radius_range: ``[low, high]`` shape radius as a fraction of the frame's shorter side.
        sizes: Shorter frame side in pixels, one drawn per video (``None``: ``size``).
        aspect_ratios: Width / height, one drawn per video (``None``: square); the shorter side
            is the video's size, the longer one is rounded to even pixels.
        fps_choices: Frame rates, one drawn per video (``None``: ``fps``); non-integer rates
            such as 29.97 are written exactly (frame ``i`` is shown at ``i / fps``).
        long_video_prob: Chance that a video is long: its duration is drawn from
            ``long_duration`` and it holds between ``min_events`` and
            ``max_events * duration / min_duration`` events.
        long_duration: ``[low, high]`` duration of long videos in seconds.
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
    occluder_prob: float = 0.0
    zoom_prob: float = 0.0
    fade_prob: float = 0.0
    shake_prob: float = 0.0
    dissolve_prob: float = 0.0
    drift_prob: float = 0.0
    distractor_strength: tuple[float, float] = (1.0, 1.0)
    event_kinds: list[str] = field(default_factory=lambda: ["move"])
    radius_range: tuple[float, float] = (0.11, 0.15)
    sizes: list[int] | None = None
    aspect_ratios: list[float] | None = None
    fps_choices: list[float] | None = None
    long_video_prob: float = 0.0
    long_duration: tuple[float, float] = (60.0, 120.0)

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
        for kind in ("pan", "flicker", "cut", *NEW_DISTRACTORS, "long_video"):
            prob = getattr(self, f"{kind}_prob")
            if not 0.0 <= prob <= 1.0:
                raise ValueError(f"{kind}_prob must be a probability in [0, 1], got {prob}")
        # Normalise what a YAML file or the CLI may give as lists or ints, so equal settings
        # hash equally (fingerprint) and compare equal to their defaults.
        for name in (f"{kind}_prob" for kind in NEW_DISTRACTORS):
            setattr(self, name, float(getattr(self, name)))
        self.long_video_prob = float(self.long_video_prob)
        self.distractor_strength = _range("distractor_strength", self.distractor_strength, 0.0, math.inf)
        self.radius_range = _range("radius_range", self.radius_range, 0.02, 0.2)
        self.long_duration = _range("long_duration", self.long_duration, 0.0, math.inf)
        if self.long_video_prob > 0 and self.long_duration[0] < self.min_duration:
            raise ValueError(f"long_duration must start at or above min_duration = {self.min_duration} s, "
                             f"got {list(self.long_duration)}")  # fmt: skip
        self.event_kinds = list(self.event_kinds)
        bad = [k for k in self.event_kinds if k not in EVENT_KINDS]
        if not self.event_kinds or bad:
            raise ValueError(f"event_kinds must be a non-empty list of {list(EVENT_KINDS)}, got {self.event_kinds}")
        self.sizes = _choices("sizes", self.sizes, int, 32, math.inf)
        self.aspect_ratios = _choices("aspect_ratios", self.aspect_ratios, float, 0.25, 4.0)
        self.fps_choices = _choices("fps_choices", self.fps_choices, float, 1.0, 120.0)

    def settings(self) -> dict:
        """The settings as JSON values, less the widening fields (:data:`WIDENING_FIELDS`) that
        hold their defaults: a dataset written before those fields existed keeps its identity."""
        values = json.loads(json.dumps(asdict(self)))
        defaults = {f.name: f.default_factory() if callable(f.default_factory) else f.default for f in fields(self)}
        defaults = json.loads(json.dumps(defaults))
        return {k: v for k, v in values.items() if k not in WIDENING_FIELDS or v != defaults[k]}

    def fingerprint(self) -> str:
        """Short hash of the settings: datasets with different settings never share a folder."""
        return hashlib.sha1(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:10]


def _range(name: str, value, low: float, high: float) -> tuple[float, float]:
    """``value`` as a ``(lo, hi)`` float pair with ``low <= lo <= hi <= high``, or a ValueError naming ``name``."""
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or not low <= pair[0] <= pair[1] <= high:
        raise ValueError(f"{name} must be [low, high] with {low:g} <= low <= high <= {high:g}, got {list(value)}")
    return pair


def _choices(name: str, value, kind: type, low: float, high: float) -> list | None:
    """``value`` as a non-empty list of ``kind`` within ``[low, high]`` (or ``None``), else a ValueError."""
    if value is None:
        return None
    items = [kind(v) for v in value]
    if not items or any(not low <= v <= high or v != float(w) for v, w in zip(items, value)):
        allowed = f"a non-empty list of {kind.__name__} in [{low:g}, {high:g}]"
        raise ValueError(f"{name} must be null or {allowed}, got {value}")
    return items


def _stream(cfg: SyntheticConfig, index: int, name: str) -> np.random.Generator:
    """The random stream of one widening feature of video ``index``, apart from the main one, so
    that switching a feature on or off changes nothing else in the video."""
    return np.random.default_rng([cfg.seed, index, zlib.crc32(name.encode())])


@dataclass
class _Format:
    """Frame size, rate and (for a long video) duration of one video."""

    height: int
    width: int
    fps: float
    long_duration: float | None = None


def _pick_format(cfg: SyntheticConfig, index: int) -> _Format:
    size = cfg.size if cfg.sizes is None else int(_stream(cfg, index, "sizes").choice(cfg.sizes))
    height = width = size
    if cfg.aspect_ratios is not None:
        ratio = float(_stream(cfg, index, "aspect_ratios").choice(cfg.aspect_ratios))
        longer = max(2, int(round(size * max(ratio, 1 / ratio) / 2)) * 2)  # even: friendly to every codec
        height, width = (size, longer) if ratio >= 1 else (longer, size)
    fps = cfg.fps if cfg.fps_choices is None else float(_stream(cfg, index, "fps_choices").choice(cfg.fps_choices))
    long_duration = None
    if cfg.long_video_prob > 0:
        rng = _stream(cfg, index, "long_video")
        if rng.random() < cfg.long_video_prob:
            long_duration = float(np.round(rng.uniform(*cfg.long_duration), 2))
    return _Format(height, width, fps, long_duration)


def _texture(rng: np.random.Generator, height: int, width: int, margin: int = 0) -> np.ndarray:
    """Smooth low-saturation texture (float32 HxWx3): sums of random low-frequency waves.

    ``margin`` more pixels on every side; the ``height`` x ``width`` inside stays the same.
    """
    y, x = np.mgrid[-margin : height + margin, -margin : width + margin].astype(np.float32)
    base = np.full(x.shape, rng.uniform(90, 130), np.float32)
    for _ in range(4):
        fx, fy = rng.uniform(-0.12, 0.12, size=2)
        base += rng.uniform(6, 16) * np.sin(fx * x + fy * y + rng.uniform(0, 2 * np.pi))
    tint = rng.uniform(-8, 8, size=3).astype(np.float32)  # grey with a faint tint: never a shape colour
    return np.clip(base[..., None] + tint, 0, 255)


def _shape_mask(shape: str, height: int, width: int, cx: float, cy: float, r: float) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
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
    kind: str = "move"
    flashes: int = 1  # blink: times the shape is on

    @property
    def verb(self) -> str:
        return self.motion if self.kind == "move" else VERBS[self.kind]

    @property
    def caption(self) -> str:
        return f"a {self.color} {self.shape} {self.verb}"

    def progress(self, t: float) -> float:
        return (t - self.start) / max(self.end - self.start, 1e-6)

    def visible(self, t: float) -> bool:
        if not self.start <= t <= self.end:
            return False
        if self.kind != "blink":
            return True
        # 2 * flashes - 1 equal phases, on first and last: the shape shows at both ends.
        phases = 2 * self.flashes - 1
        return min(int(self.progress(t) * phases), phases - 1) % 2 == 0

    def center(self, t: float, width: int, height: int) -> tuple[float, float]:
        if self.kind != "move":
            return self.x0, self.y0
        dx, dy = MOTIONS[self.motion]
        progress = self.progress(t)
        return self.x0 + dx * (0.45 * width) * progress, self.y0 + dy * (0.45 * height) * progress

    def radius_at(self, t: float) -> float:
        return self.radius * (0.3 + 0.7 * self.progress(t)) if self.kind == "grow" else self.radius


def _plan_events(
    rng: np.random.Generator, cfg: SyntheticConfig, duration: float, fmt: _Format, kinds: np.random.Generator
) -> list[_EventPlan]:
    """Events without overlap; the layout comes from ``rng`` as in the first version, the kinds
    and still positions from ``kinds``."""
    most = cfg.max_events
    if fmt.long_duration is not None:  # as many events per second as a video of min_duration
        most = max(most, int(cfg.max_events * duration / cfg.min_duration))
    n = int(rng.integers(cfg.min_events, most + 1))
    lengths = rng.uniform(cfg.min_event_len, cfg.max_event_len, size=n)
    slack = duration - lengths.sum() - 0.5 * (n + 1)
    # Random gaps that add up to the slack: events spread over the whole video, never overlap.
    gaps = rng.dirichlet(np.ones(n + 1)) * slack + 0.5
    # Colours repeat only once a video has more events than colours (long videos).
    colors = np.concatenate([rng.choice(list(COLORS), size=min(n - i, len(COLORS)), replace=False)
                             for i in range(0, n, len(COLORS))])  # fmt: skip
    width, height = fmt.width, fmt.height
    plans, t = [], 0.0
    for i in range(n):
        t += gaps[i]
        motion = str(rng.choice(list(MOTIONS)))
        dx, dy = MOTIONS[motion]
        # Start on the side opposite the motion so the shape crosses the frame and stays inside.
        x0 = width * (0.5 - 0.22 * dx) + rng.uniform(-0.05, 0.05) * width * (dx == 0)
        y0 = height * (0.5 - 0.22 * dy) + rng.uniform(-0.05, 0.05) * height * (dy == 0)
        plan = _EventPlan(
            start=round(float(t), 3),
            end=round(float(t + lengths[i]), 3),
            color=str(colors[i]),
            shape=str(rng.choice(SHAPES)),
            motion=motion,
            x0=float(x0),
            y0=float(y0),
            radius=float(rng.uniform(*cfg.radius_range) * min(width, height)),
        )
        plan.kind = str(kinds.choice(cfg.event_kinds))
        if plan.kind != "move":  # anywhere the whole shape fits, 5% from the edges
            r = plan.radius
            plan.x0 = float(kinds.uniform(r + 0.05 * width, width - r - 0.05 * width))
            plan.y0 = float(kinds.uniform(r + 0.05 * height, height - r - 0.05 * height))
        if plan.kind == "blink":  # 2-4 flashes, each phase at least 1.5 frames long
            fit = int((lengths[i] * fmt.fps / 1.5 + 1) / 2)
            plan.flashes = max(1, min(int(kinds.integers(2, 5)), fit))
        plans.append(plan)
        t += lengths[i]
    return plans


@dataclass
class _Distractor:
    """One distractor: its annotated span plus what rendering needs (``params``, not annotated)."""

    type: str
    start: float
    end: float
    strength: float = 1.0
    params: dict = field(default_factory=dict)

    def annotation(self) -> dict:
        return {"type": self.type, "start": self.start, "end": self.end}

    def progress(self, t: float) -> float:
        """0 before the span, 1 after it, linear in between."""
        if t >= self.end:
            return 1.0
        return min(max((t - self.start) / (self.end - self.start), 0.0), 1.0)

    def active(self, t: float) -> bool:
        return self.start <= t <= self.end


def _free_span(
    rng: np.random.Generator, length: float, duration: float, busy: list[tuple[float, float]]
) -> tuple[float, float]:
    """A ``(start, length)`` span that overlaps none of the ``busy`` ones, uniform over where it
    fits (shortened to the longest free gap if it fits nowhere)."""
    edges = [0.0, *(x for span in sorted(busy) for x in span), duration]
    gaps = [(a, b) for a, b in zip(edges[::2], edges[1::2]) if b > a]
    if not gaps:
        return 0.0, 0.0
    if not any(b - a >= length for a, b in gaps):
        length = max(b - a for a, b in gaps)
    room = [(a, b - length) for a, b in gaps if b - a >= length]
    u = rng.uniform(0, sum(hi - lo for lo, hi in room))
    for lo, hi in room:
        if u <= hi - lo:
            return lo + u, length
        u -= hi - lo
    return room[-1][1], length


def _plan_distractors(
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    duration: float,
    index: int,
    strength: float,
    events: list[_EventPlan],
) -> list[_Distractor]:
    """At most one distractor of each kind; pan, flicker and cut from ``rng`` as in the first
    version, each newer kind from its own stream."""
    out = []
    for kind, prob in (("pan", cfg.pan_prob), ("flicker", cfg.flicker_prob), ("cut", cfg.cut_prob)):
        if rng.random() < prob:
            if kind == "cut":
                t = float(rng.uniform(0.2, 0.8) * duration)
                out.append(_Distractor("cut", round(t, 3), round(t, 3), strength))
            else:
                # Pans are slow camera moves (half a frame over 3-5 s); flicker comes in bursts.
                low, high = (3.0, 5.0) if kind == "pan" else (1.5, 3.0)
                length = min(float(rng.uniform(low, high)), duration / 2)  # short videos too
                start = float(rng.uniform(0, duration - length))
                out.append(_Distractor(kind, round(start, 3), round(start + length, 3), strength))
    for kind, (low, high) in NEW_DISTRACTORS.items():
        prob = getattr(cfg, f"{kind}_prob")
        if prob == 0:
            continue
        k_rng = _stream(cfg, index, kind)
        if k_rng.random() < prob:
            length = min(float(k_rng.uniform(low, high)), duration / 2)
            if kind == "fade":  # between events: a shape in a black frame would be annotated but unseen
                start, length = _free_span(k_rng, length, duration, [(e.start, e.end) for e in events])
            else:
                start = float(k_rng.uniform(0, duration - length))
            params = _DISTRACTOR_PARAMS[kind](k_rng) if kind in _DISTRACTOR_PARAMS else {}
            out.append(_Distractor(kind, round(start, 3), round(start + length, 3), strength, params))
    return out


# Random details of the new distractors, drawn once per occurrence from the kind's own stream.
_DISTRACTOR_PARAMS = {
    "occluder": lambda rng: {
        "bar": bool(rng.random() < 0.5),  # a bar spanning the frame, else an elliptical blob
        "horizontal": bool(rng.random() < 0.5),  # moves along x, else along y
        "direction": float(rng.choice([-1.0, 1.0])),
        "thickness": float(rng.uniform(0.25, 0.4)),  # along the motion, fraction of the frame
        "elongation": float(rng.uniform(1.0, 1.5)),  # blob: across / along
        "across": float(rng.uniform(0.3, 0.7)),  # blob centre across the motion
        "level": float(rng.choice([55.0, 175.0])),  # darker or brighter than any background
        "waves": rng.uniform(0.15, 0.45, size=2).tolist() + rng.uniform(0, 2 * np.pi, size=2).tolist(),
        "tint": rng.uniform(-6, 6, size=3).tolist(),
    },
    "zoom": lambda rng: {"zoom_in": bool(rng.random() < 0.5), "amount": float(rng.uniform(0.3, 0.6))},
    "shake": lambda rng: {"seed": int(rng.integers(2**31))},
    "drift": lambda rng: {
        "gain": float(rng.choice([-1.0, 1.0]) * rng.uniform(0.08, 0.2)),  # darker or brighter
        "tint": rng.uniform(-0.04, 0.04, size=3).tolist(),
    },
}


def _zoom_factor(d: _Distractor, t: float) -> float:
    """Zoom of the camera at ``t``: 1 before, the final zoom (in > 1, out < 1) from the span's end."""
    final = 1.0 + d.params["amount"] * d.strength
    return final ** (d.progress(t) * (1 if d.params["zoom_in"] else -1))


def _shake_amplitude(d: _Distractor, height: int, width: int) -> int:
    return max(1, int(round(0.04 * min(height, width) * d.strength)))


def _shake_offset(d: _Distractor, t: float, height: int, width: int) -> tuple[int, int]:
    """A fresh random (dy, dx) per frame time during the burst, the same whenever it is asked."""
    if not d.active(t):
        return 0, 0
    a = _shake_amplitude(d, height, width)
    dy, dx = np.random.default_rng([d.params["seed"], int(round(t * 1000))]).integers(-a, a + 1, size=2)
    return int(dy), int(dx)


def _margin(distractors: list[_Distractor], height: int, width: int) -> int:
    """Texture pixels needed on every side of the view for camera zoom-out and shake."""
    need = 0
    for d in distractors:
        if d.type == "zoom" and not d.params["zoom_in"]:
            need = max(need, math.ceil(max(height, width) / 2 * d.params["amount"] * d.strength) + 2)
        elif d.type == "shake":
            need = max(need, _shake_amplitude(d, height, width))
    return need


def _pan_offset(d: _Distractor, t: float, width: int) -> int:
    # The camera slides over the (wider) texture during the pan and stays there after.
    progress = min(max((t - d.start) / (d.end - d.start), 0.0), 1.0)
    return int(round(progress * width * 0.5 * d.strength))


def _camera_view(
    texture: np.ndarray, t: float, height: int, width: int, distractors: list[_Distractor], margin: int
) -> np.ndarray:
    """The part of the background texture the camera sees at ``t`` (pan, shake, zoom)."""
    top = left = margin
    zoom = 1.0
    for d in distractors:
        if d.type == "pan":
            left += _pan_offset(d, t, width)
        elif d.type == "shake":
            dy, dx = _shake_offset(d, t, height, width)
            top, left = top + dy, left + dx
        elif d.type == "zoom":
            zoom = _zoom_factor(d, t)
    if zoom == 1.0:
        return texture[top : top + height, left : left + width].copy()
    # Bilinear resampling of a window 1/zoom the size of the view, around the view's centre.
    ys = top + height / 2 + (np.arange(height, dtype=np.float32) + 0.5 - height / 2) / zoom - 0.5
    xs = left + width / 2 + (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / zoom - 0.5
    ys = np.clip(ys, 0, texture.shape[0] - 1.001)
    xs = np.clip(xs, 0, texture.shape[1] - 1.001)
    y0, x0 = ys.astype(int), xs.astype(int)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    rows0, rows1 = texture[y0], texture[y0 + 1]
    top_row = rows0[:, x0] * (1 - wx) + rows0[:, x0 + 1] * wx
    bottom_row = rows1[:, x0] * (1 - wx) + rows1[:, x0 + 1] * wx
    return (top_row * (1 - wy) + bottom_row * wy).astype(np.float32)


def _background(
    t: float, height: int, width: int, distractors: list[_Distractor], textures: list[np.ndarray], margin: int
) -> np.ndarray:
    """The background at ``t``: each cut or dissolve, in time order, moves to the next texture."""
    scene = 0
    for d in sorted((d for d in distractors if d.type in ("cut", "dissolve")), key=lambda d: d.start):
        if t >= d.end:
            scene += 1
        elif t >= d.start:  # mid-dissolve: a cross-fade of the two scenes
            alpha = np.float32(d.progress(t))
            before = _camera_view(textures[scene], t, height, width, distractors, margin)
            after = _camera_view(textures[scene + 1], t, height, width, distractors, margin)
            return (1 - alpha) * before + alpha * after
    return _camera_view(textures[scene], t, height, width, distractors, margin)


def _paint_occluder(frame: np.ndarray, d: _Distractor, t: float) -> None:
    """A large grey textured bar or blob crossing the frame during the span (low saturation)."""
    p = d.params
    height, width = frame.shape[:2]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    along, across = (x, y) if p["horizontal"] else (y, x)
    length, breadth = (width, height) if p["horizontal"] else (height, width)
    thick = min(p["thickness"] * d.strength, 0.9) * length
    # From just outside one edge to just outside the other.
    progress = d.progress(t) if p["direction"] > 0 else 1 - d.progress(t)
    centre = -thick / 2 + progress * (length + thick)
    if p["bar"]:
        mask = np.abs(along - centre) <= thick / 2
    else:
        half_across = min(thick * p["elongation"], breadth) / 2
        mask = ((along - centre) / (thick / 2)) ** 2 + ((across - p["across"] * breadth) / half_across) ** 2 <= 1
    f1, f2, ph1, ph2 = p["waves"]
    grey = p["level"] + 30 * np.sin(f1 * (along - centre) + ph1) * np.cos(f2 * across + ph2)
    frame[mask] = grey[mask][:, None] + np.asarray(p["tint"], np.float32)


def _brightness(d: _Distractor, t: float) -> float | np.ndarray:
    """Gain of a photometric distractor at ``t`` (1 outside its span)."""
    if d.type == "flicker":
        # Alternating bright/dark frames: big global pixel change, nothing happens.
        amplitude = 0.25 * d.strength
        return 1 + amplitude if int(t * 8) % 2 == 0 else 1 - amplitude
    p = d.progress(t)
    if d.type == "fade":  # out over the first third, black over the middle, back over the last
        return 1 - min(d.strength, 1.0) * min(3 * min(p, 1 - p), 1.0)
    # drift: a smooth swell to a tinted gain and back
    return 1 + d.strength * math.sin(math.pi * p) * (d.params["gain"] + np.asarray(d.params["tint"], np.float32))


def render_frame(
    t: float,
    height: int,
    width: int,
    events: list[_EventPlan],
    distractors: list[_Distractor],
    textures: list[np.ndarray],
    noise: np.ndarray,
    margin: int = 0,
) -> np.ndarray:
    """Renders the frame at time ``t`` (uint8 HxWx3).

    Back to front: the background as the camera sees it (pan, zoom and shake move over the
    background only; shapes live in frame coordinates), the occluder, the event shapes, then
    the brightness changes (flicker, fade, drift) and the sensor noise over everything.
    """
    frame = _background(t, height, width, distractors, textures, margin)
    for d in distractors:
        if d.type == "occluder" and d.active(t):
            _paint_occluder(frame, d, t)
    for e in events:
        if e.visible(t):
            cx, cy = e.center(t, width, height)
            frame[_shape_mask(e.shape, height, width, cx, cy, e.radius_at(t))] = COLORS[e.color]
    for d in distractors:
        if d.type in ("flicker", "fade", "drift") and d.active(t):
            frame *= _brightness(d, t)
    frame += noise
    return np.clip(frame, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Writes RGB frames as an H.264 MP4 (to a temp file first, so a crash leaves no half file).

    The rate is an exact fraction (29.97 -> 2997/100, not 30), so frame ``i`` is shown at ``i / fps``.
    The bytes depend only on the frames and the libx264 build, not on the CPU or its load: the
    frames are converted to YUV in integers (:func:`data.pixels.rgb_to_yuv444`, not swscale), and
    x264 runs its CPU-independent code paths (``cpu-independent``: its default SIMD choices differ
    by CPU and, measured here, by run) on one thread (its output depends on the thread count).
    """

    def encode(tmp: Path) -> None:
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
            stream.pix_fmt = "yuv444p"  # no chroma subsampling: small coloured shapes keep their colour
            stream.options = {"crf": "12", "preset": "veryfast", "x264-params": "cpu-independent=1:threads=1"}
            for array in frames:
                yuv = av.VideoFrame.from_ndarray(rgb_to_yuv444(array), format="yuv444p")
                for packet in stream.encode(yuv):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    write_atomic(path, encode)  # the temp name keeps ".mp4": PyAV picks the container by it


def generate_video(cfg: SyntheticConfig, index: int, video_dir: Path) -> VideoSample:
    """Renders video ``index`` of the dataset and returns its annotated sample."""
    rng = np.random.default_rng([cfg.seed, index])
    fmt = _pick_format(cfg, index)
    height, width, fps = fmt.height, fmt.width, fmt.fps
    duration = float(np.round(rng.uniform(cfg.min_duration, cfg.max_duration), 2))
    if fmt.long_duration is not None:
        duration = fmt.long_duration
    num_frames = int(math.floor(duration * fps))
    duration = num_frames / fps
    events = _plan_events(rng, cfg, duration, fmt, _stream(cfg, index, "event_kinds"))
    strength = 1.0
    if cfg.distractor_strength != (1.0, 1.0):
        strength = float(_stream(cfg, index, "distractor_strength").uniform(*cfg.distractor_strength))
    distractors = _plan_distractors(rng, cfg, duration, index, strength, events)
    # The camera may pan by half a frame width times the strength, zoom out or shake: the
    # texture holds that much more than the view (default: twice as wide, as first written).
    margin = _margin(distractors, height, width)
    pan_room = max(width, math.ceil(0.5 * width * strength) + 1)
    tex_shape = (height, width + pan_room, margin)
    textures = [_texture(rng, *tex_shape), _texture(rng, *tex_shape)]
    if any(d.type == "dissolve" for d in distractors):  # a third scene, in case a cut comes first
        textures.append(_texture(_stream(cfg, index, "dissolve_texture"), *tex_shape))
    frames = []
    for i in range(num_frames):
        noise = rng.normal(0, cfg.noise_std * strength, size=(height, width, 3)).astype(np.float32)
        frames.append(render_frame(i / fps, height, width, events, distractors, textures, noise, margin))
    video_id = f"synth_{cfg.seed}_{index:05d}"
    path = video_dir / f"{video_id}.mp4"
    write_video(path, frames, fps)
    informative = [
        [int(math.ceil(e.start * fps)), min(int(math.floor(e.end * fps)), num_frames - 1)] for e in events
    ]
    objects = [{"color": e.color, "shape": e.shape, "motion": e.verb} for e in events]
    extra = {
        "informative_frames": informative,
        "key_times": [round((e.start + e.end) / 2, 3) for e in events],
        "distractors": [d.annotation() for d in distractors],
        "objects": objects,
    }
    # Keys the first version did not write appear only with the settings that need them.
    if cfg.event_kinds != ["move"]:
        for obj, e in zip(objects, events):
            obj["kind"] = e.kind
    if cfg.sizes is not None or cfg.aspect_ratios is not None:
        extra["frame_size"] = [width, height]
    return VideoSample(
        video_id=video_id,
        video=str(path),
        duration=duration,
        events=[Event(e.start, e.end, e.caption) for e in events],
        fps=fps,
        extra=extra,
    )


def generate_dataset(
    root: str | Path,
    cfg: SyntheticConfig,
    splits: dict[str, float] | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Writes ``cfg.num_videos`` videos and one annotation file per split under ``root``.

    Re-running with the same settings reuses the finished dataset (a ``done.json`` marker is
    written last, so an interrupted run is redone, never half-used); a dataset written by an
    older :func:`write_video` (``WRITER_VERSION``) is written again in place.

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
    # cfg.settings(): a marker written before the widening fields existed still matches.
    done = {"config": cfg.settings(), "splits": splits, "writer": WRITER_VERSION}
    if marker.is_file() and json.loads(marker.read_text()) == done:
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
    marker.write_text(json.dumps(done))
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
