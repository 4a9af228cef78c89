"""Learned scene-boundary scoring: a BiLSTM over cheap per-frame thumbnails.

:class:`SceneBoundaryModel` predicts, for every decoded frame, how likely an event starts or
ends there; :class:`SceneBoundarySelector` uses those probabilities as frame scores. The model
is trained by :class:`trainer.scene.SceneBoundaryModule` (``configs/scene_boundary.yaml``); a
captioner uses that run's checkpoint, frozen, through :class:`trainer.loading.TrainedSelector`.
"""

from __future__ import annotations

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
    """Frames most likely to sit on an event boundary, by a :class:`SceneBoundaryModel`.

    A trained one comes from a ``SceneBoundaryModule`` checkpoint through
    :func:`trainer.loading.load_selector` (or, in configs, :class:`trainer.loading.TrainedSelector`).

    Args:
        model: The boundary model.
        decoder: Scores-to-indices decoder (default: top-k).
    """

    def __init__(self, model: SceneBoundaryModel, decoder: Decoder | None = None) -> None:
        super().__init__(decoder)
        self.model = model

    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        return torch.sigmoid(self.model(frames)).cpu()
