"""Trainable-only checkpoints shared by the LightningModules.

A LoRA run on SmolVLM2-2.2B would otherwise write gigabytes of frozen weights per checkpoint.
Modules keep what trains (parameters with ``requires_grad`` and the persistent buffers of the
submodules that own them) and reload the frozen rest from ``model_name_or_path``; loading is
therefore non-strict, and :func:`check_trainable_state` does the key check strict loading
would have done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch import nn


def plain_hparams(value: Any) -> bool:
    """True for config-like values that belong in checkpoint hyperparameters (no pickled objects)."""
    if isinstance(value, dict):
        return all(plain_hparams(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(plain_hparams(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def trainable_keys(module: nn.Module) -> set[str]:
    """``state_dict`` keys of trainable parameters and of persistent buffers next to them."""
    keys = set()
    for prefix, sub in module.named_modules():
        own = list(sub.named_parameters(recurse=False))
        if not any(p.requires_grad for _, p in own):
            continue
        dot = f"{prefix}." if prefix else ""
        keys |= {dot + n for n, p in own if p.requires_grad}
        keys |= {dot + n for n in sub._buffers if n not in sub._non_persistent_buffers_set}
    return keys


def keep_trainable_state(module: nn.Module, checkpoint: dict[str, Any]) -> None:
    """Drops frozen weights from ``checkpoint["state_dict"]`` (call from ``on_save_checkpoint``)."""
    keys = trainable_keys(module)
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keys}


def check_trainable_state(module: nn.Module, checkpoint: dict[str, Any], hint: str = "") -> None:
    """Raises if a trainable-only checkpoint does not fit ``module`` (call from ``on_load_checkpoint``)."""
    saved = set(checkpoint["state_dict"])
    unknown = sorted(saved - set(module.state_dict()))
    missing = sorted(trainable_keys(module) - saved)
    if unknown or missing:
        raise RuntimeError(
            f"checkpoint does not match this model: {len(missing)} trainable weights missing "
            f"(e.g. {missing[:3]}), {len(unknown)} unknown (e.g. {unknown[:3]}){hint}"
        )


class FinalCheckpoint(pl.Callback):
    """Makes sure ``last.ckpt`` holds the final weights when training ends.

    Lightning (2.6) refreshes ``last.ckpt`` only together with a top-k save, so a run that stops on
    ``max_steps`` between validations would leave an older ``last.ckpt`` behind; resuming or
    exporting it would silently drop the last steps.
    """

    def __init__(self) -> None:
        self.saved_step = -1

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self.saved_step = checkpoint["global_step"]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        callback = trainer.checkpoint_callback
        if callback is None or callback.dirpath is None or not callback.save_last:
            return
        if self.saved_step != trainer.global_step:
            trainer.save_checkpoint(Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}")


def restore_trainable_state(module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
    """Loads a trainable-only checkpoint into a freshly built module (outside ``Trainer.fit``).

    The module's own ``on_load_checkpoint`` checks the keys first, as Lightning would; loading is
    then non-strict because the frozen base is not in the checkpoint.
    """
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"], strict=False)
