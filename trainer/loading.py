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
captioner that shows the frames a trained scene-boundary model or importance model picks).

The trust rule: what a checkpoint or a download records is data, never code. Checkpoints are read
with ``torch.load(weights_only=True)`` (no unpickling of objects) and the weights of exports come
from safetensors. Before anything is imported or built from recorded settings, :func:`check_recorded`
walks all of them, every dict and list at any depth, and refuses the whole result if it finds

* under a key that spells ``class_path`` or ``_instantiator`` in any case or punctuation
  (``class_path``, ``_class_path``, ``classPath``, ``CLASS-PATH``...), a value that is not an
  allowed class;
* a string shaped like an import path (two or more dot-separated Python identifiers, e.g.
  ``os.system``) that is not an allowed class: anywhere in settings that jsonargparse parses (a
  checkpoint's hyperparameters, an export's selector specs), since it imports such a string
  wherever a parameter's type is a class or a callable; in files read as plain values
  (``training.json``, ``config.json``, ``adapter_config.json``), under a type-like key
  (:data:`TYPE_KEYS`: ``__class__``, ``_target_``, ``type``, ``auto_map``);
* ``trust_remote_code`` set to anything but ``false``/``null``.

Allowed classes (:func:`allowed_class`): classes of this project's packages (:data:`ALLOWED_PACKAGES`;
a project *function* is refused, since jsonargparse would call it), and the optimizers and LR
schedulers of ``torch.optim`` (looked up in the already-imported ``torch.optim``). The check imports
nothing outside this project (as Lightning's own fix for ``_instantiator``: names are resolved only
in ``sys.modules``), so a refused name is never imported. The one other value accepted is the
``_instantiator`` Lightning itself records, ``lightning.pytorch.cli.instantiate_module``. The error
names the file, the key path (``hyper_parameters.optimizer.init_args.x.class_path``) and the value.

