"""Training the learned frame-importance model, alone or jointly with the VLM's LoRA adapter.

One LightningModule with a configurable loss mix (:class:`~trainer.objectives.ObjectiveSettings`),
because the objectives share everything expensive: cached frame features, the importance model's logits,
and VLM forward passes. The objectives themselves (RL, ranking, teacher distillation, caption
loss) are units in :mod:`trainer.objectives`; this module computes the logits once per batch,
adds up the terms that are on and steps the optimizers. The fixed selectors validation compares
against are logged by :class:`trainer.callbacks.ValidationBaselines`, which
:meth:`SelectorModule.configure_callbacks` adds.

``train_selector`` / ``train_lora`` freeze either side; ``alternate_every`` > 0 trains one side
at a time, switching every that many steps (the notes' "train separately" schedule);
``lora_start`` > 0 trains the selector alone for that many batches before LoRA joins.

Schedules (``temperature_steps``, ``teacher_anneal_steps``, ``alternate_every``, ``lora_start``),
Lightning's ``global_step`` and so ``trainer.max_steps`` all count training batches, whichever
sides train: :meth:`SelectorModule.step_optimizers` counts one step per batch however many
optimizers step on it.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from data.encodings import FrameEncodings
from models.decoders import Decoder, TopKDecoder
from models.encoders import FrameEncoder
from models.importance import FrameImportanceModel, ImportanceSelector
from models.selectors import FrameSelector
from models.vlm import SmolVLM
from models.xcorr import CrossCorrelationSelector
from trainer.callbacks import ValidationBaselines, baseline_scores
from trainer.renames import current_state_dict
from trainer.checkpointing import (
    check_trainable_state,
    keep_trainable_state,
    plain_hparams,
)
from trainer.evaluation.metrics import event_recall
from trainer.objectives import (
    CaptionScorer,
    ObjectiveSettings,
    TEACHER_SCORES,
    TeacherScores,
    distillation_loss,
    policy_gradient_loss,
    ranking_loss,
    subset_rewards,
)
from trainer.schedules import fit_to_run, steps_per_side

log = logging.getLogger(__name__)

BATCHES_KEY = "selector_trainer_batches_done"


class SelectorModule(pl.LightningModule):
    """Trains :class:`FrameImportanceModel` (and optionally the VLM's LoRA) on cached frame features.

    Args:
        importance: The importance model being trained (its ``feature_dim`` must match the encoder). The
            selector it makes at inference is :meth:`inference_selector`.
        encoder: Frozen vision encoder whose pooled features the importance model reads.
        vlm: SmolVLM for likelihood rewards, ranking and joint caption training (optional).
        teacher: Distillation teacher (default: per-channel cross-correlation).
        decoder: Turns the importance model's scores into K frames at validation/inference; the
            score-based baselines (pixel difference, cross-correlation) are evaluated with the
            same decoder so recall compares scores, not decoders (default: top-k).
        num_frames: Frame budget K the VLM is shown (rewards, ranking, caption loss), and the
            budget the importance model trains at unless ``budget_range`` is set.
        budget_range: ``[low, high]``: train the importance model at a budget K drawn per batch from this
            range (log-uniformly, so small budgets are drawn as often per octave as large ones;
            capped by the batch's shortest video). Needs a budget-aware importance model
            (``max_budget >= high``), which is told each batch's K: one mask for every budget.
            Rewards from the VLM (likelihood reward) are computed at the drawn K, so the VLM must
            accept ``high`` frames.
        eval_budgets: Budgets at which validation reports event recall (``val/recall@K``, and
            ``val/recall_mean``, each video's recall averaged over them, for model selection;
            default: 4 and 8).
        objective: Loss mix and schedules.
        selector_optimizer: Optimizer factory for the importance model.
        lora_optimizer: Optimizer factory for the LoRA adapter.
        selector_lr_scheduler: LR schedule factory for the importance model's optimizer (e.g.
            :class:`trainer.schedules.WarmupCosine`); ``None`` keeps its LR constant.
        lora_lr_scheduler: LR schedule factory for the LoRA adapter's optimizer; ``None``: constant.
            Each side's schedule steps exactly when that side's optimizer steps, so it counts
            that side's own steps: with ``alternate_every`` or ``lora_start`` the two schedules
            advance at different rates, and ``total_steps: null`` gives each side the steps it
            will take in this run.
        reward_batch_size: Videos per VLM forward pass when scoring sampled subsets.
        validation_baselines: Log the fixed selectors' recall (and, with a VLM, the caption loss
            on uniform frames) next to the importance model's at validation and test
            (:class:`~trainer.callbacks.ValidationBaselines`); ``false`` saves their time.

    Each candidate frame goes through a vision tower once per run: at setup the module registers
    its encoders with the data module (:meth:`DenseCaptionDataModule.set_frame_encoders`), whose
    batches then carry the importance model's ``features`` and the VLM's ``image_embeds`` (cached on disk
    with ``data.feature_cache``). When the encoder is the VLM's own checkpoint, one pass gives
    both; every VLM forward (rewards, ranking, caption loss) gathers the shown frames' embedding
    rows instead of re-running the tower on pixels, unless :meth:`SmolVLM.embeds_blocker` says why
    it cannot (then the pixel path runs and one log line says why).
    """

    def __init__(
        self,
        importance: FrameImportanceModel,
        encoder: FrameEncoder,
        vlm: SmolVLM | None = None,
        teacher: FrameSelector | None = None,
        decoder: Decoder | None = None,
        num_frames: int = 4,
        budget_range: list[int] | None = None,
        eval_budgets: list[int] | None = None,
        objective: ObjectiveSettings = ObjectiveSettings(),
        selector_optimizer: OptimizerCallable = torch.optim.AdamW,
        lora_optimizer: OptimizerCallable = torch.optim.AdamW,
        reward_batch_size: int = 16,
        selector_lr_scheduler: LRSchedulerCallable | None = None,
        lora_lr_scheduler: LRSchedulerCallable | None = None,
        validation_baselines: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.remove_ignored_hparams([k for k, v in self.hparams.items() if not plain_hparams(v)])
        if num_frames < 1:
            raise ValueError(f"model.init_args.num_frames must be >= 1, got {num_frames}")
        if objective.needs_vlm and vlm is None:
            raise ValueError("objective uses the VLM (likelihood_reward, rank_weight or caption_weight) but vlm is not set")
        if objective.train_lora and (vlm is None or not vlm.lora_settings.enabled):
            raise ValueError("objective.train_lora needs a vlm with lora.enabled: true")
        self.eval_budgets = sorted(set(eval_budgets or [4, 8]))
        self.budget_range = self._check_budgets(importance, num_frames, budget_range, self.eval_budgets)
        if vlm is not None:
            # The VLM sees num_frames frames, or the drawn budget when its likelihood is a reward.
            top = self.budget_range[1] if self.budget_range and objective.likelihood_reward > 0 else num_frames
            vlm.check_frame_budget(max(num_frames, top))
        self.importance = importance
        self.encoder = encoder
        self.vlm = vlm
        self.teacher = teacher if teacher is not None else CrossCorrelationSelector(size=64, grayscale=False)
        self.num_frames = num_frames
        self.objective = objective
        self.selector_optimizer = selector_optimizer
        self.lora_optimizer = lora_optimizer
        self.selector_lr_scheduler = selector_lr_scheduler
        self.lora_lr_scheduler = lora_lr_scheduler
        self.reward_batch_size = reward_batch_size
        self.validation_baselines = validation_baselines
        self._tokenizer = None  # loaded on the first batch with a text query
        # Training batches done: the schedules' clock (global_step too, except for batches where
        # nothing steps; this one is checkpointed and always counts).
        self.batches_done = 0
        self.decoder = decoder if decoder is not None else TopKDecoder()
        # One scorer for every VLM-driven term: rewards, ranking targets and the caption loss.
        self.captions = CaptionScorer(vlm, reward_batch_size) if vlm is not None else None
        self.teacher_scores = TeacherScores(self.teacher, objective.teacher_cache_videos)
        # Two optimizers and steps that may update only one side: manual optimisation.
        self.automatic_optimization = False
        if vlm is not None and not objective.train_lora:
            vlm.requires_grad_(False)
        if not objective.train_selector:
            importance.requires_grad_(False)
        self.strict_loading = False

    @staticmethod
    def _check_budgets(
        importance: FrameImportanceModel, num_frames: int, budget_range: list[int] | None, eval_budgets: list[int]
    ) -> tuple[int, int] | None:
        """Validated ``budget_range`` as ``(low, high)``, or ``None``; every budget fits a budget-aware importance model."""
        if budget_range is not None:
            if len(budget_range) != 2 or not 1 <= budget_range[0] <= budget_range[1]:
                raise ValueError(f"model.init_args.budget_range must be [low, high] with 1 <= low <= high, got {budget_range}")
            if not importance.budget_aware:
                raise ValueError(
                    "model.init_args.budget_range trains one importance model for many budgets: the importance model must be "
                    f"budget-aware (importance.init_args.max_budget >= {budget_range[1]})"
                )
        if importance.budget_aware:
            wanted = max([num_frames, *eval_budgets, *(budget_range or [])])
            if wanted > importance.max_budget:
                raise ValueError(
                    f"budget K={wanted} (num_frames, eval_budgets or budget_range) exceeds the importance model's "
                    f"max_budget={importance.max_budget}"
                )
        return None if budget_range is None else (int(budget_range[0]), int(budget_range[1]))

    def training_budget(self, batch: dict[str, list]) -> int:
        """The budget K the importance model trains at on this batch: ``num_frames``, or one drawn from ``budget_range``."""
        if self.budget_range is None:
            return self.num_frames
        low, high = self.budget_range
        high = max(low, min(high, min(len(t) for t in batch["timestamps"])))
        # Log-uniform over [low, high + 1): each octave of budgets gets the same share of batches.
        u = float(torch.rand(()))
        return min(high, int(math.exp(math.log(low) + u * (math.log(high + 1) - math.log(low)))))

    # ----------------------------------------------------------------------------- features
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None:
            self.register_encoders(datamodule)

    def register_encoders(self, datamodule: Any) -> FrameEncodings | None:
        """Tells the data module this run's frame budget and encoders (see :mod:`trainer.tools.cache`).

        Returns:
            The data module's :class:`~data.encodings.FrameEncodings`, or ``None`` if it takes none.
        """
        if hasattr(datamodule, "set_frame_budget"):
            datamodule.set_frame_budget(max([self.num_frames, *self.eval_budgets]))
        if not hasattr(datamodule, "set_frame_encoders"):
            return None
        # The teacher's scores read pixels: cached like the features, so warm epochs need no frames.
        uses_teacher = self.objective.teacher_weight > 0 or self.importance.score_inputs > 0
        scores = {TEACHER_SCORES: self.teacher} if uses_teacher else {}
        # The validation baselines' scores read pixels too: cached the same way. An exported cache
        # written before they were cached lacks them: then only the uniform baseline is logged.
        baselines = baseline_scores(self.decoder) if self.validation_baselines else {}
        if getattr(datamodule, "from_cache", None) is not None:
            held = datamodule.export()[1].get("outputs", {})
            baselines = {key: selector for key, selector in baselines.items() if key in held}
        scores.update(baselines)
        embeds = self.embeds_encoder()
        encodings = datamodule.set_frame_encoders(features=self.encoder, image_embeds=embeds, scores=scores or None)
        if hasattr(datamodule, "set_decode_free"):
            # A training step reads the features, the image embeddings (video_features, shown_frames)
            # and the teacher's scores, which a warm cache holds; only a VLM that runs its own vision
            # tower reads pixels.
            if self.vlm is not None and embeds is None:
                datamodule.needs_pixels(f"the VLM reads pixels ({self.vlm.embeds_blocker()})")
            else:
                # Validation and test read the same outputs and the baselines' scores.
                outputs = tuple(encodings.encoders)
                datamodule.set_decode_free(tuple(o for o in outputs if o not in baselines))
                datamodule.set_decode_free(outputs, splits=("val", "test"))
        return encodings

    def embeds_encoder(self) -> FrameEncoder | None:
        """The encoder whose image embeddings the VLM reads, or ``None`` (pixel path, said in the log).

        The selector's own encoder when it is the VLM's checkpoint (one pass gives both outputs),
        else the VLM's tower.
        """
        if self.vlm is None:
            return None
        if self.vlm.embeds_blocker(self.encoder) is None:
            return self.encoder
        blocker = self.vlm.embeds_blocker()
        if blocker is None:
            return self.vlm.frame_encoder()
        log.info("the VLM runs its vision tower on pixels for every forward: %s", blocker)
        return None

    def video_features(self, batch: dict[str, list]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded features ``(B, T, D)``, timestamps ``(B, T)`` and validity mask ``(B, T)``.

        Features come with the batch (the data module's encoding stage); a batch built by hand
        is encoded here.
        """
        if "features" in batch:
            feats = [rows.all().float().cpu() for rows in batch["features"]]
        else:
            feats = [self.encoder(frames) for frames in batch["frames"]]
        lengths = [f.shape[0] for f in feats]
        b, t, d = len(feats), max(lengths), feats[0].shape[1]
        features = torch.zeros(b, t, d)
        stamps = torch.zeros(b, t)
        mask = torch.zeros(b, t, dtype=torch.bool)
        for i, (f, s) in enumerate(zip(feats, batch["timestamps"])):
            features[i, : len(f)] = f
            stamps[i, : len(f)] = s.float()
            mask[i, : len(f)] = True
        return features.to(self.device), stamps.to(self.device), mask.to(self.device)

    def query_tokens(self, batch: dict[str, list]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Token ids ``(B, L)`` and mask of the videos' text queries, or ``(None, None)``.

        Only for an importance model built with ``query_vocab_size > 0`` and a batch with at least one
        query; the VLM's tokenizer (or the encoder checkpoint's) turns text into ids, so the
        policy's query vocabulary must cover it. Videos without a query get no query tokens.
        """
        if self.importance.query_vocab_size == 0 or not any(batch["query"]):
            return None, None
        if self._tokenizer is None:
            if self.vlm is not None:
                self._tokenizer = self.vlm.processor.tokenizer
            else:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.encoder.model_name_or_path)
            if len(self._tokenizer) > self.importance.query_vocab_size:
                raise ValueError(
                    f"importance.query_vocab_size={self.importance.query_vocab_size} is smaller than the query "
                    f"tokenizer's {len(self._tokenizer)} tokens"
                )
        encoded = self._tokenizer(
            [q or "" for q in batch["query"]], add_special_tokens=False, truncation=True,
            max_length=self.importance.max_query_len, padding="max_length", return_tensors="pt",
        )  # fmt: skip
        return encoded["input_ids"].to(self.device), encoded["attention_mask"].bool().to(self.device)

    def importance_logits(
        self, batch: dict[str, list], budget: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Importance logits ``(B, T)`` for budget K (default ``num_frames``; ``-inf`` on padding), timestamps and mask."""
        features, stamps, mask = self.video_features(batch)
        query_ids, query_mask = self.query_tokens(batch)
        budget = self.num_frames if budget is None else budget
        teacher_scores = None
        if self.importance.score_inputs > 0:  # the importance model reads the teacher's scores
            teacher_scores = torch.zeros_like(stamps)
            for i, s in enumerate(self.teacher_scores(batch)):
                teacher_scores[i, : len(s)] = s.to(self.device)
        logits = self.importance(features, stamps, mask, query_ids, query_mask, budget=budget, frame_scores=teacher_scores)
        return logits, stamps, mask

    # ----------------------------------------------------------------------------- steps
    def chosen_indices(self, batch: dict[str, list], logits: torch.Tensor, k: int) -> list[torch.Tensor]:
        """The decoder's K frames per video: what inference shows the VLM."""
        return [self.decoder.decode(logits[i, : len(t)].detach().cpu(), k) for i, t in enumerate(batch["timestamps"])]

    def training_step(self, batch: dict[str, list], batch_idx: int) -> torch.Tensor | None:
        if not batch["frames"]:
            return None
        o = self.objective
        train_sel, train_lora = o.sides(self.batches_done)
        temperature = o.temperature(self.batches_done)
        k = self.training_budget(batch)
        logits, _, mask = self.importance_logits(batch, k)
        # What the VLM is shown (ranking, caption loss) is num_frames frames, scored for that budget.
        vlm_logits = logits if k == self.num_frames or not self.importance.budget_aware else None
        if vlm_logits is None and ((train_sel and o.rank_weight > 0) or (train_lora and o.caption_weight > 0)):
            vlm_logits = self.importance_logits(batch, self.num_frames)[0]
        total = logits.new_zeros(())
        logs: dict[str, float] = {"train/temperature": temperature, "train/budget": float(k)}
        nll = self.captions.nll if self.captions is not None else None
        if train_sel and o.rl_weight > 0:
            reward = functools.partial(subset_rewards, batch, coverage=o.coverage_reward,
                                       likelihood=o.likelihood_reward, caption_nll=nll)  # fmt: skip
            loss, info = policy_gradient_loss(logits, mask, k, reward, o.group_size, temperature, o.entropy_weight)
            total = total + o.rl_weight * loss
            logs.update({"train/rl_loss": loss.item(), "train/reward": info["reward"], "train/entropy": info["entropy"]})
        if train_sel and o.rank_weight > 0:
            loss = ranking_loss(vlm_logits, self.num_frames, functools.partial(nll, batch), o.rank_candidates,
                                temperature, o.rank_temperature)  # fmt: skip
            total = total + o.rank_weight * loss
            logs["train/rank_loss"] = loss.item()
        weight = o.teacher_weight_at(self.batches_done)
        if train_sel and weight > 0:
            loss = distillation_loss(logits, mask, self.teacher_scores(batch), o.teacher_temperature)
            total = total + weight * loss
            logs.update({"train/teacher_loss": loss.item(), "train/teacher_weight": weight})
        if train_lora and o.caption_weight > 0:
            loss = self.captions.loss(batch, self.chosen_indices(batch, vlm_logits, self.num_frames))
            total = total + o.caption_weight * loss
            logs["train/caption_loss"] = loss.item()
        self.log_dict(logs, prog_bar=False, batch_size=len(batch["frames"]))
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=len(batch["frames"]))
        self.step_optimizers(total, {"selector": train_sel, "lora": train_lora})
        self.batches_done += 1
        return total.detach()

    def step_optimizers(self, loss: torch.Tensor, stepping: dict[str, bool]) -> None:
        """Backpropagates ``loss`` and steps the optimizers of the sides in ``stepping`` that are on.

        Lightning counts every step of its optimizer wrapper (``LightningOptimizer.step``) as one
        ``global_step``, which ``trainer.max_steps`` and ``every_n_train_steps`` read. So that both
        count batches, only the first optimizer that steps on a batch goes through the wrapper;
        another steps its underlying optimizer through the same strategy call the wrapper makes
        (precision plugin: gradient unscaling and clipping, ``on_before_optimizer_step``), without
        the count. Each side's LR schedule steps with its own optimizer, so it counts that side's steps.
        """
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for opt in optimizers:
            opt.zero_grad()
        if not loss.requires_grad:
            return
        self.manual_backward(loss)
        counted = False
        for opt, side, schedule in zip(optimizers, self._optimizer_sides, self._side_schedules):
            if not stepping[side]:
                continue
            if counted:
                self.trainer.strategy.optimizer_step(opt.optimizer, closure=_no_closure)
            else:
                opt.step()
                counted = True
            if schedule is not None:
                schedule.step()  # only with its own optimizer: each side's schedule counts its steps

    def validation_step(self, batch: dict[str, list], batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def test_step(self, batch: dict[str, list], batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def evaluate(self, batch: dict[str, list], stage: str) -> None:
        """Logs ``{stage}/recall@K`` and ``{stage}/recall_mean`` of the decoded importance model, and with a VLM
        ``{stage}/caption_loss`` (the baselines' are :class:`~trainer.callbacks.ValidationBaselines`')."""
        if not batch["frames"]:
            return
        n = len(batch["frames"])
        logits, _, _ = self.importance_logits(batch)
        per_video: list[list[float]] = [[] for _ in range(n)]
        for k in self.eval_budgets:
            recalls = []
            at_k = self.importance_logits(batch, k)[0] if self.importance.budget_aware and k != self.num_frames else logits
            for i, events in enumerate(batch["events"]):
                t = batch["timestamps"][i]
                if k > len(t):
                    continue
                idx = self.decoder.decode(at_k[i, : len(t)].detach().cpu(), k)
                recalls.append(event_recall(t[idx], events).item())
                per_video[i].append(recalls[-1])
            if recalls:
                prog = k == self.num_frames
                self.log(f"{stage}/recall@{k}", sum(recalls) / len(recalls), prog_bar=prog, batch_size=len(recalls), sync_dist=True)
        # One number for model selection across budgets: per video, its recall averaged over the
        # budgets it has frames for; then averaged over videos.
        means = [sum(r) / len(r) for r in per_video if r]
        if means:
            self.log(f"{stage}/recall_mean", sum(means) / len(means), batch_size=len(means), sync_dist=True)
        if self.captions is not None:
            chosen = self.chosen_indices(batch, logits, self.num_frames)
            self.log(f"{stage}/caption_loss", self.captions.loss(batch, chosen), batch_size=n, sync_dist=True)

    def configure_callbacks(self) -> list[pl.Callback]:
        if not self.validation_baselines:
            return []
        return [ValidationBaselines(self.eval_budgets, self.decoder, self.num_frames, captions=self.captions)]

    # ----------------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> list[torch.optim.Optimizer] | tuple[list[torch.optim.Optimizer], list[dict]]:
        optimizers, factories, self._optimizer_sides = [], [], []
        if self.objective.train_selector:
            optimizers.append(self.selector_optimizer(self.importance.parameters()))
            factories.append(self.selector_lr_scheduler)
            self._optimizer_sides.append("selector")
        if self.objective.train_lora:
            params = [p for p in self.vlm.parameters() if p.requires_grad]
            optimizers.append(self.lora_optimizer(params))
            factories.append(self.lora_lr_scheduler)
            self._optimizer_sides.append("lora")

        def sides_at(batch: int) -> list[bool]:
            sel, lora = self.objective.sides(batch)
            return [sel if side == "selector" else lora for side in self._optimizer_sides]

        @functools.cache
        def run_steps() -> tuple[float, ...]:
            return tuple(steps_per_side(self.trainer, sides_at))  # each side's steps in this run

        # Stepped by training_step (manual optimisation); Lightning saves and restores their state.
        self._side_schedules = [None if f is None else f(opt) for f, opt in zip(factories, optimizers)]
        for i, schedule in enumerate(self._side_schedules):
            if schedule is not None:
                fit_to_run(schedule, lambda i=i: run_steps()[i])
        schedules = [{"scheduler": s, "interval": "step"} for s in self._side_schedules if s is not None]
        return (optimizers, schedules) if schedules else optimizers

    # ----------------------------------------------------------------------------- inference
    def inference_selector(self) -> ImportanceSelector:
        """The trained importance model as a :class:`FrameSelector`: its encoder, decoder, default budget ``num_frames``
        and, for an importance model that reads its teacher's scores (``score_inputs``), the teacher.

        It shares the importance model's weights (no copy) and is in eval mode.
        """
        teacher = self.teacher if self.importance.score_inputs > 0 else None  # the scores the importance model reads
        return ImportanceSelector(self.importance, self.encoder, decoder=self.decoder, budget=self.num_frames,
                                  teacher=teacher).eval()  # fmt: skip

    # ----------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep_trainable_state(self, checkpoint)
        checkpoint[BATCHES_KEY] = self.batches_done

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints written before the importance model had its one name call it ``selector`` or ``policy``.
        checkpoint["state_dict"] = current_state_dict("trainer.selector_module.SelectorModule", checkpoint["state_dict"])
        check_trainable_state(self, checkpoint, "; check the importance model, LoRA and objective settings in the config")
        self.batches_done = int(checkpoint.get(BATCHES_KEY, 0))


def _no_closure() -> None:
    """The closure ``LightningOptimizer.step`` passes when given none: the loss is already backpropagated."""
