"""Real-shape stand-ins: the published SmolVLM2 architectures with random weights, through the real code path."""

import json
from pathlib import Path

import pytest
import torch
from helpers import as_overrides, fit_args
from transformers import AutoModelForImageTextToText, AutoProcessor, SmolVLMForConditionalGeneration

from models.standin import ARCHITECTURES, SPECIAL_IDS, VOCAB_SIZE, build_padded_tokenizer, standin_config
from models.vlm import LoraSettings, SmolVLM
from trainer.__main__ import main as cli_main
from trainer.evaluation.evaluate import main as evaluate_main
from trainer.objectives import shown_frames
from trainer.tools.export import main as export_main

CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_published_parameter_counts_and_image_tokens(name):
    shape = ARCHITECTURES[name]
    with torch.device("meta"):  # the architecture only: no memory, no time
        model = SmolVLMForConditionalGeneration(standin_config(shape))
    assert sum(p.numel() for p in model.parameters()) == shape.parameters
    assert shape.image_seq_len == {"smolvlm2-2.2b": 81}.get(name, 64)
    assert model.lm_head.weight.shape == (VOCAB_SIZE, shape.text["hidden_size"])
    assert model.lm_head.weight is not model.model.text_model.embed_tokens.weight  # untied, as published


def test_padded_tokenizer_has_the_real_special_ids():
    tok = build_padded_tokenizer()
    assert len(tok) == VOCAB_SIZE
    for token, i in SPECIAL_IDS.items():
        assert tok.convert_tokens_to_ids(token) == i, token
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 49279, 2)
    text = "Frame from 00:07:<fake_token_around_image><global-img><image><image> a red circle<end_of_utterance>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert ids.count(49190) == 2 and 49279 in ids
    assert not any(tok.convert_ids_to_tokens(i).startswith("<|unused_") for i in ids)


def test_the_standin_command_builds_a_shape_and_the_tiny_command_points_to_it(tmp_path, monkeypatch, capsys):
    import models.standin
    import models.tiny

    built = []
    monkeypatch.setattr(models.standin, "build_standin", lambda *args, **kwargs: built.append((args, kwargs)))
    models.standin.main(["--shape", "smolvlm2-500m", "--output", str(tmp_path), "--seed", "3"])
    assert built == [((str(tmp_path), "smolvlm2-500m"), {"seed": 3})]
    with pytest.raises(SystemExit) as exit_:
        models.standin.main(["--shape", "smolvlm2-9b", "--output", str(tmp_path)])
    assert exit_.value.code == 2
    # `python -m models.tiny --shape NAME` built stand-ins before they had a command of their own.
    with pytest.raises(SystemExit) as exit_:
        models.tiny.main(["--shape", "smolvlm2-256m", "--output", str(tmp_path)])
    assert exit_.value.code == 2
    assert "python -m models.standin --shape smolvlm2-256m --output DIR" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_the_256m_standin_loads_through_from_pretrained_as_published(standin_256m):
    config = json.loads((standin_256m / "config.json").read_text())
    assert (config["scale_factor"], config["image_token_id"], config["vision_config"]["image_size"]) == (4, 49190, 512)
    processor = AutoProcessor.from_pretrained(standin_256m)
    assert processor.image_seq_len == 64 and processor.video_processor.num_frames == 64
    assert processor.video_processor.max_image_size == {"longest_edge": 512}
    assert not (standin_256m / "video_preprocessor_config.json").exists()  # as published: one preprocessor file
    vlm = SmolVLM(str(standin_256m), lora=LoraSettings(enabled=False))
    assert sum(p.numel() for p in vlm.parameters()) == ARCHITECTURES["smolvlm2-256m"].parameters
    assert vlm.context_length == 8192 and vlm.max_frames == 64


