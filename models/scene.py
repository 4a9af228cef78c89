"""Learned scene-boundary scoring: a BiLSTM over cheap per-frame thumbnails.

:class:`SceneBoundaryModel` predicts, for every decoded frame, how likely an event starts or
ends there; :class:`SceneBoundarySelector` uses those probabilities as frame scores. The model
is trained by :class:`trainer.scene.SceneBoundaryTrainer` (``configs/scene_boundary.yaml``) and
the selector loads that run's checkpoint, frozen, so the captioner can use it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

from models.decoders import Decoder
from models.selectors import FrameSelector


class SceneBoundaryModel(nn.Module):
    """Per-frame boundary logits from ``uint8`` frames.

    Features are computed inside the model, so checkpoints need no feature extractor: each frame
    becomes an area-downsampled ``thumb x thumb`` RGB thumbnail in [0, 1] plus its difference to
    the previous frame's thumbnail (zeros for frame 0). A linear projection feeds a BiLSTM that
    sees the whole video in both directions, and a linear head gives one logit per frame.

    Args:
        hidden: Projection size and LSTM hidden size per direction.
        layers: Stacked BiLSTM layers.
        thumb: Thumbnail edge in pixels.
    """

    def __init__(self, hidden: int = 64, layers: int = 1, thumb: int = 8) -> None:
        super().__init__()
        if min(hidden, layers, thumb) < 1:
            raise ValueError(f"hidden, layers and thumb must be >= 1, got {hidden}, {layers}, {thumb}")
        self.hidden = hidden
        self.layers = layers
        self.thumb = thumb
        self.project = nn.Sequential(nn.Linear(2 * 3 * thumb * thumb, hidden), nn.ReLU())
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 1)

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """``uint8 (T, 3, H, W)`` -> ``(T, 6 * thumb**2)``: thumbnail and change from the previous frame."""
        x = frames.to(self.head.weight.device).float() / 255.0
        x = nn.functional.interpolate(x, size=(self.thumb, self.thumb), mode="area").flatten(1)
        # Frame 0 has no predecessor: zero change rather than a made-up one.
        diff = torch.cat([torch.zeros_like(x[:1]), x[1:] - x[:-1]])
        return torch.cat([x, diff], dim=1)

    def forward(self, frames: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """Boundary logits.

        Args:
            frames: One video ``uint8 (T, 3, H, W)``, or a list of videos of any lengths.

        Returns:
            Logits ``(T,)`` for one video, or a list of ``(T_i,)`` for a list.
        """
        if isinstance(frames, torch.Tensor):
            out, _ = self.lstm(self.project(self.features(frames)).unsqueeze(0))
            return self.head(out[0]).squeeze(-1)
        # Packing keeps each video's backward pass from starting in another video's padding.
        packed = pack_sequence([self.project(self.features(f)) for f in frames], enforce_sorted=False)
        out, lengths = pad_packed_sequence(self.lstm(packed)[0], batch_first=True)
        logits = self.head(out).squeeze(-1)
        return [logits[i, :n] for i, n in enumerate(lengths.tolist())]


class SceneBoundarySelector(FrameSelector):
    """Frames most likely to sit on an event boundary, by a trained :class:`SceneBoundaryModel`.

    Args:
        model: The boundary model. Optional when ``checkpoint`` is given: the model is then built
            from the hyperparameters the checkpoint records.
        checkpoint: A ``SceneBoundaryTrainer`` Lightning checkpoint (e.g.
            ``checkpoints/scene_boundary/last.ckpt``). Its ``model.*`` weights are loaded and the
            model is frozen, so the captioner neither trains nor re-saves it.
        decoder: Scores-to-indices decoder (default: top-k).
    """

    def __init__(
        self, model: SceneBoundaryModel | None = None, checkpoint: str | None = None, decoder: Decoder | None = None
    ) -> None:
        super().__init__(decoder)
        self.checkpoint = checkpoint
        self.frozen = checkpoint is not None
        if checkpoint is not None:
            model = load_scene_boundary_model(checkpoint, model)
            model.requires_grad_(False)
            model.eval()
        elif model is None:
            raise ValueError("SceneBoundarySelector needs a model or a checkpoint of a trained one")
        self.model = model

    def train(self, mode: bool = True) -> "SceneBoundarySelector":
        # Lightning puts the whole LightningModule in train mode; a frozen model stays in eval.
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        # A frozen model needs no graph; no_grad also picks the same LSTM kernel whether or not
        # the caller is in grad mode, so scores are bit-identical across call sites.
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return torch.sigmoid(self.model(frames)).cpu()


def load_scene_boundary_model(checkpoint: str | Path, model: SceneBoundaryModel | None = None) -> SceneBoundaryModel:
    """The boundary model of a ``SceneBoundaryTrainer`` checkpoint, with its trained weights.

    Args:
        checkpoint: Path to the Lightning checkpoint.
        model: Model to load into; ``None`` builds one from the checkpoint's hyperparameters.

    Raises:
        FileNotFoundError: The checkpoint does not exist.
        RuntimeError: It holds no boundary model, or one whose weights do not fit ``model``.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"scene-boundary checkpoint not found: {path} (train one with "
            "`python -m trainer fit --config configs/scene_boundary.yaml`)"
        )
    ckpt = torch.load(path, weights_only=True, map_location="cpu")
    state = {k[len("model.") :]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("model.")}
    if not state:
        raise RuntimeError(f"{path} holds no `model.*` weights: it is not a SceneBoundaryTrainer checkpoint")
    if model is None:
        spec = ckpt.get("hyper_parameters", {}).get("model")
        if not (isinstance(spec, dict) and spec.get("class_path", "").endswith("SceneBoundaryModel")):
            raise RuntimeError(f"{path} does not record its SceneBoundaryModel settings; pass `model` explicitly")
        model = SceneBoundaryModel(**spec.get("init_args", {}))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    resized = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unknown or resized:
        raise RuntimeError(
            f"{path} does not match this SceneBoundaryModel(hidden={model.hidden}, layers={model.layers}, "
            f"thumb={model.thumb}): missing {missing[:3]}, unknown {unknown[:3]}, other shapes {resized[:3]}"
        )
    model.load_state_dict(state)
    return model
