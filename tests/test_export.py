"""``python -m trainer export``: merged / adapter-only / selector round trips, model card, atomic writes, push."""

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from helpers import fit_args

from trainer.__main__ import main as cli_main
from trainer.tools.export import TAGS, ExportError, export_module, push_folder
from trainer.loading import load_selector
from trainer.tools.export import main as export_main

CONFIGS = Path(__file__).parents[1] / "configs"
TOKEN = "hf_test_secret_123"
BASE_ID = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"
EVALUATION = "| event recall | importance model | uniform |\n|---|---|---|\n| @K=4 | 0.711 | 0.358 |\n"


def _args(tmp_path, tiny_model_dir, synthetic, *extra):
    return fit_args("smoke.yaml", tmp_path, tiny_model_dir, synthetic, "--checkpoint.every_n_train_steps", "1", *extra)


def _selector_args(tmp_path, tiny_model_dir, synthetic):
    return fit_args("smoke_rl.yaml", tmp_path, tiny_model_dir, synthetic, "--trainer.max_steps", "2",
                    "--trainer.check_val_every_n_epoch", "1", "--model.init_args.eval_budgets", "[2, 4]")  # fmt: skip


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _texts(folder: Path) -> dict[str, str]:
    """Every text file of an export (all but the weights)."""
    return {f: (folder / f).read_text() for f in _files(folder) if not f.endswith(".safetensors")}


