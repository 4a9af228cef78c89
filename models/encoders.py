"""Per-frame embeddings from a frozen vision encoder, and the embedding-similarity selector.

By default the encoder is SmolVLM's own vision tower (SigLIP), so the selector sees what the
VLM sees; any Hugging Face vision model (ViT, CLIP, SigLIP, DINOv2, ...) works by name.

For a SmolVLM checkpoint one pass over a frame gives both outputs a training step needs: the
pooled features the importance model reads and the connector output the VLM reads in place of
pixels (``image_embeds``, ``image_seq_len`` x hidden per frame; see :meth:`FrameEncoder.encode`).
The frames go through the checkpoint's own video processor, so those embeddings are exactly the
ones the VLM computes from pixels.
"""

from __future__ import annotations

import json

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from models.decoders import Decoder
from models.selectors import FrameSelector, _first_like_second
from models.tiny import resolve_checkpoint, torch_dtype

_VLM_TYPES = ("smolvlm", "idefics3")
POOLINGS = ("mean", "mean_max", "pooler")


class FrameEncoder(nn.Module):
    """Frozen vision encoder: ``uint8 (T, 3, H, W)`` frames -> ``(T, D)`` embeddings.

    Args:
        model_name_or_path: A SmolVLM/Idefics3 checkpoint (its vision tower and connector are
            used) or any Hugging Face vision model.
        pooling: ``mean`` over patch tokens; ``mean_max`` concatenates mean and max (``2 D``
            features: a small salient object, diluted in the mean, survives in the max);
            ``pooler`` uses the model's pooled output where it has one.
        batch_size: Frames per forward pass.
        build_tiny: Build the tiny random SmolVLM at ``model_name_or_path`` if missing (smoke runs).
        trust_remote_code: Passed to ``from_pretrained``.
        dtype: Weight dtype: ``float32``, ``bfloat16`` or ``float16`` (features are float32 either way).
    """

    def __init__(
        self,
        model_name_or_path: str = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
        pooling: str = "mean",
        batch_size: int = 32,
        build_tiny: bool = False,
        trust_remote_code: bool = False,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        model_name_or_path = resolve_checkpoint(model_name_or_path, build_tiny)
        if pooling not in POOLINGS:
            raise ValueError(f"FrameEncoder.pooling must be one of {POOLINGS}, got {pooling!r}")
        self.model_name_or_path = model_name_or_path
        self.pooling = pooling
        self.batch_size = batch_size
        config = AutoConfig.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
        kwargs = {"trust_remote_code": trust_remote_code, "dtype": torch_dtype(dtype, "FrameEncoder.dtype")}
        self.connector: nn.Module | None = None
        self.video_processor = None
        if config.model_type in _VLM_TYPES:
            vlm = AutoModelForImageTextToText.from_pretrained(model_name_or_path, **kwargs).model
            processor = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
            self._bind_vlm(vlm.vision_model, vlm.connector, processor.video_processor, config.vision_config.patch_size)
        else:
            model = AutoModel.from_pretrained(model_name_or_path, **kwargs)
            processor = AutoImageProcessor.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
            self.vision = getattr(model, "vision_model", model)  # CLIP/SigLIP hold a text tower too
            size = getattr(getattr(model.config, "vision_config", model.config), "image_size", 224)
            self.size = int(size if isinstance(size, int) else size[0])
            # Our own resize/normalise (not the processor's call): a per-frame Python loop in the
            # image processor would be the bottleneck.
            self.register_buffer("mean", torch.tensor(processor.image_mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(processor.image_std).view(1, 3, 1, 1), persistent=False)
            self.preprocessing = f"resize={self.size} bilinear; mean={processor.image_mean}; std={processor.image_std}"
        self.requires_grad_(False)
        self.vision.eval()

    def _bind_vlm(self, vision: nn.Module, connector: nn.Module, video_processor, patch_size: int) -> None:
        self.vision = vision
        self.connector = connector
        self.video_processor = video_processor
        self.patch_size = patch_size
        # What the cache must know about the pixels: the same frames resized or normalised
        # differently are other embeddings.
        settings = {k: video_processor.to_dict().get(k) for k in
                    ("size", "max_image_size", "resample", "image_mean", "image_std", "rescale_factor",
                     "do_resize", "do_rescale", "do_normalize", "do_pad", "video_processor_type")}  # fmt: skip
        self.preprocessing = json.dumps(settings, sort_keys=True)

    @classmethod
    def from_modules(
        cls,
        model_name_or_path: str,
        vision: nn.Module,
        connector: nn.Module,
        video_processor,
        patch_size: int,
        pooling: str = "mean",
        batch_size: int = 32,
    ) -> FrameEncoder:
        """An encoder over a loaded SmolVLM's own (frozen) vision tower and connector: no second copy.

        Used by :meth:`models.vlm.SmolVLM.frame_encoder`; the modules stay owned by the VLM.
        """
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.model_name_or_path = model_name_or_path
        self.pooling = pooling
        self.batch_size = batch_size
        self._bind_vlm(vision, connector, video_processor, patch_size)
        return self

    @property
    def gives_image_embeds(self) -> bool:
        """Whether :meth:`encode` also returns the VLM's per-frame image embeddings."""
        return self.connector is not None

    def train(self, mode: bool = True) -> FrameEncoder:
        super().train(mode)
        self.vision.eval()  # frozen: dropout stays off even while the owner trains
        return self

    def _pixels(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pixel values ``(N, 3, S, S)`` (and the VLM's pixel mask) on the tower's device and dtype."""
        param = next(self.vision.parameters())
        if self.video_processor is not None:
            # The checkpoint's own video processor: the same resize and normalisation as the VLM's
            # pixel path, frame by frame (video frames are never tiled).
            out = self.video_processor(videos=[frames], do_sample_frames=False, return_tensors="pt")
            mask = out["pixel_attention_mask"][0].to(param.device) if "pixel_attention_mask" in out else None
            return out["pixel_values"][0].to(param.device, param.dtype), mask
        x = frames.to(param.device).float() / 255.0
        x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        return ((x - self.mean.to(x.device)) / self.std.to(x.device)).to(param.dtype), None

    def _pool(self, hidden) -> torch.Tensor:
        tokens = hidden.last_hidden_state.float()
        if self.pooling == "pooler" and getattr(hidden, "pooler_output", None) is not None:
            return hidden.pooler_output.float()
        if self.pooling == "mean_max":
            return torch.cat([tokens.mean(1), tokens.amax(1)], dim=1)
        return tokens.mean(1)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, outputs: tuple[str, ...] = ("features", "image_embeds")) -> dict[str, torch.Tensor]:
        """One vision pass over ``uint8 (T, 3, H, W)`` frames, on the encoder's device.

        Args:
            frames: The frames.
            outputs: Which results to return: ``features`` (``(T, D)`` float32, the pooled tower
                output the selector reads) and, for a SmolVLM checkpoint, ``image_embeds``
                (``(T, image_seq_len, hidden)`` in the weights' dtype: the connector output the VLM
                merges into its prompt in place of each frame's image tokens).

        Returns:
            The requested outputs that this encoder gives.
        """
        want_embeds = "image_embeds" in outputs and self.connector is not None
        features, embeds = [], []
        for chunk in frames.split(self.batch_size):
            pixels, mask = self._pixels(chunk)
            if self.connector is None:
                hidden = self.vision(pixel_values=pixels)
            else:
                # As SmolVLMModel.get_image_features: patches that hold no real pixels are masked.
                if mask is None:
                    mask = torch.ones(pixels.shape[0], *pixels.shape[2:], dtype=torch.bool, device=pixels.device)
                grid = mask.unfold(1, self.patch_size, self.patch_size).unfold(2, self.patch_size, self.patch_size)
                hidden = self.vision(pixel_values=pixels, patch_attention_mask=grid.sum(dim=(-1, -2)) > 0)
            if "features" in outputs:
                features.append(self._pool(hidden))
            if want_embeds:
                embeds.append(self.connector(hidden.last_hidden_state))
        out = {}
        if features:
            out["features"] = torch.cat(features)
        if embeds:
            out["image_embeds"] = torch.cat(embeds)
        return out

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Features ``(T, D)`` in float32, on the CPU."""
        return self.encode(frames, outputs=("features",))["features"].cpu()


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

    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        e = self._unit(frames)
        d = 1.0 - (e[1:] * e[:-1]).sum(1)
        return _first_like_second(torch.cat([d[:1], d]))

    def pairwise(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        e = self._unit(frames)
        return (1.0 - e @ e.T).clamp(min=0.0).fill_diagonal_(0.0)
