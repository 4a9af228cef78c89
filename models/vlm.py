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
from transformers.video_utils import VideoMetadata

from models.prompting import DEFAULT_INSTRUCTION
from models.tiny import resolve_checkpoint

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


def _dtype(name: str) -> torch.dtype:
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise ValueError(f"vlm.dtype must be one of {sorted(dtypes)}, got {name!r}")
    return dtypes[name]


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
    ) -> None:
        super().__init__()
        model_name_or_path = resolve_checkpoint(model_name_or_path, build_tiny)
        self.model_name_or_path = model_name_or_path
        self.instruction = instruction
        self.max_new_tokens = max_new_tokens
        self.lora_settings = lora
        self.processor = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(
            model_name_or_path, dtype=_dtype(dtype), trust_remote_code=trust_remote_code
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

        Measured with the processor on one and two frames (so the image-token expansion is the
        checkpoint's own) and extrapolated linearly; the frame-count word and the timestamps can
        add a few tokens more.
        """
        if not hasattr(self, "_frame_cost"):
            lengths = []
            for n in (1, 2):
                frames = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
                prompts, _ = self._encode_prompts([frames], [torch.arange(n, dtype=torch.float64)], [float(n)], None)
                lengths.append(len(prompts[0]))
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

    def _encode_prompts(
        self,
        frames: list[torch.Tensor],
        timestamps: list[torch.Tensor],
        durations: list[float],
        queries: list[str | None] | None,
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Runs the processor; returns unpadded prompt ids per sample and the pixel tensors."""
        if not (len(frames) == len(timestamps) == len(durations)):
            raise ValueError("frames, timestamps and durations must have one entry per video")
        queries = queries or [None] * len(frames)
        metadata = []
        for f, t, d in zip(frames, timestamps, durations):
            if f.ndim != 4 or f.shape[0] != len(t):
                raise ValueError(f"expected frames (K, 3, H, W) with K={len(t)} timestamps, got {tuple(f.shape)}")
            metadata.append(
                VideoMetadata(
                    total_num_frames=len(t),
                    fps=_MS_GRID,
                    duration=float(d),
                    frames_indices=[int(round(float(x) * _MS_GRID)) for x in t],
                )
            )
        out = self.processor(
            text=[self.prompt_text(q) for q in queries],
            videos=[f for f in frames],
            video_metadata=metadata,
            do_sample_frames=False,
            padding=True,
            return_tensors="pt",
        )
        prompts = [ids[mask.bool()] for ids, mask in zip(out["input_ids"], out["attention_mask"])]
        pixels = {k: out[k] for k in ("pixel_values", "pixel_attention_mask") if k in out}
        return prompts, pixels

    def build_batch(
        self,
        frames: list[torch.Tensor],
        timestamps: list[torch.Tensor],
        durations: list[float],
        targets: list[str],
        queries: list[str | None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Tokenizes prompts + answers; labels are ``-100`` everywhere but the answer.

        The answer is tokenized on its own and appended to the prompt ids, so training sees
        exactly the prompt that generation will start from.

        Args:
            frames: Per video, ``uint8`` frames ``(K, 3, H, W)``.
            timestamps: Per video, the frames' times in seconds ``(K,)``.
            durations: Per video, its length in seconds.
            targets: Per video, the dense caption text.
            queries: Per video, an optional instruction replacing the default.
        """
        prompts, pixels = self._encode_prompts(frames, timestamps, durations, queries)
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
        self._check_length(length, max(len(f) for f in frames), "a prompt + caption")
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels, **pixels}

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        param = next(self.model.parameters())
        return {
            k: v.to(param.device, dtype=param.dtype if v.is_floating_point() else v.dtype) for k, v in batch.items()
        }

    @torch.no_grad()
    def sample_losses(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean answer-token negative log-likelihood per video, shape ``(B,)``: a score, not a loss.

        Rewards, ranking targets and evaluation compare these numbers across subsets, so they
        must not carry dropout noise: the model runs in eval mode (LoRA dropout off) without
        gradients, and its previous train/eval mode is restored afterwards.
        """
        batch = self._to_device(batch)
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
        batch = self._to_device(batch)
        return self.model(**batch).loss

    @torch.no_grad()
    def generate(
        self,
        frames: list[torch.Tensor],
        timestamps: list[torch.Tensor],
        durations: list[float],
        queries: list[str | None] | None = None,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """Greedy dense captions for each video's selected frames."""
        prompts, pixels = self._encode_prompts(frames, timestamps, durations, queries)
        length = max(len(p) for p in prompts)
        max_new_tokens = max_new_tokens or self.max_new_tokens
        self._check_length(length + max_new_tokens, max(len(f) for f in frames), "a prompt + max_new_tokens")
        # Left padding: every prompt ends where generation starts.
        input_ids = torch.full((len(prompts), length), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for i, p in enumerate(prompts):
            input_ids[i, length - len(p) :] = p
            attention[i, length - len(p) :] = 1
        batch = self._to_device({"input_ids": input_ids, "attention_mask": attention, **pixels})
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
