"""``python -m trainer export``: a trained checkpoint as a Hugging Face Hub model folder, optionally pushed.

Why this size (about 850 lines): the export writes one folder for three readers (transformers,
peft and our loader) plus a model card and the Hub push, and each file has its checks (no local
path, no code, tokens); they change together with the folder's format.

::

    python -m trainer export --ckpt checkpoints/smoke/last.ckpt --output exports/smoke
    python -m trainer export --ckpt checkpoints/smoke/last.ckpt --output exports/smoke-lora --adapter_only
    python -m trainer export --ckpt ... --output exports/NAME --push_to_hub ORG/NAME [--private]

The LightningModule is rebuilt from the checkpoint's hyperparameters (``_class_path`` + init
args, as Lightning's CLI does) and its trainable-only state dict is loaded on top of the frozen
base, which is reloaded from ``model_name_or_path``. The export folder then holds::

    README.md                      model card (``huggingface_hub.ModelCard``): Hub metadata (license,
                                   base model, tags, datasets, eval results), LoRA and selector
                                   settings, evaluation table (evaluation.md), a usage snippet that runs
    config.json, generation_config.json, model.safetensors
                                   the SmolVLM with the LoRA adapter merged in (default), or
    adapter_config.json, adapter_model.safetensors
                                   the adapter alone (--adapter_only); base model in adapter_config
    processor_config.json, tokenizer.json, tokenizer_config.json, chat_template.jinja, ...
                                   the processor (the model's tokenizer + image/video processors)
    selector/config.json, selector/model.safetensors
                                   the frame selector: ``FrameImportanceModel.save_pretrained`` for the
                                   importance model; ``{class_path, init_args}`` (+ weights if it has any)
                                   for the other selectors
    selector/frame_selection.json  how frames are chosen: selector, encoder, decoder, budget K
                                   (:func:`trainer.loading.load_selector` rebuilds a ready selector from it)
    training.json                  the checkpoint's hyperparameters, step and epoch

A checkpoint without a VLM (``SelectorModule`` with ``vlm: null``) exports the selector, card and
``training.json`` only.

The folder is built next to ``--output`` in a hidden temporary folder and renamed into place when
complete, so a failed export leaves nothing behind (and an existing folder replaced with
``--overwrite`` stays intact until the new one is ready). Nothing token-like is ever written: the
finished folder is scanned for the Hub token of the environment / login and for ``hf_...``
strings before it is moved into place. ``--push_to_hub`` uploads with ``HfApi`` using that same
ambient token (``HF_TOKEN`` or ``huggingface-cli login``).

**Local paths.** The card and ``training.json`` name no absolute local path: a local model folder,
the checkpoint and the export folder appear by their path relative to the working directory when
they are under it, else a folder by its name and a file by its folder and name (``smoke/last.ckpt``;
the card says a local base model is not on the Hub), and
the usage snippets load the Hub repo (``--push_to_hub``) or that relative folder. The files the
loaders read (``adapter_config.json``'s ``base_model_name_or_path``, ``selector/config.json``,
``selector/frame_selection.json``) keep a local model's folder as it was recorded, since nothing
else rebuilds the export on this machine; ``--base_model ORG/NAME`` says that folder is a copy of
a Hub model, and the id then replaces it in every file. Pushing (``--push_to_hub`` or
:func:`push_folder`) refuses a folder whose text files still hold an absolute local path (under
the home, working or temporary directory, ``~/``, or any existing absolute path of two or more
parts), naming the file and the path; ``--push_to_hub`` checks before the folder is written.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import torch
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from jsonargparse import ArgumentParser

from data.atomic import write_atomic
from data.features import human_bytes
from data.outputs import check_writable
from models.selectors import FrameSelector
from trainer.cli_helpers import command_parser, parse_command
from trainer.loading import (
    HUB_ID,
    SELECTION_FILE,
    SELECTOR_DIR,
    LoadError,
    TrainedSelector,
    is_hub_id,
    module_from_checkpoint,
    read_selection,
    selector_of,
    spec_of,
)

log = logging.getLogger(__name__)

#: Hub tags of every export ("lora" only where a LoRA adapter was trained).
TAGS = ("smolvlm", "video", "dense-captioning", "frame-selection", "lora")
TRAINING_FILE = "training.json"
CARD_FILE = "README.md"
EVALUATION_FILE = "evaluation.md"
#: License recorded in the card by default: the SmolVLM2 base models' and this project's.
LICENSE = "apache-2.0"
#: ``evaluate`` summary columns the card's Hub metadata reports (with their display names).
CARD_METRICS = {"recall": "event recall of the chosen frames", "meteor": "METEOR", "cider": "CIDEr",
                "soda_c": "SODA_c", "bleu4": "BLEU-4", "rouge_l": "ROUGE-L"}  # fmt: skip

_TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN", "HF_API_TOKEN")
_TOKEN_PATTERN = re.compile(rb"hf_[A-Za-z0-9]{30,}")  # the shape of a Hugging Face access token
_TEXT_SUFFIXES = (".json", ".md", ".txt", ".jinja", ".yaml", ".yml", ".model")
# An absolute or ``~/`` path where a value starts (line start, space, quote, bracket, ``=``), so
# URLs (``https://...``) and tags (``</s>``) are not taken for paths.
_PATH_IN_TEXT = re.compile(r"""(?:^|(?<=[\s"'`(=,\[]))(~?/[^\s"'`(),\[\]{}<>|]+)""", re.MULTILINE)
# Folders that hold only local things on any machine (users' homes, temporary folders).
_LOCAL_PREFIXES = ("~/", "/home/", "/Users/", "/root/", "/tmp/", "/var/folders/", "/private/")


class ExportError(LoadError):
    """The checkpoint cannot be exported as asked (the message says why and what to do)."""


# --------------------------------------------------------------------------------------- helpers
def _local_path(value: Any) -> Path | None:
    """The local file or folder a recorded string names, else ``None``: an absolute or ``~`` path
    that exists here or lies under :func:`_local_roots` (so that an instruction such as
    ``"/describe the video"`` stays text)."""
    if not isinstance(value, str) or "\n" in value or not value.startswith(("/", "~")):
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        return None
    return path if path.exists() or path.as_posix().startswith(_local_roots()) else None


def _shown_path(path: Path, folder: bool | None = None) -> str:
    """How the card and ``training.json`` name a local file or folder: relative to the working
    directory when under it, else a folder by its name and a file by its folder and name
    (``smoke/last.ckpt``: every checkpoint is a ``last.ckpt``); never the absolute path.

    Args:
        path: The file or folder.
        folder: Whether it is a folder (default: whether it is one now).
    """
    try:
        return path.absolute().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.name if (path.is_dir() if folder is None else folder) else f"{path.parent.name}/{path.name}"


def _rename_paths(value: Any, rename: Callable[[str, Path], str]) -> Any:
    """``value`` (JSON-like) with every string that names a local path replaced by ``rename(string, path)``."""
    if isinstance(value, dict):
        return {k: _rename_paths(v, rename) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rename_paths(v, rename) for v in value]
    path = _local_path(value)
    return value if path is None else rename(value, path)


def _json_dump(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _report(folder: Path, before: set[str], what: str) -> None:
    new = [f for f in _files(folder) if f not in before]
    total = sum((folder / f).stat().st_size for f in new)
    log.info("wrote %s: %s (%s)", what, ", ".join(new), human_bytes(total))


# --------------------------------------------------------------------------------------- VLM
def _find_vlm(module: Any) -> Any | None:
    """The module's SmolVLM if it is part of what trained (None for selector-only runs)."""
    vlm = getattr(module, "vlm", None)
    if vlm is None:
        return None
    objective = getattr(module, "objective", None)
    if objective is not None and not getattr(objective, "train_lora", True):
        log.info("the VLM was frozen in this run (objective.train_lora: false); exporting the selector only")
        return None
    return vlm


def _save_vlm(vlm: Any, folder: Path, adapter_only: bool, base_model: str) -> None:
    before = set(_files(folder))
    if adapter_only:
        # adapter_config.json + adapter_model.safetensors (peft also writes a README; the card replaces it).
        vlm.model.save_pretrained(str(folder))
        config_path = folder / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = base_model
        _json_dump(config_path, config)
        (folder / CARD_FILE).unlink(missing_ok=True)
        _report(folder, before, f"LoRA adapter (base {base_model})")
    else:
        model = vlm.model
        if vlm.is_peft:
            # A copy: the caller's model keeps its (unmerged) adapter and stays trainable.
            with torch.no_grad():
                model = copy.deepcopy(model).merge_and_unload()
        kwargs = {}
        if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
            kwargs["safe_serialization"] = True  # transformers 4.x; 5.x always writes safetensors
        model.save_pretrained(str(folder), **kwargs)
        _report(folder, before, "merged model" if vlm.is_peft else "model (no LoRA adapter)")
    before = set(_files(folder))
    vlm.processor.save_pretrained(str(folder))
    _report(folder, before, "processor")


# --------------------------------------------------------------------------------------- selector
def _recorded_parts(hparams: dict[str, Any]) -> dict[str, Any]:
    """The recorded specs of the inference selector and its parts (``selector``, ``model``, ``encoder``, ``decoder``).

    A captioner records its selector's spec; a selector module records the parts its inference
    selector is made of (``importance``, ``encoder``, ``decoder``).
    """
    spec = hparams.get("selector")
    if isinstance(spec, dict):
        return {"selector": spec, **(spec.get("init_args") or {})}
    return {"model": hparams.get("importance"), "encoder": hparams.get("encoder"), "decoder": hparams.get("decoder"),
            "teacher": hparams.get("teacher")}  # fmt: skip


def _selector_info(selector: FrameSelector, hparams: dict[str, Any]) -> dict[str, Any]:
    """What ``selector/frame_selection.json`` records (and the card shows) about frame choice.

    Args:
        selector: The module's inference selector (:func:`trainer.loading.selector_of`).
        hparams: The module's recorded config.
    """
    from models.importance import ImportanceSelector

    if isinstance(selector, TrainedSelector):  # a frozen trained selector: what its own source records
        if selector.trained.kind == "export":
            info = read_selection(selector.trained.path)
            info.pop("format_version", None)
            info.pop("num_frames", None)
        else:
            info = _selector_info(selector.inner, selector.trained.hparams)
        recorded = (_recorded_parts(hparams).get("decoder"))
        if recorded:  # the captioner replaced the trained selector's decoder
            info["decoder"] = spec_of(selector.decoder, recorded)
        return info
    parts = _recorded_parts(hparams)
    decoder = spec_of(selector.decoder, parts.get("decoder"))
    if isinstance(selector, ImportanceSelector):  # the importance model: saved with save_pretrained, plus its encoder
        spec = spec_of(selector.model, parts.get("model"))
        encoder = spec_of(selector.encoder, parts.get("encoder")) if selector.encoder is not None else None
        info = {"selector": spec, "importance_model": True, "encoder": encoder, "decoder": decoder}
        if selector.teacher is not None:  # the selector whose scores the importance model reads
            info["teacher"] = spec_of(selector.teacher, parts.get("teacher"))
        return info
    return {"selector": spec_of(selector, parts.get("selector")), "importance_model": False, "encoder": None,
            "decoder": decoder}  # fmt: skip


def _save_selector(selector: FrameSelector, info: dict[str, Any], folder: Path, num_frames: int) -> None:
    target = folder / SELECTOR_DIR
    target.mkdir()
    if isinstance(selector, TrainedSelector):
        selector = selector.inner
    if info["importance_model"]:
        selector.model.save_pretrained(target)  # config.json (init args) + model.safetensors
        (target / CARD_FILE).unlink(missing_ok=True)  # the mixin's generic card; the export's card documents it
        info["weights"] = "model.safetensors"
    else:
        _json_dump(target / "config.json", info["selector"])
        info["weights"] = None
        if selector.state_dict():
            from safetensors.torch import save_model

            save_model(selector, str(target / "model.safetensors"))
            info["weights"] = "model.safetensors"
    _json_dump(target / SELECTION_FILE, {"format_version": 1, **info, "num_frames": int(num_frames)})
    log.info("wrote selector: %s", ", ".join(f"{SELECTOR_DIR}/{f}" for f in _files(target)))


# --------------------------------------------------------------------------------------- card
def _yaml_block(payload: Any) -> str:
    return yaml.safe_dump(payload, sort_keys=False, default_flow_style=False).rstrip()


def _cell(value: Any) -> str:
    """A markdown table cell value (``|`` would end the cell, even inside backticks)."""
    return str(value).replace("|", "\\|")


def _usage(info: dict[str, Any]) -> list[str]:
    """Python blocks of the card's Usage section (tests execute them with ``folder`` substituted)."""
    if info["repo_id"]:
        folder_line = (
            f'from huggingface_hub import snapshot_download\n\nfolder = snapshot_download("{info["repo_id"]}")'
        )
    else:
        folder_line = f"folder = {info['output']!r}  # this export folder (or snapshot_download(\"ORG/NAME\") once pushed)"
    k = info["num_frames"]
    t = max(16, 2 * k)
    video = (
        "# One video as uint8 frames (T, 3, H, W) and their times in seconds, e.g.\n"
        '#   from data.decode import decode_video; video = decode_video("video.mp4", fps=2.0)\n'
        "#   frames, timestamps, duration = video.frames, video.timestamps, video.duration\n"
        f"frames = torch.randint(0, 256, ({t}, 3, 64, 64), dtype=torch.uint8)\n"
        f"timestamps = torch.arange({t}, dtype=torch.float64) * 0.5\n"
        f"duration = {t * 0.5}\n"
    )
    blocks = []
    vlm = info["vlm"]
    if vlm and not info["adapter_only"]:
        blocks.append(
            "from transformers import AutoModelForImageTextToText, AutoProcessor\n\n"
            f"{folder_line}\n"
            "model = AutoModelForImageTextToText.from_pretrained(folder)  # SmolVLM with the LoRA adapter merged in\n"
            "processor = AutoProcessor.from_pretrained(folder)\n"
        )
    elif vlm:
        blocks.append(
            "from peft import PeftConfig, PeftModel\n"
            "from transformers import AutoModelForImageTextToText, AutoProcessor\n\n"
            f"{folder_line}\n"
            f"base = PeftConfig.from_pretrained(folder).base_model_name_or_path  # {_base_shown(info)}\n"
            "model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), folder)\n"
            "processor = AutoProcessor.from_pretrained(folder)\n"
        )
    if info["selection"]["importance_model"]:
        dim = info["feature_dim"]
        blocks.append(
            "import torch\n"
            "from models.importance import FrameImportanceModel  # this repository (pip install -e .)\n\n"
            f"{folder_line}\n"
            'mask = FrameImportanceModel.from_pretrained(f"{folder}/selector").eval()\n'
            f"features = torch.randn(1, {t}, {dim})  # per-frame features of the encoder in selector/{SELECTION_FILE}\n"
            f"times = torch.arange({t}, dtype=torch.float32)[None] * 0.5  # their timestamps in seconds\n"
            "with torch.no_grad():\n"
            f"    logits = mask(features, times)  # (1, {t}): one importance logit per frame\n"
        )
    if vlm:
        if info["adapter_only"]:
            load = (
                "from peft import PeftConfig, PeftModel\n\n"
                "base = PeftConfig.from_pretrained(folder).base_model_name_or_path\n"
                f"vlm = SmolVLM(base, lora=LoraSettings(enabled=False), dtype={vlm['dtype']!r},\n"
                f"              instruction={vlm['instruction']!r}, max_new_tokens={vlm['max_new_tokens']})\n"
                "vlm.model = PeftModel.from_pretrained(vlm.model, folder)\n"
                "vlm.eval()\n"
            )
        else:
            load = (
                f"vlm = SmolVLM(folder, lora=LoraSettings(enabled=False), dtype={vlm['dtype']!r},\n"
                f"              instruction={vlm['instruction']!r}, max_new_tokens={vlm['max_new_tokens']}).eval()\n"
            )
        blocks.append(
            "# Dense captions from the frames the trained selector picks, shown with their true timestamps.\n"
            "import torch\n"
            "from models.vlm import LoraSettings, SmolVLM  # this repository (pip install -e .)\n"
            "from trainer.loading import load_selector\n\n"
            f"{folder_line}\n"
            "selector = load_selector(folder)\n"
            f"{load}\n{video}\n"
            f"_, shown, times = selector.choose(frames, timestamps, {k})\n"
            "print(vlm.generate([shown], [times], [duration])[0])  # one event per line: MM:SS-MM:SS caption\n"
        )
    else:
        blocks.append(
            "import torch\n"
            "from trainer.loading import load_selector  # this repository (pip install -e .)\n\n"
            f"{folder_line}\n"
            "selector = load_selector(folder)\n\n"
            f"{video}\n"
            f"chosen = selector.select(frames, timestamps, {k})  # indices of the {k} frames to show the VLM\n"
            "print(timestamps[chosen])\n"
        )
    return blocks


def eval_results(results: dict[str, Any] | None, datasets: list[str]) -> list[EvalResult]:
    """Hub ``model-index`` entries from an ``evaluate`` run's ``results.json``: the ``learned`` rows.

    One :class:`huggingface_hub.EvalResult` per budget K and metric of :data:`CARD_METRICS` in
    the row, on the first ``datasets`` id (the Hub needs one to show results; none: no entries).
    Caption scores marked approximate (no Java) are left out; the card's table keeps its banner.
    """
    if not results or not datasets:
        return []
    split = (results.get("meta") or {}).get("split")
    exact = not results.get("approximate_caption_scores")
    entries = []
    for row in results.get("summary") or []:
        if row.get("selector") != "learned":  # the selector this export holds
            continue
        for column, label in CARD_METRICS.items():
            value = row.get(column)
            if isinstance(value, (int, float)) and (exact or column == "recall"):
                entries.append(EvalResult(
                    task_type="video-text-to-text", dataset_type=datasets[0], dataset_name=datasets[0],
                    dataset_split=split, metric_type=column, metric_value=round(float(value), 4),
                    metric_name=f"{label}, K={row['K']}",
                ))  # fmt: skip
    return entries


def card_data(info: dict[str, Any]) -> ModelCardData:
    """The card's Hub metadata (``None`` fields are left out of its YAML header)."""
    vlm = info["vlm"]
    lora_trained = bool(vlm and vlm["lora"]["enabled"])
    base = info["base_model"] if is_hub_id(info["base_model"]) else None
    results = eval_results(info["results"], info["datasets"])
    return ModelCardData(
        license=info["license"],
        base_model=base,
        datasets=list(info["datasets"]) or None,
        library_name=("peft" if info["adapter_only"] else "transformers") if vlm else "pytorch",
        pipeline_tag="image-text-to-text" if vlm else None,
        tags=[t for t in TAGS if t != "lora" or lora_trained],
        metrics=list(dict.fromkeys(r.metric_type for r in results)) or None,
        model_name=_card_name(info) if results else None,
        eval_results=results or None,
        base_model_relation=("adapter" if info["adapter_only"] else "finetune") if base and lora_trained else None,
    )


def _base_shown(info: dict[str, Any]) -> str:
    """The base model as the card names it: its Hub id, or a local folder's relative name and a note."""
    path = _local_path(info["base_model"])
    if path is None:
        return f"`{info['base_model']}`"
    return f"`{_shown_path(path)}` (a local model, not on the Hub)"


def _card_name(info: dict[str, Any]) -> str:
    return info["repo_id"] or Path(info["output"]).name


def model_card(info: dict[str, Any]) -> ModelCard:
    """The export's ``README.md``: Hub metadata (:func:`card_data`), settings, evaluation and usage."""
    vlm, selection = info["vlm"], info["selection"]
    lora_trained = bool(vlm and vlm["lora"]["enabled"])
    lines = [f"# {_card_name(info)}", ""]
    k = info["num_frames"]
    if vlm:
        tuned = "fine-tuned with a LoRA adapter" if lora_trained else "(no LoRA adapter trained)"
        what = (
            f"SmolVLM {_base_shown(info)} {tuned} for **dense video captioning**, together with the "
            f"**frame selector** that picks the {k} frames per video it sees, each shown with its true timestamp "
            "(`Frame from MM:SS:`); the model answers one event per line, `MM:SS-MM:SS caption`."
        )
    else:
        what = (
            f"A learned **frame selector** for dense video captioning: it scores a video's candidate frames from "
            f"their {_base_shown(info)} vision features and timestamps and picks the {k} a small VLM should see."
        )
    lines += [
        f"{what} Trained with the frame-selectors framework (`python -m trainer fit`).",
        "",
        "| | |",
        "|---|---|",
        f"| exported from | `{info['source']}` (step {info['global_step']}, epoch {info['epoch']}) |",
        f"| training module | `{info['class_path']}` |",
    ]
    if vlm:
        form = "LoRA adapter only (peft)" if info["adapter_only"] else "LoRA merged into the weights"
        form = form if lora_trained else "the base model's (no LoRA adapter)"
        lines += [f"| VLM weights | {form} |", f"| base model | {_base_shown(info)} |"]
    lines += [f"| frame budget K | {info['num_frames']} |", ""]
    lines += ["## Training data", ""]
    if info["datasets"]:
        lines += [", ".join(f"`{d}`" for d in info["datasets"]), ""]
    else:
        lines += [
            (
                "Not recorded in the checkpoint. Without annotation files the framework trains on its synthetic "
                "videos (`data.synthetic`: coloured shapes as events, pans, flicker and cuts as distractors); "
                "`--dataset ORG/NAME` at export records a Hub dataset here."
            ),
            "",
        ]
    if vlm:
        lora = vlm["lora"]
        lines += ["## LoRA settings", "", "| setting | value |", "|---|---|"]
        lines += [f"| `{k}` | `{_cell(v)}` |" for k, v in lora.items()]
        if lora["enabled"]:
            lines.append(f"| peft `target_modules` | `{_cell(vlm['target_regex'])}` |")
        lines += [
            f"| `dtype` | `{vlm['dtype']}` |",
            "",
            f"Prompt instruction: {vlm['instruction']!r}",
            "",
        ]
    lines += ["## Frame selector", "", f"Files in `{SELECTOR_DIR}/`; `{SELECTOR_DIR}/{SELECTION_FILE}` records:", ""]
    shown = {k: info["selection_shown"][k] for k in ("selector", "encoder", "decoder") if selection.get(k)}
    lines += ["```yaml", _yaml_block({**shown, "num_frames": info["num_frames"]}), "```", ""]
    if selection["importance_model"]:
        lines += [
            (
                "The importance model is a `models.importance.FrameImportanceModel` (Hub mixin): load it with "
                '`FrameImportanceModel.from_pretrained(folder / "selector")`; it scores the encoder\'s per-frame features '
                "and the decoder picks K frames. `trainer.loading.load_selector(folder)` builds the whole selector "
                "(encoder + mask + decoder)."
            ),
            "",
        ]
    else:
        lines += [
            (
                f"`{SELECTOR_DIR}/config.json` holds its class path and init args; "
                "`trainer.loading.load_selector(folder)` rebuilds it."
            ),
            "",
        ]
    if info["evaluation"]:
        lines += ["## Evaluation", "", info["evaluation"].strip(), ""]
    lines += ["## Usage", ""]
    for block in _usage(info):
        lines += ["```python", block.rstrip(), "```", ""]
    lines += ["## Files", ""]
    lines += [f"- `{f}` ({human_bytes(s)})" for f, s in info["files"]]
    body = "\n".join(lines) + "\n"
    return ModelCard(f"---\n{card_data(info).to_yaml()}\n---\n\n{body}")


# --------------------------------------------------------------------------------------- tokens
def _secrets() -> list[str]:
    """Hub tokens this process could see (environment, ``huggingface-cli login``)."""
    values = [os.environ.get(k, "") for k in _TOKEN_ENV]
    try:
        from huggingface_hub import get_token

        values.append(get_token() or "")
    except Exception as err:  # noqa: BLE001 - no login or an unreadable token file: nothing to look for
        log.debug("no saved Hub token to look for (%s)", err)
    return sorted({v for v in values if len(v) >= 8})


def check_no_tokens(folder: Path) -> None:
    """Raises if any file under ``folder`` contains a Hub token (the ambient one, or any ``hf_...``)."""
    secrets = [s.encode() for s in _secrets()]
    for rel in _files(folder):
        data = (folder / rel).read_bytes()
        if any(s in data for s in secrets) or (rel.endswith(_TEXT_SUFFIXES) and _TOKEN_PATTERN.search(data)):
            raise ExportError(f"{rel} contains a Hugging Face token; refusing to write it (the export was discarded)")


def _local_roots() -> tuple[str, ...]:
    """Prefixes of paths that exist only here: :data:`_LOCAL_PREFIXES` and this machine's home,
    working and temporary folders (as given and resolved)."""
    roots = set(_LOCAL_PREFIXES)
    for root in (Path.home(), Path.cwd(), Path(tempfile.gettempdir())):
        for form in (root, root.resolve()):
            if len(form.parts) > 1:  # never "/" itself
                roots.add(form.as_posix().rstrip("/") + "/")
    return tuple(roots)


def local_paths_in(text: str) -> list[str]:
    """The absolute local paths ``text`` holds: those under :func:`_local_roots`, and any absolute
    path of two or more parts that exists on this machine (``/data/models/x``)."""
    roots = _local_roots()
    found = []
    for candidate in _PATH_IN_TEXT.findall(text):
        candidate = candidate.rstrip(".:;")  # the end of a sentence, not of the path
        under_root = any(candidate.startswith(root) and len(candidate) > len(root) for root in roots)
        exists_here = len(PurePosixPath(candidate).parts) >= 3 and Path(candidate).expanduser().exists()
        if under_root or exists_here:
            found.append(candidate)
    return found


def check_no_local_paths(folder: Path) -> None:
    """Raises if a text file under ``folder`` holds an absolute local path (:func:`local_paths_in`)."""
    for rel in _files(folder):
        if rel.endswith(_TEXT_SUFFIXES):
            paths = local_paths_in((folder / rel).read_text(encoding="utf-8", errors="replace"))
            if paths:
                raise ExportError(
                    f"{rel} holds the local path {paths[0]!r}; refusing to push it (a local folder cannot be "
                    "loaded from the Hub): pass --base_model ORG/NAME when the model was a local copy of a Hub model"
                )


# --------------------------------------------------------------------------------------- export
def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} already exists; pass --overwrite to replace it")
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"{output} exists and is not a folder")


def _check_repo_id(repo_id: str | None) -> None:
    if repo_id is not None and not HUB_ID.match(repo_id):
        raise ExportError(f"--push_to_hub takes ORG/NAME, got {repo_id!r}")


def _normalise_permissions(folder: Path) -> None:
    """Ordinary file modes (some writers leave 0600 temp-file modes behind), as the umask allows."""
    umask = os.umask(0o022)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def export_module(
    module: Any,
    output: str | Path,
    *,
    hparams: dict[str, Any] | None = None,
    adapter_only: bool = False,
    overwrite: bool = False,
    push_to_hub: str | None = None,
    private: bool = False,
    evaluation: str | Path | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    source: dict[str, Any] | None = None,
    license: str | None = LICENSE,
) -> Path:
    """Writes ``module`` (a ``DenseCaptioner`` or ``SelectorModule``) as a Hub folder at ``output``.

    The module itself is not changed: the LoRA adapter is merged on a copy.

    Args:
        module: The LightningModule (trained in memory, or from :func:`trainer.loading.module_from_checkpoint`).
        output: Folder to create (atomically; refused if it exists unless ``overwrite``).
        hparams: The module's config (``_class_path`` and init args as ``class_path``/``init_args``
            dicts); default ``module.hparams`` (what the CLI recorded).
        adapter_only: Save the LoRA adapter alone instead of the merged model.
        overwrite: Replace an existing ``output``.
        push_to_hub: ``ORG/NAME`` to create (if needed) and upload the folder to.
        private: Create the Hub repo private.
        evaluation: Markdown file with the evaluation table for the card (default: none). When
            it is an ``evaluate`` run's ``results.md``, the ``results.json`` beside it also gives
            the card's Hub metadata its eval results (:func:`eval_results`; needs ``datasets``).
        base_model: Base model id to record (default: the VLM's ``model_name_or_path``); use it
            when training used a local copy of a Hub model: the id then replaces that folder in
            every file (module docstring, "Local paths").
        datasets: Hub dataset ids trained on (card metadata).
        source: ``{"checkpoint", "global_step", "epoch"}`` of where the weights came from.
        license: License id for the card's metadata (``None``: none recorded).

    Returns:
        The export folder.
    """
    output = Path(output)
    hparams = dict(hparams if hparams is not None else module.hparams)
    hparams.pop("_instantiator", None)
    _check_output(output, overwrite)
    _check_repo_id(push_to_hub)
    try:
        selector = selector_of(module)
    except LoadError as err:
        raise ExportError(f"{err}: nothing to export") from err
    vlm = _find_vlm(module)
    if adapter_only and (vlm is None or not vlm.lora_settings.enabled):
        raise ExportError("--adapter_only: this checkpoint has no trained LoRA adapter (vlm.lora.enabled / train_lora)")
    evaluation_text, results = None, None
    if evaluation is not None:
        evaluation = Path(evaluation)
        if not evaluation.is_file():
            raise FileNotFoundError(f"--evaluation: no file at {evaluation}")
        evaluation_text = evaluation.read_text()
        if (evaluation.parent / "results.json").is_file():
            results = json.loads((evaluation.parent / "results.json").read_text())
    if vlm is not None:
        trained_on = vlm.model_name_or_path
    else:
        trained_on = getattr(getattr(module, "encoder", None), "model_name_or_path", None)
    base = base_model or trained_on or "unknown"
    # The local folder --base_model names the Hub copy of: the id stands for it in every file.
    copied = _local_path(trained_on) if base_model else None

    def is_copy(path: Path) -> bool:
        return copied is not None and path.resolve() == copied.resolve()

    def recorded(value: str, path: Path) -> str:  # files the loaders read: the folder itself
        return base_model if is_copy(path) else value

    def shown(value: str, path: Path) -> str:  # the card and training.json: no absolute path
        return base_model if is_copy(path) else _shown_path(path)

    source = _rename_paths(source or {}, shown)
    selection = _rename_paths(_selector_info(selector, hparams), recorded)
    info: dict[str, Any] = {
        "output": _shown_path(output, folder=True),  # not written yet
        "repo_id": push_to_hub,
        "adapter_only": adapter_only,
        "base_model": base,
        "datasets": list(datasets or []),
        "class_path": hparams.get("_class_path") or f"{type(module).__module__}.{type(module).__qualname__}",
        "source": source.get("checkpoint", "(in memory)"),
        "global_step": source.get("global_step", getattr(getattr(module, "_trainer", None), "global_step", "?")),
        "epoch": source.get("epoch", "?"),
        "num_frames": int(getattr(module, "num_frames", 0)),
        "evaluation": evaluation_text,
        "results": results,
        "license": license,
        "selection": selection,
        "selection_shown": _rename_paths(selection, shown),
        "feature_dim": getattr(getattr(getattr(selector, "inner", selector), "model", None), "feature_dim", None),
        "vlm": None,
    }
    if vlm is not None:
        vlm_args = (hparams.get("vlm") or {}).get("init_args") or {}
        lora = vlm.lora_settings
        info["vlm"] = {
            "lora": dataclasses.asdict(lora),
            "target_regex": lora.module_regex(),
            "dtype": vlm_args.get("dtype", str(next(vlm.parameters()).dtype).removeprefix("torch.")),
            "instruction": vlm.instruction,
            "max_new_tokens": vlm.max_new_tokens,
        }
    if not is_hub_id(base):
        log.warning(
            "base model %r is not a Hub id: the card's base_model metadata is left out "
            "(pass --base_model ORG/NAME when training used a local copy of a Hub model)",
            base,
        )

    def build(tmp: Path) -> None:
        tmp.mkdir()
        log.info("building %s in %s", output, tmp)
        if vlm is not None:
            _save_vlm(vlm, tmp, adapter_only, base)
        _save_selector(selector, selection, tmp, info["num_frames"])
        training = {"class_path": info["class_path"], "hyper_parameters": _rename_paths(hparams, shown), **source}
        _json_dump(tmp / TRAINING_FILE, training)
        log.info("wrote %s", TRAINING_FILE)
        info["files"] = [(f, (tmp / f).stat().st_size) for f in _files(tmp)]
        model_card(info).save(tmp / CARD_FILE)
        log.info("wrote model card %s", CARD_FILE)
        check_no_tokens(tmp)
        if push_to_hub is not None:  # refused before the folder is written, not after
            check_no_local_paths(tmp)
        _normalise_permissions(tmp)
        _check_output(output, overwrite)  # again: another export may have taken the name meanwhile

    # Built in a hidden sibling and renamed into place; a replaced folder goes only once the new one is there.
    write_atomic(output, build)
    files = _files(output)
    total = sum((output / f).stat().st_size for f in files)
    log.info("exported %s: %d files, %s", output, len(files), human_bytes(total))
    if push_to_hub is not None:
        push_folder(output, push_to_hub, private=private)
    return output


def export_checkpoint(ckpt_path: str | Path, output: str | Path, **kwargs: Any) -> Path:
    """:func:`trainer.loading.module_from_checkpoint` + :func:`export_module`; ``evaluation`` defaults to ``evaluation.md`` beside the checkpoint."""
    output = Path(output)
    _check_output(output, kwargs.get("overwrite", False))  # before the (slow) model load
    _check_repo_id(kwargs.get("push_to_hub"))
    if kwargs.get("evaluation") is None:
        default = Path(ckpt_path).parent / EVALUATION_FILE
        kwargs["evaluation"] = default if default.is_file() else None
    module, checkpoint = module_from_checkpoint(ckpt_path)
    source = {
        "checkpoint": str(ckpt_path),
        "global_step": checkpoint.get("global_step"),
        "epoch": checkpoint.get("epoch"),
    }
    return export_module(module, output, hparams=checkpoint["hyper_parameters"], source=source, **kwargs)


def push_folder(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Creates ``repo_id`` on the Hub (if needed) and uploads ``folder``; the token comes from the environment/login.

    Raises:
        ExportError: A text file in ``folder`` holds an absolute local path (nothing is uploaded).
    """
    from huggingface_hub import HfApi

    check_no_local_paths(Path(folder))
    api = HfApi()  # token: HF_TOKEN or the saved login, never passed around or written down
    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    log.info("pushing %s to %s%s", folder, url, " (private)" if private else "")
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        commit_message=f"Upload {Path(folder).name} (python -m trainer export)",
    )
    log.info("uploaded %d files to %s", len(_files(Path(folder))), repo_id)
    return str(url)


# --------------------------------------------------------------------------------------- CLI
def build_parser() -> ArgumentParser:
    parser = command_parser("export",
        "Export a trained checkpoint as a Hugging Face Hub model folder (merged SmolVLM or LoRA "
        "adapter, processor, frame selector, model card), optionally pushing it to the Hub.",
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint written by `python -m trainer fit` (e.g. last.ckpt)")
    parser.add_argument("--output", required=True, help="folder to create, e.g. exports/NAME")
    parser.add_argument("--adapter_only", "--adapter-only", action="store_true", help="save the LoRA adapter instead of the merged model")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    parser.add_argument("--push_to_hub", "--push-to-hub", metavar="ORG/NAME", help="create this Hub repo (if needed) and upload")
    parser.add_argument("--private", action="store_true", help="with --push_to_hub: create the repo private")
    parser.add_argument(
        "--evaluation", metavar="FILE", help=f"markdown evaluation table for the card (default: {EVALUATION_FILE} "
        "beside the checkpoint, if there is one)"
    )  # fmt: skip
    parser.add_argument("--base_model", "--base-model", metavar="ID", help="base model id to record (default: the VLM's model_name_or_path)"
    )
    parser.add_argument("--dataset", action="append", metavar="ID", help="Hub dataset id trained on (repeatable)")
    parser.add_argument(
        "--license", default=LICENSE, help=f"license id for the card's metadata (default: {LICENSE}, the SmolVLM2 "
        "base models' and this project's; 'none' records none)"
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> Path:
    """``python -m trainer export --ckpt PATH --output exports/NAME [...]``."""
    parser = build_parser()
    args = parse_command(parser, argv)
    if args.private and not args.push_to_hub:
        parser.error("--private needs --push_to_hub")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        # The export is built in a sibling of --output and renamed into place: check that folder
        # before the model loads, so a read-only or mistyped output fails in seconds.
        check_writable(Path(args.output).expanduser().absolute().parent)
    except OSError as err:
        parser.error(str(err))
    try:
        return export_checkpoint(
            args.ckpt,
            args.output,
            adapter_only=args.adapter_only,
            overwrite=args.overwrite,
            push_to_hub=args.push_to_hub,
            private=args.private,
            evaluation=args.evaluation,
            base_model=args.base_model,
            datasets=args.dataset,
            license=None if args.license == "none" else args.license,
        )
    except (ExportError, FileExistsError, FileNotFoundError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")


if __name__ == "__main__":
    main()