def _inputs(vlm, seed=0):
    """A two-video batch built by the module's own VLM wrapper (labels dropped: logits only)."""
    g = torch.Generator().manual_seed(seed)
    frames = [torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=g) for _ in range(2)]
    stamps = [torch.tensor([0.5, 2.0, 3.5, 6.0], dtype=torch.float64), torch.tensor([1.0, 1.5, 4.0, 5.5])]
    targets = ["00:01-00:03 a red circle moves left", "00:02-00:04 a blue square moves up\n00:05-00:06 a green star"]
    batch = vlm.build_batch(frames, stamps, [8.0, 7.0], targets)
    batch.pop("labels")
    return batch


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def _card(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, text[:200]
    return yaml.safe_load(match.group(1)), text


def _run_usage(folder: Path, text: str) -> int:
    """Executes every Python block of the card's Usage section with ``folder`` pointing at the export."""
    usage = text.split("\n## Usage\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", usage, re.DOTALL)
    assert blocks
    for block in blocks:
        code, n = re.subn(r"^folder = .*$", f"folder = {str(folder)!r}", block, flags=re.MULTILINE)
        assert n == 1, block
        exec(compile(code, f"{folder}/README.md", "exec"), {"__name__": "card"})  # noqa: S102 - the card snippet
    return len(blocks)


@pytest.fixture(scope="module")
def captioner(tmp_path_factory, tiny_model_dir, synthetic):
    """A DenseCaptioner trained 2 steps by the CLI, and its last.ckpt (with an evaluation.md beside it)."""
    tmp = tmp_path_factory.mktemp("captioner")
    cli = cli_main(["fit", *_args(tmp, tiny_model_dir, synthetic, "--trainer.max_steps", "2",
                                  "--trainer.limit_val_batches", "0")])  # fmt: skip
    assert cli.trainer.global_step == 2
    ckpt = tmp / "ckpt" / "last.ckpt"
    (ckpt.parent / "evaluation.md").write_text(EVALUATION)
    module = cli.model.eval()
    return module, ckpt


@pytest.fixture(scope="module")
def merged(captioner, tmp_path_factory):
    """The default (merged) export of the captioner, written with a Hub token in the environment."""
    _, ckpt = captioner
    out = tmp_path_factory.mktemp("exports") / "tiny-captioner"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_TOKEN", TOKEN)
        export_main(["--ckpt", str(ckpt), "--output", str(out), "--base_model", BASE_ID,
                     "--dataset", "someone/synthetic-dense-captions"])  # fmt: skip
    return out


def test_merged_export_reproduces_the_trained_logits(captioner, merged):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    module, _ = captioner
    files = _files(merged)
    assert "model.safetensors" in files or any(re.fullmatch(r"model-\d+-of-\d+\.safetensors", f) for f in files)
    assert {"config.json", "processor_config.json", "tokenizer.json", "README.md"} <= files
    assert not any(Path(f).name.startswith("adapter_") or f.endswith(".bin") for f in files), files
    assert {"selector/config.json", "selector/frame_selection.json", "training.json"} <= files

    batch = _inputs(module.vlm)
    expected = _logits(module.vlm.model, batch)
    model = AutoModelForImageTextToText.from_pretrained(merged).eval()
    assert type(model).__name__ == "SmolVLMForConditionalGeneration"
    assert not any("lora_" in k for k in model.state_dict())
    got = _logits(model, batch)
    assert (got - expected).abs().max().item() < 1e-4
    # The processor that was saved tokenizes exactly as the training one.
    processor = AutoProcessor.from_pretrained(merged)
    assert processor.tokenizer.get_vocab() == module.vlm.processor.tokenizer.get_vocab()
    assert processor.chat_template == module.vlm.processor.chat_template


def test_card_metadata_evaluation_and_usage_snippet(merged):
    meta, text = _card(merged)
    assert meta["base_model"] == BASE_ID and meta["base_model_relation"] == "finetune"
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "image-text-to-text"
    assert meta["tags"] == list(TAGS) == ["smolvlm", "video", "dense-captioning", "frame-selection", "lora"]
    assert meta["datasets"] == ["someone/synthetic-dense-captions"]
    assert meta["license"] == "apache-2.0" and "model-index" not in meta  # an evaluation.md has no results.json
    assert "| `r` | `8` |" in text and "| `alpha` | `16` |" in text  # LoRA settings
    assert "models.selectors.UniformSelector" in text and "num_frames: 4" in text  # selector settings
    assert "## Evaluation" in text and "| @K=4 | 0.711 | 0.358 |" in text  # evaluation.md beside the checkpoint
    assert _run_usage(merged, text) == 2  # transformers loading + captioning selected frames


def test_card_reports_an_evaluate_run_as_hub_eval_results(captioner, tmp_path):
    module, _ = captioner
    run = tmp_path / "eval"
    run.mkdir()
    (run / "results.md").write_text(EVALUATION)
    summary = [{"selector": "learned", "K": 4, "videos": 5, "recall": 0.7114, "nll": 2.5, "meteor": 0.051, "cider": 0.2},
               {"selector": "learned", "K": 8, "videos": 5, "recall": 0.9},
               {"selector": "uniform", "K": 4, "videos": 5, "recall": 0.358, "meteor": 0.04}]  # fmt: skip
    results = {"meta": {"split": "test"}, "approximate_caption_scores": False, "summary": summary}
    (run / "results.json").write_text(json.dumps(results))
    out = export_module(module, tmp_path / "exact", evaluation=run / "results.md", datasets=["someone/dense"],
                        license="mit")  # fmt: skip
    meta, text = _card(out)
    assert meta["license"] == "mit" and meta["metrics"] == ["recall", "meteor", "cider"]
    (index,) = meta["model-index"]
    assert index["name"] == "exact"
    (result,) = index["results"]  # one task on one dataset split
    assert result["task"]["type"] == "video-text-to-text"
    assert result["dataset"] == {"name": "someone/dense", "type": "someone/dense", "split": "test"}
    assert [(m["type"], m["value"]) for m in result["metrics"]] == [
        ("recall", 0.7114), ("meteor", 0.051), ("cider", 0.2), ("recall", 0.9)]  # the learned selector's rows only
    assert result["metrics"][0]["name"] == "event recall of the chosen frames, K=4"
    assert "| @K=4 | 0.711 | 0.358 |" in text  # the table itself, as before
    # Approximate caption scores (no Java) stay out of the metadata; without a dataset id nothing is reported.
    (run / "results.json").write_text(json.dumps({**results, "approximate_caption_scores": True}))
    out = export_module(module, tmp_path / "approximate", evaluation=run / "results.md", datasets=["someone/dense"],
                        license=None)  # fmt: skip
    meta, _ = _card(out)
    assert "license" not in meta and meta["metrics"] == ["recall"]
    assert [m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]] == [0.7114, 0.9]
    meta, _ = _card(export_module(module, tmp_path / "no-dataset", evaluation=run / "results.md"))
    assert "model-index" not in meta and "metrics" not in meta


