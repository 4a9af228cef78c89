"""SmolVLM wrapper: prompt with true timestamps, label masking, LoRA, prompting format."""

import pytest
import torch
from helpers import vlm_with_a_trained_adapter

from models.prompting import format_dense_caption, format_timestamp, parse_dense_caption
from models.selectors import UniformSelector, uniform_indices
from models.vlm import IGNORE_INDEX, LoraSettings, SmolVLM


@pytest.fixture()
def vlm(tiny_model_dir):
    torch.manual_seed(0)
    return SmolVLM(str(tiny_model_dir), lora=LoraSettings(r=4, alpha=8, dropout=0.0))


def _frames(k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (k, 3, 48, 64), dtype=torch.uint8, generator=g)


def test_prompt_carries_true_timestamps(vlm):
    stamps = torch.tensor([0.4, 7.9, 65.2], dtype=torch.float64)
    batch = vlm.build_batch([_frames()], [stamps], [70.0], ["00:01-00:02 a red circle moves left"])
    text = vlm.processor.tokenizer.decode(batch["input_ids"][0])
    assert "three frames from a 0:01:10 [H:MM:SS] video" in text
    for label in ("Frame from 00:00:", "Frame from 00:07:", "Frame from 01:05:"):
        assert label in text
    assert text.index("Frame from 00:07:") < text.index("Frame from 01:05:")
    assert batch["pixel_values"].shape[:2] == (1, 3)


def test_labels_mask_everything_but_the_answer(vlm):
    answers = ["00:01-00:03 a red circle moves left\n00:05-00:07 a blue square moves up", "00:02-00:04 x"]
    batch = vlm.build_batch(
        [_frames(3), _frames(2, seed=1)],
        [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 4.0])],
        [10.0, 5.0],
        answers,
    )
    tok = vlm.processor.tokenizer
    assistant = tok("Assistant:", add_special_tokens=False)["input_ids"]
    image_id = tok.convert_tokens_to_ids("<image>")
    for i, answer in enumerate(answers):
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        supervised = (labels != IGNORE_INDEX).nonzero().squeeze(1)
        first = int(supervised[0])
        # Everything up to and including "Assistant:" is prompt; no prompt token carries loss.
        assert ids[first - len(assistant) : first].tolist() == assistant
        assert (labels[:first] == IGNORE_INDEX).all()
        assert not (labels == image_id).any()
        # The supervised span is exactly the answer plus end-of-utterance, then padding only.
        assert tok.decode(labels[supervised]) == " " + answer + "<end_of_utterance>"
        assert (supervised == torch.arange(first, first + len(supervised))).all()
        assert (batch["attention_mask"][i, first + len(supervised) :] == 0).all()


def test_lora_trains_only_the_adapter_and_changes_outputs(vlm):
    trainable = {n for n, p in vlm.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert all("text_model" in n for n in trainable)  # vision tower frozen by default
    frozen_before = {n: p.detach().clone() for n, p in vlm.named_parameters() if not p.requires_grad}
    batch = vlm.build_batch([_frames()], [torch.tensor([1.0, 2.0, 3.0])], [4.0], ["00:01-00:02 a red circle"])
    vlm.eval()
    with torch.no_grad():
        before = vlm.sample_losses(dict(batch))
    opt = torch.optim.SGD([p for p in vlm.parameters() if p.requires_grad], lr=0.5)
    vlm.train()
    for _ in range(3):
        opt.zero_grad()
        vlm(dict(batch)).backward()
        opt.step()
    vlm.eval()
    with torch.no_grad():
        after = vlm.sample_losses(dict(batch))
    assert after.item() < before.item() - 1e-3
    for n, p in vlm.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), n


def test_lora_settings_scope_vision_and_disable(tiny_model_dir):
    with_vision = SmolVLM(str(tiny_model_dir), lora=LoraSettings(include_vision=True))
    names = [n for n, p in with_vision.named_parameters() if p.requires_grad]
    assert any("vision_model" in n for n in names) and any("text_model" in n for n in names)
    frozen = SmolVLM(str(tiny_model_dir), lora=LoraSettings(enabled=False))
    assert not any(p.requires_grad for p in frozen.parameters())
    with pytest.raises(ValueError, match="lora.r"):
        LoraSettings(r=0)


def test_sample_losses_match_the_token_mean(vlm):
    vlm.eval()
    batch = vlm.build_batch([_frames()], [torch.tensor([1.0, 2.0, 3.0])], [4.0], ["00:01-00:02 a red circle"])
    with torch.no_grad():
        assert vlm.sample_losses(dict(batch)).item() == pytest.approx(vlm(dict(batch)).item(), rel=1e-5)


def test_generate_returns_text_per_video(vlm):
    out = vlm.generate([_frames(), _frames(2)], [torch.tensor([1.0, 2, 3]), torch.tensor([1.0, 2])], [4.0, 3.0],
                       max_new_tokens=5)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)


def test_missing_local_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        SmolVLM(str(tmp_path / "nope"))


