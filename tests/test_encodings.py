"""Encode once: one vision pass per candidate frame feeds the selector and every VLM forward."""

import logging
import shutil
from types import SimpleNamespace

import pytest
import torch
from helpers import fit_args, vlm_with_a_trained_adapter
from transformers.models.smolvlm import modeling_smolvlm

from data.encodings import FrameEncodings, FrameRows
from data.features import decode_id
from models.encoders import FrameEncoder
from models.importance import FrameImportanceModel
from models.tiny import TinySettings, build_tiny_smolvlm
from models.vlm import LoraSettings, SmolVLM
from trainer.__main__ import main
from trainer.selector_module import ObjectiveSettings, SelectorModule

DECODE = decode_id(2.0, 64, 128)


def _videos(seed: int = 0):
    """Two videos of different lengths and durations: prompts of different lengths, so padding."""
    g = torch.Generator().manual_seed(seed)
    frames = [torch.randint(0, 256, (k, 3, 48, 64), dtype=torch.uint8, generator=g) for k in (3, 3)]
    stamps = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 40.0, 61.0])]
    durations = [4.0, 70.0]
    targets = ["00:01-00:02 a red circle", "00:00-00:04 a blue square moves up\n01:00-01:01 a green star"]
    return frames, stamps, durations, targets


def assert_embeddings_stand_in_for_pixels(vlm: SmolVLM, encoder: FrameEncoder, atol: float = 1e-4) -> None:
    """Same prompt ids, per-sample NLL within ``atol`` and the same greedy tokens, pixels vs embeddings."""
    frames, stamps, durations, targets = _videos()
    vlm.eval()
    pixels = vlm.build_batch(frames, stamps, durations, targets)
    embeds = [encoder.encode(f)["image_embeds"] for f in frames]
    reused = vlm.build_batch(None, stamps, durations, targets, image_embeds=embeds)
    assert "pixel_values" not in reused and reused["image_embeds"].shape[0] == 6
    assert torch.equal(pixels["input_ids"], reused["input_ids"]) and torch.equal(pixels["labels"], reused["labels"])
    assert (pixels["attention_mask"].sum(1)[0] != pixels["attention_mask"].sum(1)[1]).item()  # padded batch
    nll_pixels, nll_reused = vlm.sample_losses(dict(pixels)), vlm.sample_losses(dict(reused))
    assert torch.allclose(nll_pixels, nll_reused, atol=atol, rtol=0), (nll_pixels, nll_reused)
    with torch.no_grad():
        assert vlm(dict(pixels)).item() == pytest.approx(vlm(dict(reused)).item(), abs=atol)
    tokens = vlm.generate(frames, stamps, durations, max_new_tokens=6)
    assert tokens == vlm.generate(None, stamps, durations, max_new_tokens=6, image_embeds=embeds)


def test_embeddings_stand_in_for_pixels_on_the_tiny_model(tiny_model_dir):
    vlm = vlm_with_a_trained_adapter(tiny_model_dir, std=0.2)  # the adapter is part of the forward
    # A separately loaded encoder of the same checkpoint, and the VLM's own tower, give the same rows.
    encoder = FrameEncoder(str(tiny_model_dir), pooling="mean_max")
    frames = _videos()[0][0]
    assert torch.equal(encoder.encode(frames)["image_embeds"], vlm.frame_encoder().encode(frames)["image_embeds"])
    assert_embeddings_stand_in_for_pixels(vlm, encoder)


def test_prompt_ids_are_the_processors_own(tiny_model_dir):
    vlm = SmolVLM(str(tiny_model_dir), lora=LoraSettings(enabled=False))
    frames, stamps, durations, _ = _videos()
    from transformers.video_utils import VideoMetadata

    meta = [VideoMetadata(total_num_frames=3, fps=1000.0, duration=d, frames_indices=[int(round(float(x) * 1000)) for x in t])
            for t, d in zip(stamps, durations)]  # fmt: skip
    out = vlm.processor(text=[vlm.prompt_text()] * 2, videos=frames, video_metadata=meta, do_sample_frames=False,
                        padding=True, return_tensors="pt")  # fmt: skip
    expected = [ids[mask.bool()] for ids, mask in zip(out["input_ids"], out["attention_mask"])]
    got = vlm.prompt_ids(stamps, durations)
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    assert torch.equal(vlm.pixels(frames)["pixel_values"], out["pixel_values"])


def test_frame_rows_compute_each_row_once():
    calls = []

    def compute(frames):
        calls.append(len(frames))
        return frames.float().mean((1, 2, 3))[:, None] * torch.ones(1, 2)

    frames = torch.arange(5).view(5, 1, 1, 1).expand(5, 3, 2, 2).to(torch.uint8)
    rows = FrameRows(frames=frames, compute=compute)
    assert rows.rows([3, 1])[:, 0].tolist() == [3.0, 1.0]
    assert rows.rows([1, 3, 4])[:, 0].tolist() == [1.0, 3.0, 4.0]
    assert calls == [2, 1]  # frame 4 only, the second time
    assert len(rows) == 5


