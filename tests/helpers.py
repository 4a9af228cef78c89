"""Command lines for in-process ``python -m trainer`` runs on the tiny model and small synthetic data, and frame checks."""

from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).parents[1]
CONFIGS = ROOT / "configs"
# The project's Markdown: the front door and each folder's reference next to its code.
DOCS = [ROOT / "README.md",
        *sorted(p for d in ("configs", "data", "models", "trainer") for p in (ROOT / d).rglob("*.md"))]


def _inline_parts(value, folder: Path):
    """``value`` with each included part (a ``*.yaml`` path value) read in its place."""
    if isinstance(value, str) and value.endswith(".yaml"):
        path = (folder / value).resolve()
        return _inline_parts(yaml.safe_load(path.read_text()), path.parent)
    if isinstance(value, dict):
        return {k: _inline_parts(v, folder) for k, v in value.items()}
    return value


def _merge(into: dict, value: dict) -> dict:
    for key, v in value.items():
        into[key] = _merge(dict(into[key]), v) if isinstance(v, dict) and isinstance(into.get(key), dict) else v
    return into


def written_config(config: Path) -> dict:
    """The config as written: its listed bases (``config:``) and then its own keys, merged key by key,
    with included parts read in place. What its YAML says, before the CLI adds defaults."""
    from trainer.__main__ import config_files

    merged: dict = {}
    for file in map(Path, config_files(str(config))):
        content = {k: v for k, v in yaml.safe_load(file.read_text()).items() if k != "config"}
        _merge(merged, _inline_parts(content, file.parent))
    return merged


def fit_args(config: str, tmp_path: Path, tiny_model_dir: Path, synthetic, *extra: str) -> list[str]:
    """CLI arguments that point ``configs/<config>`` at the tiny model, the fixture data and ``tmp_path``.

    Every model folder the config names (the VLM, the frame encoder) becomes the tiny model, and
    logs, checkpoints, caches and predictions go under ``tmp_path``; ``extra`` comes last and wins.
    """
    _, paths, _ = synthetic
    init = written_config(CONFIGS / config)["model"]["init_args"]
    args = ["--config", str(CONFIGS / config)]
    for key in ("vlm", "encoder"):
        if key in init:
            args += [f"--model.init_args.{key}.init_args.model_name_or_path", str(tiny_model_dir)]
    return [
        *args,
        "--data.train_file", str(paths["train"]),
        "--data.val_file", str(paths["val"]),
        "--data.test_file", str(paths["test"]),
        "--data.cache_dir", str(tmp_path / "cache"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--trainer.enable_progress_bar", "false",
        "--checkpoint.dirpath", str(tmp_path / "ckpt"),
        "--predictions.output", str(tmp_path / "pred.json"),
        *extra,
    ]  # fmt: skip


def as_overrides(pairs) -> list[str]:
    """``KEY=VALUE`` pairs as ``fit``'s override arguments: ``--KEY VALUE``."""
    return [arg for pair in pairs for arg in ("--" + pair.split("=", 1)[0], pair.split("=", 1)[1])]


def cache_args(synthetic, tiny_model_dir: Path, cache_dir: Path) -> list[str]:
    """``python -m trainer cache`` arguments that fill the frame and feature caches of smoke_joint's val and test splits."""
    _, paths, _ = synthetic
    sets = [f"data.train_file={paths['train']}", f"data.val_file={paths['val']}", f"data.test_file={paths['test']}",
            f"data.cache_dir={cache_dir}", "data.fps=2.0", "data.frame_cache=true",
            f"model.init_args.encoder.init_args.model_name_or_path={tiny_model_dir}",
            f"model.init_args.vlm.init_args.model_name_or_path={tiny_model_dir}"]  # fmt: skip
    return ["--config", str(CONFIGS / "smoke_joint.yaml"), "--splits", "val", "test", "--workers", "0", *as_overrides(sets)]


def vlm_with_a_trained_adapter(model_dir, dropout: float = 0.0, std: float = 0.5):
    """A SmolVLM whose LoRA B matrices are random: a fresh adapter (B = 0) outputs 0, so neither
    its dropout nor the text path it adapts would show in any output."""
    import torch

    from models.vlm import LoraSettings, SmolVLM

    torch.manual_seed(0)
    vlm = SmolVLM(str(model_dir), lora=LoraSettings(r=4, alpha=8, dropout=dropout))
    with torch.no_grad():
        for name, p in vlm.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, std)
    return vlm


def color_mask(frame: np.ndarray, rgb) -> np.ndarray:
    """Saturated pixels whose chromaticity matches a shape colour (brightness flicker scales both)."""
    f = frame.astype(float)
    chroma = f / (f.sum(-1, keepdims=True) + 1e-6)
    target = np.array(rgb, float) / sum(rgb)
    saturated = f.max(-1) - f.min(-1) > 60
    return saturated & (np.abs(chroma - target).max(-1) < 0.08)


def write_moving_square(path: Path, width: int, height: int, fps: float, seconds: float, appear: tuple[float, float]):
    """An MP4/MKV of ``width`` x ``height`` at ``fps`` (29.97 exactly) with a red square moving during ``appear``.

    Returns the number of frames written.
    """
    from data.synthetic import write_video

    count = int(round(seconds * fps))
    side = max(4, min(width, height) // 3)
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), 50, np.uint8)
        frame[:, : width // 2] = 90  # two grey halves: something for a correlation to lock onto
        t = i / fps
        if appear[0] <= t < appear[1]:
            x = int((width - side) * (t - appear[0]) / (appear[1] - appear[0]))
            frame[height // 4 : height // 4 + side, x : x + side] = (230, 30, 30)
        frames.append(frame)
    write_video(path, frames, fps)
    return count


def write_empty_video(path: Path) -> None:
    """A video file with a header and no frames (FFmpeg then reports no video stream)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
        for packet in stream.encode():
            container.mux(packet)


def footage_installed() -> bool:
    """Whether the packages that ship the real-footage source clips are installed (``.[bench]``)."""
    from data.footage import SOURCES, MissingFootageError, source_path

    try:
        for clip in SOURCES:
            source_path(clip, verify=False)
    except MissingFootageError:
        return False
    return True


def tiny_footage_config():
    """One real-footage video of four shots: one cut, one 5-frame cross-fade and one 5-frame fade
    to black (odd lengths put a frame exactly in the middle), small enough to build in seconds."""
    from data.footage import FootageConfig

    return FootageConfig(num_videos=1, segments_per_video=4, width=64, height=48, min_pure=0.4, max_pure=0.6,
                         cuts_per_cycle=1, cross_fades=(0.2,), fades_to_black=(0.2,), seed=3)  # fmt: skip
