"""Learned frame importance: exactness of the Plackett-Luce maths, the sampler, the model and its selector."""

import itertools
import math

import pytest
import torch

from models.encoders import FrameEncoder
from models.importance import (
    FrameImportanceModel,
    ImportanceSelector,
    gumbel_topk,
    plackett_luce_log_prob,
    subset_log_prob,
)

T, K, TEMPERATURE = 5, 3, 0.7


def _logits(seed: int = 0, num_frames: int = T) -> torch.Tensor:
    return torch.randn(num_frames, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1.5


def _pl_prob_of_set(logits: torch.Tensor, subset: tuple[int, ...]) -> torch.Tensor:
    """Probability of an unordered set by brute force: the PL probabilities of its k! orders, summed."""
    orders = torch.tensor(list(itertools.permutations(subset)))
    return plackett_luce_log_prob(logits.expand(len(orders), -1), orders, TEMPERATURE).exp().sum()


def test_plackett_luce_sums_to_one_over_all_ordered_tuples():
    logits = _logits()
    tuples = torch.tensor(list(itertools.permutations(range(T), K)))  # 5*4*3 = 60 ordered draws
    total = plackett_luce_log_prob(logits.expand(len(tuples), -1), tuples, TEMPERATURE).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-12)


def test_plackett_luce_first_step_is_the_softmax_and_repeats_are_impossible():
    logits = _logits()
    got = plackett_luce_log_prob(logits[None], torch.tensor([[3]]), TEMPERATURE)
    assert got.item() == pytest.approx(torch.log_softmax(logits / TEMPERATURE, 0)[3].item(), abs=1e-12)
    assert plackett_luce_log_prob(logits[None], torch.tensor([[1, 1]]), TEMPERATURE).item() == float("-inf")


def test_subset_log_prob_equals_sum_over_orders_and_sums_to_one():
    logits = _logits()
    total = 0.0
    for subset in itertools.combinations(range(T), K):
        exact = subset_log_prob(logits, torch.tensor(subset), TEMPERATURE)
        assert exact.item() == pytest.approx(_pl_prob_of_set(logits, subset).log().item(), abs=1e-12)
        # The order the subset is given in does not matter.
        shuffled = subset_log_prob(logits, torch.tensor(subset[::-1]), TEMPERATURE)
        assert shuffled.item() == pytest.approx(exact.item(), abs=1e-12)
        total += exact.exp().item()
    assert total == pytest.approx(1.0, abs=1e-12)  # over all C(5, 3) = 10 subsets


def test_masked_frames_are_never_in_a_possible_subset():
    logits = _logits(1, num_frames=6)
    logits[[1, 4]] = float("-inf")
    total = 0.0
    for subset in itertools.combinations(range(6), K):
        p = subset_log_prob(logits, torch.tensor(subset), TEMPERATURE).exp().item()
        if {1, 4} & set(subset):
            assert p == 0.0
        else:
            assert p > 0.0
            assert p == pytest.approx(_pl_prob_of_set(logits, subset).item(), abs=1e-12)
        total += p
    assert total == pytest.approx(1.0, abs=1e-12)  # the C(4, 3) = 4 unmasked subsets carry it all
    ordered = torch.tensor(list(itertools.permutations(range(6), K)))
    pl = plackett_luce_log_prob(logits.expand(len(ordered), -1), ordered, TEMPERATURE)
    assert pl.exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    assert not pl.isnan().any()


def test_subset_log_prob_rejects_large_or_repeated_sets():
    with pytest.raises(ValueError, match="exceeds 16"):
        subset_log_prob(torch.zeros(20), torch.arange(17))
    with pytest.raises(ValueError, match="distinct"):
        subset_log_prob(torch.zeros(5), torch.tensor([1, 1]))
    # k = 16 works: drawing all 16 of 16 frames is certain.
    assert subset_log_prob(torch.zeros(16), torch.arange(16)).item() == pytest.approx(0.0, abs=1e-5)
    # Equal logits: each of the C(6, 2) = 15 pairs is equally likely.
    assert subset_log_prob(torch.zeros(6), torch.tensor([0, 5])).exp().item() == pytest.approx(1 / 15, rel=1e-6)


