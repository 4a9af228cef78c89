"""Per-frame embeddings from a frozen vision encoder, and the embedding-similarity selector.

By default the encoder is SmolVLM's own vision tower (SigLIP), so the selector sees what the
VLM sees; any Hugging Face vision model (ViT, CLIP, SigLIP, DINOv2, ...) works by name.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
)

from models.decoders import Decoder
from models.selectors import FrameSelector, _first_like_second
from models.tiny import resolve_checkpoint

_VLM_TYPES = ("smolvlm", "idefics3")
POOLINGS = ("mean", "mean_max", "pooler")


class FrameEncoder(nn.Module):
    """Frozen vision encoder: ``uint8 (T, 3, H, W)`` frames -> ``(T, D)`` embeddings.

    Args:
        model_name_or_path: A SmolVLM/Idefics3 checkpoint (its vision tower is used) or any
            Hugging Face vision model.
        pooling: ``mean`` over patch tokens; ``mean_max`` concatenates mean and max (``2 D``
            features: a small salient object, diluted in the mean, survives in the max);
            ``pooler`` uses the model's pooled output where it has one.
        batch_size: Frames per forward pass.
        build_tiny: Build the tiny random SmolVLM at ``model_name_or_path`` if missing (smoke runs).
        trust_remote_code: Passed to ``from_pretrained``.
    """

    def __init__(
        self,
        model_name_or_path: str = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
        pooling: str = "mean",
        batch_size: int = 32,
        build_tiny: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        model_name_or_path = resolve_checkpoint(model_name_or_path, build_tiny)
        if pooling not in POOLINGS:
            raise ValueError(f"FrameEncoder.pooling must be one of {POOLINGS}, got {pooling!r}")
        self.model_name_or_path = model_name_or_path
        self.pooling = pooling
        self.batch_size = batch_size
        config = AutoConfig.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
        processor = AutoImageProcessor.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
        if config.model_type in _VLM_TYPES:
            vlm = AutoModelForImageTextToText.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
            self.vision = vlm.model.vision_model
            size = config.vision_config.image_size
        else:
            model = AutoModel.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
            self.vision = getattr(model, "vision_model", model)  # CLIP/SigLIP hold a text tower too
            size = getattr(getattr(model.config, "vision_config", model.config), "image_size", 224)
        self.size = int(size if isinstance(size, int) else size[0])
        # Our own resize/normalise (not the processor's call): SmolVLM's image processor splits
        # images into tiles, and a per-frame Python loop would be the bottleneck.
        self.register_buffer("mean", torch.tensor(processor.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(processor.image_std).view(1, 3, 1, 1), persistent=False)
        self.vision.requires_grad_(False)
        self.vision.eval()

    def train(self, mode: bool = True) -> FrameEncoder:
        super().train(mode)
        self.vision.eval()  # frozen: dropout stays off even while the owner trains
        return self

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(T, D)`` in float32."""
        param = next(self.vision.parameters())
        out = []
        for chunk in frames.split(self.batch_size):
            x = chunk.to(param.device).float() / 255.0
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
            x = ((x - self.mean.to(x.device)) / self.std.to(x.device)).to(param.dtype)
            hidden = self.vision(pixel_values=x)
            tokens = hidden.last_hidden_state.float()
            if self.pooling == "pooler" and getattr(hidden, "pooler_output", None) is not None:
                out.append(hidden.pooler_output.float())
            elif self.pooling == "mean_max":
                out.append(torch.cat([tokens.mean(1), tokens.amax(1)], dim=1))
            else:
                out.append(tokens.mean(1))
        return torch.cat(out).cpu()


class EmbeddingSelector(FrameSelector):
    """Frames whose embedding moves most from the previous frame (1 - cosine similarity).

    Args:
        encoder: The frozen vision encoder.
        decoder: Scores-to-indices decoder.
    """

    def __init__(self, encoder: FrameEncoder, decoder: Decoder | None = None) -> None:
        super().__init__(decoder)
        self.encoder = encoder

    def _unit(self, frames: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.encoder(frames), dim=1)

    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        e = self._unit(frames)
        d = 1.0 - (e[1:] * e[:-1]).sum(1)
        return _first_like_second(torch.cat([d[:1], d]))

    def pairwise(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        e = self._unit(frames)
        return (1.0 - e @ e.T).clamp(min=0.0).fill_diagonal_(0.0)
