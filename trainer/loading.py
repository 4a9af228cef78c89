"""One way to load a trained result, under one trust rule.

A trained result comes in three forms, and every tool (``evaluate``, ``export``, ``predict`` through
configs, the captioner's frozen selectors, the ``select``/``caption`` commands) reads them here:

* a **Lightning checkpoint** written by ``python -m trainer fit`` (``*.ckpt``): the LightningModule
  is rebuilt from the hyperparameters the CLI recorded (``_class_path`` + init args) and its
  trainable-only weights are loaded on top of the frozen base (:func:`module_from_checkpoint`);
* an **export folder** written by ``python -m trainer export`` (``selector/`` inside it);
* a **Hub id** ``ORG/NAME`` of such an export, fetched with ``huggingface_hub.snapshot_download``
  (which honours ``HF_HUB_OFFLINE``; nothing else is downloaded).

From any of them :func:`load_selector` gives the inference :class:`~models.selectors.FrameSelector`
and :func:`load_vlm` the captioning :class:`~models.vlm.SmolVLM` (LoRA adapter merged or applied):
each LightningModule says what that is through ``inference_selector()``, so ``selector`` means a
``FrameSelector`` everywhere. :class:`TrainedSelector` wraps one, frozen, for configs (e.g. a
captioner that shows the frames a trained scene-boundary model or importance mask picks).

The trust rule: classes are rebuilt only from this project's packages (:data:`ALLOWED_PACKAGES`),
checkpoints are read with ``torch.load(weights_only=True)`` (no unpickling of objects), weights
of exports come from safetensors, and a recorded ``trust_remote_code: true`` is refused.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.decoders import Decoder
from models.selectors import FrameSelector
from trainer.checkpointing import restore_trainable_state

log = logging.getLogger(__name__)

#: Packages whose classes a checkpoint, an export or a selector name may name (nothing else is imported).
ALLOWED_PACKAGES = ("trainer.", "models.", "data.")
#: Inside an export folder: the selector's folder and the file that says how frames are chosen.
SELECTOR_DIR = "selector"
SELECTION_FILE = "frame_selection.json"
TRAINING_FILE = "training.json"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class LoadError(RuntimeError):
    """A trained result cannot be loaded (the message says why and what to do)."""


# --------------------------------------------------------------------------------------- classes
def import_class(class_path: str, base: type) -> type:
    """The class at ``class_path``, which must live in this project and subclass ``base``.

    Raises:
        LoadError: The path is outside :data:`ALLOWED_PACKAGES`, missing, or not a ``base``.
    """
    module_name, _, name = class_path.rpartition(".")
    if not module_name.startswith(ALLOWED_PACKAGES):
        raise LoadError(
            f"refusing to import {class_path!r}: only classes from {', '.join(p + '*' for p in ALLOWED_PACKAGES)} "
            "are rebuilt from checkpoints, exports and selector names"
        )
    try:
        cls = getattr(importlib.import_module(module_name), name, None)
    except ModuleNotFoundError as err:
        raise LoadError(f"cannot import {class_path!r}: {err}") from err
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise LoadError(f"{class_path!r} is not a {base.__module__}.{base.__qualname__}")
    return cls


def build_from_spec(spec: dict[str, Any], base: type = nn.Module) -> Any:
    """Instantiates ``{"class_path": ..., "init_args": {...}}`` the way the CLI does (nested specs included)."""
    from jsonargparse import ArgumentParser

    check_no_remote_code(spec)
    cls = import_class(spec["class_path"], base)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "obj", fail_untyped=False)
    cfg = parser.parse_object({"obj": dict(spec.get("init_args") or {})})
    return parser.instantiate_classes(cfg).obj


def check_no_remote_code(config: Any, where: str = "the recorded settings") -> None:
    """Raises if ``config`` (nested dicts and lists) asks for ``trust_remote_code: true`` anywhere."""
    if isinstance(config, dict):
        if config.get("trust_remote_code") is True:
            raise LoadError(
                f"{where} ask for trust_remote_code: true; trained results are only loaded without remote "
                "code (load that model yourself if you trust it)"
            )
        for value in config.values():
            check_no_remote_code(value, where)
    elif isinstance(config, (list, tuple)):
        for value in config:
            check_no_remote_code(value, where)


# --------------------------------------------------------------------------------------- sources
def is_hub_id(name: str | None) -> bool:
    """True for ``org/name`` Hub ids (not for local paths, which exist or start with ``.``, ``/``, ``~``)."""
    if not name or name.startswith((".", "/", "~")) or Path(name).exists():
        return False
    return bool(HUB_ID.match(name))


def resolve_source(source: str | Path) -> tuple[str, Path]:
    """``("checkpoint" | "export", local path)`` of a checkpoint file, an export folder or a Hub id.

    Raises:
        FileNotFoundError: ``source`` is none of the three (the message lists them).
        LoadError: A folder that is not an export.
    """
    path = Path(str(source)).expanduser()
    if path.is_file():
        return "checkpoint", path
    if path.is_dir():
        if (path / SELECTOR_DIR / SELECTION_FILE).is_file() or (path / SELECTION_FILE).is_file():
            return "export", path
        raise LoadError(
            f"{path} is a folder but not an export (no {SELECTOR_DIR}/{SELECTION_FILE}): "
            "write one with `python -m trainer export --ckpt CKPT --output FOLDER`"
        )
    if is_hub_id(str(source)):
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(str(source)))
        except Exception as err:  # offline, missing, private: say which source failed and why
            raise FileNotFoundError(f"{source}: not a local path, and the Hub could not provide it ({err})") from err
        return resolve_source(folder)
    raise FileNotFoundError(
        f"{source}: no such file or folder; give a Lightning checkpoint (.ckpt), an export folder "
        "(python -m trainer export) or a Hub id ORG/NAME"
    )


# --------------------------------------------------------------------------------------- modules
def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint file's dict, read without unpickling objects (``weights_only=True``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def module_from_checkpoint(
    ckpt_path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[Any, dict[str, Any]]:
    """Rebuilds the LightningModule of a ``python -m trainer fit`` checkpoint and loads its weights.

    The module is instantiated from the checkpoint's ``hyper_parameters`` (``_class_path`` + init
    args) with :func:`lightning.pytorch.cli.instantiate_module`; the frozen base comes from
    ``model_name_or_path`` and the trainable-only state dict is loaded after the module's own
    ``on_load_checkpoint`` key check. Init args a module has renamed since (its
    ``renamed_hparams``, old name to new) are read under their new name.

    Returns:
        The module (eval mode, on the CPU) and the checkpoint dict.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.cli import instantiate_module

    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path, map_location)
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    hparams.pop("_instantiator", None)
    class_path = hparams.get("_class_path")
    if not class_path:
        raise LoadError(
            f"{path}: the checkpoint's hyper_parameters have no _class_path; it was not written by "
            "`python -m trainer fit` (the LightningCLI records the module's class and init args)"
        )
    cls = import_class(class_path, pl.LightningModule)
    check_no_remote_code(hparams, f"{path}'s hyperparameters")
    for old, new in getattr(cls, "renamed_hparams", {}).items():
        if old in hparams and new not in hparams:
            hparams[new] = hparams.pop(old)
    log.info("loading %s (%s, step %s)", path, class_path, checkpoint.get("global_step"))
    with warnings.catch_warnings():
        # Built outside the CLI, save_hyperparameters sees the injected modules (and drops them).
        warnings.filterwarnings("ignore", message=r"Attribute '\w+' is an instance of `nn.Module`")
        module = instantiate_module(cls, hparams)
    checkpoint["hyper_parameters"] = {"_class_path": class_path, **hparams}
    restore_trainable_state(module, checkpoint)
    module.eval()
    return module, checkpoint


