"""Training the learned frame-importance mask, alone or jointly with the VLM's LoRA adapter.

One LightningModule with a configurable loss mix (:class:`ObjectiveSettings`), because the
objectives share everything expensive: cached frame features, the policy's logits, and VLM
forward passes. Each term is off when its weight is 0:

* **RL** (``rl_weight``): per video, sample ``group_size`` K-frame subsets from the policy
  (Plackett-Luce via Gumbel-top-k), reward each with annotated-event coverage and/or the VLM's
  caption log-likelihood given those frames, normalise rewards within the group (group-relative
  advantage) and take the policy gradient of each subset's exact log-probability. An entropy
  bonus and a temperature annealed from ``temperature_start`` to ``temperature_end`` keep early
  exploration broad.
* **Ranking** (``rank_weight``, Frame-Voyager style): sample ``rank_candidates`` subsets, rank
  them by the VLM's caption loss, and fit the policy's subset scores (sum of frame logits) to
  that ranking with a listwise softmax cross-entropy. With a text query the policy sees the
  query tokens, so it learns query-frame matching from the same signal.
* **Teacher** (``teacher_weight``): distil the cross-correlation selector's diff scores (as a
  softmax target over frames); the weight anneals linearly to 0 over ``teacher_anneal_steps``.
* **Caption** (``caption_weight``): the VLM's caption loss on the frames the policy chooses
  (top-k), which trains the LoRA adapter in the same run.

``train_selector`` / ``train_lora`` freeze either side; ``alternate_every`` > 0 trains one side
at a time, switching every that many steps (the notes' "train separately" schedule);
``lora_start`` > 0 trains the selector alone for that many batches before LoRA joins.

Schedules (``temperature_steps``, ``teacher_anneal_steps``, ``alternate_every``, ``lora_start``)
count training batches. Lightning's ``global_step`` (and so ``trainer.max_steps``) counts
optimizer steps instead, which is two per batch while the selector and LoRA both train: bound
such runs with ``max_epochs``, or set ``max_steps`` to twice the batches you want.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from data.encodings import FrameEncodings
from models.decoders import Decoder, TopKDecoder
from models.encoders import FrameEncoder
from models.importance import FrameImportanceModel, gumbel_topk, plackett_luce_log_prob
from models.prompting import format_dense_caption
from models.selectors import (
    FrameSelector,
    PixelDiffSelector,
    UniformSelector,
    uniform_indices,
)
from models.vlm import SmolVLM
from models.xcorr import CrossCorrelationSelector
from trainer.checkpointing import (
    check_trainable_state,
    keep_trainable_state,
    plain_hparams,
)
from trainer.metrics import event_recall
from trainer.schedules import fit_to_run, steps_per_side

log = logging.getLogger(__name__)

BATCHES_KEY = "selector_trainer_batches_done"


@dataclass
class ObjectiveSettings:
    """Loss mix and schedules of :class:`SelectorTrainer` (a weight of 0 switches a term off).

    Attributes:
        rl_weight: Policy-gradient loss weight.
        group_size: Subsets sampled per video for the group-relative advantage.
        coverage_reward: Reward weight of annotated-event coverage (fraction of events hit).
        likelihood_reward: Reward weight of the caption log-likelihood under the VLM (needs ``vlm``).
        entropy_weight: Bonus on the entropy of the policy's first-draw distribution.
        temperature_start: Sampling temperature at step 0.
        temperature_end: Sampling temperature after ``temperature_steps`` (cosine schedule).
        temperature_steps: Length of the temperature schedule in training batches.
        rank_weight: Frame-Voyager ranking loss weight (needs ``vlm``).
        rank_candidates: Candidate subsets ranked per video.
        rank_temperature: Softness of the target ranking, in nats of caption loss.
        teacher_weight: Initial weight of distillation from the teacher selector.
        teacher_anneal_steps: Batches over which the teacher weight falls linearly to 0 (0: constant).
        teacher_temperature: Temperature of the teacher's target distribution (on standardised scores).
        caption_weight: Caption loss on the chosen frames, training the LoRA adapter (needs ``vlm``).
        train_selector: Update the importance model.
        train_lora: Update the VLM's LoRA adapter.
        alternate_every: If > 0, update only one side at a time, switching every that many batches.
        lora_start: Batches the selector trains alone before the LoRA adapter joins (e.g. while
            the teacher's weight anneals: "teacher, then joint"); 0 trains both from the start.
    """

    rl_weight: float = 1.0
    group_size: int = 8
    coverage_reward: float = 1.0
    likelihood_reward: float = 0.0
    entropy_weight: float = 0.01
    temperature_start: float = 1.0
    temperature_end: float = 0.3
    temperature_steps: int = 500
    rank_weight: float = 0.0
    rank_candidates: int = 6
    rank_temperature: float = 0.1
    teacher_weight: float = 0.0
    teacher_anneal_steps: int = 200
    teacher_temperature: float = 0.5
    caption_weight: float = 0.0
    train_selector: bool = True
    train_lora: bool = False
    alternate_every: int = 0
    lora_start: int = 0

    def __post_init__(self) -> None:
        for name in ("rl_weight", "coverage_reward", "likelihood_reward", "entropy_weight", "rank_weight",
                     "teacher_weight", "caption_weight"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"model.init_args.objective.{name} must be >= 0, got {getattr(self, name)}")
        if self.lora_start < 0:
            raise ValueError(f"model.init_args.objective.lora_start must be >= 0, got {self.lora_start}")
        if self.group_size < 2:
            raise ValueError("model.init_args.objective.group_size must be >= 2 (advantages are relative to the group)")
        if self.rank_candidates < 2:
            raise ValueError("model.init_args.objective.rank_candidates must be >= 2")
        if min(self.temperature_start, self.temperature_end, self.teacher_temperature, self.rank_temperature) <= 0:
            raise ValueError("temperatures must be positive")
        if not (self.train_selector or self.train_lora):
            raise ValueError("nothing to train: set objective.train_selector or objective.train_lora")

    @property
    def needs_vlm(self) -> bool:
        return self.likelihood_reward > 0 or self.rank_weight > 0 or self.caption_weight > 0


class SelectorTrainer(pl.LightningModule):
    """Trains :class:`FrameImportanceModel` (and optionally the VLM's LoRA) on cached frame features.

    Args:
        selector: The importance model being trained (its ``feature_dim`` must match the encoder).
        encoder: Frozen vision encoder whose pooled features the selector reads.
        vlm: SmolVLM for likelihood rewards, ranking and joint caption training (optional).
        teacher: Distillation teacher (default: per-channel cross-correlation).
        decoder: Turns the policy's scores into K frames at validation/inference; the
            score-based baselines (pixel difference, cross-correlation) are evaluated with the
            same decoder so recall compares scores, not decoders (default: top-k).
        num_frames: Frame budget K the VLM is shown (rewards, ranking, caption loss), and the
            budget the policy trains at unless ``budget_range`` is set.
        budget_range: ``[low, high]``: train the policy at a budget K drawn per batch from this
            range (log-uniformly, so small budgets are drawn as often per octave as large ones;
            capped by the batch's shortest video). Needs a budget-aware selector
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

    Each candidate frame goes through a vision tower once per run: at setup the module registers
    its encoders with the data module (:meth:`DenseCaptionDataModule.set_frame_encoders`), whose
    batches then carry the selector's ``features`` and the VLM's ``image_embeds`` (cached on disk
    with ``data.feature_cache``). When the encoder is the VLM's own checkpoint, one pass gives
    both; every VLM forward (rewards, ranking, caption loss) gathers the shown frames' embedding
    rows instead of re-running the tower on pixels, unless :meth:`SmolVLM.embeds_blocker` says why
    it cannot (then the pixel path runs and one log line says why).
    """

    def __init__(
        self,
        selector: FrameImportanceModel,
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
        self.budget_range = self._check_budgets(selector, num_frames, budget_range, self.eval_budgets)
        if vlm is not None:
            # The VLM sees num_frames frames, or the drawn budget when its likelihood is a reward.
            top = self.budget_range[1] if self.budget_range and objective.likelihood_reward > 0 else num_frames
            vlm.check_frame_budget(max(num_frames, top))
        self.selector = selector
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
        self._tokenizer = None  # loaded on the first batch with a text query
        # Training batches done: the schedules' clock (global_step counts 1 or 2 per batch).
        self.batches_done = 0
        self.decoder = decoder if decoder is not None else TopKDecoder()
        self.baselines = {
            "uniform": UniformSelector(),
            "pixel_l1": PixelDiffSelector(p=1, decoder=self.decoder),
            "xcorr": CrossCorrelationSelector(size=64, grayscale=False, decoder=self.decoder),
        }
        self._teacher_scores: dict[str, torch.Tensor] = {}
        self._baseline_recall: dict[tuple[str, str, int], float] = {}
        # Two optimizers and steps that may update only one side: manual optimisation.
        self.automatic_optimization = False
        if vlm is not None and not objective.train_lora:
            vlm.requires_grad_(False)
        if not objective.train_selector:
            selector.requires_grad_(False)
        self.strict_loading = False

    @staticmethod
    def _check_budgets(
        selector: FrameImportanceModel, num_frames: int, budget_range: list[int] | None, eval_budgets: list[int]
    ) -> tuple[int, int] | None:
        """Validated ``budget_range`` as ``(low, high)``, or ``None``; every budget fits a budget-aware selector."""
        if budget_range is not None:
            if len(budget_range) != 2 or not 1 <= budget_range[0] <= budget_range[1]:
                raise ValueError(f"model.init_args.budget_range must be [low, high] with 1 <= low <= high, got {budget_range}")
            if not selector.budget_aware:
                raise ValueError(
                    "model.init_args.budget_range trains one mask for many budgets: the selector must be "
                    f"budget-aware (selector.init_args.max_budget >= {budget_range[1]})"
                )
        if selector.budget_aware:
            wanted = max([num_frames, *eval_budgets, *(budget_range or [])])
            if wanted > selector.max_budget:
                raise ValueError(
                    f"budget K={wanted} (num_frames, eval_budgets or budget_range) exceeds the selector's "
                    f"max_budget={selector.max_budget}"
                )
        return None if budget_range is None else (int(budget_range[0]), int(budget_range[1]))

    def training_budget(self, batch: dict[str, list]) -> int:
        """The budget K the policy trains at on this batch: ``num_frames``, or one drawn from ``budget_range``."""
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
        """Tells the data module this run's frame budget and encoders (see :mod:`trainer.cache`).

        Returns:
            The data module's :class:`~data.encodings.FrameEncodings`, or ``None`` if it takes none.
        """
        if hasattr(datamodule, "set_frame_budget"):
            datamodule.set_frame_budget(max([self.num_frames, *self.eval_budgets]))
        if hasattr(datamodule, "set_frame_encoders"):
            return datamodule.set_frame_encoders(features=self.encoder, image_embeds=self.embeds_encoder())
        return None

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

    def shown(self, batch: dict[str, list], picks: list[tuple[int, torch.Tensor]]) -> dict[str, Any]:
        """What the VLM sees of ``picks`` (video, frame indices): frames, times and embeddings or pixels.

        Keyword arguments for :meth:`SmolVLM.build_batch`: the frames' precomputed embedding rows
        when the batch carries them, else the frames themselves.
        """
        idx = [(i, j.sort().values.cpu()) for i, j in picks]
        stamps = [batch["timestamps"][i][j] for i, j in idx]
        if "image_embeds" in batch:
            return {"frames": None, "timestamps": stamps, "image_embeds": [batch["image_embeds"][i].rows(j) for i, j in idx]}
        return {"frames": [batch["frames"][i][j] for i, j in idx], "timestamps": stamps}

    def query_tokens(self, batch: dict[str, list]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Token ids ``(B, L)`` and mask of the videos' text queries, or ``(None, None)``.

        Only for a selector built with ``query_vocab_size > 0`` and a batch with at least one
        query; the VLM's tokenizer (or the encoder checkpoint's) turns text into ids, so the
        selector's query vocabulary must cover it. Videos without a query get no query tokens.
        """
        if self.selector.query_vocab_size == 0 or not any(batch["query"]):
            return None, None
        if self._tokenizer is None:
            if self.vlm is not None:
                self._tokenizer = self.vlm.processor.tokenizer
            else:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.encoder.model_name_or_path)
            if len(self._tokenizer) > self.selector.query_vocab_size:
                raise ValueError(
                    f"selector.query_vocab_size={self.selector.query_vocab_size} is smaller than the query "
                    f"tokenizer's {len(self._tokenizer)} tokens"
                )
        encoded = self._tokenizer(
            [q or "" for q in batch["query"]], add_special_tokens=False, truncation=True,
            max_length=self.selector.max_query_len, padding="max_length", return_tensors="pt",
        )  # fmt: skip
        return encoded["input_ids"].to(self.device), encoded["attention_mask"].bool().to(self.device)

    def policy_logits(
        self, batch: dict[str, list], budget: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Importance logits ``(B, T)`` for budget K (default ``num_frames``; ``-inf`` on padding), timestamps and mask."""
        features, stamps, mask = self.video_features(batch)
        query_ids, query_mask = self.query_tokens(batch)
        budget = self.num_frames if budget is None else budget
        cues = None
        if self.selector.score_inputs > 0:  # the selector reads the teacher's scores (its cue)
            cues = torch.zeros_like(stamps)
            for i, s in enumerate(self.teacher_scores(batch)):
                cues[i, : len(s)] = s.to(self.device)
        logits = self.selector(features, stamps, mask, query_ids, query_mask, budget=budget, frame_scores=cues)
        return logits, stamps, mask

    def teacher_scores(self, batch: dict[str, list]) -> list[torch.Tensor]:
        """The teacher's scores ``(T,)`` of each video, computed once per video and run."""
        for vid, frames, stamps in zip(batch["video_id"], batch["frames"], batch["timestamps"]):
            if vid not in self._teacher_scores:
                self._teacher_scores[vid] = self.teacher.scores(frames, stamps).float()
        return [self._teacher_scores[vid] for vid in batch["video_id"]]

    # ----------------------------------------------------------------------------- rewards
    def temperature(self) -> float:
        o = self.objective
        progress = min(self.batches_done / max(o.temperature_steps, 1), 1.0)
        return o.temperature_end + 0.5 * (o.temperature_start - o.temperature_end) * (1 + math.cos(math.pi * progress))

    def teacher_weight(self) -> float:
        o = self.objective
        if o.teacher_anneal_steps <= 0:
            return o.teacher_weight
        return o.teacher_weight * max(0.0, 1.0 - self.batches_done / o.teacher_anneal_steps)

    @torch.no_grad()
    def caption_nll(self, batch: dict[str, list], subsets: torch.Tensor) -> torch.Tensor:
        """VLM caption loss ``(B, G)`` of each video's reference dense caption given each subset."""
        b, g, _ = subsets.shape
        jobs = [(i, j) for i in range(b) for j in range(g)]
        out = torch.zeros(b, g)
        for start in range(0, len(jobs), self.reward_batch_size):
            chunk = jobs[start : start + self.reward_batch_size]
            inputs = self.vlm.build_batch(
                **self.shown(batch, [(i, subsets[i, j]) for i, j in chunk]),
                durations=[batch["duration"][i] for i, _ in chunk],
                targets=[format_dense_caption(batch["events"][i]) for i, _ in chunk],
                queries=[batch["query"][i] for i, _ in chunk],
            )
            losses = self.vlm.sample_losses(inputs).float().cpu()
            for (i, j), loss in zip(chunk, losses):
                out[i, j] = loss
        return out

    @torch.no_grad()
    def rewards(self, batch: dict[str, list], subsets: torch.Tensor) -> torch.Tensor:
        """Reward ``(B, G)`` of each sampled subset ``(B, G, K)``."""
        o = self.objective
        reward = torch.zeros(subsets.shape[:2])
        if o.coverage_reward > 0:
            for i, events in enumerate(batch["events"]):
                times = batch["timestamps"][i][subsets[i].cpu()]
                reward[i] += o.coverage_reward * event_recall(times, events).float()
        if o.likelihood_reward > 0:
            reward -= o.likelihood_reward * self.caption_nll(batch, subsets)
        return reward.to(self.device)

    # ----------------------------------------------------------------------------- losses
    def rl_loss(self, batch, logits, mask, k: int | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Group-relative policy gradient of ``k``-frame draws (default ``num_frames``) from ``logits``."""
        o = self.objective
        k = self.num_frames if k is None else k
        temp = self.temperature()
        g = o.group_size
        z = logits.repeat_interleave(g, dim=0)
        ordered = gumbel_topk(z.detach(), k, temperature=temp)
        log_prob = plackett_luce_log_prob(z, ordered, temperature=temp)
        reward = self.rewards(batch, ordered.view(len(logits), g, -1))
        advantage = (reward - reward.mean(1, keepdim=True)) / (reward.std(1, keepdim=True) + 1e-6)
        loss = -(advantage.flatten().detach() * log_prob).mean()
        log_p = torch.log_softmax(logits / temp, dim=-1)
        entropy = -(log_p.exp() * log_p.masked_fill(~mask, 0.0)).sum(-1).mean()
        return loss - o.entropy_weight * entropy, {"reward": reward.mean().item(), "entropy": entropy.item()}

    def rank_loss(self, batch, logits) -> torch.Tensor:
        o = self.objective
        b = len(logits)
        candidates = gumbel_topk(
            logits.detach().repeat_interleave(o.rank_candidates, 0), self.num_frames, temperature=self.temperature()
        ).view(b, o.rank_candidates, -1)
        nll = self.caption_nll(batch, candidates).to(self.device)
        target = torch.softmax(-nll / o.rank_temperature, dim=1)
        subset_scores = logits.gather(1, candidates.flatten(1)).view_as(candidates.float()).sum(-1)
        return -(target * torch.log_softmax(subset_scores, dim=1)).sum(1).mean()

    def teacher_loss(self, batch, logits, mask) -> torch.Tensor:
        o = self.objective
        target = torch.zeros_like(logits)
        for i, s in enumerate(self.teacher_scores(batch)):
            # Population std: a one-frame video has std 0 and a zero target, where Bessel's
            # correction would divide 0 by 0 and make the loss and gradient NaN.
            s = (s - s.mean()) / (s.std(correction=0) + 1e-6)
            target[i, : len(s)] = s.to(self.device)
        target = torch.softmax((target / o.teacher_temperature).masked_fill(~mask, float("-inf")), dim=-1)
        log_p = torch.log_softmax(logits, dim=-1).masked_fill(~mask, 0.0)
        return -(target * log_p).sum(-1).mean()

    def chosen_indices(self, batch, logits, k: int) -> list[torch.Tensor]:
        """The decoder's K frames per video: what inference shows the VLM."""
        return [self.decoder.decode(logits[i, : len(t)].detach().cpu(), k) for i, t in enumerate(batch["timestamps"])]

    def caption_loss(self, batch, indices: list[torch.Tensor]) -> torch.Tensor:
        """Token-mean caption loss of each video's reference given its frames ``indices``."""
        targets = [format_dense_caption(e) for e in batch["events"]]
        shown = self.shown(batch, list(enumerate(indices)))
        return self.vlm(self.vlm.build_batch(**shown, durations=batch["duration"], targets=targets, queries=batch["query"]))

    # ----------------------------------------------------------------------------- steps
    def _sides(self, batch: int | None = None) -> tuple[bool, bool]:
        """Which of (selector, LoRA) steps on training batch ``batch`` (default: the next one, ``batches_done``)."""
        o = self.objective
        batch = self.batches_done if batch is None else batch
        sel, lora = o.train_selector, o.train_lora and batch >= o.lora_start
        if o.alternate_every > 0 and sel and lora:
            selector_turn = (batch // o.alternate_every) % 2 == 0
            return selector_turn, not selector_turn
        return sel, lora

    def training_step(self, batch: dict[str, list], batch_idx: int) -> torch.Tensor | None:
        if not batch["frames"]:
            return None
        o = self.objective
        train_sel, train_lora = self._sides()
        k = self.training_budget(batch)
        logits, _, mask = self.policy_logits(batch, k)
        # What the VLM is shown (ranking, caption loss) is num_frames frames, scored for that budget.
        vlm_logits = logits if k == self.num_frames or not self.selector.budget_aware else None
        if vlm_logits is None and ((train_sel and o.rank_weight > 0) or (train_lora and o.caption_weight > 0)):
            vlm_logits = self.policy_logits(batch, self.num_frames)[0]
        total = logits.new_zeros(())
        logs: dict[str, float] = {"train/temperature": self.temperature(), "train/budget": float(k)}
        if train_sel and o.rl_weight > 0:
            loss, info = self.rl_loss(batch, logits, mask, k)
            total = total + o.rl_weight * loss
            logs.update({"train/rl_loss": loss.item(), "train/reward": info["reward"], "train/entropy": info["entropy"]})
        if train_sel and o.rank_weight > 0:
            loss = self.rank_loss(batch, vlm_logits)
            total = total + o.rank_weight * loss
            logs["train/rank_loss"] = loss.item()
        weight = self.teacher_weight()
        if train_sel and weight > 0:
            loss = self.teacher_loss(batch, logits, mask)
            total = total + weight * loss
            logs.update({"train/teacher_loss": loss.item(), "train/teacher_weight": weight})
        if train_lora and o.caption_weight > 0:
            loss = self.caption_loss(batch, self.chosen_indices(batch, vlm_logits, self.num_frames))
            total = total + o.caption_weight * loss
            logs["train/caption_loss"] = loss.item()
        self.log_dict(logs, prog_bar=False, batch_size=len(batch["frames"]))
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=len(batch["frames"]))
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for opt in optimizers:
            opt.zero_grad()
        if total.requires_grad:
            self.manual_backward(total)
            for opt, side, schedule in zip(optimizers, self._optimizer_sides, self._side_schedules):
                if (side == "selector" and train_sel) or (side == "lora" and train_lora):
                    opt.step()
                    if schedule is not None:
                        schedule.step()  # only with its own optimizer: each side's schedule counts its steps
        self.batches_done += 1
        return total.detach()

    def validation_step(self, batch: dict[str, list], batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def test_step(self, batch: dict[str, list], batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def evaluate(self, batch: dict[str, list], stage: str) -> None:
        """Logs ``{stage}/recall@K`` of the decoded policy and ``{stage}_baseline/...`` at equal budgets."""
        if not batch["frames"]:
            return
        n = len(batch["frames"])
        logits, _, _ = self.policy_logits(batch)
        per_video: list[list[float]] = [[] for _ in range(n)]
        for k in self.eval_budgets:
            recalls = []
            at_k = self.policy_logits(batch, k)[0] if self.selector.budget_aware and k != self.num_frames else logits
            for i, events in enumerate(batch["events"]):
                t = batch["timestamps"][i]
                if k > len(t):
                    continue
                idx = self.decoder.decode(at_k[i, : len(t)].detach().cpu(), k)
                recalls.append(event_recall(t[idx], events).item())
                per_video[i].append(recalls[-1])
                for name, selector in self.baselines.items():
                    key = (batch["video_id"][i], name, k)
                    if key not in self._baseline_recall:
                        chosen = selector.select(batch["frames"][i], t, k).cpu()
                        self._baseline_recall[key] = event_recall(t[chosen], events).item()
                    self.log(f"{stage}_baseline/{name}_recall@{k}", self._baseline_recall[key], batch_size=1, sync_dist=True)
            if recalls:
                prog = k == self.num_frames
                self.log(f"{stage}/recall@{k}", sum(recalls) / len(recalls), prog_bar=prog, batch_size=len(recalls), sync_dist=True)
        # One number for model selection across budgets: per video, its recall averaged over the
        # budgets it has frames for; then averaged over videos.
        means = [sum(r) / len(r) for r in per_video if r]
        if means:
            self.log(f"{stage}/recall_mean", sum(means) / len(means), batch_size=len(means), sync_dist=True)
        if self.vlm is not None:
            chosen = self.chosen_indices(batch, logits, self.num_frames)
            self.log(f"{stage}/caption_loss", self.caption_loss(batch, chosen), batch_size=n, sync_dist=True)
            uniform = [uniform_indices(len(t), self.num_frames) for t in batch["timestamps"]]
            loss = self.caption_loss(batch, uniform)
            self.log(f"{stage}_baseline/uniform_caption_loss", loss, batch_size=n, sync_dist=True)

    # ----------------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> list[torch.optim.Optimizer] | tuple[list[torch.optim.Optimizer], list[dict]]:
        optimizers, factories, self._optimizer_sides = [], [], []
        if self.objective.train_selector:
            optimizers.append(self.selector_optimizer(self.selector.parameters()))
            factories.append(self.selector_lr_scheduler)
            self._optimizer_sides.append("selector")
        if self.objective.train_lora:
            params = [p for p in self.vlm.parameters() if p.requires_grad]
            optimizers.append(self.lora_optimizer(params))
            factories.append(self.lora_lr_scheduler)
            self._optimizer_sides.append("lora")

        def sides_at(batch: int) -> list[bool]:
            sel, lora = self._sides(batch)
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

    # ----------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep_trainable_state(self, checkpoint)
        checkpoint[BATCHES_KEY] = self.batches_done

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_trainable_state(self, checkpoint, "; check the selector, LoRA and objective settings in the config")
        self.batches_done = int(checkpoint.get(BATCHES_KEY, 0))
