"""Normalised cross-correlation: FFT against the direct formula, invariances, and the selector."""

import time

import pytest
import torch
import torch.nn.functional as F

from models.selectors import FrameSelector
from models.xcorr import (
    NORMS,
    CrossCorrelationSelector,
    consecutive_diffs,
    correlation_map_fft,
    direct_similarity,
    normalize_frames,
    pairwise_diffs,
    standardize,
    xcorr_direct,
    xcorr_fft,
)


def texture(seed: int, size: int = 96, sigma: float = 1.0) -> torch.Tensor:
    """A smooth random texture ``(size, size)``: white noise blurred by a Gaussian, unit std."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1, 1, size, size, generator=g, dtype=torch.float64)
    r = int(3 * sigma)
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float64) ** 2 / (2 * sigma**2))
    k = k / k.sum()
    z = F.conv2d(F.pad(z, (r, r, r, r), mode="reflect"), k.view(1, 1, 1, -1))
    z = F.conv2d(z, k.view(1, 1, -1, 1))
    z = z[0, 0]
    return (z - z.mean()) / z.std()


def to_uint8_rgb(gray: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Unit-std texture ``(H, W)`` to a grey uint8 RGB frame ``(3, H, W)``; ``gain`` scales brightness."""
    return ((128 + 35 * gray) * gain).round().clamp(0, 255).to(torch.uint8).expand(3, -1, -1).clone()