def _batch(paths, frames, stamps):
    return {"video": paths, "frames": frames, "timestamps": stamps}


def test_one_pass_feeds_features_and_embeddings_and_the_cache_serves_the_next_run(tiny_model_dir, tmp_path):
    encoder = FrameEncoder(str(tiny_model_dir), pooling="mean_max")
    frames, stamps, _, _ = _videos()
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"v{i}.mp4")
        paths[-1].write_bytes(b"stand-in video file")
    stage = FrameEncodings(encoder, encoder, tmp_path / "cache", DECODE)
    batch = stage.attach(_batch(paths, frames, stamps))
    assert stage.passes == {"features": 0, "image_embeds": 0}  # nothing runs until a step asks
    direct = [encoder.encode(f) for f in frames]
    for i in range(2):
        assert torch.equal(batch["features"][i].all(), direct[i]["features"])
        assert torch.equal(batch["image_embeds"][i].rows([2, 0]), direct[i]["image_embeds"][[2, 0]])
    assert stage.passes == {"features": 6, "image_embeds": 6}  # one pass over 6 frames gave both
    warm = FrameEncodings(encoder, encoder, tmp_path / "cache", DECODE)
    again = warm.attach(_batch(paths, frames, stamps))
    assert torch.equal(again["image_embeds"][1].rows([0, 1, 2]), direct[1]["image_embeds"])
    assert torch.equal(again["features"][0].all(), direct[0]["features"])
    assert warm.passes == {"features": 0, "image_embeds": 0}
    # Without a cache, embeddings no pass gives for free are computed only for the frames shown.
    vlm_only = FrameEncodings(image_embeds=encoder)
    lazy = vlm_only.attach(_batch(paths, frames, stamps))
    lazy["image_embeds"][0].rows([1])
    assert vlm_only.passes == {"image_embeds": 1}


def test_new_weights_processor_settings_or_decode_settings_miss_the_cache(tmp_path):
    folder = build_tiny_smolvlm(tmp_path / "tiny")
    frames, stamps, _, _ = _videos()
    video = tmp_path / "v.mp4"
    video.write_bytes(b"stand-in video file")

    def passes(encoder, decode=DECODE):
        stage = FrameEncodings(encoder, encoder, tmp_path / "cache", decode)
        stage.attach(_batch([video], frames[:1], stamps[:1]))["features"][0].all()
        return stage.passes["features"]

    assert passes(FrameEncoder(str(folder))) == 3
    assert passes(FrameEncoder(str(folder))) == 0  # warm
    assert passes(FrameEncoder(str(folder)), decode_id(1.0, 64, 128)) == 3  # other decode settings
    resized = FrameEncoder(str(folder))
    resized.video_processor.max_image_size = {"longest_edge": 32}
    resized._bind_vlm(resized.vision, resized.connector, resized.video_processor, resized.patch_size)
    assert passes(resized) == 3  # other processor settings
    shutil.rmtree(folder)
    build_tiny_smolvlm(folder, TinySettings(seed=1))  # other weights in the same folder
    assert passes(FrameEncoder(str(folder))) == 3


def test_vision_lora_falls_back_to_pixels_and_says_why(tiny_model_dir, caplog):
    vlm = SmolVLM(str(tiny_model_dir), lora=LoraSettings(include_vision=True))
    module = SelectorModule(
        FrameImportanceModel(feature_dim=32, d_model=32, layers=1, heads=2), FrameEncoder(str(tiny_model_dir)),
        vlm=vlm, num_frames=2, objective=ObjectiveSettings(caption_weight=1.0, train_lora=True),
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="trainer.selector_module"):
        assert module.embeds_encoder() is None
    assert "include_vision: true" in caplog.text
    other = SmolVLM(str(tiny_model_dir), lora=LoraSettings())
    clip = SimpleNamespace(model_name_or_path="openai/clip-vit-base-patch32", gives_image_embeds=False)
    assert "not a SmolVLM checkpoint" in other.embeds_blocker(clip)
    assert other.embeds_blocker(FrameEncoder(str(tiny_model_dir))) is None


