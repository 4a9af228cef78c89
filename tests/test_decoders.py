"""Decoders: scores (and pairwise dissimilarities) to K sorted frame indices."""

import itertools

import pytest
import torch

from models.decoders import (
    BinMaxDecoder,
    NoveltyDPDecoder,
    ThresholdDecoder,
    TopKDecoder,
)
from models.selectors import uniform_indices


def _objective(scores, pairwise, indices, unary_weight, pairwise_weight):
    """Objective on plain Python lists (Python floats are float64)."""
    unary = sum(scores[i] for i in indices)
    novelty = sum(pairwise[a][b] for a, b in zip(indices[:-1], indices[1:]))
    return unary_weight * unary + pairwise_weight * novelty


def objective(scores, pairwise, indices, unary_weight=1.0, pairwise_weight=1.0):
    """The value NoveltyDPDecoder maximises for the given tensors and chosen indices."""
    return _objective(scores.tolist(), pairwise.tolist(), [int(i) for i in indices], unary_weight, pairwise_weight)


def brute_force_best_subset(scores, k, pairwise, unary_weight=1.0, pairwise_weight=1.0, min_gap=1):
    """(best value, best indices) over every increasing k-subset respecting the gap; exponential."""
    # Plain Python lists: indexing tensors element by element would dominate the test's run time.
    scores, pairwise = scores.tolist(), pairwise.tolist()
    best_value, best_indices = float("-inf"), None
    for subset in itertools.combinations(range(len(scores)), k):
        if any(b - a < min_gap for a, b in zip(subset[:-1], subset[1:])):
            continue
        value = _objective(scores, pairwise, subset, unary_weight, pairwise_weight)
        if value > best_value:
            best_value, best_indices = value, subset
    return best_value, best_indices


def random_case(seed, num_frames):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(num_frames, generator=g, dtype=torch.float64)
    half = torch.rand(num_frames, num_frames, generator=g, dtype=torch.float64)
    pairwise = (half + half.T).fill_diagonal_(0.0)  # symmetric, >= 0, zero self-distance
    return scores, pairwise


def assert_valid_indices(indices, k, num_frames):
    assert indices.dtype == torch.long
    assert indices.shape == (k,)
    assert torch.equal(indices, indices.sort().values)
    assert indices.unique().numel() == k
    assert int(indices.min()) >= 0 and int(indices.max()) < num_frames


# --- NoveltyDPDecoder -------------------------------------------------------------------------


@pytest.mark.parametrize("min_gap", [1, 2])
@pytest.mark.parametrize("weights", [(1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.5, 2.0)])
def test_dp_matches_brute_force(min_gap, weights):
    unary_weight, pairwise_weight = weights
    decoder = NoveltyDPDecoder(unary_weight=unary_weight, pairwise_weight=pairwise_weight, min_gap=min_gap)
    checked = 0
    for seed in range(4):
        for num_frames in range(5, 11):
            scores, pairwise = random_case(seed * 100 + num_frames, num_frames)
            for k in range(1, 6):
                if (k - 1) * min_gap + 1 > num_frames:
                    continue
                expected, _ = brute_force_best_subset(
                    scores, k, pairwise, unary_weight, pairwise_weight, min_gap=min_gap
                )
                indices = decoder.decode(scores, k, pairwise)
                assert_valid_indices(indices, k, num_frames)
                assert (indices[1:] - indices[:-1] >= min_gap).all()
                achieved = objective(scores, pairwise, indices, unary_weight, pairwise_weight)
                assert achieved == pytest.approx(expected, abs=1e-9)
                checked += 1
    assert checked > 80


def test_dp_is_polynomial():
    scores, pairwise = random_case(0, 300)
    indices = NoveltyDPDecoder(min_gap=3).decode(scores, 16, pairwise)
    assert_valid_indices(indices, 16, 300)