def test_build_tiny_never_overwrites_a_trained_checkpoint(tiny_model_dir, tmp_path):
    """``build_tiny: true`` pointed at a fine-tuned/exported model loads it instead of rebuilding."""
    trained = tmp_path / "trained"
    vlm = SmolVLM(str(tiny_model_dir), lora=LoraSettings(enabled=False))
    with torch.no_grad():
        for p in vlm.model.parameters():
            p.add_(0.5)
    vlm.model.save_pretrained(trained)
    vlm.processor.save_pretrained(trained)
    reloaded = SmolVLM(str(trained), lora=LoraSettings(enabled=False), build_tiny=True)
    want = dict(vlm.model.named_parameters())
    assert all(torch.equal(p, want[k]) for k, p in reloaded.model.named_parameters())
    assert not (trained / "tiny_settings.json").exists()


def test_dense_caption_format_round_trip():
    events = [{"start": 65.7, "end": 70.2, "caption": "b"}, {"start": 1.2, "end": 3.9, "caption": "a red circle"}]
    text = format_dense_caption(events)
    assert text == "00:01-00:03 a red circle\n01:05-01:10 b"
    parsed = parse_dense_caption(text + "\ngarbage line\n00:09-00:04 swapped")
    assert [(p.start, p.end, p.caption) for p in parsed] == [(1, 3, "a red circle"), (65, 70, "b"), (4, 9, "swapped")]
    assert format_timestamp(3599.9) == "59:59"


def test_uniform_selector_and_budget_errors():
    assert uniform_indices(10, 4).tolist() == [1, 3, 6, 8]
    assert uniform_indices(4, 4).tolist() == [0, 1, 2, 3]
    frames = torch.zeros(5, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="K=6 exceeds the 5 frames"):
        UniformSelector().select(frames, torch.arange(5.0), 6)


def test_sample_losses_are_scores_without_dropout_and_keep_the_mode(tiny_model_dir):
    """Rewards and ranking targets compare these numbers: LoRA dropout must not move them."""
    vlm = vlm_with_a_trained_adapter(tiny_model_dir, dropout=0.5)
    batch = vlm.build_batch([_frames()], [torch.tensor([1.0, 2.0, 3.0])], [4.0], ["00:01-00:02 a red circle"])
    vlm.train()
    with torch.no_grad():
        noisy = [vlm(dict(batch)).item() for _ in range(2)]
    assert noisy[0] != noisy[1]  # dropout is live in train mode: the plain forward is noisy
    scores = [vlm.sample_losses(dict(batch)) for _ in range(2)]
    assert torch.equal(scores[0], scores[1])
    assert all(m.training for m in vlm.model.modules())  # the caller's train mode is back
    vlm.eval()
    assert torch.equal(vlm.sample_losses(dict(batch)), scores[0])


def test_frame_budget_is_checked_against_the_checkpoint(vlm, caplog):
    from trainer.module import DenseCaptioner

    # The estimate is the processor's own expansion: exact here, a few tokens short at most.
    stamps = torch.tensor([1.0, 2.0, 3.0])
    short = vlm.build_batch([_frames()], [stamps], [4.0], ["x"])
    prompt = short["labels"][0].eq(IGNORE_INDEX).sum().item()
    assert vlm.prompt_length(3) <= prompt <= vlm.prompt_length(3) + 3
    limit = vlm.context_length
    assert limit == 4096
    too_many = limit // (vlm.prompt_length(2) - vlm.prompt_length(1)) + 1
    with pytest.raises(ValueError, match=r"K=\d+ needs about \d+ prompt tokens .* 4096 positions"):
        vlm.check_frame_budget(too_many)
    with pytest.raises(ValueError, match="4096 positions"):
        DenseCaptioner(vlm, num_frames=too_many)
    with caplog.at_level("WARNING", logger="models.vlm"):
        vlm.check_frame_budget(vlm.max_frames + 1)
    assert vlm.max_frames == 64 and "video_sampling.max_frames" in caplog.text
    # When a batch is built, the real length is checked, caption included.
    vlm.base_model().config.text_config.max_position_embeddings = short["input_ids"].shape[1]
    try:
        vlm.build_batch([_frames()], [stamps], [4.0], ["x"])
        with pytest.raises(ValueError, match="prompt \\+ caption of .* exceeds"):
            vlm.build_batch([_frames()], [stamps], [4.0], ["00:01-00:02 a red circle moves left"])
        with pytest.raises(ValueError, match="prompt \\+ max_new_tokens"):
            vlm.generate([_frames()], [stamps], [4.0], max_new_tokens=10)
    finally:
        vlm.base_model().config.text_config.max_position_embeddings = limit


def test_tiny_model_saves_the_image_only_chat_template_as_real_checkpoints_do(vlm):
    """Real SmolVLM2 folders save an image-only template; the processor swaps in its video one."""
    saved = vlm.processor.chat_template
    assert "video" not in saved and "<image>" in saved
    batch = vlm.build_batch([_frames(2)], [torch.tensor([1.0, 61.0])], [70.0], ["x"])
    text = vlm.processor.tokenizer.decode(batch["input_ids"][0])
    assert "<video>" not in text and "two frames from a 0:01:10" in text
    assert "Frame from 00:01:" in text and "Frame from 01:01:" in text