def sim_from_map(corr: torch.Tensor, a: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    """The notes' similarity from a direct correlation map of one channel."""
    denom = a.numel() if norm == "hw" else a.double().norm() * b.double().norm()
    return corr.max() / denom


# (13, 11) with max_shift=3 pads to an odd width (15); max_shift=10 caps only some axes.
@pytest.mark.parametrize("shape", [(16, 16), (24, 20), (13, 11)])
@pytest.mark.parametrize("max_shift", [None, 0, 3, 10])
@pytest.mark.parametrize("channels", [None, 3])
def test_fft_matches_direct_formula(shape, max_shift, channels):
    g = torch.Generator().manual_seed(hash((shape, max_shift, channels)) % 2**31)
    batch = (2,) if channels is None else (2, channels)
    a = standardize(torch.randn(*batch, *shape, generator=g, dtype=torch.float64))
    b = standardize(torch.randn(*batch, *shape, generator=g, dtype=torch.float64))
    # Production runs in float32; the reference in float64.
    a32, b32 = a.float(), b.float()
    a_c = a if channels else a[:, None]
    b_c = b if channels else b[:, None]

    direct_maps = torch.stack(
        [torch.stack([xcorr_direct(a_c[i, c], b_c[i, c], max_shift) for c in range(a_c.shape[1])]) for i in range(2)]
    )
    fft_maps = correlation_map_fft(a32, b32, max_shift)
    fft_maps = fft_maps if channels else fft_maps[:, None]
    assert fft_maps.shape == direct_maps.shape
    # Map entries are sums of up to H*W unit-scale products; compare relative to H*W like the sims.
    assert (fft_maps.double() - direct_maps).abs().max() / (shape[0] * shape[1]) < 1e-5

    for norm in NORMS:
        expected = torch.stack(
            [
                torch.stack([sim_from_map(direct_maps[i, c], a_c[i, c], b_c[i, c], norm) for c in range(a_c.shape[1])]).mean()
                for i in range(2)
            ]
        )
        got = xcorr_fft(a32, b32, max_shift=max_shift, norm=norm)
        assert got.shape == (2,)
        assert (got.double() - expected).abs().max() < 1e-4
        assert torch.allclose(direct_similarity(a[0], b[0], max_shift, norm), expected[0])


def test_direct_formula_is_linear_not_circular():
    # A single bright pixel at the top-left and one at the bottom-right: only the shift that
    # aligns them inside the frame has any correlation, and nothing wraps around.
    a = torch.zeros(5, 6, dtype=torch.float64)
    b = torch.zeros(5, 6, dtype=torch.float64)
    a[0, 0], b[4, 5] = 1.0, 1.0
    corr = xcorr_direct(a, b)
    assert corr.shape == (9, 11)
    assert corr[4 + 4, 5 + 5] == 1.0 and corr.sum() == 1.0
    fft = correlation_map_fft(a[None], b[None])[0]
    assert torch.allclose(fft, corr, atol=1e-9)


@pytest.mark.parametrize("norm", NORMS)
def test_brightness_and_contrast_change_gives_zero_diff(norm):
    frame = torch.rand(3, 20, 24, dtype=torch.float64)
    changed = frame * torch.tensor([1.7, 0.4, 2.5], dtype=torch.float64).view(3, 1, 1) + torch.tensor([0.3, -5.0, 12.0]).view(3, 1, 1)
    per_channel = standardize(torch.stack([frame, changed]))
    assert 1 - xcorr_fft(per_channel[:1], per_channel[1:], norm=norm).item() < 1e-4
    gray = standardize(torch.stack([frame[0], 3.0 * frame[0] + 7.0]))
    assert 1 - xcorr_fft(gray[:1], gray[1:], norm=norm).item() < 1e-4

    # End to end from uint8: 2 F + 20 stays exactly representable, and luma and resizing are
    # linear, so the standardised frames agree to float rounding.
    video = torch.randint(0, 101, (1, 3, 40, 36), dtype=torch.uint8)
    video = torch.cat([video, 2 * video + 20])
    for grayscale in (True, False):
        diffs = consecutive_diffs(video, norm=norm, size=32, grayscale=grayscale)
        assert diffs[1] < 1e-4


@pytest.mark.parametrize("norm", NORMS)
def test_translation_costs_only_the_lost_overlap_and_a_cut_costs_everything(norm):
    big = texture(0)
    size, (dy, dx) = 64, (3, 2)
    a = big[10 : 10 + size, 10 : 10 + size]
    b = big[10 + dy : 10 + dy + size, 10 + dx : 10 + dx + size]  # the camera moved by (3, 2)
    cut = texture(1)[10 : 10 + size, 10 : 10 + size]  # unrelated content
    frames = standardize(torch.stack([a, b, cut]))

    pan = 1 - xcorr_fft(frames[:1], frames[1:2], norm=norm).item()
    hard = 1 - xcorr_fft(frames[:1], frames[2:], norm=norm).item()
    # The best shift re-aligns the content; what is lost is the part that slid out of view.
    # Each frame's energy is spread evenly, so the overlap holds ~ rho of it, and the
    # correlation there is ~ rho * H * W (both norms divide by ~ H * W).
    rho = (size - dy) * (size - dx) / size**2
    assert pan < (1 - rho) + 0.05, (pan, 1 - rho)
    assert hard > 0.8
    assert pan < hard / 4

    # The peak sits at the shift that undoes the motion: b[h, w] = a[h + dy, w + dx].
    corr = correlation_map_fft(frames[:1], frames[1:2])[0]
    peak = divmod(corr.argmax().item(), corr.shape[-1])
    assert (peak[0] - (size - 1), peak[1] - (size - 1)) == (-dy, -dx)

    # A shift window too small to reach the motion loses most of the similarity.
    assert 1 - xcorr_fft(frames[:1], frames[1:2], max_shift=1, norm=norm).item() > pan + 0.2


def panning_video(cut_at: int, num_frames: int = 14, size: int = 48) -> torch.Tensor:
    """uint8 ``(T, 3, size, size)``: a camera panning 1 px per frame, cutting to a new scene at ``cut_at``."""
    scenes = (texture(2), texture(3))
    frames = []
    for t in range(num_frames):
        scene, offset = (scenes[0], t) if t < cut_at else (scenes[1], t - cut_at)
        frames.append(to_uint8_rgb(scene[10 + offset : 10 + offset + size, 20 : 20 + size]))
    return torch.stack(frames)


@pytest.mark.parametrize("grayscale", [True, False])
def test_consecutive_diffs_peak_at_the_cut(grayscale):
    video = panning_video(cut_at=9)
    diffs = consecutive_diffs(video, size=32, grayscale=grayscale)
    assert diffs.shape == (14,) and diffs.dtype == torch.float32
    assert diffs[0] == 0
    assert diffs.argmax().item() == 9
    assert diffs[9] > 0.8 and diffs[torch.arange(14) != 9].max() < 0.2
    # Chunk boundaries carry the previous frame's spectrum over: same result in small chunks.
    assert torch.allclose(consecutive_diffs(video, size=32, grayscale=grayscale, chunk=4), diffs, atol=1e-6)


@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize("max_shift", [None, 2])
def test_pairwise_diffs_are_symmetric_with_zero_diagonal(channels, max_shift):
    shape = (7, 20, 24) if channels is None else (7, channels, 20, 24)
    frames = standardize(torch.randn(*shape))
    frames[3] = frames[2].roll(1, dims=-1)  # one near-duplicate pair
    d = pairwise_diffs(frames, max_shift=max_shift, chunk=4)  # 21 pairs over several chunks
    assert d.shape == (7, 7)
    assert torch.equal(d, d.T)
    assert torch.equal(d.diagonal(), torch.zeros(7))
    i, j = torch.triu_indices(7, 7, offset=1)
    expected = 1 - xcorr_fft(frames[i], frames[j], max_shift=max_shift)
    assert torch.allclose(d[i, j], expected, atol=1e-6)
    assert d[2, 3] < 0.1 and d[0, 1] > 0.5
    # The superdiagonal is what consecutive_diffs computes.
    assert torch.allclose(consecutive_diffs(frames, max_shift=max_shift)[1:], d.diagonal(1), atol=1e-6)


@pytest.mark.parametrize("grayscale", [True, False])
def test_selector_ranks_the_cut_above_flicker(grayscale):
    static, other = texture(4)[:40, :40], texture(5)[:40, :40]
    gains = [1.0, 1.0, 1.0, 1.3, 0.7, 1.0, 1.0, 1.15, 1.0, 1.0, 1.0, 0.8, 1.0, 1.0, 1.0, 1.0]
    cut_at = 10
    video = torch.stack([to_uint8_rgb(static if t < cut_at else other, gain) for t, gain in enumerate(gains)])
    timestamps = torch.arange(len(gains), dtype=torch.float32) / 2

    selector = CrossCorrelationSelector(size=32, grayscale=grayscale)
    scores = selector.scores(video, timestamps)
    assert scores.argmax().item() == cut_at
    assert scores.topk(2).values[1] < 0.05  # flicker is invisible after standardisation
    assert selector.select(video, timestamps, 1).tolist() == [cut_at]
    pairwise = selector.pairwise(video, timestamps)
    assert pairwise.shape == (16, 16)
    assert pairwise[0, 3] < 0.05 and pairwise[0, cut_at] > 0.8


def test_selector_is_built_from_yaml_style_config():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--selector", type=FrameSelector)
    cfg = parser.parse_object(
        {"selector": {"class_path": "models.xcorr.CrossCorrelationSelector", "init_args": {"max_shift": 8, "norm": "frobenius"}}}
    )
    selector = parser.instantiate_classes(cfg).selector
    assert isinstance(selector, CrossCorrelationSelector)
    assert (selector.size, selector.max_shift, selector.norm) == (128, 8, "frobenius")


def test_normalize_frames_shape_and_statistics():
    video = torch.randint(0, 256, (5, 3, 30, 50), dtype=torch.uint8)
    gray = normalize_frames(video, size=16)
    color = normalize_frames(video, size=16, grayscale=False)
    assert gray.shape == (5, 1, 16, 16) and color.shape == (5, 3, 16, 16)
    for x in (gray, color):
        assert x.dtype == torch.float32
        assert x.mean(dim=(-2, -1)).abs().max() < 1e-5
        assert (x.std(dim=(-2, -1), correction=0) - 1).abs().max() < 1e-3
    # Constant frames standardise to zeros instead of blowing up.
    assert torch.equal(normalize_frames(torch.full((1, 3, 8, 8), 77, dtype=torch.uint8), size=8), torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"norm": "l2"}, "norm"),
        ({"size": 4}, "size"),
        ({"size": 64.0}, "size"),
        ({"max_shift": -1}, "max_shift"),
        ({"max_shift": 1.5}, "max_shift"),
        ({"eps": 0.0}, "eps"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CrossCorrelationSelector(**kwargs)


def test_bad_function_arguments_raise():
    x = torch.randn(2, 8, 8)
    with pytest.raises(ValueError, match="norm"):
        xcorr_fft(x, x, norm="max")
    with pytest.raises(ValueError, match="max_shift"):
        consecutive_diffs(x, max_shift=-2)
    with pytest.raises(ValueError, match="same shape"):
        xcorr_fft(x, x[:, :4])
    with pytest.raises(ValueError, match="RGB"):
        normalize_frames(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))


