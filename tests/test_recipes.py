"""The real-data recipes run end to end on the SmolVLM2-256M-shaped stand-in (slow).

Synthetic MP4s are placed and named as the real datasets are (ActivityNet Captions' ``train.json``,
``val_1.json``, ``val_2.json`` and ``videos/v_<id>.mp4``; YouCook2's ``database`` JSON and
``raw_videos/<subset>/<recipe_type>/<id>.mp4``), then each recipe family runs as written, with
only the model path, the device and the sizes overridden: fill the caches, train a few steps,
evaluate (ActivityNet against val_1 + val_2), export.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from data.schema import load_annotations
from data.synthetic import SyntheticConfig, generate_dataset
from trainer.__main__ import main as cli_main
from trainer.tools.cache import main as cache_main
from trainer.evaluation.evaluate import main as evaluate_main
from trainer.tools.export import main as export_main

ROOT = Path(__file__).parents[1]
FAMILIES = ("uniform_lora", "rl_likelihood", "ranking", "teacher_joint")


@pytest.fixture(scope="module")
def real_layouts(tmp_path_factory):
    """20 synthetic videos laid out as ActivityNet Captions and as YouCook2: (root, layout -> files)."""
    root = tmp_path_factory.mktemp("datasets")
    cfg = SyntheticConfig(num_videos=20, min_duration=10.0, max_duration=12.0, min_events=1, max_events=3,
                          max_event_len=2.5, seed=11)  # fmt: skip
    paths = generate_dataset(root / "synthetic", cfg, progress=False)
    samples = [s for split in ("train", "val", "test") for s in load_annotations(paths[split])]
    assert len(samples) == 20

    anet = root / "activitynet_captions"
    (anet / "videos").mkdir(parents=True)
    files = {"train.json": {}, "val_1.json": {}, "val_2.json": {}}
    for i, sample in enumerate(samples):
        vid = f"v_{i:011d}"  # the official ids: "v_" and 11 YouTube characters, no "video" field
        shutil.copy(sample.video, anet / "videos" / f"{vid}.mp4")
        entry = {"duration": sample.duration, "timestamps": [[e.start, e.end] for e in sample.events],
                 "sentences": [e.caption for e in sample.events]}  # fmt: skip
        if i < 12:
            files["train.json"][vid] = entry
        else:
            files["val_1.json"][vid] = entry
            # A second annotator: other boundaries, other words.
            files["val_2.json"][vid] = {**entry, "timestamps": [[max(0.0, s - 0.3), e + 0.3] for s, e in entry["timestamps"]],
                                        "sentences": [f"someone sees {c}" for c in entry["sentences"]]}  # fmt: skip
    for name, content in files.items():
        (anet / name).write_text(json.dumps(content))

    yc2 = root / "youcook2"
    database = {}
    for i, sample in enumerate(samples):
        vid, subset, recipe = f"yc{i:09d}", "training" if i < 12 else "validation", str(101 + i % 3)
        folder = yc2 / "raw_videos" / subset / recipe
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(sample.video, folder / f"{vid}.mp4")
        database[vid] = {"duration": sample.duration, "subset": subset, "recipe_type": recipe,
                         "video_url": f"https://www.youtube.com/watch?v={vid}",
                         "annotations": [{"segment": [e.start, e.end], "id": j, "sentence": e.caption}
                                         for j, e in enumerate(sample.events)]}  # fmt: skip
    (yc2 / "youcookii_annotations_trainval.json").write_text(json.dumps({"database": database}))
    return {
        "activitynet": {"train_file": anet / "train.json", "val_file": anet / "val_1.json",
                        "test_file": anet / "val_1.json", "video_root": anet / "videos",
                        "refs": [anet / "val_1.json", anet / "val_2.json"]},
        "youcook2": {**dict.fromkeys(("train_file", "val_file", "test_file"), yc2 / "youcookii_annotations_trainval.json"),
                     "video_root": yc2 / "raw_videos", "refs": None},
    }  # fmt: skip


def _overrides(family: str, files: dict, standin: Path, tmp_path: Path) -> dict[str, str]:
    """The model path, the device and the sizes; nothing else of the recipe changes."""
    keys = {
        "trainer.accelerator": "cpu", "trainer.precision": "32-true", "trainer.max_epochs": "1",
        "trainer.limit_train_batches": "2", "trainer.limit_val_batches": "1", "trainer.val_check_interval": "1.0",
        "trainer.log_every_n_steps": "1", "trainer.enable_progress_bar": "false",
        "trainer.logger.init_args.save_dir": str(tmp_path / "logs"),
        "checkpoint.dirpath": str(tmp_path / "ckpt"), "predictions.output": str(tmp_path / "pred.json"),
        **{f"data.{k}": str(v) for k, v in files.items() if k != "refs"},
        "data.cache_dir": str(tmp_path / "cache"), "data.fps": "0.5", "data.frame_size": "64", "data.max_frames": "5",
        "data.num_workers": "0",
        "model.init_args.num_frames": "4",
        "model.init_args.vlm.init_args.model_name_or_path": str(standin),
        "model.init_args.vlm.init_args.dtype": "float32", "model.init_args.vlm.init_args.max_new_tokens": "12",
    }  # fmt: skip
    if family != "uniform_lora":
        keys.update({
            "model.init_args.encoder.init_args.model_name_or_path": str(standin),
            "model.init_args.encoder.init_args.dtype": "float32",
            "model.init_args.eval_budgets": "[2, 4]", "model.init_args.decoder.init_args.min_gap": "1",
            "model.init_args.objective.group_size": "2", "model.init_args.objective.rank_candidates": "2",
            "model.init_args.objective.temperature_steps": "2", "model.init_args.reward_batch_size": "4",
        })  # fmt: skip
    if family == "teacher_joint":  # the schedule's length: teacher for 1 batch, then joint
        keys.update({"model.init_args.objective.teacher_anneal_steps": "1", "model.init_args.objective.lora_start": "1"})
    # A 1-2 step run would spend itself in LR warmup (step 0 runs at LR 0): start at the peak.
    for schedule in LR_SCHEDULES[family]:
        keys[f"model.init_args.{schedule}.init_args.warmup_steps"] = "0"
    return keys


LR_SCHEDULES = {"uniform_lora": ["lr_scheduler"], "ranking": ["selector_lr_scheduler"],
                "rl_likelihood": ["selector_lr_scheduler", "lora_lr_scheduler"],
                "teacher_joint": ["selector_lr_scheduler", "lora_lr_scheduler"]}  # fmt: skip


CASES = [("activitynet", f) for f in FAMILIES] + [("youcook2", "uniform_lora"), ("youcook2", "teacher_joint")]


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "family"), CASES, ids=[f"{d}-{f}" for d, f in CASES])
def test_recipe_family_runs_on_the_256m_standin(dataset, family, real_layouts, standin_256m, tmp_path):
    recipe = ROOT / "configs" / "recipes" / f"smolvlm2_256m_{dataset}_{family}.yaml"
    files = real_layouts[dataset]
    keys = _overrides(family, files, standin_256m, tmp_path)
    cli_args = [arg for key, value in keys.items() for arg in (f"--{key}", value)]

    filled = cache_main(["--config", str(recipe), "--splits", "val", *cli_args])
    assert filled["videos"] == 8 and not filled["skipped"]
    if family != "uniform_lora":  # selector runs cache features and embeddings of every frame
        assert filled["encoded"] == 8 and filled["stats"]["image_embeds"]["entries"] == 8

    cli = cli_main(["fit", "--config", str(recipe), *cli_args])
    assert cli.trainer.global_step >= 1  # uniform_lora accumulates 8 batches per step
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.is_file()
    if family in ("uniform_lora", "rl_likelihood", "teacher_joint"):  # the adapter trained
        lora_b = [p for n, p in cli.model.vlm.named_parameters() if "lora_B" in n]
        assert lora_b and any(p.abs().sum() > 0 for p in lora_b)

    out = tmp_path / "eval"
    refs = ["--ref", *map(str, files["refs"])] if files["refs"] else []
    java = [] if family == "rl_likelihood" else ["--no_java"]  # one case with METEOR and SODA_c in Java
    result = evaluate_main([
        "--config", str(recipe), "--ckpt", str(last), "--split", "test", "--selectors", "learned", "uniform",
        "--budgets", "4", "--max_videos", "2", "--generate", *refs, *java, "--output", str(out), "--plot_videos", "0",
        *cli_args,
    ])  # fmt: skip
    summary = {s["selector"]: s for s in result["summary"]}
    assert set(summary) == {"learned", "uniform"} and all(s["videos"] == 2 for s in summary.values())
    assert all(torch.isfinite(torch.tensor(s["nll"])) for s in summary.values())
    assert ("meteor" in summary["learned"]) == (not java)
    assert (out / "captions" / "learned@4.json").is_file()

    export = tmp_path / "export"
    export_main(["--ckpt", str(last), "--output", str(export)])
    assert (export / "README.md").is_file()
    # The merged VLM where an adapter trained; the ranking judge stays the base model, so its
    # export is the selector and a card that names the base model.
    assert (export / "config.json").is_file() == (family != "ranking")
    if family != "uniform_lora":
        assert (export / "selector" / "model.safetensors").is_file()
