"""A costed plan for ActivityNet-scale training: ``python -m trainer scale_plan [--measure]``.

Prints, as Markdown with the arithmetic shown, what one epoch of each recipe family costs for
each SmolVLM2 size on a dataset of ``--videos`` videos of ``--seconds`` seconds (default:
ActivityNet Captions train, 10,009 videos of about 2 minutes):

* candidate frames (``fps`` x duration, capped at ``max_frames``);
* disk for the frame, feature and image-embedding caches (bytes per frame from the published
  shapes in :mod:`models.standin`);
* compute: FLOPs per frame through the vision tower and per sequence through the language model,
  counted from the same shapes, turned into hours with a rate. ``--measure`` measures the rates on
  this machine: it times the SmolVLM2-256M-shaped stand-in's vision tower on 512-px frames and its
  language model on one prompt of the recipes' length (rates in TFLOP/s achieved), and PyAV
  decoding of a generated 1280x720, 30 fps H.264 clip at the recipes' 1 fps / 384 px. GPU hours
  use ``--gpu_tflops`` (achieved, not peak), which stays an assumption until
  ``python -m trainer realshape`` has run on a GPU;
* how many GPUs make an epoch fit in a day, and what saturates first.

Nothing is downloaded; ``--measure`` builds the 256M stand-in (1 GB) in a temporary folder unless
``--standin DIR`` names one.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from jsonargparse import Namespace


from models.standin import ARCHITECTURES, PublishedShape
from trainer.cli_helpers import command_parser, parse_command

# Tokens a frame costs in the prompt besides its image tokens ("Frame from 00:07:" and markers),
# and the rest of a prompt (system text, query, the caption being scored): measured on the
# processor's prompts, ~74 tokens per 256M frame and ~650 tokens for K=8 with a caption.
TEXT_TOKENS_PER_FRAME = 10
PROMPT_AND_CAPTION_TOKENS = 100
# Language-model passes per video and step, in forward equivalents (a backward ~ 2 forwards).
FAMILY_PASSES = {
    "uniform_lora": (3, "caption loss forward + backward"),
    "rl_likelihood": (8 + 3, "8 rollouts scored + caption loss forward + backward"),
    "ranking": (8, "8 candidates scored by the judge"),
    "teacher_joint": (8 + 3, "8 rollouts scored + caption loss (after lora_start)"),
}


#: Families whose training step reads pixels, so every epoch decodes every video (data/README.md,
#: "Decode-free epochs"). None of the recipes' families: the teacher's scores are cached like the
#: features, so every family decodes once, when ``python -m trainer cache`` fills the caches.
DECODES_EVERY_EPOCH: dict[str, str] = {}


@dataclass
class Rates:
    """Achieved compute rates (TFLOP/s) and decoding speed."""

    vision_tflops: float
    text_tflops: float
    decode_seconds_per_video_second: float
    where: str


def vision_flops_per_frame(shape: PublishedShape) -> float:
    """Multiply-adds x 2 of one frame through the vision tower and the connector."""
    v, h = shape.vision, shape.vision["hidden_size"]
    tokens = (v["image_size"] // v["patch_size"]) ** 2
    per_layer = tokens * 2 * (4 * h * h + 2 * h * v["intermediate_size"]) + 2 * 2 * tokens * tokens * h
    patch_embed = tokens * 2 * (3 * v["patch_size"] ** 2) * h
    connector = shape.image_seq_len * 2 * (h * shape.scale_factor**2) * shape.text["hidden_size"]
    return v["num_hidden_layers"] * per_layer + patch_embed + connector


def text_flops_per_token(shape: PublishedShape, context: int) -> float:
    """Forward FLOPs of one token through the language model (GQA projections, SwiGLU MLP, LM head)."""
    t = shape.text
    h, head_dim = t["hidden_size"], t["head_dim"]
    q, kv = t["num_attention_heads"] * head_dim, t["num_key_value_heads"] * head_dim
    projections = 2 * (h * q + 2 * h * kv + q * h)
    mlp = 2 * 3 * h * t["intermediate_size"]
    attention = 2 * 2 * context * q  # scores and weighted values against the whole context
    return t["num_hidden_layers"] * (projections + mlp + attention) + 2 * h * t["vocab_size"]


def sequence_tokens(shape: PublishedShape, k: int) -> int:
    return k * (shape.image_seq_len + TEXT_TOKENS_PER_FRAME) + PROMPT_AND_CAPTION_TOKENS


def measure_rates(standin: str | None, seconds: float = 20.0) -> Rates:
    """Times the 256M stand-in's towers and PyAV decoding on this machine (see the module docstring)."""
    from models.standin import build_standin

    shape = ARCHITECTURES["smolvlm2-256m"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        folder = standin or build_standin(Path(tmp) / "smolvlm2-256m", "smolvlm2-256m")
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype).to(device).eval()
        frames = torch.randn(8, 3, shape.frame_size, shape.frame_size, device=device, dtype=dtype)
        tokens = sequence_tokens(shape, 8)
        embeds = torch.randn(1, tokens, shape.text["hidden_size"], device=device, dtype=dtype)

        def timed(run, repeats: int = 3) -> float:
            run()  # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(repeats):
                run()
            if device == "cuda":
                torch.cuda.synchronize()
            return (time.perf_counter() - start) / repeats

        with torch.no_grad():
            vision = timed(lambda: model.model.get_image_features(frames[None]))
            text = timed(lambda: model.lm_head(model.model.text_model(inputs_embeds=embeds).last_hidden_state))
        decode = _decode_speed(Path(tmp) / "clip.mp4", seconds)
    return Rates(
        vision_tflops=8 * vision_flops_per_frame(shape) / vision / 1e12,
        text_tflops=tokens * text_flops_per_token(shape, tokens) / text / 1e12,
        decode_seconds_per_video_second=decode,
        where=f"{device} ({torch.cuda.get_device_name() if device == 'cuda' else f'{torch.get_num_threads()} threads'})",
    )


