"""Checkpoints shared by the LightningModules: trainable-only weights, the final state, the RNG.

A LoRA run on SmolVLM2-2.2B would otherwise write gigabytes of frozen weights per checkpoint.
Modules keep what trains (parameters with ``requires_grad`` and the persistent buffers of the
submodules that own them) and reload the frozen rest from ``model_name_or_path``; loading is
therefore non-strict, and :func:`check_trainable_state` does the key check strict loading
would have done.

Two callbacks, which the CLI adds to every run (:mod:`trainer.__main__`), complete what Lightning
stores: :class:`FinalCheckpoint` makes ``last.ckpt`` the final state, and :class:`RngState` stores
the global random number generators, so that ``fit --ckpt_path last.ckpt`` continues bit for bit.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
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
    then as strict as the module asks Lightning to be (``strict_loading``): non-strict for modules
    whose checkpoints leave the frozen base out.
    """
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"], strict=module.strict_loading)


def resumes_exactly(checkpoint: dict[str, Any]) -> bool:
    """Whether ``fit --ckpt_path`` continues this checkpoint bit-exactly: it holds :class:`RngState`'s
    states (checkpoints from before it do not) and was not written in the middle of a step."""
    state = checkpoint.get("callbacks", {}).get(RngState.__name__)
    return bool(state) and bool(state.get("exact"))


def rng_states() -> dict[str, Any]:
    """The global RNG states of this process: torch's CPU generator, the current CUDA device's
    (when CUDA is initialised; ``None`` otherwise), numpy's legacy global one and Python's ``random``.

    Only tensors, numbers and tuples: a checkpoint holding them still loads with ``weights_only=True``.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # The current device only: get_rng_state_all() would open a context on every GPU of the node.
        cuda = torch.cuda.get_rng_state(torch.cuda.current_device())
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }  # fmt: skip


def set_rng_states(state: dict[str, Any]) -> None:
    """Sets the states :func:`rng_states` returned (CUDA's on the current device, if CUDA is available)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"], torch.cuda.current_device())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class RngState(pl.Callback):
    """Stores the global RNG states in every checkpoint and restores them where a resumed fit continues.

    Lightning checkpoints hold the weights, the optimizers, the loops and the stateful data loader's
    position, but not the global generators that the RL sampler (``torch.rand``, Gumbel noise),
    dropout and the budget draws use: without them a fit resumed with ``--ckpt_path`` ends with
    weights up to ~3e-3 away from the unbroken run's after one epoch of the ``tiny`` table. With this
    callback the resumed run draws what the unbroken one drew and ends with bit-identical weights
    (``tests/test_exact_resume.py``: resumed at an epoch's end, in the middle of an epoch, after
    SIGTERM, and with 2 DDP processes).

    Saved: when a checkpoint is written (``state_dict``), i.e. after the batch, validation or epoch
    end that triggered the save. Restored (in ``fit`` only; ``validate``/``test``/``predict
    --ckpt_path`` keep their seeded state) where the resumed run takes up the unbroken run's course,
    after what Lightning does first on a resume (loading, the sanity check, which runs under
    ``isolate_rng`` anyway, creating the train iterator):

    * ``on_train_start``: a checkpoint from the middle of an epoch. The next draw is the next
      batch's, in both runs.
    * again at the resumed run's first ``on_train_epoch_start``, when it starts a new epoch before
      any batch (a checkpoint from an epoch's end: ``on_train_epoch_end``, validation at the end of
      the epoch, the end of training). There an unbroken run creates the new epoch's train iterator,
      which draws the loader's base seed from the global generator. A resumed run reuses the iterator
      Lightning made before the restore and before it called the sampler's ``set_epoch``: its base
      seed comes from other states and its order is the finished epoch's (with the stateful loader
      and :class:`~data.datamodule.EpochShuffleSampler`, epoch 2 of a run resumed after epoch 1
      would replay epoch 1's order). So the callback creates the iterator anew at that point, from
      the restored states and after ``set_epoch``, unless Lightning is about to do it itself.

    Interrupted steps: ``checkpoint.save_on_exception`` writes ``last.ckpt`` when an exception ends
    the run. SIGTERM (preemption) stops Lightning between steps, and that checkpoint resumes exactly;
    an exception inside a step (Ctrl-C, a crash) leaves that step half done and its draws half
    drawn. The state records which (``exact``, see :func:`resumes_exactly`); a resume from an
    inexact checkpoint restores the states anyway and warns that it is not bit-exact.

    Distributed runs: each rank's generators differ (their batches differ), and only rank 0 writes
    the checkpoint, so ``state_dict`` gathers every rank's states (``all_gather_object``: Lightning
    calls ``save_checkpoint`` on all ranks) and each rank restores its own. A checkpoint from
    another number of ranks restores nothing, with a warning: that resume is not bit-exact.

    Not covered: generators that are not global (a module's own ``torch.Generator`` belongs in its
    own state), RNG inside DataLoader worker processes (the datasets here draw none), CUDA devices
    other than the current one, and a checkpoint that a run stopped by ``max_steps`` in the middle
    of an epoch wrote at its (early) epoch end: Lightning resumes that one at the next epoch.
    """

    STATE_VERSION = 1

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self._loaded: dict[str, Any] | None = None  # this rank's states from the checkpoint, until the first batch
        self._resumed_before_first_batch = False
        self._exception: BaseException | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        self._exception = None

    def state_dict(self) -> dict[str, Any]:
        state = rng_states()
        trainer = self._trainer
        world = trainer.world_size if trainer is not None else 1
        if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            ranks: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(ranks, state)
        else:
            ranks = [state]
        # Lightning moves ModelCheckpoint behind the other callbacks: on_exception below has run by
        # the time ModelCheckpoint.on_exception saves.
        exact = self._exception is None or isinstance(self._exception, SIGTERMException)
        return {"version": self.STATE_VERSION, "exact": exact, "ranks": ranks}

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._exception = exception

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        trainer = self._trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return
        ranks = state_dict.get("ranks", [])
        if len(ranks) != trainer.world_size:
            warnings.warn(f"the checkpoint holds the RNG states of {len(ranks)} processes, this run has "
                          f"{trainer.world_size}: they are not restored, and the resumed run is not bit-exact")  # fmt: skip
            return
        self._loaded = ranks[trainer.global_rank]
        if not state_dict.get("exact", True):
            warnings.warn("the checkpoint was written when an exception interrupted a step (save_on_exception): "
                          "the RNG states are restored, but the resumed run is not bit-exact")  # fmt: skip

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning's own flag: the loops were loaded from a checkpoint (reset after the first epoch).
        self._resumed_before_first_batch = trainer.fit_loop.is_resuming
        if self._loaded is not None:
            set_rng_states(self._loaded)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._resumed_before_first_batch:
            return
        # A resumed run that starts a new epoch before any batch: the checkpoint was taken at an epoch's end.
        self._resumed_before_first_batch = False
        if self._loaded is not None:
            set_rng_states(self._loaded)
            self._loaded = None
        fit_loop = trainer.fit_loop
        # TrainingEpochLoop.on_run_start creates the epoch's iterator itself exactly under this condition.
        lightning_will = trainer.current_epoch > 0 and not fit_loop.is_resuming and not fit_loop.epoch_loop.restarting
        fetcher = getattr(fit_loop, "_data_fetcher", None)
        if not lightning_will and fetcher is not None:
            iter(fetcher)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._resumed_before_first_batch = False
        self._loaded = None