def module_from_config(config: str | Path, ckpt: str | Path | None = None, sets: list[str] = ()) -> tuple[Any, Any]:
    """``(data module, LightningModule)`` of a training config, with ``KEY=VALUE`` overrides.

    The config is parsed by the training CLI itself (so it means what it means to ``fit``); the
    checkpoint's trainable weights, if given, are loaded on top. The module is in eval mode.
    """
    from trainer.__main__ import main as cli_main

    overrides = []
    for kv in sets:
        if "=" not in kv:
            raise ValueError(f"--set takes KEY=VALUE, got {kv!r}")
        key, value = kv.split("=", 1)
        overrides += [f"--{key}", value]
    # The CLI is driven by ``args`` alone; with the calling command line still in sys.argv,
    # LightningCLI would warn that both are given.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = cli_main(["--config", str(config), *overrides], run=False)
    finally:
        sys.argv = argv
    module = cli.model
    if ckpt is not None:
        restore_trainable_state(module, read_checkpoint(ckpt))
    module.eval()
    return cli.datamodule, module


# --------------------------------------------------------------------------------------- selectors
def selector_folder(folder: str | Path) -> Path:
    """An export's ``selector/`` subfolder; ``folder`` itself when it is that subfolder already."""
    folder = Path(folder)
    return folder / SELECTOR_DIR if (folder / SELECTOR_DIR).is_dir() else folder


