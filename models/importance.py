"""Learned frame importance: a transformer that scores candidate frames, and the sampling maths to train it.

:class:`FrameImportanceModel` reads per-frame features (from a frozen :class:`models.encoders.FrameEncoder`)
and their timestamps, optionally together with the tokens of a text query and the frame budget K,
and gives one logit per frame. The logits define a Plackett-Luce policy over which K frames to show the VLM:

* :func:`gumbel_topk` draws K distinct frames (sampling without replacement from the softmax);
* :func:`plackett_luce_log_prob` is the exact log-probability of the ordered draw, the term a
  REINFORCE loss differentiates;
* :func:`subset_log_prob` is the exact log-probability of the unordered set (all K! orders summed),
  for analysis and tests; it is exponential in K, so only for K <= 16.

:class:`ImportanceSelector` wraps a model (or a folder written by ``model.save_pretrained``) as a
:class:`models.selectors.FrameSelector`, so at inference the usual deterministic decoders pick the
frames from its logits.
"""

from __future__ import annotations

import math

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from models.decoders import Decoder
from models.encoders import FrameEncoder
from models.selectors import FrameSelector

__all__ = [
    "FrameImportanceModel", "ImportanceSelector", "gumbel_topk", "plackett_luce_log_prob", "subset_log_prob",
]  # fmt: skip

# Periods of the sinusoidal time features. Absolute time spans half a second (neighbouring frames
# at 2 fps differ) to about an hour (the longest videos we caption), relative position spans 1/64
# of the video to 4 videos: the slowest wave is then monotonic over [0, 1], so position is unambiguous.
ABSOLUTE_PERIODS_S = (0.5, 4096.0)
RELATIVE_PERIODS = (1.0 / 64.0, 4.0)
NUM_FREQUENCIES = 16

# Periods of the budget features, in units of log2(K): K = 1..1024 is 0..10, so the slowest wave
# is monotonic over every budget a small VLM is shown and the fastest tells K from 2K.
BUDGET_PERIODS_LOG2 = (1.0, 64.0)
NUM_BUDGET_FREQUENCIES = 4

# The most elements :func:`subset_log_prob` enumerates the 2^k subsets of.
MAX_SUBSET_SIZE = 16


def _periods(low: float, high: float, n: int) -> torch.Tensor:
    return torch.logspace(math.log10(low), math.log10(high), n)