def test_a_warm_cache_means_the_vision_tower_never_runs(tmp_path, tiny_model_dir, synthetic, monkeypatch):
    args = fit_args("smoke_joint.yaml", tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "2",
                    "--trainer.check_val_every_n_epoch", "1", "--model.init_args.eval_budgets", "[2, 4]",
                    "--model.init_args.objective.likelihood_reward", "1.0")  # fmt: skip
    calls = []
    tower = modeling_smolvlm.SmolVLMVisionTransformer.forward
    monkeypatch.setattr(modeling_smolvlm.SmolVLMVisionTransformer, "forward",
                        lambda self, *a, **k: calls.append(1) or tower(self, *a, **k))  # fmt: skip
    cold = main(["fit", *args])
    assert calls and cold.datamodule.encodings.passes["features"] > 0
    calls.clear()
    shutil.rmtree(tmp_path / "ckpt")
    warm = main(["fit", *args])
    assert calls == [] and set(warm.datamodule.encodings.passes.values()) == {0}  # nothing computed again
    assert {"features", "image_embeds"} <= set(warm.datamodule.encodings.passes)
    # The same run as the cold one: same data, same features, so the same losses.
    assert warm.trainer.callback_metrics["train/loss"].item() == pytest.approx(
        cold.trainer.callback_metrics["train/loss"].item(), abs=1e-5
    )


def test_selector_picks_are_what_choose_picks_and_keyed_by_decoder_and_budget():
    """The captioner's cached picks: 1.0 at the K frames ``choose`` returns (a pairwise dynamic
    program here, which no per-frame score reproduces), keyed apart by decoder settings and K."""
    from data.encodings import SelectorScores
    from models.decoders import NoveltyDPDecoder
    from models.selectors import PixelDiffSelector

    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8, generator=gen)
    frames[4:8] = frames[4]  # a still stretch: the DP spreads its picks away from it
    stamps = torch.arange(12, dtype=torch.float64)
    selector = PixelDiffSelector(size=8, decoder=NoveltyDPDecoder(min_gap=2))
    picks = SelectorScores(selector, k=4, picks=True)
    column = picks.encode(frames, ("selector_picks",), stamps)["selector_picks"]
    assert column.shape == (12, 1) and set(column.flatten().tolist()) == {0.0, 1.0}
    chosen = selector.choose(frames, stamps, 4)[0]
    assert torch.equal(torch.nonzero(column.flatten()).flatten(), chosen)
    assert not torch.equal(chosen, selector.decoder.decode(selector.scores(frames, stamps, 4), 4))  # not top-k alone

    keys = {SelectorScores(selector, k=4, picks=True).model_name_or_path,
            SelectorScores(selector, k=5, picks=True).model_name_or_path,
            SelectorScores(PixelDiffSelector(size=8, decoder=NoveltyDPDecoder(min_gap=3)), k=4,
                           picks=True).model_name_or_path,
            SelectorScores(selector, k=4).model_name_or_path}  # fmt: skip
    assert len(keys) == 4 and picks.model_name_or_path in keys
    with pytest.raises(ValueError, match="needs the frame budget k"):
        SelectorScores(selector, picks=True)


def test_made_frames_embeddings_are_the_bin_averages_and_cached_by_row(tiny_model_dir, tmp_path):
    """Frame averaging's output: row ``select()[i]`` holds the embedding of bin ``i``'s average (what
    the VLM would compute from the pixels ``choose`` makes), stored at that frame's time, keyed by the
    selector and K apart from the plain image embeddings; a warm run reads it without a pass."""
    from data.encodings import MadeFrames
    from data.features import output_id
    from models.selectors import FrameAveragingSelector

    encoder = FrameEncoder(str(tiny_model_dir))
    selector = FrameAveragingSelector()
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (9, 3, 48, 64), dtype=torch.uint8, generator=g)
    stamps = torch.arange(9, dtype=torch.float64) * 0.5
    video = tmp_path / "v.mp4"
    video.write_bytes(b"stand-in video file")
    idx, made, times = selector.choose(frames, stamps, 3)
    assert torch.equal(selector.select(None, stamps, 3), idx) and torch.equal(selector.shown_times(stamps, 3), times)
    expected = encoder.encode(made, ("image_embeds",))["image_embeds"]

    stage = FrameEncodings(cache_root=tmp_path / "cache", decode_id=DECODE, embed_all_frames=False,
                           scores={"made_frames": MadeFrames(selector, 3, encoder)})  # fmt: skip
    rows = stage.attach(_batch([video], [frames], [stamps]))["made_frames"][0]
    assert torch.allclose(rows.rows(idx), expected, atol=1e-5) and stage.passes == {"made_frames": 3}
    warm = FrameEncodings(cache_root=tmp_path / "cache", decode_id=DECODE, embed_all_frames=False,
                          scores={"made_frames": MadeFrames(selector, 3, encoder)})  # fmt: skip
    cached = warm.store.read_whole(video, ("made_frames",))
    assert cached is None  # rows alone do not tell the candidate frames: the data module records them
    warm.store.write_times(video, stamps)
    stamps_back, outputs = warm.store.read_whole(video, ("made_frames",))
    index, values = outputs["made_frames"]
    assert torch.equal(stamps_back, stamps) and torch.equal(index, idx) and torch.allclose(values, expected, atol=1e-5)
    assert warm.passes == {"made_frames": 0}

    keys = {output_id(MadeFrames(selector, k, encoder), "made_frames") for k in (3, 4)} | {output_id(encoder, "image_embeds")}
    assert len(keys) == 3