def _decode_speed(path: Path, seconds: float) -> float:
    """Seconds to decode one second of 1280x720 30 fps H.264 at 1 fps / 384 px, in one process."""
    import av
    import numpy as np

    from data.decode import decode_video

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        base = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
        for i in range(int(seconds * 30)):
            frame = np.roll(base, 8 * i, axis=1)  # camera-pan-like motion: every frame differs
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    start = time.perf_counter()
    decode_video(path, fps=1.0, size=384, max_frames=256)
    return (time.perf_counter() - start) / seconds


def _round(value: float) -> str:
    """Hours as the tables show them: whole above 10, two significant digits below."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def plan(args: Namespace, rates: Rates | None) -> str:
    """The Markdown plan."""
    frames_per_video = min(args.seconds * args.fps, args.max_frames)
    frames = args.videos * frames_per_video
    out = [
        f"Dataset: {args.videos:,} videos x {args.seconds:g} s at {args.fps:g} fps (cap {args.max_frames}) = "
        f"{frames_per_video:g} candidate frames per video, **{frames / 1e6:.2f} M frames** per epoch.",
        "",
        "| cache | bytes per frame | one epoch's frames |",
        "|---|---|---|",
    ]
    frame_bytes = args.frame_size * round(args.frame_size * 9 / 16) * 3
    out.append(f"| decoded frames, uint8 {args.frame_size}x{round(args.frame_size * 9 / 16)} (16:9) | "
               f"{frame_bytes / 1024:.0f} KiB | {frames * frame_bytes / 1e9:,.0f} GB |")  # fmt: skip
    for name, shape in ARCHITECTURES.items():
        feat = 2 * shape.vision["hidden_size"] * 4
        emb = shape.image_seq_len * shape.text["hidden_size"] * 2
        out.append(f"| {name}: selector features (float32, 2 x {shape.vision['hidden_size']}) | {feat / 1024:.0f} KiB | "
                   f"{frames * feat / 1e9:,.1f} GB |")  # fmt: skip
        out.append(f"| {name}: image embeddings (bf16, {shape.image_seq_len} x {shape.text['hidden_size']}) | "
                   f"{emb / 1024:.0f} KiB | {frames * emb / 1e9:,.0f} GB |")  # fmt: skip

    low, high = (t * 1e12 for t in sorted(args.gpu_tflops))
    out += ["", f"Compute per epoch, K={args.k}. Rates: "
            + (f"measured on {rates.where}: vision {rates.vision_tflops:.3f} TFLOP/s, language model "
               f"{rates.text_tflops:.3f} TFLOP/s" if rates else "not measured (run with --measure)")
            + f"; GPU: **{low / 1e12:g} to {high / 1e12:g} TFLOP/s achieved, assumed** (not measured).", "",
            "| size | vision GFLOP/frame | fill the embedding cache, GPU h | LM tokens/sequence | LM GFLOP/sequence | "
            "family | passes/video | CPU h/epoch (measured rate) | GPU h/epoch (assumed rates) |",
            "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip

    def hours(flop: float, rate: float) -> str:
        value = flop / rate / 3600
        return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"

    for name, shape in ARCHITECTURES.items():
        vflops = vision_flops_per_frame(shape)
        tokens = sequence_tokens(shape, args.k)
        sflops = tokens * text_flops_per_token(shape, tokens)
        fill = f"{hours(frames * vflops, high)} to {hours(frames * vflops, low)}"
        if rates:
            fill += f" (CPU: {hours(frames * vflops, rates.vision_tflops * 1e12)})"
        for family, (passes, _) in FAMILY_PASSES.items():
            epoch = args.videos * passes * sflops
            cpu = hours(epoch, rates.text_tflops * 1e12) if rates else "-"
            out.append(f"| {name} | {vflops / 1e9:.0f} | {fill} | {tokens} | {sflops / 1e9:.0f} | {family} | {passes} | "
                       f"{cpu} | {hours(epoch, high)} to {hours(epoch, low)} |")  # fmt: skip
    out += ["", "Passes per video and step (forward equivalents): "
            + "; ".join(f"{f}: {p} ({why})" for f, (p, why) in FAMILY_PASSES.items()) + "."]  # fmt: skip
    if not rates:
        return "\n".join(out)
    decode_h = args.videos * args.seconds * rates.decode_seconds_per_video_second / 3600
    gpus = args.cores_per_gpu
    out += ["", f"Decoding (PyAV, one process, measured): {rates.decode_seconds_per_video_second:.3f} s per second of "
            f"1280x720 30 fps H.264 at {args.fps:g} fps / {args.frame_size} px, so **{_round(decode_h)} core-hours per pass** "
            f"over the videos: {_round(decode_h / gpus)} h per pass with {gpus} cores per GPU. It is paid **once**, when "
            f"`python -m trainer cache` fills the caches (features, image embeddings, the teacher's scores): with warm "
            f"caches the uniform captioner's and the selector families' epochs open no video (decode-free epochs)"
            + ("".join(f"; except {f} ({why}), which still decodes every epoch" for f, why in DECODES_EVERY_EPOCH.items()))
            + ".", "",
            f"Filling the caches, once per size (decoding on {gpus} cores per GPU, the vision tower at the low assumed "
            "GPU rate; the slower of the two bounds a machine), and the machines that fill them in a day:", "",
            "| size | decode h (one GPU's cores) | vision h (one GPU) | fill h on one GPU (bound by) | GPUs to fill in a day |",
            "|---|---|---|---|---|"]  # fmt: skip
    for name, shape in ARCHITECTURES.items():
        fill = {"decode": decode_h / gpus, "vision": frames * vision_flops_per_frame(shape) / low / 3600}
        worst = max(fill, key=fill.get)
        out.append(f"| {name} | {fill['decode']:.2g} | {fill['vision']:.2g} | {fill[worst]:.2g} ({worst}) | "
                   f"{math.ceil(fill[worst] / 24)} |")  # fmt: skip
    out += ["", f"One epoch on one GPU on warm caches, with {gpus} decoding cores and {args.disk_gbs:g} GB/s of cache "
            "reads (the slowest of compute at the low assumed rate, decoding where a family still decodes, and "
            "reading the cached embeddings: of every candidate frame for the selector families, of the K shown "
            "frames for the captioner):", "",
            "| size | family | compute h | decode h | cache read h | epoch h (bound by) | GPUs for an epoch a day |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, shape in ARCHITECTURES.items():
        tokens = sequence_tokens(shape, args.k)
        sflops = tokens * text_flops_per_token(shape, tokens)
        row_bytes = shape.image_seq_len * shape.text["hidden_size"] * 2
        for family, (passes, _) in FAMILY_PASSES.items():
            read = args.videos * args.k if family == "uniform_lora" else frames
            bounds = {"compute": args.videos * passes * sflops / low / 3600,
                      "decode": decode_h / gpus if family in DECODES_EVERY_EPOCH else 0.0,
                      "cache reads": read * row_bytes / (args.disk_gbs * 1e9) / 3600}  # fmt: skip
            worst = max(bounds, key=bounds.get)
            out.append(f"| {name} | {family} | {bounds['compute']:.2g} | {bounds['decode']:.2g} | "
                       f"{bounds['cache reads']:.2g} | {bounds[worst]:.2g} ({worst}) | {math.ceil(bounds[worst] / 24)} |")  # fmt: skip
    return "\n".join(out)


def main(argv: list[str] | None = None) -> str:
    """Entry point; prints and returns the plan."""
    parser = command_parser("scale_plan", __doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=10_009, help="videos per epoch (ActivityNet Captions train)")
    parser.add_argument("--seconds", type=float, default=120.0, help="mean video length")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--max_frames", "--max-frames", type=int, default=256)
    parser.add_argument("--frame_size", "--frame-size", type=int, default=384, help="decode size (longest edge)")
    parser.add_argument("--k", type=int, default=8, help="frames shown to the VLM")
    parser.add_argument("--gpu_tflops", "--gpu-tflops", type=float, nargs=2, default=[50.0, 250.0],
                        help="low and high achieved GPU TFLOP/s (default: 5%% and 25%% of an H100's 989 bf16 dense "
                             "peak; an assumption until trainer.benchmarks.realshape has run on a GPU)")  # fmt: skip
    parser.add_argument("--cores_per_gpu", "--cores-per-gpu", type=int, default=16, help="CPU cores that decode for each GPU")
    parser.add_argument("--disk_gbs", "--disk-gbs", type=float, default=2.0, help="cache read bandwidth per GPU, GB/s (assumed)")
    parser.add_argument("--measure", action="store_true", help="measure compute and decode rates on this machine")
    parser.add_argument("--standin", default=None, help="a SmolVLM2-256M stand-in folder (default: build one)")
    args = parse_command(parser, argv)
    text = plan(args, measure_rates(args.standin) if args.measure else None)
    print(text)
    return text


if __name__ == "__main__":
    main()