def _fourier(x: torch.Tensor, periods: torch.Tensor) -> torch.Tensor:
    """``(..., )`` -> ``(..., 2 * len(periods))``: sine and cosine of ``x`` at each period."""
    angles = 2.0 * math.pi * x[..., None] / periods
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FrameImportanceModel(nn.Module, PyTorchModelHubMixin):
    """One importance logit per candidate frame, from frame features, timestamps and an optional text query.

    Each frame token is ``Linear(LayerNorm(feature))`` plus a projected timestamp encoding; with a
    query vocabulary, embedded query tokens are appended after the frame tokens so every frame can
    attend to the text (text-frame matching). A pre-norm transformer encoder mixes the tokens and a
    linear head reads one logit off each frame token.

    **Budget-aware** (``max_budget > 0``): the best 4 frames of a video are not the best 8 minus
    4 (with 4 frames one per event matters most; with 8 a second look at long events, or the
    context between them). Such a model takes the budget K in :meth:`forward`: ``log2 K``
    (sinusoids) and the fraction ``K / T`` of the video's frames it may keep are projected to a
    per-channel scale and shift of every frame token (FiLM), so one model serves every K in
    ``1..max_budget``.

    ``save_pretrained(folder)`` / ``FrameImportanceModel.from_pretrained(folder)`` (from
    :class:`huggingface_hub.PyTorchModelHubMixin`) write and read ``config.json`` (these init
    arguments) and ``model.safetensors``.

    Args:
        feature_dim: Size of the per-frame input features (the frame encoder's output size).
        d_model: Transformer width.
        layers: Transformer encoder layers.
        heads: Attention heads.
        dropout: Dropout inside the transformer layers.
        query_vocab_size: Size of the query token vocabulary; 0 builds a model without query input.
        max_query_len: Longest query (in tokens) the learned query positions cover.
        max_budget: Largest frame budget K the model is conditioned on; 0 builds a model that
            ignores K (one ranking for every budget, as before budget conditioning existed).
        frame_deltas: Also feed each frame's feature change from the previous and to the next
            valid frame (``[f_t, f_t - f_{t-1}, f_{t+1} - f_t]``, zero at the ends). Change is
            what event onsets look like; attention could compute it from neighbours, but only
            after learning to find them by their time encodings.
        score_inputs: Per-frame score channels read beside the features (e.g. a change
            detector's scores, such as the cross-correlation teacher's): each channel is
            standardised over the video's valid frames and projected into every frame token, and
            :meth:`forward` then needs ``frame_scores``. A mask that reads its teacher's scores
            can follow them where they are hard to beat (large budgets) and depart from them
            elsewhere. 0 reads none.
    """

    def __init__(
        self,
        feature_dim: int = 32,
        d_model: int = 64,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        query_vocab_size: int = 0,
        max_query_len: int = 32,
        max_budget: int = 0,
        frame_deltas: bool = False,
        score_inputs: int = 0,
    ) -> None:
        super().__init__()
        if min(feature_dim, d_model, layers, heads, max_query_len) < 1:
            raise ValueError("feature_dim, d_model, layers, heads and max_query_len must be >= 1")
        if d_model % heads:
            raise ValueError(f"d_model={d_model} must be divisible by heads={heads}")
        if query_vocab_size < 0:
            raise ValueError(f"query_vocab_size must be >= 0, got {query_vocab_size}")
        if max_budget < 0:
            raise ValueError(f"max_budget must be >= 0 (0: not budget-aware), got {max_budget}")
        if score_inputs < 0:
            raise ValueError(f"score_inputs must be >= 0 (0: no score channels), got {score_inputs}")
        self.feature_dim = feature_dim
        self.d_model = d_model
        self.query_vocab_size = query_vocab_size
        self.max_query_len = max_query_len
        self.max_budget = max_budget
        self.frame_deltas = frame_deltas
        self.score_inputs = score_inputs

        width = 3 * feature_dim if frame_deltas else feature_dim
        self.frame_in = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, d_model))
        # Time is encoded twice. Absolute seconds: events and the gaps between them last about as
        # many seconds in a short video as in a long one, and captions are timed in seconds.
        # Relative position t / duration: coverage of the video (start, middle, end) scales with its
        # length. Either is only derivable from the other given the duration, which the model would
        # otherwise have to infer by attending over every timestamp.
        self.register_buffer("absolute_periods", _periods(*ABSOLUTE_PERIODS_S, NUM_FREQUENCIES), persistent=False)
        self.register_buffer("relative_periods", _periods(*RELATIVE_PERIODS, NUM_FREQUENCIES), persistent=False)
        self.time_in = nn.Linear(4 * NUM_FREQUENCIES, d_model)
        if score_inputs > 0:
            self.scores_in = nn.Linear(score_inputs, d_model)

        if query_vocab_size > 0:
            self.query_embed = nn.Embedding(query_vocab_size, d_model)
            self.query_position = nn.Embedding(max_query_len, d_model)
            # Row 0 marks frame tokens, row 1 query tokens, so attention can tell them apart.
            self.token_type = nn.Embedding(2, d_model)

        if max_budget > 0:
            self.register_buffer(
                "budget_periods", _periods(*BUDGET_PERIODS_LOG2, NUM_BUDGET_FREQUENCIES), persistent=False
            )
            # FiLM: a per-channel scale and shift of every frame token. A shift alone only moves
            # all tokens together, which the first LayerNorm mostly undoes; the scale reweights
            # what each frame's features say, so different K can rank frames differently.
            self.budget_in = nn.Linear(2 * NUM_BUDGET_FREQUENCIES + 1, 2 * d_model)

        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=4 * d_model, dropout=dropout, activation="gelu",
            batch_first=True, norm_first=True,
        )  # fmt: skip
        # Pre-norm layers leave the residual stream unnormalised, hence the final LayerNorm.
        # Nested tensors are off: they do not support norm_first and would only warn.
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 1)
        # A zero head makes every logit 0, so the untrained model is the uniform policy over frames:
        # early REINFORCE samples explore all frames evenly instead of following an arbitrary random
        # preference. Only the head gets gradient on the first step; the rest follows once it is nonzero.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def time_features(self, timestamps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` seconds -> ``(B, T, 4 * NUM_FREQUENCIES)`` absolute and relative sinusoids."""
        timestamps = timestamps.masked_fill(~mask, 0.0)
        # Duration from valid frames only; the clamp keeps a one-frame video at t=0 finite.
        duration = timestamps.amax(dim=1, keepdim=True).clamp(min=1e-6)
        return torch.cat(
            [_fourier(timestamps, self.absolute_periods), _fourier(timestamps / duration, self.relative_periods)],
            dim=-1,
        )

    @property
    def budget_aware(self) -> bool:
        """Whether the logits depend on the frame budget K passed to :meth:`forward`."""
        return self.max_budget > 0

    def budget_features(self, budget: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B,)`` budgets -> ``(B, 2 * NUM_BUDGET_FREQUENCIES + 1)``: sinusoids of log2 K and K / T."""
        valid = mask.sum(dim=1).clamp(min=1).float()
        k = budget.float()
        return torch.cat([_fourier(k.log2(), self.budget_periods), (k / valid).clamp(max=1.0)[:, None]], dim=-1)

    def _budget_tensor(self, budget: int | torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        if budget is None:
            raise ValueError(
                f"this FrameImportanceModel is budget-aware (max_budget={self.max_budget}): "
                "pass the frame budget K (budget=...)"
            )
        budget = torch.as_tensor(budget, device=device).long().flatten()
        if budget.numel() == 1:
            budget = budget.expand(batch)
        if budget.numel() != batch:
            raise ValueError(f"budget must be one K or one per video ({batch}), got {budget.numel()} values")
        low, high = int(budget.min()), int(budget.max())
        if low < 1 or high > self.max_budget:
            raise ValueError(
                f"frame budget K={low if low < 1 else high} is outside 1..{self.max_budget}, the range this "
                "model was built for (max_budget)"
            )
        return budget

    def forward(
        self,
        features: torch.Tensor,
        timestamps: torch.Tensor,
        mask: torch.Tensor | None = None,
        query_ids: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
        budget: int | torch.Tensor | None = None,
        frame_scores: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Importance logits.

        Args:
            features: ``(B, T, feature_dim)`` per-frame features.
            timestamps: ``(B, T)`` frame times in seconds.
            mask: ``(B, T)`` bool, True for real frames (videos of different lengths are padded).
                Default: all real.
            query_ids: ``(B, L)`` query token ids, only for a model built with ``query_vocab_size > 0``.
            query_mask: ``(B, L)`` bool, True for real query tokens. Default: all real.
            budget: The frame budget K the logits are for: one int, or ``(B,)`` one per video.
                Required by a budget-aware model (``max_budget > 0``); a model that is not
                ignores it, so callers can always pass it.
            frame_scores: ``(B, T, score_inputs)`` per-frame scores (``(B, T)`` for one channel), in
                any scale: each channel is standardised per video. Required by a model built with
                ``score_inputs > 0``, refused by one without.

        Returns:
            ``(B, T)`` logits; padded frames are ``-inf`` so they are never sampled.

        Raises:
            ValueError: Inputs of the wrong shape, a query the model cannot take, or (budget-aware
                model) a missing budget or one outside ``1..max_budget``.
        """
        batch, num_frames = timestamps.shape
        if features.shape != (batch, num_frames, self.feature_dim):
            raise ValueError(
                f"features must be (B, T, {self.feature_dim}) = ({batch}, {num_frames}, {self.feature_dim}), "
                f"got {tuple(features.shape)}"
            )
        if mask is None:
            mask = torch.ones(batch, num_frames, dtype=torch.bool, device=features.device)
        mask = mask.bool()
        # Zeroed so garbage (even NaN) in padding cannot reach the valid frames through any op.
        features = features.masked_fill(~mask[..., None], 0.0)
        if self.frame_deltas:
            features = self._with_deltas(features, mask)
        tokens = self.frame_in(features) + self.time_in(self.time_features(timestamps.float(), mask).to(features.dtype))
        if self.score_inputs > 0 or frame_scores is not None:
            scores = self._standardised_scores(frame_scores, mask)  # checks them first
            tokens = tokens + self.scores_in(scores.to(features.dtype))
        if self.budget_aware:
            budget = self._budget_tensor(budget, batch, features.device)
            scale, shift = self.budget_in(self.budget_features(budget, mask).to(features.dtype))[:, None, :].chunk(2, dim=-1)
            tokens = tokens * (1 + scale) + shift
        keep = mask
        if self.query_vocab_size > 0:
            tokens = tokens + self.token_type.weight[0]
        if query_ids is not None:
            tokens, keep = self._append_query(tokens, keep, query_ids, query_mask)

        # A row with no real token at all would softmax over nothing and give NaN (also in the
        # backward pass); let it attend to its first token. Its logits are -inf regardless.
        empty = ~keep.any(dim=1)
        if empty.any():
            keep = keep.clone()
            keep[empty, 0] = True
        hidden = self.encoder(tokens, src_key_padding_mask=~keep)
        logits = self.head(hidden[:, :num_frames]).squeeze(-1)
        return logits.masked_fill(~mask, float("-inf"))

    def _standardised_scores(self, frame_scores: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T[, C])`` scores -> ``(B, T, C)``, each channel at mean 0 and std 1 over valid frames, 0 on padding."""
        if self.score_inputs == 0:
            raise ValueError("this FrameImportanceModel was built with score_inputs=0 and takes no frame_scores")
        if frame_scores is None:
            raise ValueError(
                f"this FrameImportanceModel reads {self.score_inputs} score channel(s) (score_inputs): "
                "pass frame_scores"
            )
        scores = frame_scores[..., None] if frame_scores.dim() == 2 else frame_scores
        if scores.shape != (*mask.shape, self.score_inputs):
            raise ValueError(
                f"frame_scores must be (B, T, {self.score_inputs}) = ({mask.shape[0]}, {mask.shape[1]}, "
                f"{self.score_inputs}), got {tuple(frame_scores.shape)}"
            )
        valid = mask[..., None]
        scores = scores.float().masked_fill(~valid, 0.0)
        count = valid.sum(dim=1, keepdim=True).clamp(min=1)
        mean = scores.sum(dim=1, keepdim=True) / count
        # Population std: a one-frame video gets std 0 and scores 0, not 0 / 0.
        std = ((scores - mean).masked_fill(~valid, 0.0).pow(2).sum(dim=1, keepdim=True) / count).sqrt()
        return ((scores - mean) / (std + 1e-6)).masked_fill(~valid, 0.0)

    @staticmethod
    def _with_deltas(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, T, 3D)``: features, change from the previous frame, change to the next.

        Valid frames come first in each row (padding is at the end), so neighbours are index
        neighbours; a change that would reach into padding or past either end is zero.
        """
        before = torch.zeros_like(features)
        before[:, 1:] = features[:, 1:] - features[:, :-1]
        after = torch.zeros_like(features)
        after[:, :-1] = features[:, 1:] - features[:, :-1]
        has_next = torch.zeros_like(mask)
        has_next[:, :-1] = mask[:, 1:]
        after = after.masked_fill(~has_next[..., None], 0.0)
        return torch.cat([features, before, after], dim=-1).masked_fill(~mask[..., None], 0.0)

    def _append_query(
        self, tokens: torch.Tensor, keep: torch.Tensor, query_ids: torch.Tensor, query_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame tokens followed by the embedded query tokens, and the matching keep-mask."""
        if self.query_vocab_size == 0:
            raise ValueError("this FrameImportanceModel was built with query_vocab_size=0 and takes no query_ids")
        batch, length = query_ids.shape
        if batch != tokens.shape[0]:
            raise ValueError(f"query_ids has batch size {batch}, features {tokens.shape[0]}")
        if length > self.max_query_len:
            raise ValueError(f"query of {length} tokens is longer than max_query_len={self.max_query_len}")
        if query_mask is None:
            query_mask = torch.ones_like(query_ids, dtype=torch.bool)
        positions = torch.arange(length, device=query_ids.device)
        query = self.query_embed(query_ids) + self.query_position(positions) + self.token_type.weight[1]
        return torch.cat([tokens, query.to(tokens.dtype)], dim=1), torch.cat([keep, query_mask.bool()], dim=1)


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def gumbel_topk(
    logits: torch.Tensor, k: int, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draws ``k`` distinct frames per row without replacement from ``softmax(logits / temperature)``.

    Gumbel-top-k: adding independent Gumbel noise to the scaled logits and taking the top k is the
    same distribution as drawing one frame from the softmax, removing it, renormalising and
    repeating (Plackett-Luce), in one vectorised step. ``-inf`` logits are never drawn.

    Args:
        logits: ``(B, T)`` logits.
        k: Frames to draw per row.
        temperature: Softmax temperature (> 0); higher is closer to uniform.
        generator: Random generator, for reproducible draws.

    Returns:
        ``(B, k)`` indices in the order drawn (so ``plackett_luce_log_prob`` scores that order).

    Raises:
        ValueError: ``k < 1``, a bad temperature, or a row with fewer than ``k`` finite logits.
    """
    _check_temperature(temperature)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    valid = int((logits > float("-inf")).sum(dim=1).min()) if logits.numel() else 0
    if k > valid:
        raise ValueError(f"cannot draw k={k} distinct frames: a row has only {valid} frames with finite logits")
    with torch.no_grad():
        uniform = torch.rand(logits.shape, generator=generator, dtype=torch.float64, device=logits.device)
        # -log(-log(U)) is Gumbel(0, 1); the clamp keeps U = 0 (possible in rand) finite.
        gumbel = -torch.log(-torch.log(uniform.clamp(min=torch.finfo(torch.float64).tiny)))
        perturbed = logits.detach().double() / temperature + gumbel
        return perturbed.topk(k, dim=1, sorted=True).indices


def plackett_luce_log_prob(logits: torch.Tensor, ordered: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Exact log-probability of drawing the frames ``ordered`` in that order, without replacement.

    ``log P = sum_i [z_{c_i} - logsumexp(z over frames not drawn before step i)]`` with
    ``z = logits / temperature``; this is the distribution :func:`gumbel_topk` samples from.

    Args:
        logits: ``(B, T)`` logits; ``-inf`` marks frames that cannot be drawn.
        ordered: ``(B, k)`` frame indices in the order drawn.
        temperature: Softmax temperature (> 0).

    Returns:
        ``(B,)`` log-probabilities, differentiable w.r.t. ``logits``; ``-inf`` for impossible draws
        (a masked frame, or a frame drawn twice).
    """
    _check_temperature(temperature)
    z = logits / temperature
    num_frames = z.shape[1]
    chosen = nn.functional.one_hot(ordered, num_frames).bool()  # (B, k, T): frame drawn at step i
    # Frames drawn strictly before step i leave the pool for step i.
    drawn_before = (chosen.long().cumsum(dim=1) - chosen.long()).bool()
    pool = z[:, None, :].masked_fill(drawn_before, float("-inf"))
    log_norm = pool.logsumexp(dim=-1)  # (B, k)
    z_chosen = z.gather(1, ordered)
    repeated = drawn_before.gather(2, ordered[..., None]).squeeze(-1)
    impossible = repeated | (z_chosen == float("-inf"))
    # Where the step is impossible the pool may be empty (log_norm = -inf); a stand-in of 0 keeps
    # -inf - -inf = NaN out of the value and the gradient.
    terms = z_chosen - log_norm.masked_fill(impossible, 0.0)
    return terms.masked_fill(impossible, float("-inf")).sum(dim=1)


def subset_log_prob(logits: torch.Tensor, subset: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Exact log-probability that a Plackett-Luce draw of ``k`` frames is the set ``subset``, in any order.

    Summing over all k! orders is done by dynamic programming over the 2^k subsets ``A`` of the set:
    ``P(A) = sum_{j in A} P(A - {j}) * w_j / (W - w(A - {j}))`` with ``w = exp(z)``, ``z = logits /
    temperature`` and ``W`` the total weight, from ``P({}) = 1`` up to ``A = subset``. Everything is
    in log space, and ``log(W - w(A))`` is a logsumexp over the frames not in ``A`` rather than a
    subtraction, which would cancel catastrophically when ``A`` holds most of the weight. Each
    subset size is one vectorised step over all masks of that size.

    Args:
        logits: ``(T,)`` logits; ``-inf`` marks frames that cannot be drawn.
        subset: ``(k,)`` distinct frame indices, any order.
        temperature: Softmax temperature (> 0).

    Returns:
        Scalar log-probability, differentiable w.r.t. ``logits``; ``-inf`` if the set holds a masked frame.

    Raises:
        ValueError: ``k > 16`` (2^k masks), repeated indices, or a bad temperature.
    """
    _check_temperature(temperature)
    k = subset.numel()
    if k > MAX_SUBSET_SIZE:
        raise ValueError(f"subset_log_prob enumerates 2^k subsets; k={k} exceeds {MAX_SUBSET_SIZE}")
    if subset.unique().numel() != k:
        raise ValueError(f"subset must hold distinct frames, got {subset.tolist()}")
    z = logits / temperature
    if k == 0:
        return z.new_zeros(())
    neg_inf = float("-inf")
    inside = torch.zeros_like(z, dtype=torch.bool).index_fill(0, subset, True)
    log_outside = z.masked_fill(inside, neg_inf).logsumexp(dim=0)  # log weight of frames outside the set
    z_set = z[subset]  # (k,)

    num_masks = 1 << k
    masks = torch.arange(num_masks, device=z.device)
    bits = (masks[:, None] >> torch.arange(k, device=z.device)) & 1  # (2^k, k): bit j = member j is in A
    # log(W - w(A)): everything outside the set, plus the set's members not in A.
    remaining = z_set.expand(num_masks, k).masked_fill(bits.bool(), neg_inf)
    log_left = torch.logaddexp(log_outside, remaining.logsumexp(dim=1))  # (2^k,)
    # When only -inf frames remain the step has probability 0 anyway (its z_j is -inf); a stand-in
    # of 0 keeps -inf - -inf = NaN out of the value and the gradient.
    log_left = log_left.masked_fill(log_left == neg_inf, 0.0)

    log_p = z.new_full((num_masks,), neg_inf).index_put((masks[:1],), z.new_zeros(1))
    size = bits.sum(dim=1)
    for n in range(1, k + 1):
        layer = masks[size == n]  # (m,)
        has = bits[layer].bool()  # (m, k)
        previous = layer[:, None] ^ (1 << torch.arange(k, device=z.device))  # A - {j} (meaningful where j in A)
        terms = log_p[previous] + z_set - log_left[previous]
        # Out-of-place index_put: each layer's values stay on the autograd graph.
        log_p = log_p.index_put((layer,), terms.masked_fill(~has, neg_inf).logsumexp(dim=1))
    return log_p[num_masks - 1]


class ImportanceSelector(FrameSelector):
    """Frames scored by a :class:`FrameImportanceModel` over frozen-encoder features.

    At inference the selector's decoder (default: top-k) turns the logits into K frames, so the
    choice is deterministic; sampling with :func:`gumbel_topk` is the trainer's business.

    Args:
        model: The importance model. Give this or ``pretrained``.
        encoder: The frozen frame encoder whose output size is the model's ``feature_dim``. Needed by
            :meth:`scores` (raw frames); callers with cached features can use
            :meth:`scores_from_features` without one.
        pretrained: A folder written by ``FrameImportanceModel.save_pretrained``; the model is built
            from its ``config.json`` and loaded from its weights. It is not frozen: training may go on.
        decoder: Scores-to-indices decoder.
        budget: The frame budget K that :meth:`scores` assumes when not told (only matters for a
            budget-aware model; :meth:`select` always scores for the K it is asked for).
        teacher: The selector whose per-frame scores the model reads (a model built with
            ``score_inputs=1``): the teacher it was trained with, e.g. cross-correlation.
            Needed by :meth:`scores`; :meth:`scores_from_features` takes the scores directly.
    """

    def __init__(
        self,
        model: FrameImportanceModel | None = None,
        encoder: FrameEncoder | None = None,
        pretrained: str | None = None,
        decoder: Decoder | None = None,
        budget: int | None = None,
        teacher: FrameSelector | None = None,
    ) -> None:
        super().__init__(decoder)
        if (model is None) == (pretrained is None):
            raise ValueError("ImportanceSelector needs exactly one of `model` or `pretrained`")
        if pretrained is not None:
            # strict: a folder whose weights do not fit its own config is an error, not a half-loaded model.
            model = FrameImportanceModel.from_pretrained(pretrained, strict=True)
        self.pretrained = pretrained
        self.model = model
        self.encoder = encoder
        self.budget = budget
        self.teacher = teacher
        self._last_teacher: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def scores_from_features(
        self,
        features: torch.Tensor,
        timestamps: torch.Tensor,
        query_ids: torch.Tensor | None = None,
        budget: int | None = None,
        frame_scores: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``(T,)`` of one video from its features ``(T, D)``, timestamps ``(T,)`` and optional query ``(L,)``.

        ``budget`` is the frame budget K the logits are for (a budget-aware model needs it; the
        default is :attr:`budget`); ``frame_scores`` ``(T,)`` or ``(T, C)`` are the teacher's scores a
        model built with ``score_inputs`` reads. The result is on the model's device; gradients
        flow only while the selector is training.
        """
        device = next(self.model.parameters()).device
        query = None if query_ids is None else query_ids[None].to(device)
        budget = self.budget if budget is None else budget
        scores = None if frame_scores is None else frame_scores[None].to(device)
        # Outside training no graph is needed, and eval mode already turned dropout off.
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.training):
            return self.model(
                features[None].to(device), timestamps[None].float().to(device), query_ids=query, budget=budget,
                frame_scores=scores,
            )[0]  # fmt: skip

    def scores(self, frames: torch.Tensor, timestamps: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Logits ``(T,)`` of ``uint8 (T, 3, H, W)`` frames, on the CPU like the other selectors' scores.

        A budget-aware model scores frames for one budget: ``k``, else :attr:`budget`.
        """
        if self.encoder is None:
            raise ValueError(
                "ImportanceSelector.scores needs an `encoder` to turn frames into features; "
                "pass one, or call scores_from_features with cached features"
            )
        return self.scores_from_features(
            self.encoder(frames), timestamps, budget=k, frame_scores=self.teacher_scores(frames, timestamps)
        ).cpu()

    def teacher_scores(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor | None:
        """The teacher's scores ``(T,)`` the model reads (``None`` for a model that reads none).

        The last video's scores are kept: every budget :meth:`scores` is asked for on the same
        frames reads the same teacher scores, which costs more than the model itself.
        """
        if self.model.score_inputs == 0:
            return None
        if self.teacher is None:
            raise ValueError("this ImportanceSelector's model reads its teacher's scores (score_inputs): pass `teacher`")
        last = self._last_teacher
        if last is None or last[0] is not frames or last[1] is not timestamps:
            # The tensors themselves are kept (not their ids), so a new video can never match.
            self._last_teacher = (frames, timestamps, self.teacher.scores(frames, timestamps).float())
        return self._last_teacher[2]