def test_subset_log_prob_gradient_matches_brute_force():
    logits = _logits(4, num_frames=6)
    logits[5] = float("-inf")  # a masked frame outside the set must not make the gradient NaN
    dp = logits.clone().requires_grad_(True)
    brute = logits.clone().requires_grad_(True)
    subset_log_prob(dp, torch.tensor([4, 0, 2]), TEMPERATURE).backward()
    _pl_prob_of_set(brute, (0, 2, 4)).log().backward()
    assert torch.allclose(dp.grad, brute.grad, atol=1e-12)
    assert dp.grad[5] == 0.0 and dp.grad.abs().sum() > 0


def test_gumbel_topk_matches_the_exact_distribution():
    draws = 20_000
    logits = _logits()
    sample = gumbel_topk(logits.expand(draws, -1), K, TEMPERATURE, torch.Generator().manual_seed(0))
    assert sample.shape == (draws, K)
    assert (sample.sort(1).values.diff(dim=1) > 0).all()  # distinct within each draw

    first = torch.bincount(sample[:, 0], minlength=T).double() / draws
    assert torch.allclose(first, torch.softmax(logits / TEMPERATURE, 0), atol=0.015)

    codes = (1 << sample).sum(1)  # each drawn set as a bit mask
    for subset in itertools.combinations(range(T), K):
        freq = (codes == sum(1 << i for i in subset)).double().mean().item()
        exact = subset_log_prob(logits, torch.tensor(subset), TEMPERATURE).exp().item()
        # ~4 binomial standard deviations at 20k draws.
        assert abs(freq - exact) < 4 * math.sqrt(exact * (1 - exact) / draws) + 1e-3, subset


