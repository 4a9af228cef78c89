"""A tiny random SmolVLM, built and saved locally so tests and smoke runs never download.

The folder it writes looks like a Hub checkpoint (``config.json``, ``model.safetensors``,
tokenizer and processor files), so it is loaded through the same ``from_pretrained`` code path
as ``HuggingFaceTB/SmolVLM2-256M-Video-Instruct``. The tokenizer is a byte-level BPE trained
here with ``tokenizers`` on the prompt and caption vocabulary, plus the special tokens the real
SmolVLM processor looks up (``<image>``, ``<fake_token_around_image>``, ``<global-img>``, ...).

Run ``python -m models.tiny --output DIR`` to build one by hand. A random-weight stand-in with
the published architecture of a SmolVLM2 checkpoint is built by ``python -m models.standin``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from num2words import num2words
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedTokenizerFast,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessor,
    SmolVLMProcessor,
    SmolVLMVideoProcessor,
)

from models.prompting import DEFAULT_INSTRUCTION

# SmolVLM's processor expands <video>/<image> into these; row/col tokens are used for split images.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    "<video>",
] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]

# The image-only chat template the real SmolVLM2 checkpoints save (``chat_template.json``, the
# Idefics3 template with ``<|im_start|>``). It has no ``video`` branch: for a message with a video,
# ``SmolVLMProcessor.apply_chat_template`` swaps in its built-in video template, and the tiny model
# must take that same path for tests to cover what real weights do.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


@dataclass
class TinySettings:
    """Sizes of the tiny SmolVLM (defaults: ~0.3M parameters, milliseconds per step on CPU).

    Attributes:
        image_size: Side of the square frames the vision tower sees.
        patch_size: Vision patch size; tokens per frame = (image_size / patch_size / scale_factor)^2.
        scale_factor: Pixel-shuffle factor of the connector.
        vision_hidden: Vision tower width.
        vision_layers: Vision tower depth.
        text_hidden: Language model width.
        text_layers: Language model depth.
        vocab_size: BPE vocabulary size to train.
        seed: Seed for the random weights.
    """

    image_size: int = 64
    patch_size: int = 16
    scale_factor: int = 2
    vision_hidden: int = 32
    vision_layers: int = 2
    text_hidden: int = 64
    text_layers: int = 2
    vocab_size: int = 1024
    seed: int = 0


def _corpus() -> list[str]:
    """Text the tokenizer is trained on: prompts, caption words, timestamps and numbers."""
    from data.synthetic import COLORS, MOTIONS, SHAPES

    lines = [
        "You are provided the following series of frames from a [H:MM:SS] video.",
        "You are a helpful language and vision assistant.",
        DEFAULT_INSTRUCTION,
        "User: Assistant: Frame from",
    ]
    lines += [num2words(n) for n in range(1, 130)]
    lines += [f"Frame from {m:02d}:{s:02d}: 0:{m:02d}:{s:02d}" for m in range(0, 4) for s in range(60)]
    lines += [
        f"{a:02d}:{b:02d}-{a:02d}:{b + 1:02d} a {c} {s} {mo}"
        for (a, b), c, s, mo in itertools.product([(0, 1), (0, 12), (1, 30)], COLORS, SHAPES, MOTIONS)
    ]
    return lines * 4


def build_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """Trains a byte-level BPE tokenizer (any text is encodable) with SmolVLM's special tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        model_max_length=8192,
    )