Recorded settings are a checkpoint's ``hyper_parameters`` and ``datamodule_hyper_parameters``
(:func:`read_checkpoint`, for :func:`module_from_checkpoint`, for
:func:`trainer.cli_helpers.module_from_config`'s ``--ckpt`` before the model is built, and for
``fit``/``validate``/``test``/``predict --ckpt_path`` before LightningCLI merges them), and an
export's (or Hub snapshot's) ``training.json``, ``config.json``, ``adapter_config.json``,
``selector/frame_selection.json`` and ``selector/config.json`` (:func:`check_export`;
``frame_selection.json``'s ``weights`` must be a plain file name in its folder). A :class:`TrainedSelector` in a config reads its source through
the same path. A user's own config and command line are not checked: they may name any class, as
LightningCLI allows; the checkpoint such a run writes records that class, and every loader then
refuses it, except ``fit``/``validate``/``test``/``predict --ckpt_path`` when the user's own config
or command line of that command names the same class again (:func:`named_classes`): resuming your
own run with your own optimizer works, a stranger's checkpoint cannot bring a class of its own.
"""

from __future__ import annotations

import importlib
import inspect
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
from trainer.checkpointing import plain_hparams, restore_trainable_state
from trainer.renames import current_args, current_class_path, current_selection

log = logging.getLogger(__name__)

#: Packages whose classes a checkpoint, an export or a selector name may name (nothing else is imported).
ALLOWED_PACKAGES = ("trainer.", "models.", "data.")
#: Outside this project, recorded settings may name torch's optimizers and LR schedulers (and nothing else).
TORCH_OPTIM = "torch.optim."
#: What Lightning records under ``_instantiator`` (read by ``load_from_checkpoint``; ours ignores it).
LIGHTNING_INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"
#: Inside an export folder: the selector's folder and the file that says how frames are chosen.
SELECTOR_DIR = "selector"
SELECTION_FILE = "frame_selection.json"
TRAINING_FILE = "training.json"
#: The JSON files of an export that loading (ours, transformers', peft's) reads, checked before any of it.
RECORDED_FILES = (TRAINING_FILE, "config.json", "adapter_config.json", f"{SELECTOR_DIR}/config.json")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Two or more dot-separated identifiers: what jsonargparse would import where a class or callable is expected.
IMPORT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
#: Keys (as :func:`_key` spells them) whose strings name code in any format: jsonargparse's
#: ``class_path``, Lightning's ``_instantiator``, ``__class__``, Hydra's ``_target_``, a ``type``,
#: transformers' ``auto_map``.
TYPE_KEYS = ("classpath", "instantiator", "class", "target", "type", "automap")


class LoadError(RuntimeError):
    """A trained result cannot be loaded (the message says why and what to do)."""


# --------------------------------------------------------------------------------------- classes
def import_class(class_path: str, base: type) -> type:
    """The class at ``class_path``, which must live in this project and subclass ``base``.

    Raises:
        LoadError: The path is outside :data:`ALLOWED_PACKAGES`, missing, or not a ``base``.
    """
    class_path = current_class_path(class_path)
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


def allowed_class(path: str) -> bool:
    """Whether recorded settings may name ``path``: a class of this project, or a ``torch.optim``
    optimizer or LR scheduler.

    Nothing outside this project is imported to decide: a ``torch.optim`` name is looked up in the
    modules already imported (``sys.modules``), anything else outside the project is refused by its
    name alone. A project name is imported (the project's own code) to tell a class from a function.
    """
    if not IMPORT_PATH.match(path):
        return False
    path = current_class_path(path)
    if path.startswith(ALLOWED_PACKAGES):
        module_name, _, name = path.rpartition(".")
        try:
            return isinstance(getattr(importlib.import_module(module_name), name, None), type)
        except ImportError:
            return False
    if path.startswith(TORCH_OPTIM):
        obj = _imported(path)
        return isinstance(obj, type) and issubclass(obj, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler))
    return False


def _imported(path: str) -> Any:
    """The object at ``path`` if its module is already imported (``None`` otherwise); imports nothing."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is not None:
            obj = module
            for name in parts[cut:]:
                obj = getattr(obj, name, None)
            return obj
    return None


def _key(key: Any) -> str:
    """A key as the check compares it: its last dotted part (jsonargparse reads ``a.class_path`` as
    nested keys), lower case, letters only (``_class_path``, ``classPath`` and ``CLASS-PATH`` are one)."""
    return re.sub(r"[^a-z]", "", str(key).rsplit(".", 1)[-1].lower())


def check_recorded(
    config: Any,
    where: str,
    parsed: bool = True,
    trusted: frozenset[str] = frozenset(),
    _path: str = "",
    _typed: bool = False,
) -> None:
    """Refuses recorded settings (a checkpoint's hyperparameters, an export's JSON) that name code.

    Walks every dict and list at any depth (see the module docstring for the rule): a
    ``class_path``/``_instantiator`` key (any spelling) must hold an :func:`allowed_class`, a string
    shaped like an import path must be one too, and ``trust_remote_code`` must not be set. Nothing
    is built here, and nothing outside this project is imported.

    Args:
        config: The recorded settings (nested dicts, lists and plain values).
        where: What they are, for the message (a file, ``"checkpoint.ckpt"``).
        parsed: Whether jsonargparse parses these settings (a checkpoint's hyperparameters, an
            export's selector specs): then *every* import-path-shaped string is checked, since
            jsonargparse imports one wherever the parameter's type is a class or a callable.
            Otherwise (``training.json``, Hugging Face ``config.json``: read as plain values) only
            strings under a type-like key (:data:`TYPE_KEYS`: ``__class__``, ``_target_``,
            ``type``, ``auto_map``...) are, so a file name such as ``last.ckpt`` stays data.
        trusted: Class paths the user's own config or command line names (``fit --ckpt_path``
            resuming a run of theirs): allowed too, since the user chose to import them anyway.

    Raises:
        LoadError: Naming ``where``, the key path (``hyper_parameters.optimizer.class_path``) and the value.
    """
    if isinstance(config, dict):
        for key, value in config.items():
            path = f"{_path}.{key}" if _path else str(key)
            kind = _key(key)
            if kind == "trustremotecode" and value not in (False, None):
                raise LoadError(
                    f"{where}: refusing {path} = {value!r}: trained results are only loaded without remote code "
                    "(load that model yourself if you trust it)"
                )
            if kind in ("classpath", "instantiator"):
                if not isinstance(value, str) or not (
                    value in trusted or allowed_class(value) or (kind == "instantiator" and value == LIGHTNING_INSTANTIATOR)
                ):
                    _refuse(where, path, value)
            else:
                check_recorded(value, where, parsed, trusted, path, _typed or kind in TYPE_KEYS)
    elif isinstance(config, (list, tuple)):
        for i, value in enumerate(config):
            check_recorded(value, where, parsed, trusted, f"{_path}[{i}]", _typed)
    elif (isinstance(config, str) and (parsed or _typed) and IMPORT_PATH.match(config) and config not in trusted
          and not allowed_class(config)):
        # A file name (last.ckpt) has this shape too: where jsonargparse reads it, it could be imported.
        _refuse(where, _path, config, " (a file name there is written with its folder: ./NAME)")


def named_classes(config: Any) -> frozenset[str]:
    """Every class path a config names under a ``class_path`` key (any spelling), at any depth.

    For ``--ckpt_path``: the classes the user's own config and command line chose, which the
    checkpoint may then record too (:func:`check_recorded`'s ``trusted``).
    """
    if hasattr(config, "as_dict"):  # a jsonargparse Namespace
        config = config.as_dict()
    if isinstance(config, dict):
        found = {v for k, v in config.items() if _key(k) == "classpath" and isinstance(v, str)}
        return frozenset(found.union(*(named_classes(v) for v in config.values())))
    if isinstance(config, (list, tuple)):
        return frozenset().union(*(named_classes(v) for v in config))
    return frozenset()


def _refuse(where: str, path: str, value: Any, hint: str = "") -> None:
    raise LoadError(
        f"{where}: refusing {path} = {value!r}: recorded settings may only name classes of this project "
        f"({', '.join(p + '*' for p in ALLOWED_PACKAGES)}) and torch's optimizers and LR schedulers "
        f"({TORCH_OPTIM}*); a checkpoint or a download is data, so nothing else it names is imported or run{hint}"
    )


def read_recorded(path: Path, parsed: bool = False, file_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """A recorded JSON file's content (a dict), after :func:`check_recorded`.

    Args:
        path: The file.
        parsed: Whether jsonargparse parses it (see :func:`check_recorded`).
        file_keys: Top-level keys that hold file names (e.g. ``model.safetensors``), which the
            caller checks as such, not as import paths.
    """
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LoadError(f"{path}: cannot read it as JSON ({err})") from err
    if not isinstance(content, dict):
        raise LoadError(f"{path}: expected a JSON object, found a {type(content).__name__}")
    check_recorded({k: v for k, v in content.items() if k not in file_keys}, str(path), parsed)
    return content


def build_from_spec(spec: dict[str, Any], base: type = nn.Module) -> Any:
    """Instantiates ``{"class_path": ..., "init_args": {...}}`` the way the CLI does (nested specs included)."""
    from jsonargparse import ArgumentParser

    check_recorded(spec, "the recorded selector spec")
    spec = current_args(spec)
    cls = import_class(spec["class_path"], base)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "obj", fail_untyped=False)
    cfg = parser.parse_object({"obj": dict(spec.get("init_args") or {})})
    return parser.instantiate_classes(cfg).obj


def spec_of(obj: Any, recorded: Any) -> dict[str, Any]:
    """``{class_path, init_args}`` of ``obj``: the recorded config when it names this class.

    Without one, the init args are read back from the object's attributes of the same names
    (plain values, and nested modules as specs of their own); a required argument that cannot be
    read is reported, since the spec alone then cannot rebuild the object.
    """
    class_path = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if isinstance(recorded, dict) and recorded.get("class_path") == class_path:
        return {"class_path": class_path, "init_args": dict(recorded.get("init_args") or {})}
    init_args, unread = {}, []
    for name, param in inspect.signature(type(obj).__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        value = getattr(obj, name, inspect.Parameter.empty)
        if isinstance(value, nn.Module):
            init_args[name] = spec_of(value, None)
        elif value is not inspect.Parameter.empty and plain_hparams(value):
            if value != param.default:
                init_args[name] = value
        elif param.default is inspect.Parameter.empty:
            unread.append(name)
    if unread:
        log.warning("no recorded init args for %s, and %s cannot be read back from it", class_path, ", ".join(unread))
    return {"class_path": class_path, "init_args": init_args}


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
def read_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", trusted: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A checkpoint file's dict, read without unpickling objects (``weights_only=True``), its
    recorded settings (``hyper_parameters``, ``datamodule_hyper_parameters``) checked by
    :func:`check_recorded` before anything uses them.

    Args:
        path: The checkpoint file.
        map_location: Where its tensors go.
        trusted: Class paths the user's own config names (see :func:`check_recorded`).

    Raises:
        FileNotFoundError: No such file.
        LoadError: The recorded settings name code outside the allow-list.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict):
        raise LoadError(f"{path}: not a Lightning checkpoint (a {type(checkpoint).__name__}, not a dict)")
    check_recorded({k: v for k, v in checkpoint.items() if k in ("hyper_parameters", "datamodule_hyper_parameters")},
                   str(path), trusted=trusted)  # fmt: skip
    return checkpoint


def module_from_checkpoint(
    ckpt_path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[Any, dict[str, Any]]:
    """Rebuilds the LightningModule of a ``python -m trainer fit`` checkpoint and loads its weights.

    The module is instantiated from the checkpoint's ``hyper_parameters`` (``_class_path`` + init
    args) with :func:`lightning.pytorch.cli.instantiate_module`; the frozen base comes from
    ``model_name_or_path`` and the trainable-only state dict is loaded after the module's own
    ``on_load_checkpoint`` key check. Init args renamed since the checkpoint was written
    (:data:`trainer.renames.RENAMED_ARGS`) are read under their new name.

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
    hparams = current_args(hparams)  # a checkpoint written before a rename
    class_path = hparams["_class_path"]
    cls = import_class(class_path, pl.LightningModule)
    log.info("loading %s (%s, step %s)", path, class_path, checkpoint.get("global_step"))
    with warnings.catch_warnings():
        # Built outside the CLI, save_hyperparameters sees the injected modules (and drops them).
        warnings.filterwarnings("ignore", message=r"Attribute '\w+' is an instance of `nn.Module`")
        module = instantiate_module(cls, hparams)
    checkpoint["hyper_parameters"] = {"_class_path": class_path, **hparams}
    restore_trainable_state(module, checkpoint)
    module.eval()
    return module, checkpoint


# --------------------------------------------------------------------------------------- selectors
def selector_folder(folder: str | Path) -> Path:
    """An export's ``selector/`` subfolder; ``folder`` itself when it is that subfolder already."""
    folder = Path(folder)
    return folder / SELECTOR_DIR if (folder / SELECTOR_DIR).is_dir() else folder


def read_selection(folder: str | Path) -> dict[str, Any]:
    """An export's ``frame_selection.json``: how its frames are chosen (``folder``: the export or its ``selector/``).

    Checked by :func:`check_recorded`, but for ``weights``: a file name in the same folder (which
    must be a plain name, not a path).
    """
    path = selector_folder(folder) / SELECTION_FILE
    info = read_recorded(path, parsed=True, file_keys=("weights",))  # its specs go to build_from_spec
    weights = info.get("weights")
    plain = isinstance(weights, str) and weights not in ("", "..") and "\\" not in weights
    if weights is not None and not (plain and Path(weights).name == weights):
        raise LoadError(f"{path}: refusing weights = {weights!r}: it must name a file in {path.parent}")
    return current_selection(info)  # an export written before a rename


def check_export(folder: str | Path) -> None:
    """Checks every JSON file of an export (or Hub snapshot) that loading reads, before any is used.

    Raises:
        LoadError: One of them names code outside the allow-list (see :func:`check_recorded`).
    """
    folder = Path(folder)
    read_selection(folder)
    for name in RECORDED_FILES:
        if (folder / name).is_file():
            read_recorded(folder / name)


def selector_from_export(folder: str | Path) -> FrameSelector:
    """The frame selector of an export folder (or of its ``selector/`` subfolder), in eval mode.

    The importance model is an :class:`models.importance.ImportanceSelector` around
    ``FrameImportanceModel.from_pretrained(folder / "selector")`` with the recorded frame encoder,
    decoder and, for a model that reads its teacher's scores, that teacher; other selectors are rebuilt from their class path and init args (and weights).
    """
    target = selector_folder(folder)
    info = read_selection(target)
    if (target / "config.json").is_file():
        read_recorded(target / "config.json")  # FrameImportanceModel.from_pretrained reads it
    decoder = build_from_spec(info["decoder"], Decoder) if info.get("decoder") else None
    if info["importance_model"]:
        from models.importance import FrameImportanceModel, ImportanceSelector

        model = FrameImportanceModel.from_pretrained(target, strict=True)
        encoder = build_from_spec(info["encoder"]) if info.get("encoder") else None
        teacher = build_from_spec(info["teacher"], FrameSelector) if info.get("teacher") else None
        selector = ImportanceSelector(
            model=model, encoder=encoder, decoder=decoder, budget=info.get("num_frames"), teacher=teacher
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
    check_export(path)
    training = path / TRAINING_FILE
    hparams = read_recorded(training).get("hyper_parameters", {}) if training.is_file() else {}
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

    * a checkpoint: the rebuilt module's ``vlm`` (a ``DenseCaptioner``, or a ``SelectorModule``
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
    check_export(folder)  # again: a Trained may not come from load_trained
    recorded = ((trained.hparams.get("vlm") or {}).get("init_args")) or {}
    settings = {k: recorded[k] for k in ("dtype", "instruction", "max_new_tokens") if recorded.get(k) is not None}
    if (folder / "adapter_config.json").is_file():
        if not (folder / "adapter_model.safetensors").is_file():
            raise LoadError(f"{folder}: the adapter's weights are not in adapter_model.safetensors; refusing to unpickle them")
        config = read_recorded(folder / "adapter_config.json")
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