def test_gumbel_topk_skips_masked_frames_and_checks_k():
    logits = torch.zeros(4, 6)
    logits[:, [0, 2]] = float("-inf")
    logits[3, 5] = float("-inf")
    sample = gumbel_topk(logits, 3, generator=torch.Generator().manual_seed(1))
    assert not torch.isin(sample, torch.tensor([0, 2])).any()
    assert sorted(sample[3].tolist()) == [1, 3, 4]  # the only three frames row 3 has
    with pytest.raises(ValueError, match="only 3"):
        gumbel_topk(logits, 4)
    a = gumbel_topk(logits[:3], 3, generator=torch.Generator().manual_seed(5))
    b = gumbel_topk(logits[:3], 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_reinforce_step_raises_the_rewarded_subset():
    logits = _logits(2).requires_grad_(True)
    target = torch.tensor([0, 2, 4])
    before = subset_log_prob(logits, target, TEMPERATURE).item()
    draws = gumbel_topk(logits.detach().expand(512, -1), K, TEMPERATURE, torch.Generator().manual_seed(3))
    hit = (draws.sort(1).values == target).all(1)
    reward = hit.double() - hit.double().mean()  # mean baseline, as a trainer would use
    loss = -(reward * plackett_luce_log_prob(logits.expand(len(draws), -1), draws, TEMPERATURE)).mean()
    loss.backward()
    assert logits.grad is not None and not logits.grad.isnan().any()
    with torch.no_grad():
        after = subset_log_prob(logits - 0.5 * logits.grad, target, TEMPERATURE).item()
    assert hit.any() and after > before + 0.05


def _model(**kwargs) -> FrameImportanceModel:
    torch.manual_seed(0)
    model = FrameImportanceModel(feature_dim=8, d_model=16, layers=2, heads=2, **kwargs)
    # Give the zero-initialised head weights, so the logits depend on the inputs.
    torch.nn.init.normal_(model.head.weight)
    return model.eval()


def test_untrained_model_is_the_uniform_policy():
    model = FrameImportanceModel(feature_dim=8, d_model=16, layers=1, heads=2).eval()
    logits = model(torch.randn(2, 7, 8), torch.arange(7.0).expand(2, 7))
    assert logits.shape == (2, 7)
    assert torch.equal(logits, torch.zeros(2, 7))


def test_padding_is_minus_inf_and_does_not_change_valid_frames():
    model = _model()
    features, stamps = torch.randn(5, 8), torch.arange(5.0) * 0.5
    alone = model(features[None], stamps[None])[0]
    assert alone.shape == (5,) and alone.std() > 0

    padded_features = torch.cat([features, torch.full((3, 8), float("nan"))])  # garbage in the padding
    padded_stamps = torch.cat([stamps, torch.tensor([99.0, 100.0, 101.0])])  # must not set the duration
    other = torch.randn(8, 8)
    batch = model(
        torch.stack([padded_features, other]),
        torch.stack([padded_stamps, torch.arange(8.0)]),
        mask=torch.tensor([[True] * 5 + [False] * 3, [True] * 8]),
    )
    assert batch.shape == (2, 8)
    assert torch.isinf(batch[0, 5:]).all() and (batch[0, 5:] < 0).all()
    assert torch.allclose(batch[0, :5], alone, atol=1e-5)
    assert torch.isfinite(batch[1]).all()


def test_query_tokens_change_the_logits():
    model = _model(query_vocab_size=50, max_query_len=6)
    features, stamps = torch.randn(1, 5, 8), torch.arange(5.0)[None]
    without = model(features, stamps)
    q1 = model(features, stamps, query_ids=torch.tensor([[3, 7, 9]]))
    q2 = model(features, stamps, query_ids=torch.tensor([[11, 2, 40]]))
    assert q1.shape == (1, 5)
    assert (q1 - q2).abs().max() > 1e-3 and (q1 - without).abs().max() > 1e-3
    # A padded query token is ignored.
    padded = model(features, stamps, query_ids=torch.tensor([[3, 7, 9, 0]]), query_mask=torch.tensor([[1, 1, 1, 0]]))
    assert torch.allclose(padded, q1, atol=1e-5)
    with pytest.raises(ValueError, match="max_query_len"):
        model(features, stamps, query_ids=torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="query_vocab_size=0"):
        _model()(features, stamps, query_ids=torch.tensor([[1]]))


def test_save_and_load_round_trip(tmp_path):
    model = _model(query_vocab_size=20, max_query_len=4, dropout=0.2)
    model.save_pretrained(tmp_path)
    loaded = FrameImportanceModel.from_pretrained(tmp_path).eval()
    assert (loaded.feature_dim, loaded.d_model, loaded.query_vocab_size, loaded.max_query_len) == (8, 16, 20, 4)
    assert len(loaded.encoder.layers) == 2 and loaded.encoder.layers[0].dropout.p == 0.2
    features, stamps, query = torch.randn(2, 6, 8), torch.rand(2, 6).cumsum(1), torch.tensor([[1, 2], [3, 4]])
    assert torch.equal(loaded(features, stamps, query_ids=query), model(features, stamps, query_ids=query))


def test_selector_with_the_tiny_smolvlm_encoder(tiny_model_dir, tmp_path):
    encoder = FrameEncoder(str(tiny_model_dir))
    frames = torch.randint(0, 256, (6, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    stamps = torch.arange(6.0) * 0.5
    features = encoder(frames)
    assert features.shape == (6, 32)  # the tiny vision tower's width

    torch.manual_seed(0)
    model = FrameImportanceModel(feature_dim=features.shape[1], d_model=16, layers=1, heads=2)
    torch.nn.init.normal_(model.head.weight)
    selector = ImportanceSelector(model=model, encoder=encoder).eval()
    scores = selector.scores(frames, stamps)
    assert scores.shape == (6,) and not scores.requires_grad
    assert torch.allclose(scores, model(features[None], stamps[None])[0], atol=1e-6)
    assert torch.equal(selector.scores_from_features(features, stamps), scores)
    picks = selector.select(frames, stamps, 3)
    assert picks.tolist() == sorted(scores.topk(3).indices.tolist())

    model.save_pretrained(tmp_path)
    reloaded = ImportanceSelector(pretrained=str(tmp_path), encoder=encoder).eval()
    assert torch.equal(reloaded.scores(frames, stamps), scores)

    with pytest.raises(ValueError, match="exactly one"):
        ImportanceSelector()
    with pytest.raises(ValueError, match="encoder"):
        ImportanceSelector(model=model).scores(frames, stamps)


def _budget_model(seed: int = 0) -> FrameImportanceModel:
    torch.manual_seed(seed)
    model = FrameImportanceModel(feature_dim=8, d_model=16, layers=1, heads=2, dropout=0.0, max_budget=32).eval()
    # The untrained head is zero and the budget projection starts random: make both matter.
    torch.nn.init.normal_(model.head.weight)
    return model


def test_budget_aware_model_takes_any_budget_in_its_range_and_refuses_others():
    model = _budget_model()
    features, stamps = torch.randn(2, 40, 8), torch.arange(40.0).expand(2, 40) * 0.5
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 30:] = False
    with torch.no_grad():
        by_k = {k: model(features, stamps, mask, budget=k) for k in range(1, 33)}
        per_video = model(features, stamps, mask, budget=torch.tensor([3, 17]))
    for logits in by_k.values():
        assert logits.shape == (2, 40) and torch.isfinite(logits[mask]).all() and (logits[~mask] == float("-inf")).all()
    # The budget changes the logits (one model, different rankings), and a per-video budget is
    # the same as scoring each video at its own K.
    assert not torch.allclose(by_k[2], by_k[16])
    assert torch.allclose(per_video[0], by_k[3][0]) and torch.allclose(per_video[1], by_k[17][1])
    with pytest.raises(ValueError, match="budget-aware"):
        model(features, stamps)
    with pytest.raises(ValueError, match="outside 1..32"):
        model(features, stamps, budget=33)
    with pytest.raises(ValueError, match="outside 1..32"):
        model(features, stamps, budget=0)
    with pytest.raises(ValueError, match="one per video"):
        model(features, stamps, budget=torch.tensor([2, 3, 4]))
    # A model that is not budget-aware ignores K, so callers can always pass it.
    plain = _model().eval()
    with torch.no_grad():
        assert torch.equal(plain(features, stamps, budget=4), plain(features, stamps))
    with pytest.raises(ValueError, match="max_budget"):
        FrameImportanceModel(max_budget=-1)


def test_budget_aware_selector_scores_each_budget_and_round_trips(tiny_model_dir, tmp_path):
    encoder = FrameEncoder(str(tiny_model_dir))
    frames = torch.randint(0, 256, (12, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    stamps = torch.arange(12.0) * 0.5
    torch.manual_seed(0)
    model = FrameImportanceModel(feature_dim=32, d_model=16, layers=1, heads=2, max_budget=8)
    torch.nn.init.normal_(model.head.weight)
    selector = ImportanceSelector(model=model, encoder=encoder, budget=4).eval()
    features = encoder(frames)
    for k in (2, 4, 8):
        expected = model.eval()(features[None], stamps[None], budget=k)[0]
        assert torch.allclose(selector.scores(frames, stamps, k), expected, atol=1e-6)
        assert selector.select(frames, stamps, k).tolist() == sorted(expected.topk(k).indices.tolist())
    assert torch.equal(selector.scores(frames, stamps), selector.scores(frames, stamps, 4))  # its default K
    with pytest.raises(ValueError, match="budget-aware"):
        ImportanceSelector(model=model, encoder=encoder).scores(frames, stamps)  # no K known
    model.save_pretrained(tmp_path)
    reloaded = FrameImportanceModel.from_pretrained(tmp_path).eval()
    assert reloaded.max_budget == 8
    assert torch.equal(reloaded(features[None], stamps[None], budget=5), model(features[None], stamps[None], budget=5))


def test_frame_deltas_are_the_neighbour_changes_and_ignore_padding():
    features = torch.tensor([[[1.0], [4.0], [9.0], [0.0]]])
    mask = torch.tensor([[True, True, True, False]])
    out = FrameImportanceModel._with_deltas(features, mask)
    assert out[0, :, 0].tolist() == [1.0, 4.0, 9.0, 0.0]
    assert out[0, :, 1].tolist() == [0.0, 3.0, 5.0, 0.0]  # change from the previous frame
    assert out[0, :, 2].tolist() == [3.0, 5.0, 0.0, 0.0]  # change to the next; the last valid frame has none
    torch.manual_seed(0)
    model = FrameImportanceModel(feature_dim=8, d_model=16, layers=1, heads=2, dropout=0.0, frame_deltas=True).eval()
    torch.nn.init.normal_(model.head.weight)
    feats, stamps = torch.randn(1, 6, 8), torch.arange(6.0)[None]
    padded = torch.cat([feats, torch.full((1, 3, 8), float("nan"))], dim=1)
    pad_mask = torch.tensor([[True] * 6 + [False] * 3])
    with torch.no_grad():
        plain = model(feats, stamps)
        with_padding = model(padded, torch.arange(9.0)[None], pad_mask)
    assert torch.allclose(with_padding[0, :6], plain[0], atol=1e-5) and torch.isinf(with_padding[0, 6:]).all()


def test_score_inputs_are_standardised_per_video_and_optional():
    torch.manual_seed(0)
    model = FrameImportanceModel(feature_dim=8, d_model=16, layers=1, heads=2, dropout=0.0, score_inputs=1).eval()
    torch.nn.init.normal_(model.head.weight)
    feats, stamps, scores = torch.randn(1, 6, 8), torch.arange(6.0)[None], torch.rand(1, 6)
    with torch.no_grad():
        logits = model(feats, stamps, frame_scores=scores)
        # Any scale and offset of the teacher's scores: the same logits (each channel is standardised).
        assert torch.allclose(model(feats, stamps, frame_scores=3.0 * scores[..., None] + 7.0), logits, atol=1e-4)
        assert not torch.allclose(model(feats, stamps, frame_scores=scores.flip(1)), logits)  # they are read
        padded = model(
            torch.cat([feats, torch.full((1, 2, 8), float("nan"))], dim=1), torch.arange(8.0)[None],
            torch.tensor([[True] * 6 + [False] * 2]), frame_scores=torch.cat([scores, torch.full((1, 2), 1e6)], dim=1),
        )  # fmt: skip
    assert torch.allclose(padded[0, :6], logits[0], atol=1e-5) and torch.isinf(padded[0, 6:]).all()
    with pytest.raises(ValueError, match="pass frame_scores"):
        model(feats, stamps)
    with pytest.raises(ValueError, match="frame_scores must be"):
        model(feats, stamps, frame_scores=torch.rand(1, 6, 2))
    with pytest.raises(ValueError, match="score_inputs=0"):
        FrameImportanceModel(feature_dim=8, d_model=16, layers=1, heads=2)(feats, stamps, frame_scores=scores)
    with pytest.raises(ValueError, match="score_inputs"):
        FrameImportanceModel(score_inputs=-1)
    # The default builds exactly the model it built before the option existed: same parameters, same draws.
    torch.manual_seed(0)
    plain = FrameImportanceModel(feature_dim=8, d_model=16, layers=1, heads=2)
    assert not any(name.startswith("scores_in") for name in plain.state_dict())


def test_selector_reads_its_teacher_scores_and_round_trips(tiny_model_dir, tmp_path):
    from models.xcorr import CrossCorrelationSelector

    encoder, cue = FrameEncoder(str(tiny_model_dir)), CrossCorrelationSelector(size=32, grayscale=False)
    frames = torch.randint(0, 256, (12, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    stamps = torch.arange(12.0) * 0.5
    torch.manual_seed(0)
    model = FrameImportanceModel(feature_dim=32, d_model=16, layers=1, heads=2, max_budget=8, score_inputs=1).eval()
    torch.nn.init.normal_(model.head.weight)
    selector = ImportanceSelector(model=model, encoder=encoder, budget=4, teacher=cue).eval()
    expected = model(encoder(frames)[None], stamps[None], budget=4, frame_scores=cue.scores(frames, stamps)[None])[0]
    assert torch.allclose(selector.scores(frames, stamps), expected, atol=1e-6)
    assert selector.select(frames, stamps, 4).tolist() == sorted(
        model(encoder(frames)[None], stamps[None], budget=4, frame_scores=cue.scores(frames, stamps)[None])[0]
        .topk(4).indices.tolist()
    )
    with pytest.raises(ValueError, match="pass `teacher`"):
        ImportanceSelector(model=model, encoder=encoder, budget=4).scores(frames, stamps)
    model.save_pretrained(tmp_path)
    assert FrameImportanceModel.from_pretrained(tmp_path).score_inputs == 1