def read_selection(folder: str | Path) -> dict[str, Any]:
    """An export's ``frame_selection.json``: how its frames are chosen (``folder``: the export or its ``selector/``)."""
    return json.loads((selector_folder(folder) / SELECTION_FILE).read_text())


def selector_from_export(folder: str | Path) -> FrameSelector:
    """The frame selector of an export folder (or of its ``selector/`` subfolder), in eval mode.

    The learned mask is an :class:`models.importance.ImportanceSelector` around
    ``FrameImportanceModel.from_pretrained(folder / "selector")`` with the recorded frame encoder,
    decoder and, for a mask that reads another selector's scores, that cue selector; other selectors are rebuilt from their class path and init args (and weights).
    """
    target = selector_folder(folder)
    info = read_selection(target)
    decoder = build_from_spec(info["decoder"], Decoder) if info.get("decoder") else None
    if info["importance_model"]:
        from models.importance import FrameImportanceModel, ImportanceSelector

        model = FrameImportanceModel.from_pretrained(target, strict=True)
        encoder = build_from_spec(info["encoder"]) if info.get("encoder") else None
        cue = build_from_spec(info["cue"], FrameSelector) if info.get("cue") else None
        selector = ImportanceSelector(
            model=model, encoder=encoder, decoder=decoder, budget=info.get("num_frames"), cue=cue
        )
    else:
        selector = build_from_spec(info["selector"], FrameSelector)
        if info.get("weights"):
            from safetensors.torch import load_model

            load_model(selector, str(target / info["weights"]))
    return selector.eval()


@dataclass
class Trained:
    """A loaded trained result.

    Attributes:
        kind: ``"checkpoint"`` or ``"export"``.
        path: The local checkpoint file or export folder (a Hub id's snapshot folder).
        selector: The inference frame selector (eval mode).
        module: The LightningModule (checkpoints only; ``None`` for exports).
        hparams: The module's recorded config (``_class_path`` + init args; an export's
            ``training.json`` hyperparameters).
    """

    kind: str
    path: Path
    selector: FrameSelector
    module: Any | None
    hparams: dict[str, Any]


def load_trained(source: str | Path) -> Trained:
    """Any form of trained result (checkpoint, export folder, Hub id) as a :class:`Trained`."""
    kind, path = resolve_source(source)
    if kind == "checkpoint":
        module, checkpoint = module_from_checkpoint(path)
        return Trained(kind, path, module.inference_selector(), module, checkpoint["hyper_parameters"])
    training = path / TRAINING_FILE
    hparams = json.loads(training.read_text()).get("hyper_parameters", {}) if training.is_file() else {}
    return Trained(kind, path, selector_from_export(path), None, hparams)


def load_selector(source: str | Path) -> FrameSelector:
    """The inference :class:`FrameSelector` of a checkpoint, an export folder or a Hub id (eval mode)."""
    return load_trained(source).selector


def selector_of(module: Any) -> FrameSelector:
    """The frame selector a LightningModule uses at inference (its ``inference_selector()``)."""
    if not hasattr(module, "inference_selector"):
        raise LoadError(f"{type(module).__name__} has no frame selector (no inference_selector())")
    return module.inference_selector()


def frame_budget(trained: Trained) -> int | None:
    """The frame budget K the result was trained to show (``num_frames``), or ``None`` if unrecorded."""
    if trained.module is not None:
        k = getattr(trained.module, "num_frames", None)
    else:
        k = read_selection(trained.path).get("num_frames")
    return int(k) if k else None


