"""``python -m trainer scale_plan``: FLOP counts agree with the published architectures' parameters."""

import argparse

import pytest
import torch
from transformers import SmolVLMForConditionalGeneration

from models.standin import ARCHITECTURES, standin_config
from trainer.benchmarks.scale_plan import Rates, plan, text_flops_per_token, vision_flops_per_frame


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_flops_are_two_per_parameter_and_token(name):
    shape = ARCHITECTURES[name]
    with torch.device("meta"):
        model = SmolVLMForConditionalGeneration(standin_config(shape))
    layers = model.model.text_model.layers
    matrices = sum(p.numel() for p in layers.parameters() if p.dim() == 2) + model.lm_head.weight.numel()
    # Without attention over a context, a token costs one multiply-add per weight.
    assert text_flops_per_token(shape, context=0) == 2 * matrices
    vision = model.model.vision_model.encoder.layers
    tokens = (shape.vision["image_size"] // shape.vision["patch_size"]) ** 2
    linear = tokens * 2 * sum(p.numel() for p in vision.parameters() if p.dim() == 2)
    attention = shape.vision["num_hidden_layers"] * 4 * tokens**2 * shape.vision["hidden_size"]
    connector = shape.image_seq_len * 2 * model.model.connector.modality_projection.proj.weight.numel()
    patches = tokens * 2 * model.model.vision_model.embeddings.patch_embedding.weight.numel()
    assert vision_flops_per_frame(shape) == linear + attention + connector + patches


def test_plan_counts_frames_and_cache_sizes():
    args = argparse.Namespace(videos=100, seconds=300.0, fps=1.0, max_frames=256, frame_size=384, k=8,
                              gpu_tflops=[50.0, 250.0], cores_per_gpu=16, disk_gbs=2.0)  # fmt: skip
    text = plan(args, Rates(vision_tflops=0.1, text_tflops=0.2, decode_seconds_per_video_second=0.05, where="test"))
    assert "256 candidate frames per video, **0.03 M frames**" in text  # 300 s at 1 fps, capped at 256
    # 256M image embeddings: 64 tokens x 576 x 2 bytes = 72 KiB per frame; 25,600 frames = 1.9 GB.
    assert "| smolvlm2-256m: image embeddings (bf16, 64 x 576) | 72 KiB | 2 GB |" in text
    assert "0.050 s per second" in text
    # Decoding 100 x 300 s at 0.05 s per second = 1,500 core-seconds, 0.026 h on 16 cores, paid once
    # in the cache fill, whose vision pass (25,600 frames x 215 GFLOP at 50 TFLOP/s, 110 s) bounds it.
    assert "**0.42 core-hours per pass**" in text
    assert "| smolvlm2-256m | 0.026 | 0.031 | 0.031 (vision) | 1 |" in text
    # Warm epochs of the uniform captioner decode nothing: compute (100 x 3 x 219 GFLOP at 50 TFLOP/s,
    # 1.3 s) bounds it, ahead of reading its 800 shown rows (800 x 72 KiB at 2 GB/s, 0.03 s).
    assert "| smolvlm2-256m | uniform_lora | 0.00037 | 0 | 8.2e-06 | 0.00037 (compute) | 1 |" in text
    # The teacher family too: its teacher's scores are cached with the features.
    assert "| smolvlm2-256m | teacher_joint | 0.0013 | 0 | 0.00026 | 0.0013 (compute) | 1 |" in text