def test_an_export_of_a_local_copy_of_a_hub_model_names_no_local_path(captioner, merged, tiny_model_dir):
    # --base_model says the tiny folder stands for BASE_ID: the id replaces it in every file.
    _, ckpt = captioner
    texts = _texts(merged)
    assert {"README.md", "training.json", "selector/frame_selection.json", "config.json"} <= texts.keys()
    for name, content in texts.items():
        for local in (str(tiny_model_dir), str(ckpt.parent), str(merged.parent), "/tmp/", f"{Path.home()}/"):
            assert local not in content, (name, local)
    training = json.loads(texts["training.json"])
    assert training["hyper_parameters"]["vlm"]["init_args"]["model_name_or_path"] == BASE_ID
    assert f"| base model | `{BASE_ID}` |" in texts["README.md"]


def test_push_refuses_an_export_that_needs_a_local_base_model(captioner, tiny_model_dir, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    _, ckpt = captioner
    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(repo_id))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **kw: calls.append(kw["repo_id"]))
    out = tmp_path / "exports" / "lora"
    with pytest.raises(SystemExit) as info:
        export_main(["--ckpt", str(ckpt), "--output", str(out), "--adapter_only", "--push_to_hub", "me/lora"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"adapter_config.json holds the local path '{tiny_model_dir}'" in err and "--base_model" in err
    assert calls == [] and not out.exists()  # refused before anything was written or uploaded
    # The same export with the Hub id of the base model it copies is pushed.
    export_main(["--ckpt", str(ckpt), "--output", str(out), "--adapter_only", "--push_to_hub", "me/lora",
                 "--base_model", BASE_ID])  # fmt: skip
    assert calls == ["me/lora", "me/lora"]
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == BASE_ID


@pytest.mark.parametrize(
    ("file", "content", "local"),
    [
        ("README.md", "trained on `/home/alice/models/tiny` here", "/home/alice/models/tiny"),
        ("training.json", '{"source": "~/.cache/frame-selectors/tiny-smolvlm"}', "~/.cache/frame-selectors/tiny-smolvlm"),
        ("selector/config.json", '{"model_name_or_path": "HOME/models/x"}', "HOME/models/x"),
        ("notes.txt", "written in CWD/exports/x", "CWD/exports/x"),
        ("notes.txt", "cached at TMP/cache", "TMP/cache"),
        ("notes.yaml", "folder: ROOTED", "ROOTED"),
    ],
)  # fmt: skip
def test_push_refuses_a_folder_holding_an_absolute_local_path(tmp_path, monkeypatch, file, content, local):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda *a, **kw: pytest.fail("create_repo called"))
    # ROOTED: an existing absolute path outside the home, working and temporary folders (Linux and macOS).
    rooted = "/usr/bin"
    assert Path(rooted).is_dir() and not Path.cwd().is_relative_to(rooted)
    names = {"HOME": str(Path.home()), "CWD": str(Path.cwd()), "TMP": str(tmp_path), "ROOTED": rooted}
    for key, value in names.items():
        content, local = content.replace(key, value), local.replace(key, value)
    folder = tmp_path / "export"
    (folder / "selector").mkdir(parents=True)
    (folder / "README.md").write_text("# a card: https://huggingface.co/HuggingFaceTB/SmolVLM2 </s> smoke/last.ckpt\n")
    (folder / file).write_text(content)
    with pytest.raises(ExportError, match="refusing to push") as info:
        push_folder(folder, "me/x")
    assert str(info.value).startswith(f"{file} holds the local path {local!r}")


def test_push_accepts_relative_names_urls_and_tags(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(repo_id))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **kw: calls.append(kw["folder_path"]))
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "README.md").write_text(
        "See https://huggingface.co/HuggingFaceTB/SmolVLM2-256M-Video-Instruct and file:x; `exports/x`, "
        "`smoke/last.ckpt`, </s> and <|im_end|>, a fraction 1/2 and a path-like a/b/c.\n"
    )
    (folder / "tokenizer.json").write_text(json.dumps({"vocab": {"/": 0, "/usr": 1, "/tmp/": 2, "</s>": 3}}))
    push_folder(folder, "me/x")
    assert calls == ["me/x", str(folder)]


