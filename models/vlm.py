"""SmolVLM(2) wrapper: video prompt with true frame timestamps, masked labels, LoRA via peft.

The wrapper loads any checkpoint through ``from_pretrained`` (the real
``HuggingFaceTB/SmolVLM2-256M-Video-Instruct`` or the local tiny one from :mod:`models.tiny`)
and turns ``K`` selected frames plus their timestamps into SmolVLM2's video prompt::

    User: You are provided the following series of four frames from a 0:00:16 [H:MM:SS] video.
    Frame from 00:01:<image tokens>
    ...
    <instruction><end_of_utterance>
    Assistant: 00:01-00:03 a red circle moves left
    ...<end_of_utterance>

Only the assistant answer carries loss: every prompt and padding position is ``-100``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.video_utils import VideoMetadata

from models.encoders import FrameEncoder
from models.prompting import DEFAULT_INSTRUCTION
from models.tiny import resolve_checkpoint, same_checkpoint, torch_dtype

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
# Timestamps go to the processor as indices on a millisecond grid: it computes each frame's
# ``Frame from MM:SS:`` label as index / fps, so fps=1000 carries the exact decoded time.
_MS_GRID = 1000.0


@dataclass
class LoraSettings:
    """LoRA adapter settings (peft).

    Attributes:
        enabled: Train a LoRA adapter; ``False`` leaves the VLM frozen (selector-only training).
        r: Adapter rank.
        alpha: LoRA scaling numerator (``lora_alpha``).
        dropout: Dropout on the adapter input.
        target_modules: Linear layer names to adapt inside the chosen towers.
        include_vision: Also adapt the vision tower (frozen by default: it is what the cached
            selector features come from).
    """

    enabled: bool = True
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    include_vision: bool = False

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"vlm.lora.r must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"vlm.lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("vlm.lora.target_modules must name at least one module")

    def module_regex(self) -> str:
        """peft ``target_modules`` regex restricted to the text (and optionally vision) tower."""
        towers = "text_model|vision_model" if self.include_vision else "text_model"
        names = "|".join(self.target_modules)
        return rf".*\.(?:{towers})\..*\.(?:{names})"


class SmolVLM(nn.Module):
    """SmolVLM with an optional LoRA adapter, fed selected frames with their true timestamps.

    Args:
        model_name_or_path: Hub id or local folder of a SmolVLM/SmolVLM2 checkpoint.
        lora: LoRA settings.
        build_tiny: If the folder does not exist, build the tiny random SmolVLM there first (for
            smoke runs and tests; never downloads).
        dtype: Weight dtype: ``float32``, ``bfloat16`` or ``float16``.
        instruction: User text after the frames.
        max_new_tokens: Generation length for dense captions.
        gradient_checkpointing: Trade compute for memory on large models.
        trust_remote_code: Passed to ``from_pretrained``; off unless you trust the checkpoint.
        reuse_image_embeds: Let trainers hand this model each frame's precomputed image
            embeddings instead of pixels (see :meth:`embeds_blocker`); ``False`` forces the pixel
            path everywhere (for checks and before/after benchmarks).
    """

    def __init__(
        self,
        model_name_or_path: str = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
        lora: LoraSettings = LoraSettings(),
        build_tiny: bool = False,
        dtype: str = "float32",
        instruction: str = DEFAULT_INSTRUCTION,
        max_new_tokens: int = 128,
        gradient_checkpointing: bool = False,
        trust_remote_code: bool = False,
        reuse_image_embeds: bool = True,
    ) -> None:
        super().__init__()
        model_name_or_path = resolve_checkpoint(model_name_or_path, build_tiny)
        self.reuse_image_embeds = reuse_image_embeds
        self.model_name_or_path = model_name_or_path
        self.instruction = instruction
        self.max_new_tokens = max_new_tokens
        self.lora_settings = lora
        self.processor = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(
            model_name_or_path, dtype=torch_dtype(dtype, "vlm.dtype"), trust_remote_code=trust_remote_code
        )
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        for p in model.parameters():
            p.requires_grad_(False)
        if lora.enabled:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=lora.module_regex(),
            )
            model = get_peft_model(model, config)
        # from_pretrained returns eval mode; LoRA dropout must be live when training.
        model.train()
        self.model = model
        tok = self.processor.tokenizer
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.end_of_utterance = getattr(self.processor, "end_of_utterance_token", None) or tok.eos_token

    @property
    def context_length(self) -> int:
        """Positions the language model was built for (``text_config.max_position_embeddings``)."""
        return int(self.base_model().config.text_config.max_position_embeddings)

    @property
    def max_frames(self) -> int | None:
        """Most frames per video the checkpoint was trained with (``video_sampling.max_frames``)."""
        return getattr(self.processor.video_processor, "num_frames", None)

    def prompt_length(self, k: int) -> int:
        """Tokens in the prompt for ``k`` frames (default instruction, answer not included).

        Measured on prompts of one and two frames (the processor's own image-token expansion) and
        extrapolated linearly; the frame-count word and the timestamps can add a few tokens more.
        """
        if not hasattr(self, "_frame_cost"):
            stamps = [torch.arange(n, dtype=torch.float64) for n in (1, 2)]
            lengths = [len(p) for p in self.prompt_ids(stamps, [1.0, 2.0])]
            self._frame_cost = (lengths[0] - (lengths[1] - lengths[0]), lengths[1] - lengths[0])
        fixed, per_frame = self._frame_cost
        return fixed + k * per_frame

    def check_frame_budget(self, k: int) -> None:
        """Raises if ``k`` frames cannot fit the model's context; warns above ``max_frames``.

        Frames go to the processor pre-selected (``do_sample_frames=False``), so nothing else
        enforces the checkpoint's limits.
        """
        need, limit = self.prompt_length(k), self.context_length
        if need > limit:
            per_frame = self._frame_cost[1]
            most = (limit - self._frame_cost[0]) // per_frame
            raise ValueError(
                f"num_frames K={k} needs about {need} prompt tokens ({per_frame} per frame) but "
                f"{self.model_name_or_path} holds {limit} positions (text_config.max_position_embeddings): "
                f"use K <= {most} (fewer to leave room for the caption)"
            )
        if self.max_frames is not None and k > self.max_frames:
            log.warning(
                "num_frames K=%d is above the %d frames per video %s was trained with (video_sampling.max_frames)",
                k, self.max_frames, self.model_name_or_path,
            )  # fmt: skip

    def _check_length(self, tokens: int, frames: int, what: str) -> None:
        if tokens > self.context_length:
            raise ValueError(
                f"{what} of {tokens} tokens ({frames} frames) exceeds the {self.context_length} positions of "
                f"{self.model_name_or_path} (text_config.max_position_embeddings): use fewer frames or a shorter caption"
            )

    def frame_encoder(self, pooling: str = "mean") -> FrameEncoder:
        """A :class:`~models.encoders.FrameEncoder` over this model's own vision tower and connector.

        The modules are shared, not copied: its ``image_embeds`` are what this model computes
        from pixels. Do not register it as a submodule (its weights would be saved twice).
        """
        base = self.base_model().model
        return FrameEncoder.from_modules(
            self.model_name_or_path, base.vision_model, base.connector, self.processor.video_processor,
            base.config.vision_config.patch_size, pooling=pooling,
        )  # fmt: skip

    def embeds_blocker(self, encoder: object | None = None) -> str | None:
        """Why precomputed image embeddings (``encoder``'s, or any) cannot stand in for pixels here.

        ``None`` means they can: the vision tower and connector are frozen (LoRA adapts the text
        model only) and the processor handles each frame on its own (videos are never tiled), so
        a frame's embedding never changes during a run.
        """
        if not self.reuse_image_embeds:
            return "reuse_image_embeds: false"
        if self.lora_settings.enabled and self.lora_settings.include_vision:
            return "LoRA adapts the vision tower (lora.include_vision: true), so its embeddings change as it trains"
        if getattr(self.processor, "video_processor", None) is None:
            return "the processor has no video processor (frames would be processed as tiled images)"
        if encoder is None:
            return None
        if not getattr(encoder, "gives_image_embeds", False):
            return f"the frame encoder {encoder.model_name_or_path} is not a SmolVLM checkpoint"
        if not same_checkpoint(encoder.model_name_or_path, self.model_name_or_path):
            return f"the frame encoder reads {encoder.model_name_or_path}, the VLM {self.model_name_or_path}"
        return None

    @property
    def is_peft(self) -> bool:
        return self.lora_settings.enabled

    def base_model(self) -> nn.Module:
        """The underlying transformers model (LoRA layers included, not merged)."""
        return self.model.get_base_model() if self.is_peft else self.model

    def prompt_text(self, query: str | None = None) -> str:
        """Chat-formatted user turn with a ``<video>`` placeholder, ending in ``Assistant:``."""
        text = query or self.instruction
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def prompt_ids(
        self,
        timestamps: list[torch.Tensor],
        durations: list[float],
        queries: list[str | None] | None = None,
    ) -> list[torch.Tensor]:
        """Unpadded prompt token ids per video; no pixel is touched.

        The chat turn's ``<video>`` placeholder is expanded by the processor's own
        ``replace_video_token`` (intro with the frame count and duration, then per frame
        ``Frame from MM:SS:`` and its image tokens) and tokenized as the processor tokenizes, so
        the ids equal those of ``processor(text=..., videos=...)`` (tested).

        Args:
            timestamps: Per video, the shown frames' times in seconds ``(K,)``.
            durations: Per video, its length in seconds.
            queries: Per video, an optional instruction replacing the default.
        """
        if len(timestamps) != len(durations):
            raise ValueError("timestamps and durations must have one entry per video")
        queries = queries or [None] * len(timestamps)
        texts = []
        for t, d, q in zip(timestamps, durations, queries):
            # Timestamps go in as indices on a millisecond grid (see _MS_GRID).
            meta = VideoMetadata(
                total_num_frames=len(t), fps=_MS_GRID, duration=float(d),
                frames_indices=[int(round(float(x) * _MS_GRID)) for x in t],
            )  # fmt: skip
            # replace_video_token reads the frame count from the pixel tensor's shape: an empty one will do.
            inputs = {"pixel_values": torch.empty(1, len(t), 0), "video_metadata": [meta]}
            expansion = self.processor.replace_video_token(inputs, video_idx=0)
            texts.append(self.prompt_text(q).replace(self.processor.video_token, expansion, 1))
        return [torch.tensor(ids) for ids in self.processor.tokenizer(texts)["input_ids"]]

    def pixels(self, frames: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``pixel_values`` and ``pixel_attention_mask`` of each video's ``uint8 (K, 3, H, W)`` frames."""
        out = self.processor.video_processor(videos=list(frames), do_sample_frames=False, return_tensors="pt")
        return {k: out[k] for k in ("pixel_values", "pixel_attention_mask") if k in out}

    def _visual_inputs(
        self,
        frames: list[torch.Tensor] | None,
        timestamps: list[torch.Tensor],
        image_embeds: list[torch.Tensor] | None,
    ) -> dict[str, torch.Tensor]:
        """Pixels of ``frames``, or the precomputed ``image_embeds`` concatenated in prompt order."""
        if (frames is None) == (image_embeds is None):
            raise ValueError("give each video's frames or its precomputed image_embeds (exactly one of them)")
        given = frames if frames is not None else image_embeds
        if len(given) != len(timestamps):
            raise ValueError("frames (or image_embeds) and timestamps must have one entry per video")
        for f, t in zip(given, timestamps):
            if f.shape[0] != len(t) or (frames is not None and f.ndim != 4):
                raise ValueError(f"expected {len(t)} frames (one per timestamp) per video, got shape {tuple(f.shape)}")
        if frames is not None:
            return self.pixels(frames)
        # The model scatters these rows into the image-token positions in order: video by video,
        # frame by frame, exactly the order of the prompts.
        return {"image_embeds": torch.cat(list(image_embeds))}

    def build_batch(
        self,
        frames: list[torch.Tensor] | None,
        timestamps: list[torch.Tensor],
        durations: list[float],
        targets: list[str],
        queries: list[str | None] | None = None,
        image_embeds: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Tokenizes prompts + answers; labels are ``-100`` everywhere but the answer.

        The answer is tokenized on its own and appended to the prompt ids, so training sees
        exactly the prompt that generation will start from.

        Args:
            frames: Per video, ``uint8`` frames ``(K, 3, H, W)`` (the pixel path), or ``None``
                when ``image_embeds`` are given.
            timestamps: Per video, the frames' times in seconds ``(K,)``.
            durations: Per video, its length in seconds.
            targets: Per video, the dense caption text.
            queries: Per video, an optional instruction replacing the default.
            image_embeds: Per video, the frames' precomputed image embeddings ``(K, S, hidden)``
                (:meth:`models.encoders.FrameEncoder.encode`): the vision tower does not run again.
        """
        visual = self._visual_inputs(frames, timestamps, image_embeds)
        prompts = self.prompt_ids(timestamps, durations, queries)
        tok = self.processor.tokenizer
        answers = [
            torch.tensor(tok(" " + t + self.end_of_utterance, add_special_tokens=False)["input_ids"]) for t in targets
        ]
        length = max(len(p) + len(a) for p, a in zip(prompts, answers))
        input_ids = torch.full((len(prompts), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        attention = torch.zeros_like(input_ids)
        for i, (p, a) in enumerate(zip(prompts, answers)):
            n = len(p) + len(a)
            input_ids[i, :n] = torch.cat([p, a])
            labels[i, len(p) : n] = a
            attention[i, :n] = 1
        self._check_length(length, max(len(t) for t in timestamps), "a prompt + caption")
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels, **visual}

    def _model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, object]:
        """The batch on the model's device and dtype, precomputed image embeddings as encoder outputs."""
        param = next(self.model.parameters())
        batch = {
            k: v.to(param.device, dtype=param.dtype if v.is_floating_point() else v.dtype) for k, v in batch.items()
        }
        embeds = batch.pop("image_embeds", None)
        if embeds is not None:
            # transformers' precomputed-encoder path: SmolVLMModel.forward merges these rows into
            # the image-token positions instead of running the vision tower on pixel_values.
            batch["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=embeds)}
        return batch

    @torch.no_grad()
    def sample_losses(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean answer-token negative log-likelihood per video, shape ``(B,)``: a score, not a loss.

        Rewards, ranking targets and evaluation compare these numbers across subsets, so they
        must not carry dropout noise: the model runs in eval mode (LoRA dropout off) without
        gradients, and its previous train/eval mode is restored afterwards.
        """
        batch = self._model_inputs(batch)
        labels = batch.pop("labels")
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            logits = self.model(**batch).logits[:, :-1].float()
        finally:
            for m, mode in modes:  # per module: a submodule may have been in eval on purpose
                m.training = mode
        targets = labels[:, 1:]
        nll = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
        ).view_as(targets)
        mask = targets != IGNORE_INDEX
        return (nll * mask).sum(1) / mask.sum(1).clamp(min=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token-mean caption loss over the batch (the training objective)."""
        return self.model(**self._model_inputs(batch)).loss

    @torch.no_grad()
    def generate(
        self,
        frames: list[torch.Tensor] | None,
        timestamps: list[torch.Tensor],
        durations: list[float],
        queries: list[str | None] | None = None,
        max_new_tokens: int | None = None,
        image_embeds: list[torch.Tensor] | None = None,
    ) -> list[str]:
        """Greedy dense captions for each video's selected frames (or their precomputed ``image_embeds``)."""
        visual = self._visual_inputs(frames, timestamps, image_embeds)
        prompts = self.prompt_ids(timestamps, durations, queries)
        length = max(len(p) for p in prompts)
        max_new_tokens = max_new_tokens or self.max_new_tokens
        self._check_length(length + max_new_tokens, max(len(t) for t in timestamps), "a prompt + max_new_tokens")
        # Left padding: every prompt ends where generation starts.
        input_ids = torch.full((len(prompts), length), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for i, p in enumerate(prompts):
            input_ids[i, length - len(p) :] = p
            attention[i, length - len(p) :] = 1
        batch = self._model_inputs({"input_ids": input_ids, "attention_mask": attention, **visual})
        tok = self.processor.tokenizer
        out = self.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.pad_token_id,
            eos_token_id=tok.convert_tokens_to_ids(self.end_of_utterance),
        )
        return [t.strip() for t in tok.batch_decode(out[:, length:], skip_special_tokens=True)]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the parameters that train (the LoRA adapter), keyed as in ``state_dict()``."""
        return {k: v for k, v in self.named_parameters() if v.requires_grad}