def load_vlm(source: str | Path | Trained) -> Any:
    """The captioning :class:`models.vlm.SmolVLM` of a trained result, in eval mode on the CPU.

    * a checkpoint: the rebuilt module's ``vlm`` (a ``DenseCaptioner``, or a ``SelectorTrainer``
      that trained or used one), its LoRA adapter loaded;
    * a merged export (``config.json`` + safetensors weights at the top of the folder): the folder
      itself, with no adapter on top;
    * an adapter-only export (``adapter_config.json``): the base model it names, with the adapter
      applied by peft and merged in (inference only: one plain model, as for a merged export).

    The prompt settings the run recorded (``vlm.init_args``: ``dtype``, ``instruction``,
    ``max_new_tokens`` in ``training.json``) are used again, so the model is asked as it was
    trained. The trust rule of this module holds: no remote code, weights from safetensors only.

    Args:
        source: A checkpoint, an export folder, a Hub id, or what :func:`load_trained` returned
            for one (so a checkpoint is not read twice).

    Raises:
        LoadError: The result has no VLM (a selector-only run or export), or its weights are not
            in safetensors.
    """
    trained = source if isinstance(source, Trained) else load_trained(source)
    if trained.kind == "checkpoint":
        vlm = getattr(trained.module, "vlm", None)
        if vlm is None:
            raise LoadError(
                f"{trained.path}: this checkpoint ({trained.hparams.get('_class_path')}) has no VLM to caption with "
                "(a selector-only run); give a captioner's checkpoint or export, or use `python -m trainer select`"
            )
        return vlm.eval()
    from models.vlm import LoraSettings, SmolVLM

    folder = trained.path
    check_no_remote_code(trained.hparams, f"{folder / TRAINING_FILE}")
    recorded = ((trained.hparams.get("vlm") or {}).get("init_args")) or {}
    settings = {k: recorded[k] for k in ("dtype", "instruction", "max_new_tokens") if recorded.get(k) is not None}
    if (folder / "adapter_config.json").is_file():
        if not (folder / "adapter_model.safetensors").is_file():
            raise LoadError(f"{folder}: the adapter's weights are not in adapter_model.safetensors; refusing to unpickle them")
        config = json.loads((folder / "adapter_config.json").read_text())
        check_no_remote_code(config, f"{folder}/adapter_config.json")
        base = config.get("base_model_name_or_path")
        if not base:
            raise LoadError(f"{folder}/adapter_config.json names no base_model_name_or_path to apply the adapter to")
        from peft import PeftModel

        vlm = SmolVLM(base, lora=LoraSettings(enabled=False), **settings)
        with torch.no_grad():
            vlm.model = PeftModel.from_pretrained(vlm.model, str(folder)).merge_and_unload()
        log.info("loaded %s: base %s + its LoRA adapter (merged)", folder, base)
        return vlm.eval()
    if (folder / "config.json").is_file():
        if not any(folder.glob("*.safetensors")):
            raise LoadError(f"{folder}: the model's weights are not in safetensors; refusing to unpickle them")
        log.info("loaded %s: merged SmolVLM", folder)
        return SmolVLM(str(folder), lora=LoraSettings(enabled=False), **settings).eval()
    raise LoadError(
        f"{folder}: this export holds a frame selector only (no config.json or adapter_config.json), so there is "
        "no VLM to caption with; export a captioner's checkpoint, or use `python -m trainer select`"
    )


class TrainedSelector(FrameSelector):
    """A trained selector from a checkpoint, an export folder or a Hub id, frozen.

    For configs: a captioner that shows the frames a trained scene-boundary model or importance
    mask picks names ``trainer.loading.TrainedSelector`` with ``source: checkpoints/NAME/last.ckpt``.
    Its weights are not trained further and not saved again in the captioner's checkpoints (they
    are frozen, and checkpoints keep trainable weights only): the source is read again on load.

    Args:
        source: What :func:`load_trained` reads.
        decoder: Replaces the trained selector's decoder (default: keep it).
    """

    def __init__(self, source: str, decoder: Decoder | None = None) -> None:
        trained = load_trained(source)
        super().__init__(decoder if decoder is not None else trained.selector.decoder)
        self.source = source
        self.trained = trained
        self.inner = trained.selector
        self.inner.decoder = self.decoder
        self.inner.requires_grad_(False)
        self.inner.eval()
        self.trained.module = None  # the selector shares its weights; the rest of the module is not needed

    @property
    def shows_candidates(self) -> bool:  # type: ignore[override]
        return self.inner.shows_candidates

    def train(self, mode: bool = True) -> TrainedSelector:
        # Lightning puts the whole LightningModule in train mode; a frozen selector stays in eval.
        super().train(mode)
        self.inner.eval()
        return self

    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.inner.scores(frames, timestamps, k)

    def pairwise(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor | None:
        with torch.no_grad():
            return self.inner.pairwise(frames, timestamps)

    def choose(
        self, frames: torch.Tensor, timestamps: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.inner.choose(frames, timestamps, k)

    def select(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int) -> torch.Tensor:
        with torch.no_grad():
            return self.inner.select(frames, timestamps, k)