def test_no_token_is_written_and_a_leaking_file_is_refused(captioner, merged, tmp_path, monkeypatch):
    for f in _files(merged):
        assert TOKEN.encode() not in (merged / f).read_bytes(), f
    # A token that would end up in the folder (here through the evaluation file) aborts the export.
    module, _ = captioner
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    leaky = tmp_path / "eval.md"
    leaky.write_text(f"pushed with {TOKEN}\n")
    with pytest.raises(ExportError, match="token"):
        export_module(module, tmp_path / "exports" / "leak", evaluation=leaky)
    assert list((tmp_path / "exports").iterdir()) == []


def test_adapter_only_round_trip(captioner, tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    module, ckpt = captioner
    out = tmp_path / "exports" / "tiny-lora"
    assert export_main(["--ckpt", str(ckpt), "--output", str(out), "--adapter_only"]) == out
    files = _files(out)
    assert {"adapter_config.json", "adapter_model.safetensors", "processor_config.json", "tokenizer.json"} <= files
    assert not any(f.startswith("model") and f.endswith(".safetensors") for f in files), files
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir)

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, out).eval()
    batch = _inputs(module.vlm, seed=1)
    assert (_logits(model, batch) - _logits(module.vlm.model, batch)).abs().max().item() < 1e-5

    meta, text = _card(out)
    assert meta["library_name"] == "peft" and "base_model" not in meta  # a local folder is no Hub id
    # The card and training.json name the local base model, the checkpoint and the export by
    # relative names; only adapter_config.json (read by the loaders) keeps the base model's folder.
    assert f"| base model | `{tiny_model_dir.name}` (a local model, not on the Hub) |" in text
    assert "folder = 'tiny-lora'  # this export folder" in text
    training = json.loads((out / "training.json").read_text())
    assert training["checkpoint"] == "ckpt/last.ckpt"
    assert training["hyper_parameters"]["vlm"]["init_args"]["model_name_or_path"] == tiny_model_dir.name
    for name, content in _texts(out).items():
        for local in (str(tiny_model_dir), str(ckpt.parent), str(out.parent)):
            assert (local in content) == (name == "adapter_config.json" and local == str(tiny_model_dir)), (name, local)
    assert _run_usage(out, text) == 2


def test_selector_round_trip(tmp_path, tiny_model_dir, synthetic):
    from models.importance import FrameImportanceModel, ImportanceSelector

    cli = cli_main(["fit", *_selector_args(tmp_path, tiny_model_dir, synthetic)])
    module = cli.model.eval()
    out = tmp_path / "exports" / "tiny-mask"
    export_main(["--ckpt", str(tmp_path / "ckpt" / "last.ckpt"), "--output", str(out)])
    assert _files(out) == {"README.md", "training.json", "selector/config.json", "selector/model.safetensors",
                           "selector/frame_selection.json"}  # fmt: skip

    loaded = FrameImportanceModel.from_pretrained(out / "selector").eval()
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 12, module.importance.feature_dim, generator=g)
    stamps = torch.arange(12, dtype=torch.float32).expand(2, 12) * 0.5
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 9:] = False
    with torch.no_grad():
        assert torch.equal(loaded(features, stamps, mask), module.importance(features, stamps, mask))

    # The whole selector (encoder + mask + decoder) picks the frames the trained module would.
    frames = torch.randint(0, 256, (12, 3, 64, 64), dtype=torch.uint8, generator=g)
    times = torch.arange(12, dtype=torch.float64) * 0.5
    trained = ImportanceSelector(model=module.importance, encoder=module.encoder, decoder=module.decoder).eval()
    selector = load_selector(out)
    assert type(selector.decoder) is type(module.decoder)
    assert torch.equal(selector.select(frames, times, 4), trained.select(frames, times, 4))

    meta, text = _card(out)
    # The encoder's local folder: kept where load_selector reads it, named by its folder name in the card.
    assert str(tiny_model_dir) in (out / "selector" / "frame_selection.json").read_text()
    assert str(tiny_model_dir) not in text and f"model_name_or_path: {tiny_model_dir.name}" in text
    assert meta["library_name"] == "pytorch" and "pipeline_tag" not in meta
    assert meta["tags"] == ["smolvlm", "video", "dense-captioning", "frame-selection"]  # no LoRA in this run
    assert 'FrameImportanceModel.from_pretrained(f"{folder}/selector")' in text
    assert _run_usage(out, text) == 2