def test_dp_pairwise_only_takes_one_frame_per_block():
    # Four shots of identical frames; "content" zig-zags so that the most novel path through time
    # visits every shot once. Top scores sit in the first shot, and must be ignored.
    content = torch.tensor([0.0, 5.0, 2.0, 7.0]).repeat_interleave(6)
    pairwise = (content[:, None] - content[None, :]).abs()
    scores = torch.zeros(24)
    scores[:6] = 10.0
    indices = NoveltyDPDecoder(unary_weight=0.0).decode(scores, 4, pairwise)
    assert (indices // 6).tolist() == [0, 1, 2, 3]
    assert (TopKDecoder().decode(scores, 4) // 6).tolist() == [0, 0, 0, 0]  # what novelty fixes


def test_dp_without_pairwise_is_gapped_top_k():
    scores = torch.tensor([0.0, 9.0, 8.0, 1.0, 0.0, 7.0, 0.0, 0.0])
    assert NoveltyDPDecoder().decode(scores, 3).tolist() == [1, 2, 5]
    # Frames 1 and 2 are too close with min_gap=2: the next best partner for 1 is taken.
    assert NoveltyDPDecoder(min_gap=2).decode(scores, 3).tolist() == [1, 3, 5]


def test_dp_ties_are_deterministic():
    scores = torch.zeros(10)
    first = NoveltyDPDecoder().decode(scores, 3)
    assert first.tolist() == NoveltyDPDecoder().decode(scores, 3).tolist()
    assert_valid_indices(first, 3, 10)


def test_dp_rejects_impossible_gap_and_bad_pairwise():
    with pytest.raises(ValueError, match="min_gap"):
        NoveltyDPDecoder(min_gap=3).decode(torch.zeros(6), 3)  # needs (3-1)*3+1 = 7 frames
    assert NoveltyDPDecoder(min_gap=3).decode(torch.zeros(7), 3).tolist() == [0, 3, 6]
    with pytest.raises(ValueError, match="shape"):
        NoveltyDPDecoder().decode(torch.zeros(6), 2, torch.zeros(5, 5))
    with pytest.raises(ValueError, match="min_gap"):
        NoveltyDPDecoder(min_gap=0)


# --- BinMaxDecoder ----------------------------------------------------------------------------


def test_binmax_takes_best_frame_of_each_bin():
    # T=10, k=3: bins are 0..2, 3..5, 6..9.
    scores = torch.tensor([0.1, 0.9, 0.2, 0.5, 0.4, 0.6, 0.0, 0.3, 0.8, 0.7])
    indices = BinMaxDecoder().decode(scores, 3)
    assert indices.tolist() == [1, 5, 8]
    edges = [i * 10 // 3 for i in range(4)]
    for index, start, stop in zip(indices.tolist(), edges[:-1], edges[1:]):
        assert start <= index < stop


def test_binmax_ties_take_earliest_and_k_equals_t_takes_all():
    assert BinMaxDecoder().decode(torch.zeros(8), 2).tolist() == [0, 4]
    assert BinMaxDecoder().decode(torch.randn(5), 5).tolist() == [0, 1, 2, 3, 4]


# --- ThresholdDecoder -------------------------------------------------------------------------


def test_threshold_absolute_picks_peaks():
    scores = torch.tensor([0.0, 0.9, 0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert ThresholdDecoder(threshold=0.5, relative=False).decode(scores, 2).tolist() == [1, 4]


def test_threshold_too_many_peaks_keeps_the_highest():
    scores = torch.tensor([0.6, 0.9, 0.7, 0.0, 0.8, 0.0, 0.0, 0.55, 0.0, 0.0])
    assert ThresholdDecoder(threshold=0.5, relative=False).decode(scores, 2).tolist() == [1, 4]
    assert ThresholdDecoder(threshold=0.5, relative=False).decode(scores, 4).tolist() == [0, 1, 2, 4]


def test_threshold_relative_uses_mean_plus_std():
    # Mean 1, population variance (81 + 121) / 20 - 1 = 9.1: the cut-off ~4.02 passes only the spikes.
    scores = torch.zeros(20)
    scores[3], scores[15] = 9.0, 11.0
    decoder = ThresholdDecoder(threshold=1.0)
    assert decoder.cutoff(scores) == pytest.approx(1.0 + 9.1**0.5)
    assert ThresholdDecoder(threshold=2.0).cutoff(scores) == pytest.approx(1.0 + 2 * 9.1**0.5)
    assert decoder.decode(scores, 2).tolist() == [3, 15]
    assert decoder.decode(scores, 1).tolist() == [15]


def test_threshold_too_few_peaks_fills_uniformly():
    scores = torch.zeros(20)
    scores[3], scores[15] = 9.0, 11.0
    # Uniform frames for k=4 are 2, 7, 12, 17; peak 3 replaces 2 and peak 15 replaces 17.
    assert ThresholdDecoder().decode(scores, 4).tolist() == [3, 7, 12, 15]
    # One peak at 7 among 10 frames, k=3: uniform 1, 5, 8; the peak replaces 8.
    single = torch.zeros(10)
    single[7] = 1.0
    assert ThresholdDecoder(threshold=0.5, relative=False).decode(single, 3).tolist() == [1, 5, 7]


def test_threshold_without_peaks_is_uniform_sampling():
    for num_frames, k in [(10, 3), (6, 5), (1, 1), (37, 8)]:
        flat = torch.full((num_frames,), 2.0)
        assert torch.equal(ThresholdDecoder().decode(flat, k), uniform_indices(num_frames, k))


def test_threshold_fill_is_always_k_distinct():
    for seed in range(50):
        g = torch.Generator().manual_seed(seed)
        num_frames = int(torch.randint(1, 30, (1,), generator=g))
        k = int(torch.randint(1, num_frames + 1, (1,), generator=g))
        scores = torch.randn(num_frames, generator=g)
        for threshold in (0.0, 1.0, 2.5):
            assert_valid_indices(ThresholdDecoder(threshold=threshold).decode(scores, k), k, num_frames)


# --- every decoder ----------------------------------------------------------------------------

ALL_DECODERS = [TopKDecoder(), ThresholdDecoder(), BinMaxDecoder(), NoveltyDPDecoder()]


@pytest.mark.parametrize("decoder", ALL_DECODERS, ids=lambda d: type(d).__name__)
def test_budget_errors(decoder):
    scores, pairwise = random_case(0, 6)
    with pytest.raises(ValueError, match="budget"):
        decoder.decode(scores, 7, pairwise)
    with pytest.raises(ValueError, match="budget"):
        decoder.decode(scores, 0, pairwise)


@pytest.mark.parametrize("decoder", ALL_DECODERS, ids=lambda d: type(d).__name__)
def test_output_contract(decoder):
    for seed, num_frames, k in [(0, 12, 4), (1, 7, 7), (2, 9, 1), (3, 40, 8)]:
        scores, pairwise = random_case(seed, num_frames)
        indices = decoder.decode(scores.float(), k, pairwise.float() if decoder.needs_pairwise else None)
        assert_valid_indices(indices, k, num_frames)


def test_dp_asks_for_pairwise_only_when_it_uses_it():
    assert NoveltyDPDecoder().needs_pairwise
    assert not NoveltyDPDecoder(pairwise_weight=0.0).needs_pairwise
