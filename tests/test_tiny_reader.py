"""The tiny reader VLM: frame policies, the pixel-swap control, and a pre-training round trip."""

import json
import math
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from data.synthetic import SyntheticConfig
from models.tiny_reader import (
    DENSE_POLICIES,
    ReaderSettings,
    _dense_batch,
    event_centre_indices,
    policy_indices,
    pretrain_tiny_reader,
)
from models.vlm import LoraSettings, SmolVLM

STAMPS = torch.arange(20, dtype=torch.float64) / 2  # 2 fps, 10 s
EVENTS = [(1.0, 2.0, "a red circle moves left"), (6.2, 7.0, "a blue square moves up")]


def test_event_centres_and_policies():
    assert event_centre_indices(STAMPS, EVENTS).tolist() == [3, 13]  # 1.5 s and 6.6 s -> 6.5 s
    g = torch.Generator().manual_seed(0)
    assert policy_indices("per_event", STAMPS, EVENTS, 8, g).tolist() == [3, 13]
    mixed = policy_indices("events_then_uniform", STAMPS, EVENTS, 5, g)
    assert len(mixed) == 5 and {3, 13} <= set(mixed.tolist()) and mixed.tolist() == sorted(set(mixed.tolist()))
    rnd = policy_indices("random", STAMPS, EVENTS, 6, g)
    assert len(set(rnd.tolist())) == 6 and rnd.tolist() == sorted(rnd.tolist()) and rnd.max() < 20
    assert policy_indices("uniform", STAMPS, EVENTS, 4, g).tolist() == [2, 7, 12, 17]
    assert len(policy_indices("random", STAMPS[:3], EVENTS, 8, g)) == 3  # never more frames than exist
    with pytest.raises(ValueError, match="unknown frame policy"):
        policy_indices("oracle", STAMPS, EVENTS, 4, g)
    assert set(DENSE_POLICIES) == {"per_event", "events_then_uniform", "random", "uniform"}


def test_pixel_swap_changes_only_the_pixels(tiny_model_dir):
    vlm = SmolVLM(str(tiny_model_dir), lora=LoraSettings(enabled=False))
    g = torch.Generator().manual_seed(0)
    items = [
        {"frames": torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=g), "timestamps": STAMPS,
         "duration": 10.0, "events": EVENTS}
        for _ in range(2)
    ]  # fmt: skip
    idx = [torch.tensor([3, 13]), torch.tensor([0, 5])]
    own, other = _dense_batch(vlm, items, idx), _dense_batch(vlm, items[::-1], idx)
    swapped = _dense_batch(vlm, items, idx, pixels_from=items[::-1])
    assert torch.equal(swapped["input_ids"], own["input_ids"]) and torch.equal(swapped["labels"], own["labels"])
    assert torch.equal(swapped["pixel_values"], other["pixel_values"])
    assert not torch.equal(swapped["pixel_values"], own["pixel_values"])


def test_pretraining_writes_a_loadable_checkpoint_with_a_report(tmp_path):
    data = SyntheticConfig(num_videos=5, min_duration=8.0, max_duration=9.0, min_events=1, max_events=2,
                           max_event_len=2.0, size=64, seed=1000)  # fmt: skip
    settings = ReaderSettings(data=data, held_out=0.4, single_steps=3, single_batch=2, dense_steps=3,
                              dense_batch=2, frames=4)  # fmt: skip
    out = tmp_path / "reader"
    report = pretrain_tiny_reader(out, settings, data_root=tmp_path / "videos", progress=False)
    assert json.loads((out / "reader_report.json").read_text()) == report
    assert report["train_videos"] == 3 and report["held_out_videos"] == 2
    for stage in ("held_out_before", "held_out_after"):
        assert set(report[stage]) == {f"{p}_{s}" for p in ("events_then_uniform", "uniform")
                                      for s in ("own_pixels", "other_pixels")}  # fmt: skip
        assert all(math.isfinite(v) and v > 0 for v in report[stage].values())
    # Six optimizer steps moved the weights away from the random build they started from ...
    from models.tiny import build_tiny_smolvlm

    start = load_file(build_tiny_smolvlm(tmp_path / "start", settings.tiny) / "model.safetensors")
    trained = load_file(out / "model.safetensors")
    assert trained.keys() == start.keys() and any(not torch.equal(trained[k], start[k]) for k in start)
    # ... and the folder loads through from_pretrained, even with build_tiny on (never rebuilt over).
    vlm = SmolVLM(str(out), lora=LoraSettings(enabled=False), build_tiny=True)
    assert all(torch.equal(p, trained[k]) for k, p in vlm.model.state_dict().items() if k in trained)
    assert not (out / "tiny_settings.json").exists()
    # Rebuilding replaces the folder as a whole.
    report2 = pretrain_tiny_reader(out, replace(settings, dense_steps=1), data_root=tmp_path / "videos", progress=False)
    assert report2["settings"]["dense_steps"] == 1 and json.loads((out / "reader_report.json").read_text()) == report2
    assert not list(tmp_path.glob(".reader.*"))  # no staging folder left behind


@pytest.mark.slow  # the full recipe: ~4 min on 2 cores
def test_the_default_recipe_reads_its_frames(tmp_path):
    report = pretrain_tiny_reader(tmp_path / "reader", data_root=tmp_path / "videos", progress=False)
    before, after = report["held_out_before"], report["held_out_after"]
    # Before pre-training, another video's pixels cost nothing; after, they cost clearly more.
    assert abs(before["uniform_other_pixels"] - before["uniform_own_pixels"]) < 0.02
    assert after["uniform_other_pixels"] > after["uniform_own_pixels"] + 0.03
    assert after["events_then_uniform_other_pixels"] > after["events_then_uniform_own_pixels"] + 0.05
    # Frames at the events help a reader: lower loss than uniform frames.
    assert after["events_then_uniform_own_pixels"] < after["uniform_own_pixels"]
