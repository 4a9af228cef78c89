"""Real-shape stand-ins: SmolVLM2 checkpoints with the published architecture and random weights.

No SmolVLM2 checkpoint can be downloaded where this project is developed and tested, yet every
shape-dependent line (64 or 81 image tokens per frame, 512-px frames, a 49,280-token vocabulary,
K x 64+ token prompts, bf16, gradient checkpointing) and every speed or memory figure needs the
real architecture. Random weights with that architecture cost exactly what the real model costs,
so a stand-in gives real throughput and memory numbers and goes through the same
``from_pretrained`` path as ``HuggingFaceTB/SmolVLM2-*``. Its captions are noise, of course.

``python -m models.standin --shape smolvlm2-256m --output DIR`` writes one (``smolvlm2-500m``,
``smolvlm2-2.2b`` likewise); then point any config at it::

    python -m trainer fit --config configs/smolvlm2_256m.yaml --model.init_args.vlm.init_args.model_name_or_path DIR

What is published, and where each value comes from (read 2026-11-25 from the Hub pages and
copies of them; "[default]" marks a key the published file leaves out, so transformers' default
is what the real model loads with):

* ``config.json`` top level: ``SmolVLMForConditionalGeneration``, ``model_type: smolvlm``,
  ``image_token_id: 49190``, ``pad_token_id: 128002`` (an Idefics3 leftover outside the
  vocabulary; kept as published), untied embeddings, float32 weights. ``scale_factor`` is 4 for
  256M/500M and 3 for 2.2B (HuggingFaceTB/SmolVLM2-2.2B-Instruct/blame/main/config.json).
* ``text_config`` (Llama): 256M is SmolLM2-135M (576 wide, 1536 MLP, 30 layers, 9 heads, 3 KV
  heads); 500M is SmolLM2-360M (960, 2560, 32 layers, 15 heads, 5 KV heads; the layer count was
  added to the file by SmolVLM2-500M-Video-Instruct commit edf555f); 2.2B is SmolLM2-1.7B (2048,
  8192, 24 layers, head_dim 64, and no head counts in the file: [default] 32 heads, 32 KV heads).
  All: ``max_position_embeddings`` 8192, ``rms_norm_eps`` 1e-5, vocabulary 49,280,
  ``rope_theta`` 100000 (256M/500M) and 130000 (2.2B; from a third-party copy of the config).
* ``vision_config`` (SigLIP, ``smolvlm_vision``): 256M/500M use siglip-base-patch16-512 (768
  wide, 12 heads, 512 px, patch 16; [default] 3072 MLP and 12 layers); 2.2B uses
  siglip-so400m-patch14-384 (1152 wide, 4304 MLP, 27 layers, 16 heads, 384 px, patch 14).
* ``processor_config.json``: ``image_seq_len`` 64 (256M/500M) and 81 (2.2B) =
  (image_size / patch_size / scale_factor)^2.
* ``preprocessor_config.json`` (SmolVLM2-256M-Video-Instruct @ refs/pr/6, the same for 500M):
  ``size.longest_edge`` 2048, ``max_image_size.longest_edge`` 512, image splitting on, mean and
  std 0.5, LANCZOS, ``video_sampling`` {fps 1, max_frames 64, video_size 512} (2.2B: 1536, 384,
  video_size 384). Videos are never tiled: each frame is resized to ``max_image_size`` square.
  No ``video_preprocessor_config.json`` is published; the video processor is built from this file.
* ``chat_template.json``: the image-only template (:data:`models.tiny.CHAT_TEMPLATE`).
* Tokenizer: 49,152 SmolLM2 tokens + 128 added: ``<global-img>`` 49152, ``<row_r_col_c>``
  49153-49188, ``<fake_token_around_image>`` 49189, ``<image>`` 49190, 88 reserved tokens,
  ``<end_of_utterance>`` 49279; bos ``<|im_start|>`` (1), eos ``<end_of_utterance>``, pad
  ``<|im_end|>`` (2), unk ``<|endoftext|>`` (0). ``generation_config.json``: bos 0, eos 49279, pad 2.
* Parameter counts, from the shapes and equal to the published fp32 weight files' sizes
  (1.03 GB, 2.03 GB, 4.96 + 4.03 GB): 256,484,928; 507,482,304; 2,246,784,880.

The stand-in's tokenizer is the small BPE of :func:`models.tiny.build_tokenizer` (the project's
prompts and captions), padded to the real 49,280 ids with the special tokens at their real ids:
the embedding and output matrices, and so the cost, are the real ones.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMForConditionalGeneration

from models.tiny import CHAT_TEMPLATE, build_tokenizer, torch_dtype

VOCAB_SIZE = 49280
# Real ids of SmolVLM2's special tokens (the SmolLM2 base vocabulary ends at 49151).
SPECIAL_IDS = {
    "<|endoftext|>": 0,
    "<|im_start|>": 1,
    "<|im_end|>": 2,
    "<global-img>": 49152,
    **{f"<row_{r}_col_{c}>": 49153 + 6 * (r - 1) + (c - 1) for r in range(1, 7) for c in range(1, 7)},
    "<fake_token_around_image>": 49189,
    "<image>": 49190,
    **{f"<|reserved_special_token_{i}|>": 49191 + i for i in range(88)},
    "<end_of_utterance>": 49279,
}


@dataclass(frozen=True)
class PublishedShape:
    """The published architecture and processor settings of one SmolVLM2 checkpoint.

    Attributes:
        hub_id: The checkpoint this stands in for.
        text: ``text_config`` keys (Llama) as the real model loads them.
        vision: ``vision_config`` keys (SigLIP).
        scale_factor: Pixel-shuffle factor of the connector.
        image_longest_edge: Image processor ``size.longest_edge`` (before tiling).
        frame_size: ``max_image_size.longest_edge`` = ``video_sampling.video_size``: frames are
            resized to this square.
        parameters: Published parameter count.
    """

    hub_id: str
    text: dict
    vision: dict
    scale_factor: int
    image_longest_edge: int
    frame_size: int
    parameters: int

    @property
    def image_seq_len(self) -> int:
        """Image tokens per frame."""
        return (self.vision["image_size"] // self.vision["patch_size"] // self.scale_factor) ** 2


_TEXT_COMMON = {"vocab_size": VOCAB_SIZE, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "head_dim": 64,
                "hidden_act": "silu", "tie_word_embeddings": False, "pad_token_id": 2}  # fmt: skip
_SIGLIP_BASE_512 = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                    "image_size": 512, "patch_size": 16}  # fmt: skip

ARCHITECTURES: dict[str, PublishedShape] = {
    "smolvlm2-256m": PublishedShape(
        hub_id="HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
        text={**_TEXT_COMMON, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
              "num_attention_heads": 9, "num_key_value_heads": 3, "rope_theta": 100000.0},  # fmt: skip
        vision=_SIGLIP_BASE_512,
        scale_factor=4,
        image_longest_edge=2048,
        frame_size=512,
        parameters=256_484_928,
    ),
    "smolvlm2-500m": PublishedShape(
        hub_id="HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
        text={**_TEXT_COMMON, "hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32,
              "num_attention_heads": 15, "num_key_value_heads": 5, "rope_theta": 100000.0},  # fmt: skip
        vision=_SIGLIP_BASE_512,
        scale_factor=4,
        image_longest_edge=2048,
        frame_size=512,
        parameters=507_482_304,
    ),
    "smolvlm2-2.2b": PublishedShape(
        hub_id="HuggingFaceTB/SmolVLM2-2.2B-Instruct",
        text={**_TEXT_COMMON, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
              "num_attention_heads": 32, "num_key_value_heads": 32, "rope_theta": 130000.0},  # fmt: skip
        vision={"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
                "image_size": 384, "patch_size": 14},  # fmt: skip
        scale_factor=3,
        image_longest_edge=1536,
        frame_size=384,
        parameters=2_246_784_880,
    ),
}


def build_padded_tokenizer() -> PreTrainedTokenizerFast:
    """The small project BPE with SmolVLM2's special tokens at their real ids, 49,280 ids in all.

    Ids no token of the small BPE uses are filled with placeholder entries that no merge can
    produce, so they never appear in encoded text; they only make the id space real.
    """
    small = json.loads(build_tokenizer(1024).backend_tokenizer.to_str())["model"]
    normal = [t for t, _ in sorted(small["vocab"].items(), key=lambda kv: kv[1]) if t not in SPECIAL_IDS]
    free = [i for i in range(VOCAB_SIZE) if i not in set(SPECIAL_IDS.values())]
    vocab = dict(SPECIAL_IDS)
    vocab.update(zip(normal, free))
    vocab.update({f"<|unused_{i}|>": i for i in free[len(normal) :]})
    assert len(vocab) == VOCAB_SIZE and sorted(vocab.values()) == list(range(VOCAB_SIZE))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in small["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # Already in the vocabulary, so each keeps its id; being special, text never splits them.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_IDS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
        model_max_length=8192,
    )


def standin_config(shape: PublishedShape) -> SmolVLMConfig:
    """``config.json`` of the published checkpoint."""
    return SmolVLMConfig(
        vision_config={"model_type": "smolvlm_vision", **shape.vision},
        text_config={"model_type": "llama", **shape.text},
        scale_factor=shape.scale_factor,
        image_token_id=SPECIAL_IDS["<image>"],
        pad_token_id=128002,
        tie_word_embeddings=False,
        vocab_size=VOCAB_SIZE,
    )


def _processor_files(shape: PublishedShape) -> dict[str, dict]:
    """The processor files as the published checkpoints lay them out (no video processor file)."""
    half = [0.5, 0.5, 0.5]
    preprocessor = {
        "do_convert_rgb": True, "do_image_splitting": True, "do_normalize": True, "do_pad": True,
        "do_rescale": True, "do_resize": True, "image_mean": half, "image_std": half,
        "image_processor_type": "SmolVLMImageProcessor", "processor_class": "SmolVLMProcessor",
        "max_image_size": {"longest_edge": shape.frame_size}, "resample": 1,
        "rescale_factor": 1 / 255, "size": {"longest_edge": shape.image_longest_edge},
        "video_sampling": {"fps": 1, "max_frames": 64, "video_size": {"longest_edge": shape.frame_size}},
    }  # fmt: skip
    return {
        "preprocessor_config.json": preprocessor,
        "processor_config.json": {"image_seq_len": shape.image_seq_len, "processor_class": "SmolVLMProcessor"},
        "chat_template.json": {"chat_template": CHAT_TEMPLATE},
    }


def build_standin(output: str | Path, name: str, seed: int = 0, device: str = "cpu", dtype: str = "float32") -> Path:
    """Writes a random-weight checkpoint with the published architecture of ``name``.

    Args:
        output: Folder to write (created; files of an earlier build are overwritten).
        name: One of :data:`ARCHITECTURES`.
        seed: Seed of the random weights.
        device: Where to initialise the weights (``cuda`` builds the 2.2B in seconds).
        dtype: Dtype of the saved weights: ``float32`` as published, or ``bfloat16`` (half the
            disk and load time; the models load in the dtype a config asks for either way).

    Returns:
        The folder, loadable with ``AutoModelForImageTextToText`` / ``AutoProcessor.from_pretrained``.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown shape {name!r}: use one of {sorted(ARCHITECTURES)}")
    shape = ARCHITECTURES[name]
    output = Path(output).expanduser()
    start = time.perf_counter()
    torch.manual_seed(seed)
    with torch.device(device):
        model = SmolVLMForConditionalGeneration(standin_config(shape))
    model = model.to(torch_dtype(dtype))
    count = sum(p.numel() for p in model.parameters())
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = 0, SPECIAL_IDS["<end_of_utterance>"], 2
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    del model
    build_padded_tokenizer().save_pretrained(output)
    for file, content in _processor_files(shape).items():
        (output / file).write_text(json.dumps(content, indent=2) + "\n")
    (output / "standin.json").write_text(json.dumps({"shape": name, "hub_id": shape.hub_id, "seed": seed,
                                                     "dtype": dtype, "parameters": count}, indent=1))  # fmt: skip
    print(
        f"{name}: {count:,} parameters (published {shape.parameters:,}, {100 * (count / shape.parameters - 1):+.3f}%), "
        f"{shape.image_seq_len} image tokens per {shape.frame_size}-px frame; wrote {output} in "
        f"{time.perf_counter() - start:.0f} s"
    )
    return output


def main(argv: list[str] | None = None) -> Path:
    """CLI: ``python -m models.standin --shape smolvlm2-256m|smolvlm2-500m|smolvlm2-2.2b --output DIR [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m models.standin",
        description="Build a random-weight stand-in with the published architecture of a SmolVLM2 checkpoint.",
    )
    parser.add_argument("--shape", required=True, choices=sorted(ARCHITECTURES), help="the published architecture")
    parser.add_argument("--output", required=True, help="folder to write (created)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    return build_standin(args.output, args.shape, seed=args.seed)


if __name__ == "__main__":
    main()