def test_refuses_to_overwrite_without_flag(captioner, tmp_path, capsys):
    _, ckpt = captioner
    out = tmp_path / "exports" / "taken"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as info:
        export_main(["--ckpt", str(ckpt), "--output", str(out)])
    assert info.value.code == 2
    assert "already exists" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
    export_main(["--ckpt", str(ckpt), "--output", str(out), "--overwrite"])
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["taken"]  # no temp or backup folder left


def test_failed_export_leaves_no_folder_and_keeps_the_old_one(captioner, tmp_path, monkeypatch):
    from trainer.tools import export

    module, _ = captioner

    def boom(info):
        raise RuntimeError("card failed")

    monkeypatch.setattr(export, "model_card", boom)  # after the weights, processor and selector were written
    parent = tmp_path / "exports"
    with pytest.raises(RuntimeError, match="card failed"):
        export_module(module, parent / "new")
    assert list(parent.iterdir()) == []
    (parent / "old").mkdir()
    (parent / "old" / "keep.txt").write_text("previous export")
    with pytest.raises(RuntimeError, match="card failed"):
        export_module(module, parent / "old", overwrite=True)
    assert [p.name for p in parent.iterdir()] == ["old"] and _files(parent / "old") == {"keep.txt"}


def test_in_memory_export_leaves_the_training_model_untouched(captioner, tmp_path):
    from peft import PeftModel

    module, _ = captioner
    before = {k: v.clone() for k, v in module.vlm.model.state_dict().items()}
    batch = _inputs(module.vlm, seed=2)
    expected = _logits(module.vlm.model, batch)
    export_module(module, tmp_path / "exports" / "from-memory")
    assert isinstance(module.vlm.model, PeftModel)  # still an unmerged adapter
    after = module.vlm.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(_logits(module.vlm.model, batch), expected)
    assert any(p.requires_grad for n, p in module.vlm.model.named_parameters() if "lora_" in n)


def test_push_to_hub_creates_the_repo_and_uploads_the_folder(captioner, tmp_path, monkeypatch):
    import huggingface_hub

    _, ckpt = captioner
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls.append(("upload_folder", repo_id, {**kwargs, "files": _files(Path(folder_path)), "path": folder_path}))

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    out = tmp_path / "exports" / "tiny-captioner"
    export_main(["--ckpt", str(ckpt), "--output", str(out), "--push_to_hub", "me/tiny-captioner", "--private"])

    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]
    _, repo_id, kwargs = calls[0]
    assert repo_id == "me/tiny-captioner" and kwargs["private"] is True and kwargs["exist_ok"] is True
    assert kwargs.get("token") is None  # the ambient login is used; the token is never handled here
    _, repo_id, upload = calls[1]
    assert repo_id == "me/tiny-captioner" and Path(upload["path"]) == out and upload.get("token") is None
    assert upload["files"] == _files(out) == {
        "README.md", "config.json", "generation_config.json", "model.safetensors", "chat_template.jinja",
        "processor_config.json", "tokenizer.json", "tokenizer_config.json", "training.json",
        "selector/config.json", "selector/frame_selection.json",
    }  # fmt: skip
    _, text = _card(out)
    assert 'snapshot_download("me/tiny-captioner")' in text
    assert not any(TOKEN.encode() in (out / f).read_bytes() for f in upload["files"])


