"""The objectives :class:`trainer.selector_module.SelectorModule` mixes, each a unit of its own.

Each unit takes what it needs explicitly (the importance model's logits and validity mask, the batch, the
budget K, a scorer), so it can be tested without a trainer; the LightningModule computes the
logits once and adds up the terms :class:`ObjectiveSettings` switches on (a weight of 0: off):

* **RL** (:func:`policy_gradient_loss`): per video, sample ``group_size`` K-frame subsets from the
  policy (Plackett-Luce via Gumbel-top-k), reward each with :func:`subset_rewards` (annotated-event
  coverage and/or the VLM's caption log-likelihood given those frames), normalise rewards within
  the group (group-relative advantage) and take the policy gradient of each subset's exact
  log-probability. An entropy bonus and a temperature annealed from ``temperature_start`` to
  ``temperature_end`` keep early exploration broad.
* **Ranking** (:func:`ranking_loss`, Frame-Voyager style): sample ``rank_candidates`` subsets,
  rank them by the VLM's caption loss (the same :meth:`CaptionScorer.nll` the likelihood reward
  uses), and fit the importance model's subset scores (sum of frame logits) to that ranking with a listwise
  softmax cross-entropy. With a text query the importance model sees the query tokens, so it learns
  query-frame matching from the same signal.
* **Teacher** (:func:`distillation_loss`): distil a teacher selector's scores (default: the
  cross-correlation selector's diff scores, from :class:`TeacherScores`) as a softmax target over
  frames; the weight anneals linearly to 0 over ``teacher_anneal_steps``.
* **Caption** (:meth:`CaptionScorer.loss`): the VLM's caption loss on the frames the importance model
  chooses, which trains the LoRA adapter in the same run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from models.importance import gumbel_topk, plackett_luce_log_prob
from models.prompting import format_dense_caption
from models.selectors import FrameSelector
from models.vlm import SmolVLM
from trainer.lru import LRUCache
from trainer.evaluation.metrics import event_recall


@dataclass
class ObjectiveSettings:
    """Loss mix and schedules of :class:`~trainer.selector_module.SelectorModule` (a weight of 0 switches a term off).

    Attributes:
        rl_weight: Policy-gradient loss weight.
        group_size: Subsets sampled per video for the group-relative advantage.
        coverage_reward: Reward weight of annotated-event coverage (fraction of events hit).
        likelihood_reward: Reward weight of the caption log-likelihood under the VLM (needs ``vlm``).
        entropy_weight: Bonus on the entropy of the importance model's first-draw distribution.
        temperature_start: Sampling temperature at step 0.
        temperature_end: Sampling temperature after ``temperature_steps`` (cosine schedule).
        temperature_steps: Length of the temperature schedule in training batches.
        rank_weight: Frame-Voyager ranking loss weight (needs ``vlm``).
        rank_candidates: Candidate subsets ranked per video.
        rank_temperature: Softness of the target ranking, in nats of caption loss.
        teacher_weight: Initial weight of distillation from the teacher selector.
        teacher_anneal_steps: Batches over which the teacher weight falls linearly to 0 (0: constant).
        teacher_temperature: Temperature of the teacher's target distribution (on standardised scores).
        teacher_cache_videos: Videos whose teacher scores are kept between epochs (see
            :class:`TeacherScores`; 0: recompute them every batch).
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
    teacher_cache_videos: int = 20_000
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
        if self.teacher_cache_videos < 0:
            raise ValueError(f"model.init_args.objective.teacher_cache_videos must be >= 0, got {self.teacher_cache_videos}")
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

    # The schedules, as functions of the training batches done (the trainer's ``batches_done``).
    def temperature(self, batches: int) -> float:
        """Sampling temperature after ``batches`` training batches: cosine from start to end."""
        progress = min(batches / max(self.temperature_steps, 1), 1.0)
        start, end = self.temperature_start, self.temperature_end
        return end + 0.5 * (start - end) * (1 + math.cos(math.pi * progress))

    def teacher_weight_at(self, batches: int) -> float:
        """Distillation weight after ``batches`` training batches: linear from ``teacher_weight`` to 0."""
        if self.teacher_anneal_steps <= 0:
            return self.teacher_weight
        return self.teacher_weight * max(0.0, 1.0 - batches / self.teacher_anneal_steps)

    def sides(self, batch: int) -> tuple[bool, bool]:
        """Which of (selector, LoRA) trains on training batch ``batch`` (0-based)."""
        sel, lora = self.train_selector, self.train_lora and batch >= self.lora_start
        if self.alternate_every > 0 and sel and lora:
            selector_turn = (batch // self.alternate_every) % 2 == 0
            return selector_turn, not selector_turn
        return sel, lora


# ----------------------------------------------------------------------------- the VLM's scores
def shown_frames(batch: dict[str, list], picks: list[tuple[int, torch.Tensor]]) -> dict[str, Any]:
    """What the VLM sees of ``picks`` (video, frame indices): frames, times and embeddings or pixels.

    Keyword arguments for :meth:`SmolVLM.build_batch`: the frames' precomputed embedding rows
    when the batch carries them, else the frames themselves; indices in time order.
    """
    idx = [(i, j.sort().values.cpu()) for i, j in picks]
    stamps = [batch["timestamps"][i][j] for i, j in idx]
    if "image_embeds" in batch:
        return {"frames": None, "timestamps": stamps, "image_embeds": [batch["image_embeds"][i].rows(j) for i, j in idx]}
    return {"frames": [batch["frames"][i][j] for i, j in idx], "timestamps": stamps}


class CaptionScorer:
    """The VLM's caption loss of each video's reference dense caption given some of its frames.

    One way to build the VLM's inputs for every objective that asks the VLM: the likelihood reward
    and the ranking targets (:meth:`nll`, a score) and the caption loss (:meth:`loss`, trained).

    Args:
        vlm: The SmolVLM (with or without a LoRA adapter).
        batch_size: Videos per VLM forward pass in :meth:`nll`.
    """

    def __init__(self, vlm: SmolVLM, batch_size: int = 16) -> None:
        self.vlm = vlm
        self.batch_size = batch_size

    def inputs(self, batch: dict[str, list], picks: list[tuple[int, torch.Tensor]]) -> dict[str, Any]:
        """The VLM batch of ``picks`` (video, frame indices), each with its video's reference caption."""
        return self.vlm.build_batch(
            **shown_frames(batch, picks),
            durations=[batch["duration"][i] for i, _ in picks],
            targets=[format_dense_caption(batch["events"][i]) for i, _ in picks],
            queries=[batch["query"][i] for i, _ in picks],
        )

    @torch.no_grad()
    def nll(self, batch: dict[str, list], subsets: torch.Tensor) -> torch.Tensor:
        """Caption loss ``(B, G)`` (CPU) of each video's reference given each subset ``(B, G, K)``.

        A score: :meth:`SmolVLM.sample_losses` runs without dropout, so subsets compare fairly.
        """
        b, g, _ = subsets.shape
        jobs = [(i, j) for i in range(b) for j in range(g)]
        out = torch.zeros(b, g)
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            losses = self.vlm.sample_losses(self.inputs(batch, [(i, subsets[i, j]) for i, j in chunk])).float().cpu()
            for (i, j), loss in zip(chunk, losses):
                out[i, j] = loss
        return out

    def loss(self, batch: dict[str, list], indices: list[torch.Tensor]) -> torch.Tensor:
        """Token-mean caption loss over the batch given each video's frames ``indices`` (gradients reach LoRA)."""
        return self.vlm(self.inputs(batch, list(enumerate(indices))))


# ----------------------------------------------------------------------------- reward and losses
@torch.no_grad()
def subset_rewards(
    batch: dict[str, list],
    subsets: torch.Tensor,
    coverage: float,
    likelihood: float = 0.0,
    caption_nll: Callable[[dict[str, list], torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Reward ``(B, G)`` of each sampled subset ``(B, G, K)``, on the subsets' device.

    ``coverage`` x the fraction of the video's annotated events with a chosen frame, minus
    ``likelihood`` x the reference caption's loss given the subset (``caption_nll``, e.g.
    :meth:`CaptionScorer.nll`; needed when ``likelihood > 0``).
    """
    reward = torch.zeros(subsets.shape[:2])
    if coverage > 0:
        for i, events in enumerate(batch["events"]):
            times = batch["timestamps"][i][subsets[i].cpu()]
            reward[i] += coverage * event_recall(times, events).float()
    if likelihood > 0:
        if caption_nll is None:
            raise ValueError("a likelihood reward needs caption_nll (the VLM's scores)")
        reward -= likelihood * caption_nll(batch, subsets)
    return reward.to(subsets.device)


def policy_gradient_loss(
    logits: torch.Tensor,
    mask: torch.Tensor,
    k: int,
    reward: Callable[[torch.Tensor], torch.Tensor],
    group_size: int,
    temperature: float,
    entropy_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Group-relative policy gradient of ``k``-frame draws from ``logits``, minus the entropy bonus.

    Args:
        logits: The importance model's logits ``(B, T)`` (``-inf`` on padding).
        mask: Validity mask ``(B, T)``.
        k: Frames per draw.
        reward: Subsets ``(B, G, k)`` of frame indices to rewards ``(B, G)`` (e.g. :func:`subset_rewards`).
        group_size: Draws ``G`` per video; each draw's advantage is its reward standardised
            within its video's group.
        temperature: Sampling temperature of the draws and their log-probabilities.
        entropy_weight: Weight of the entropy of the first-draw distribution, subtracted.

    Returns:
        The loss and ``{"reward": mean reward, "entropy": mean entropy}``.
    """
    z = logits.repeat_interleave(group_size, dim=0)
    ordered = gumbel_topk(z.detach(), k, temperature=temperature)
    log_prob = plackett_luce_log_prob(z, ordered, temperature=temperature)
    rewards = reward(ordered.view(len(logits), group_size, -1))
    advantage = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-6)
    loss = -(advantage.flatten().detach() * log_prob).mean()
    log_p = torch.log_softmax(logits / temperature, dim=-1)
    entropy = -(log_p.exp() * log_p.masked_fill(~mask, 0.0)).sum(-1).mean()
    return loss - entropy_weight * entropy, {"reward": rewards.mean().item(), "entropy": entropy.item()}


def ranking_loss(
    logits: torch.Tensor,
    k: int,
    caption_nll: Callable[[torch.Tensor], torch.Tensor],
    candidates: int,
    temperature: float,
    rank_temperature: float,
) -> torch.Tensor:
    """Listwise cross-entropy between the importance model's subset scores and the VLM's ranking of the subsets.

    Args:
        logits: The importance model's logits ``(B, T)``.
        k: Frames per candidate subset.
        caption_nll: Subsets ``(B, C, k)`` to the caption loss given each ``(B, C)`` (e.g.
            :meth:`CaptionScorer.nll` of the batch).
        candidates: Subsets ``C`` drawn per video from the importance model.
        temperature: Sampling temperature of the draws.
        rank_temperature: Softness of the target ranking ``softmax(-nll / rank_temperature)``.
    """
    b = len(logits)
    subsets = gumbel_topk(logits.detach().repeat_interleave(candidates, 0), k, temperature=temperature)
    subsets = subsets.view(b, candidates, -1)
    nll = caption_nll(subsets).to(logits.device)
    target = torch.softmax(-nll / rank_temperature, dim=1)
    subset_scores = logits.gather(1, subsets.flatten(1)).view_as(subsets.float()).sum(-1)
    return -(target * torch.log_softmax(subset_scores, dim=1)).sum(1).mean()


#: The batch key (and cache output name) of the teacher's per-frame scores.
TEACHER_SCORES = "teacher_scores"


class TeacherScores:
    """A teacher selector's per-frame scores of each video, kept for the most recent videos.

    Memory against time: the teacher reads the video's pixels (the default cross-correlation
    selector correlates every pair of neighbouring frames), which costs far more than the
    ``T`` floats its scores take. So the scores of the last ``cache_videos`` videos are kept
    (about ``cache_videos x T x 4`` bytes: 20,000 videos of 256 frames is ~20 MB) and every
    video is scored once per run when the training set fits; past the cap the least recently
    seen video is dropped and scored again when it comes back, so memory never grows with the
    data set.

    Args:
        teacher: The selector whose :meth:`~models.selectors.FrameSelector.scores` are distilled.
        cache_videos: Videos whose scores are kept (0: score every batch).
    """

    def __init__(self, teacher: FrameSelector, cache_videos: int) -> None:
        self.teacher = teacher
        self.cache: LRUCache[str, torch.Tensor] = LRUCache(cache_videos)

    def __call__(self, batch: dict[str, list]) -> list[torch.Tensor]:
        """Scores ``(T_i,)`` (float, CPU) of each video in the batch.

        A batch from the data module carries them (``batch[TEACHER_SCORES]``: read from the
        feature cache, or computed from the frames once and stored there); a batch built by hand
        is scored here, keeping the last videos' scores in memory.
        """
        if TEACHER_SCORES in batch:
            return [rows.per_frame() for rows in batch[TEACHER_SCORES]]
        return [
            self.cache.get(vid, lambda: self.teacher.scores(frames, stamps).float())
            for vid, frames, stamps in zip(batch["video_id"], batch["frames"], batch["timestamps"])
        ]


def distillation_loss(
    logits: torch.Tensor, mask: torch.Tensor, teacher_scores: list[torch.Tensor], temperature: float
) -> torch.Tensor:
    """Cross-entropy of the importance model's frame distribution against the teacher's softmax target.

    Args:
        logits: The importance model's logits ``(B, T)``.
        mask: Validity mask ``(B, T)``.
        teacher_scores: Per video, the teacher's scores ``(T_i,)``, standardised here so the
            temperature means the same for any teacher.
        temperature: Temperature of the target ``softmax(standardised scores / temperature)``.
    """
    target = torch.zeros_like(logits)
    for i, s in enumerate(teacher_scores):
        # Population std: a one-frame video has std 0 and a zero target, where Bessel's
        # correction would divide 0 by 0 and make the loss and gradient NaN.
        s = (s - s.mean()) / (s.std(correction=0) + 1e-6)
        target[i, : len(s)] = s.to(logits.device)
    target = torch.softmax((target / temperature).masked_fill(~mask, float("-inf")), dim=-1)
    log_p = torch.log_softmax(logits, dim=-1).masked_fill(~mask, 0.0)
    return -(target * log_p).sum(-1).mean()