def test_consecutive_diffs_timing_300_frames():
    """Prints (does not assert) the cost of scoring a 300-frame video at 128 x 128."""
    video = torch.randint(0, 256, (300, 3, 128, 128), dtype=torch.uint8)
    consecutive_diffs(video[:4])  # warm up FFT plans
    start = time.perf_counter()
    diffs = consecutive_diffs(video)
    elapsed = time.perf_counter() - start
    print(f"\nconsecutive_diffs, 300 frames at 128x128, {torch.get_num_threads()} threads: {elapsed * 1e3:.0f} ms")
    assert diffs.shape == (300,)


@pytest.mark.slow
def test_direct_vs_fft_timing_one_pair_128():
    """Prints (does not assert) direct formula vs FFT on one 128 x 128 pair, all shifts."""
    a, b = standardize(torch.randn(2, 128, 128, dtype=torch.float64))
    start = time.perf_counter()
    direct = direct_similarity(a, b)
    t_direct = time.perf_counter() - start
    a32, b32 = a[None].float(), b[None].float()
    xcorr_fft(a32, b32)  # warm up FFT plans
    t_fft = []
    for _ in range(10):  # one FFT pass is sub-millisecond: take the best of several
        start = time.perf_counter()
        fft = xcorr_fft(a32, b32)
        t_fft.append(time.perf_counter() - start)
    t_fft = min(t_fft)
    print(f"\none 128x128 pair, all 255x255 shifts: direct {t_direct:.2f} s, FFT {t_fft * 1e3:.2f} ms")
    assert abs(direct.item() - fft.item()) < 1e-4