def build_tiny_smolvlm(output: str | Path, settings: TinySettings | None = None) -> Path:
    """Builds a random tiny SmolVLM with a real processor and saves it with ``save_pretrained``.

    Args:
        output: Folder to write (created; existing files are overwritten).
        settings: Model sizes.

    Returns:
        The output folder, loadable with ``AutoModelForImageTextToText.from_pretrained``.
    """
    s = settings or TinySettings()
    if s.image_size % (s.patch_size * s.scale_factor):
        raise ValueError("image_size must be a multiple of patch_size * scale_factor")
    output = Path(output)
    tokenizer = build_tokenizer(s.vocab_size)
    image_seq_len = (s.image_size // s.patch_size // s.scale_factor) ** 2
    longest = {"longest_edge": s.image_size}
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(do_image_splitting=False, size=longest, max_image_size=longest),
        video_processor=SmolVLMVideoProcessor(
            size=longest,
            max_image_size=longest,
            video_sampling={"max_frames": 64, "fps": 1, "video_size": longest},
        ),
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=CHAT_TEMPLATE,
    )
    config = SmolVLMConfig(
        vision_config=dict(
            hidden_size=s.vision_hidden,
            intermediate_size=2 * s.vision_hidden,
            num_hidden_layers=s.vision_layers,
            num_attention_heads=2,
            image_size=s.image_size,
            patch_size=s.patch_size,
        ),
        text_config=dict(
            model_type="llama",
            hidden_size=s.text_hidden,
            intermediate_size=2 * s.text_hidden,
            num_hidden_layers=s.text_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=4096,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        scale_factor=s.scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(s.seed)
    model = SmolVLMForConditionalGeneration(config)
    with torch.no_grad():
        # With the default init (std 0.02) a random head caps every logit near 1, so no adapter
        # could push the loss below ~5.6 nats; unit-scale rows give the head a usable range, as
        # a trained head has.
        model.lm_head.weight.normal_(0.0, s.text_hidden**-0.5)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    processor.save_pretrained(output)
    (output / "tiny_settings.json").write_text(json.dumps(asdict(s), indent=1))
    return output


def ensure_tiny_smolvlm(output: str | Path, settings: TinySettings | None = None) -> Path:
    """Builds the tiny model at ``output`` unless a build with the same settings is already there.

    A folder that holds some other checkpoint (a ``config.json`` but no ``tiny_settings.json``
    marker: a fine-tuned or exported model) is used as it is, never overwritten.
    """
    output = Path(output)
    s = settings or TinySettings()
    marker = output / "tiny_settings.json"
    if (output / "config.json").is_file() and not marker.is_file():
        return output
    if marker.is_file() and json.loads(marker.read_text()) == asdict(s) and (output / "config.json").is_file():
        return output
    return build_tiny_smolvlm(output, s)


def resolve_checkpoint(model_name_or_path: str, build_tiny: bool = False) -> str:
    """A Hub id or local folder ready for ``from_pretrained``.

    ``~`` is expanded (YAML configs cannot); with ``build_tiny`` the tiny SmolVLM is built at
    that folder first if missing (a checkpoint already there that the tiny builder did not write
    is loaded as it is); a local-looking path that does not exist is a clear error
    here rather than a confusing Hub lookup later.
    """
    if model_name_or_path.startswith("~"):
        model_name_or_path = str(Path(model_name_or_path).expanduser())
    if build_tiny:
        ensure_tiny_smolvlm(model_name_or_path)
    elif model_name_or_path.startswith((".", "/")) and not Path(model_name_or_path).exists():
        raise FileNotFoundError(
            f"model_name_or_path: no checkpoint folder at {model_name_or_path} (the project's tiny models are "
            f"built with `python -m models.tiny --output DIR` or `python -m models.tiny_reader --output DIR`)"
        )
    return model_name_or_path


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str, setting: str = "dtype") -> torch.dtype:
    """The torch dtype of a config's dtype name; ``setting`` names the config key in the error."""
    if name not in DTYPES:
        raise ValueError(f"{setting} must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def same_checkpoint(a: str, b: str) -> bool:
    """Whether two ``model_name_or_path`` values name the same checkpoint (local folders resolved)."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() or pb.exists():
        return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
    return a == b


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m models.tiny --output DIR [--seed N]``."""
    parser = argparse.ArgumentParser(description="Build a tiny random SmolVLM checkpoint folder.")
    parser.add_argument("--output", required=True)
    # The stand-ins had their place here once: their names now point to their own command.
    parser.add_argument("--shape", default="tiny", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.shape != "tiny":
        parser.error(f"--shape {args.shape}: the real-shape stand-ins are built by "
                     f"python -m models.standin --shape {args.shape} --output DIR")  # fmt: skip
    print(build_tiny_smolvlm(args.output, TinySettings(seed=args.seed)))


if __name__ == "__main__":
    main()