def test_cli_errors_are_clear(captioner, tmp_path, capsys):
    _, ckpt = captioner
    with pytest.raises(SystemExit):
        export_main(["--ckpt", str(ckpt), "--output", str(tmp_path / "x"), "--private"])
    assert "--private needs --push_to_hub" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_main(["--ckpt", str(tmp_path / "missing.ckpt"), "--output", str(tmp_path / "x")])
    assert "no checkpoint file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_main(["--ckpt", str(ckpt), "--output", str(tmp_path / "x"), "--push_to_hub", "not a repo"])
    assert "ORG/NAME" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_output_under_a_file_is_refused_before_the_checkpoint_loads(captioner, tmp_path, monkeypatch, capsys):
    _, ckpt = captioner
    monkeypatch.setattr("trainer.tools.export.export_checkpoint", lambda *a, **kw: pytest.fail("the model was loaded"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as refused:
        export_main(["--ckpt", str(ckpt), "--output", str(tmp_path / "file" / "export")])
    assert refused.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err


def test_a_read_only_output_is_refused_before_the_checkpoint_loads(captioner, read_only_dir, monkeypatch, capsys):
    _, ckpt = captioner
    monkeypatch.setattr("trainer.tools.export.export_checkpoint", lambda *a, **kw: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit) as refused:
        export_main(["--ckpt", str(ckpt), "--output", str(read_only_dir / "export")])
    assert refused.value.code == 2 and f"cannot write in {read_only_dir}" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["pixel_diff", "importance"])
def test_captioner_selectors_are_rebuilt_from_the_export(kind, captioner, tiny_model_dir, tmp_path):
    from models.decoders import BinMaxDecoder
    from models.encoders import FrameEncoder
    from models.importance import FrameImportanceModel, ImportanceSelector
    from models.selectors import PixelDiffSelector

    module, _ = captioner
    if kind == "pixel_diff":
        selector = PixelDiffSelector(p=2, size=32, decoder=BinMaxDecoder())
        spec = {"class_path": "models.selectors.PixelDiffSelector",
                "init_args": {"p": 2, "size": 32, "decoder": {"class_path": "models.decoders.BinMaxDecoder"}}}  # fmt: skip
    else:
        torch.manual_seed(0)
        mask = FrameImportanceModel(feature_dim=32, d_model=32, layers=1, heads=2, dropout=0.0)
        torch.nn.init.normal_(mask.head.weight)  # not the all-zero (uniform) initial head
        selector = ImportanceSelector(model=mask, encoder=FrameEncoder(str(tiny_model_dir)))
        encoder_spec = {"class_path": "models.encoders.FrameEncoder",
                        "init_args": {"model_name_or_path": str(tiny_model_dir)}}  # fmt: skip
        spec = {"class_path": "models.importance.ImportanceSelector",
                "init_args": {"model": {"class_path": "models.importance.FrameImportanceModel",
                                        "init_args": {"feature_dim": 32, "d_model": 32, "layers": 1, "heads": 2}},
                              "encoder": encoder_spec}}  # fmt: skip
    hparams = {"_class_path": "trainer.module.DenseCaptioner", "selector": spec, "num_frames": 4}
    trained = module.selector
    module.selector = selector.eval()
    try:
        out = export_module(module, tmp_path / kind, hparams=hparams)
    finally:
        module.selector = trained

    g = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (14, 3, 64, 64), dtype=torch.uint8, generator=g)
    times = torch.arange(14, dtype=torch.float64) * 0.5
    loaded = load_selector(out)
    assert type(loaded) is type(selector) and type(loaded.decoder) is type(selector.decoder)
    assert torch.equal(loaded.select(frames, times, 4), selector.select(frames, times, 4))
    if kind == "importance":
        model = FrameImportanceModel.from_pretrained(out / "selector")
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), mask.state_dict().values()))
    else:
        assert json.loads((out / "selector" / "config.json").read_text()) == spec