@pytest.mark.slow
def test_embeddings_stand_in_for_pixels_at_the_256m_shape(standin_256m):
    from test_encodings import assert_embeddings_stand_in_for_pixels

    from models.encoders import FrameEncoder

    torch.manual_seed(0)
    vlm = SmolVLM(str(standin_256m), lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    assert_embeddings_stand_in_for_pixels(vlm, FrameEncoder(str(standin_256m)))


@pytest.mark.slow
def test_joint_training_evaluate_and_export_on_the_256m_standin(standin_256m, tmp_path, synthetic):
    """fit (RL + caption loss, LoRA) -> resume -> evaluate (NLL) -> merged export, all at the real 256M shape."""
    model = str(standin_256m)
    args = fit_args(
        "smoke_joint.yaml", tmp_path, standin_256m, synthetic,
        "--model.init_args.num_frames", "4", "--model.init_args.eval_budgets", "[4]",
        "--model.init_args.importance.init_args.feature_dim", "1536",  # mean_max of the 768-wide SigLIP tower
        "--model.init_args.objective.group_size", "2", "--model.init_args.decoder.init_args.min_gap", "1",
        "--data.fps", "0.5", "--data.max_frames", "5",
        "--data.batch_size", "1", "--trainer.max_steps", "2", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.check_val_every_n_epoch", "1",
        "--checkpoint.every_n_train_steps", "2",
    )  # fmt: skip
    cli = cli_main(["fit", *args])
    module = cli.model
    assert cli.trainer.global_step == 2  # two batches (the selector and LoRA step on each)
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert torch.isfinite(cli.trainer.callback_metrics["val/caption_loss"])
    lora = {n: p for n, p in module.vlm.named_parameters() if "lora_" in n}
    assert lora and all(p.requires_grad for p in lora.values())
    assert any(p.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)  # B starts at 0: steps moved it

    # 64 image tokens per frame, K frames, in a batch the module builds; the loss reaches LoRA.
    batch = next(iter(cli.datamodule.train_dataloader()))
    batch = cli.datamodule.on_after_batch_transfer(batch, 0)
    inputs = module.vlm.build_batch(**shown_frames(batch, [(0, torch.arange(4))]), durations=batch["duration"][:1],
                                    targets=["00:01-00:02 a red circle"])  # fmt: skip
    assert (inputs["input_ids"][0] == 49190).sum().item() == 4 * 64
    assert inputs["image_embeds"].shape == (4, 64, 576)
    module.vlm.zero_grad()
    module.vlm(inputs).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora.values())

    last = tmp_path / "ckpt" / "last.ckpt"
    resumed = cli_main(["fit", *args, "--trainer.max_steps", "3", "--trainer.limit_train_batches", "3",
                        "--ckpt_path", str(last)])  # fmt: skip
    assert resumed.trainer.global_step == 3

    out = tmp_path / "eval"
    _, paths, _ = synthetic
    evaluate_main([
        "--config", str(CONFIGS / "smoke_joint.yaml"), "--ckpt", str(last), "--split", "test",
        "--selectors", "learned", "uniform", "--budgets", "4", "--max_videos", "1", "--output", str(out),
        "--plot_videos", "0", *as_overrides([f"data.test_file={paths['test']}", f"data.train_file={paths['train']}",
        f"data.val_file={paths['val']}", f"data.cache_dir={tmp_path / 'cache'}", "data.fps=0.5", "data.max_frames=5",
        f"model.init_args.vlm.init_args.model_name_or_path={model}", "model.init_args.num_frames=4",
        f"model.init_args.encoder.init_args.model_name_or_path={model}", "model.init_args.importance.init_args.feature_dim=1536",
        "model.init_args.objective.group_size=2", "model.init_args.decoder.init_args.min_gap=1",
    ])])  # fmt: skip
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert {s["selector"] for s in summary} == {"learned", "uniform"}
    assert all(s["nll"] > 0 and torch.isfinite(torch.tensor(s["nll"])) for s in summary)

    export = tmp_path / "export"
    export_main(["--ckpt", str(last), "--output", str(export)])
    trained = resumed.model.eval()
    frames = [torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))]
    inputs = trained.vlm.build_batch(frames, [torch.tensor([0.5, 1.0, 2.0, 3.0])], [4.0], ["00:01-00:02 x"])
    inputs.pop("labels")
    merged = AutoModelForImageTextToText.from_pretrained(export).eval()
    with torch.no_grad():
        expected = trained.vlm.model(**inputs).logits
        got = merged(**inputs).logits
    assert (got - expected).abs().max().item() < 1e-4


def test_the_gpu_measurement_command_runs_on_cpu(tmp_path, monkeypatch):
    """``python -m trainer realshape --device cpu --steps 1``: the real configs' fit runs, with reports."""
    from trainer.benchmarks.realshape import main as realshape_main

    monkeypatch.setenv("FRAME_SELECT_CACHE", str(tmp_path / "cache"))  # the subprocesses build and read here
    output = tmp_path / "realshape.json"
    rows = realshape_main(["--device", "cpu", "--steps", "1", "--shapes", "tiny", "--budgets", "2",
                           "--strategies", "ddp", "fsdp", "--workers", "0", "--workdir", str(tmp_path / "work"),
                           "--output", str(output)])  # fmt: skip
    assert [(r["config"], r["K"]) for r in rows] == [("smolvlm2_256m.yaml", 2), ("smolvlm2_256m_ddp.yaml", 2)]
    for row in rows:
        assert row["status"] == "ok", row.get("error")
        assert row["seconds_per_batch"] > 0 and row["batches_timed"] == 1 and row["peak_rss_gib"] > 0
        assert row["frames_shown"] == 2 and row["model"].endswith("tiny")
    assert json.loads(output.read_text())["rows"] == rows
    assert "| smolvlm2_256m_ddp.yaml | tiny | 2 |" in output.with_suffix(".md").read_text()
