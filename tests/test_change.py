"""Robust change scores: the adaptive score ignores a large object crossing close to the camera,
the gradual score finds a cross-fade but not a slow pan over a smooth scene, and the plain
cross-correlation score is unchanged."""

import math

import pytest
import torch
from test_xcorr import texture

from models.change import (
    AdaptiveSelector,
    ShotBoundarySelector,
    adaptive_scores,
    combine_boundary_scores,
    dissolve_features,
    dissolve_fit,
    frame_lags,
    gradual_scores,
    neighbour_mean,
)
from models.decoders import ThresholdDecoder
from models.selectors import FrameSelector, PixelDiffSelector
from models.xcorr import CrossCorrelationSelector, consecutive_diffs, normalize_frames, offset_diffs, xcorr_fft
from models.change import peak_indices
from trainer.benchmarks.boundary_methods import PEAK_THRESHOLD

SIDE = 64
FPS = 25.0


def peaks(scores: torch.Tensor) -> list[int]:
    """The benchmark's peak rule: local maxima above mean + 2 std."""
    return peak_indices(scores, ThresholdDecoder(threshold=PEAK_THRESHOLD).cutoff(scores))


def grey_frame(image: torch.Tensor, seed: int) -> torch.Tensor:
    """Unit-scale image ``(H, W)`` to a grey uint8 RGB frame with a little sensor noise."""
    g = torch.Generator().manual_seed(seed)
    x = 128 + 35 * image + 2.0 * torch.randn(image.shape, generator=g, dtype=image.dtype)
    return x.round().clamp(0, 255).to(torch.uint8).expand(3, -1, -1).clone()


def crossing_video(num_frames=80, crossing=(20, 29), cut=55, radius=0.42) -> torch.Tensor:
    """A still textured street, a textured disc covering ~55% of the frame crossing it in 10 frames
    (an object passing close to the camera), and a hard cut to another scene at ``cut``."""
    street, other, disc = texture(1, SIDE, 1.5), texture(2, SIDE, 1.5), texture(3, SIDE, 1.5)
    yy, xx = torch.meshgrid(torch.arange(SIDE, dtype=torch.float64), torch.arange(SIDE, dtype=torch.float64), indexing="ij")
    r = radius * SIDE
    frames = []
    for t in range(num_frames):
        image = street if t < cut else other
        if crossing[0] <= t <= crossing[1]:
            cx = -r + (SIDE + 2 * r) * (t - crossing[0] + 0.5) / (crossing[1] - crossing[0] + 1)
            inside = (xx - cx) ** 2 + (yy - SIDE / 2) ** 2 <= r * r
            image = torch.where(inside, 0.5 + disc.roll(int(cx), 1), image)  # the disc's texture moves with it
        frames.append(grey_frame(image, t))
    return torch.stack(frames)


def fade_video(num_frames=100, fade=(30, 55), cut=80) -> torch.Tensor:
    """Scene A, a linear cross-fade to scene B over frames ``fade[0] .. fade[1] - 1``, then a cut to scene C."""
    a, b, c = texture(4, SIDE, 1.5), texture(5, SIDE, 1.5), texture(6, SIDE, 1.5)
    frames = []
    for t in range(num_frames):
        if t < fade[0]:
            image = a
        elif t < fade[1]:
            p = (t - fade[0] + 1) / (fade[1] - fade[0] + 1)
            image = (1 - p) * a + p * b
        else:
            image = b if t < cut else c
        frames.append(grey_frame(image, 100 + t))
    return torch.stack(frames)


def waves(width: int, seed: int) -> torch.Tensor:
    """A smooth unit-std image ``(SIDE, width)``: four plane waves 24-40 px long in random
    directions, like data.synthetic's backgrounds. Its contrast is the same wherever the camera looks."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIDE, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij")
    image = torch.zeros(SIDE, width, dtype=torch.float64)
    for _ in range(4):
        angle, phase = 2 * math.pi * torch.rand(2, generator=g, dtype=torch.float64)
        k = 2 * math.pi / (24 + 16 * float(torch.rand(1, generator=g)))
        image += torch.sin(k * (xx * torch.cos(angle) + yy * torch.sin(angle)) + phase)
    return image / image.std()


def pan_video(num_frames=100, pan=(20, 60), cut=80, speed=1.5) -> torch.Tensor:
    """A slow camera pan (``speed`` px per frame) over a smooth scene during frames ``pan``, then a cut."""
    scene, other = waves(SIDE + 96, 8), texture(9, SIDE, 1.5)
    frames = []
    for t in range(num_frames):
        left = round(speed * min(max(t - pan[0], 0), pan[1] - pan[0]))
        frames.append(grey_frame(scene[:, left : left + SIDE] if t < cut else other, 200 + t))
    return torch.stack(frames)


def stamps(video: torch.Tensor) -> torch.Tensor:
    return torch.arange(len(video), dtype=torch.float64) / FPS


def test_adaptive_score_ignores_a_large_object_crossing_close_to_the_camera():
    video = crossing_video()
    plain = CrossCorrelationSelector(size=32)
    crossing = range(20, 30)
    plain_peaks = peaks(plain.scores(video, stamps(video)))
    assert 55 in plain_peaks
    assert any(t in crossing for t in plain_peaks)  # the plain score flags the crossing

    for selector in (AdaptiveSelector(plain), ShotBoundarySelector(xcorr=plain)):
        scores = selector.scores(video, stamps(video))
        assert peaks(scores) == [55], type(selector).__name__  # the cut, and nothing at the crossing
        assert scores[55] > 0.7
        assert scores[crossing].max() < 0.3 * scores[55]


def test_gradual_score_peaks_inside_a_cross_fade_the_plain_score_misses():
    video = fade_video()
    fade = range(30, 55)
    plain_peaks = peaks(CrossCorrelationSelector(size=32).scores(video, stamps(video)))
    assert plain_peaks == [80]  # the cut only: each step of the fade is tiny

    selector = ShotBoundarySelector()
    parts = selector.components(video, stamps(video))
    assert parts["lags"] == [4, 8, 16, 32]  # 0.16 to 1.28 s at 25 fps
    found = peaks(parts["boundary"])
    assert found[-1] == 80 and len(found) == 2
    assert found[0] in fade and abs(found[0] - 42) <= 2  # at the fade's middle
    assert parts["boundary"][found[0]] > 0.7
    assert parts["hard"][fade].max() < 0.05  # the cut score alone does not see it
    assert parts["gradual"].shape == (4, 100)
    # Without lags the selector is the adaptive cut score.
    cuts_only = ShotBoundarySelector(lag_seconds=())
    assert torch.equal(cuts_only.scores(video, stamps(video)), parts["hard"])


def test_gradual_score_ignores_a_slow_pan_over_a_smooth_scene():
    video = pan_video()
    pan = range(20, 61)
    selector = ShotBoundarySelector()
    parts = selector.components(video, stamps(video))
    assert peaks(parts["boundary"]) == [80]  # the cut, and nothing during the pan
    assert parts["gradual"][:, pan].max() < 0.1
    # The panned picture keeps its contrast (at frames 20 and 60 the middle frame is one end's
    # picture, a "mix" of one frame, and the balance is 0).
    assert parts["dip"][:, 21:60].max() < 0.15

    # Without the contrast test the pan looks like a dissolve: a small shift of a smooth picture is
    # close to a mix of two shifted copies, so the mix fits, evenly, and the ends differ.
    steps, lags = parts["steps"], parts["lags"]
    residuals, balances, _ = dissolve_fit(*dissolve_features(video), lags)
    far = offset_diffs(normalize_frames(video, size=32), [2 * d for d in lags], max_shift=4)
    no_dip = []
    for d, row, residual, balance in zip(lags, far, residuals, balances):
        across = torch.zeros_like(row)
        across[d:-d] = row[2 * d :]
        no_dip.append(gradual_scores(steps, across, residual, balance, torch.ones_like(residual), d))
    old = combine_boundary_scores(parts["hard"], no_dip, lags)
    assert any(t in pan for t in peaks(old))
    assert old[pan].max() > 0.25


def test_plain_cross_correlation_is_unchanged_and_offset_diffs_generalise_it():
    video = crossing_video()
    x = normalize_frames(video, size=32)
    plain = consecutive_diffs(x, max_shift=4)
    diffs = offset_diffs(x, [1, 3, 30], max_shift=4, chunk=16)  # chunks smaller than the largest offset
    assert diffs.shape == (3, 80)
    assert torch.equal(diffs[0], plain)
    assert torch.equal(diffs[1, :3], torch.zeros(3)) and torch.equal(diffs[2, :30], torch.zeros(30))
    assert torch.allclose(diffs[2, 30:], 1 - xcorr_fft(x[:-30], x[30:], max_shift=4), atol=1e-6)
    # The selector's score is still consecutive_diffs at its settings.
    selector = CrossCorrelationSelector(size=32, max_shift=4)
    assert torch.equal(selector.scores(video, stamps(video)), plain)
    # ShotBoundarySelector's "steps" are that same plain score.
    assert torch.equal(ShotBoundarySelector(xcorr=selector).components(video, stamps(video))["steps"], plain)


def test_adaptive_scores_numbers():
    s = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.2, 0.2, 0.2])
    # Neighbour means within 1 frame, cut short at the ends.
    assert torch.allclose(neighbour_mean(s, 1), torch.tensor([0.0, 0.5, 0.0, 0.6, 0.1, 0.2, 0.2]))
    assert torch.allclose(adaptive_scores(s, 1), torch.tensor([0.0, 0.0, 1.0, 0.0, 0.1, 0.0, 0.0]))
    ratio = adaptive_scores(s, 1, mode="ratio", floor=0.05)
    assert torch.allclose(ratio, torch.tensor([0.0, 0.0, 20.0, 0.0, 2.0, 1.0, 1.0]))
    assert torch.equal(adaptive_scores(torch.tensor([0.3]), 2), torch.tensor([0.3]))  # no neighbours


def test_dissolve_fit_tells_a_mix_from_motion_and_finds_the_middle():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 500, generator=g)
    p = torch.linspace(0, 1, 9)[:, None]
    mix = (1 - p) * a + p * b  # a cross-fade
    (residual,), (balance,), (dip,) = dissolve_fit(mix, torch.ones(9), [4])
    assert residual[4] < 1e-4 and balance[4] > 0.99  # the middle frame is an even mix of the ends
    assert dip[4] > 0.99  # and has lost the contrast such a mix loses
    longer = torch.cat([a.expand(4, -1), mix, b.expand(4, -1)])  # the same fade with still shots around it
    (residual,), (balance,), (dip,) = dissolve_fit(longer, torch.ones(17), [6])
    assert residual[6:11].max() < 1e-3  # every window that spans the fade fits it
    # but only its middle mixes the ends evenly: frame 6 + i is (1 - p) a + p b with p = (i + 2) / 8.
    assert torch.allclose(balance[6:11], torch.tensor([0.5, 0.75, 1.0, 0.75, 0.5]), atol=1e-3)
    assert dip[6:11].min() > 0.99  # the contrast test holds at any mix proportion
    moving = torch.stack([a.roll(3 * t) for t in range(9)])  # a pattern sliding along
    assert dissolve_fit(moving, torch.ones(9), [4])[0][0, 4] > 0.9
    # A smooth pattern sliding along: the mix fits (a small shift of a smooth signal is close to a
    # mix of two shifted copies), but the middle frame keeps its contrast, so the dip is near 0,
    # also when flicker dims the middle frame (the brightness divides the gain out).
    x = torch.arange(600, dtype=torch.float64)
    smooth = torch.stack([torch.sin(2 * math.pi * (x + 2 * t) / 150) + torch.sin(2 * math.pi * (x + 2 * t) / 97 + 1) for t in range(9)])
    light = torch.full((9,), 0.5, dtype=torch.float64)
    (residual,), (balance,), (dip,) = dissolve_fit(smooth, light, [4])
    assert residual[4] < 0.02 and balance[4] > 0.99 and dip[4] < 0.05
    dimmed = torch.cat([smooth[:4], 0.75 * smooth[4:5], smooth[5:]])
    dim_light = torch.cat([light[:4], 0.75 * light[4:5], light[5:]])
    assert dissolve_fit(dimmed, dim_light, [4])[2][0, 4] < 0.05
    assert dissolve_fit(dimmed, light, [4])[2][0, 4] > 0.9  # without the gain the dimming looks like a mix
    (residual,), (balance,), (dip,) = dissolve_fit(mix, torch.ones(9), [4])
    assert torch.equal(residual[:4], torch.ones(4)) and torch.equal(balance[:4], torch.zeros(4))  # no frame that far back
    assert torch.equal(dip[:4], torch.zeros(4))
    residual, balance, dip = dissolve_fit(mix[:8], torch.ones(8), [4, 2])  # lag 4 does not fit in 8 frames, lag 2 does
    assert torch.equal(residual[0], torch.ones(8)) and torch.equal(balance[0], torch.zeros(8))
    assert torch.allclose(residual[1], dissolve_fit(mix[:8], torch.ones(8), [2])[0][0]) and residual[1, 2:6].max() < 1e-4
    frames = torch.randint(0, 256, (3, 3, 30, 90), dtype=torch.uint8)
    features, brightness = dissolve_features(frames, size=45)
    assert features.shape == (3, 3 * 15 * 45)
    assert features.view(3, 3, -1).mean(-1).abs().max() < 1e-5  # each channel centred
    assert torch.allclose(brightness, frames.float().mean(dim=(1, 2, 3)) / 255, atol=1e-5)  # area pooling keeps the mean
    in_twos = dissolve_features(frames, size=45, chunk=2)  # chunks change nothing
    assert torch.equal(in_twos[0], features) and torch.equal(in_twos[1], brightness)


def test_gradual_and_combined_scores_on_hand_made_inputs():
    steps = torch.tensor([0.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1])
    across = torch.tensor([0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0])
    residual = torch.tensor([1.0, 1.0, 0.0, 0.25, 0.0, 0.0, 0.0, 1.0, 1.0])
    balance = torch.tensor([0.0, 0.0, 1.0, 0.5, 1.0, 1.0, 1.0, 0.0, 0.0])
    dip = torch.tensor([0.0, 0.0, 0.25, 0.9, 1.0, 1.0, 1.0, 0.0, 0.0])
    g = gradual_scores(steps, across, residual, balance, dip, lag=2, max_residual=0.5, min_dip=0.5)
    # The window of t holds steps t-1 .. t+2: those with the 0.9 step (t = 4..6) score 0; t = 2, 3
    # score (0.5 - 0.1) times the fit (1 - residual / 0.5) times the balance times min(1, dip / 0.5).
    assert torch.allclose(g, torch.tensor([0.0, 0.0, 0.2, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0]))

    hard = torch.tensor([0, 0, 0, 0, 0, 0.8, 0.3, 0, 0, 0, 0, 0.2, 0, 0.5, 0])
    gradual = torch.tensor([0, 0.6, 0, 0, 0, 0, 0, 0, 0, 0.7, 0.65, 0, 0, 0, 0])
    combined = combine_boundary_scores(hard, [gradual], [2])
    # 0.7 at frame 9 compares frames 7..11: it zeroes 0.65 at 10 and the cut at 11 (frames 10, 11),
    # not the cut at 13 (frames 12, 13). Cuts zero no cuts (5 and 6 stay), and 0.6 at 1 (frames
    # -1..3) shares no frame with a larger value.
    assert torch.allclose(combined, torch.tensor([0, 0.6, 0, 0, 0, 0.8, 0.3, 0, 0, 0.7, 0, 0, 0, 0.5, 0]))
    assert torch.equal(combine_boundary_scores(hard, [], []), hard)


def test_lags_are_seconds_turned_into_frames_at_the_video_rate():
    lags = ShotBoundarySelector().lag_seconds
    assert frame_lags(lags, torch.arange(100) / 25.0) == [4, 8, 16, 32]
    assert frame_lags(lags, torch.arange(300) / 10.0) == [2, 3, 6, 13]  # not 3.2 s half-windows at 10 fps
    assert frame_lags(lags, torch.arange(20) / 25.0) == [4, 8]  # only windows that fit (2 d < T)
    assert frame_lags((0.1, 0.12), torch.arange(50) / 10.0) == [1]  # repeats dropped
    assert frame_lags(lags, torch.arange(2) / 25.0) == [] and frame_lags((), torch.arange(50) / 25.0) == []


def test_adaptive_selector_wraps_any_change_selector():
    video = crossing_video()
    base = PixelDiffSelector(p=1)
    selector = AdaptiveSelector(base, window=3)
    assert torch.equal(selector.scores(video, stamps(video)), adaptive_scores(base.scores(video, stamps(video)), 3))
    assert torch.equal(selector.pairwise(video, stamps(video)), base.pairwise(video, stamps(video)))
    assert selector.select(video, stamps(video), 1).tolist() == [55]


def test_selectors_are_built_from_yaml_style_config():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--selector", type=FrameSelector)
    spec = {
        "class_path": "models.change.ShotBoundarySelector",
        "init_args": {"xcorr": {"class_path": "models.xcorr.CrossCorrelationSelector", "init_args": {"size": 48}},
                      "lag_seconds": [0.2, 0.4], "max_residual": 0.4, "min_dip": 0.3},
    }  # fmt: skip
    selector = parser.instantiate_classes(parser.parse_object({"selector": spec})).selector
    assert isinstance(selector, ShotBoundarySelector)
    assert (selector.xcorr.size, selector.lag_seconds, selector.max_residual, selector.min_dip) == (48, (0.2, 0.4), 0.4, 0.3)
    spec = {"class_path": "models.change.AdaptiveSelector",
            "init_args": {"base": {"class_path": "models.selectors.PixelDiffSelector"}, "window": 3}}  # fmt: skip
    selector = parser.instantiate_classes(parser.parse_object({"selector": spec})).selector
    assert isinstance(selector.base, PixelDiffSelector) and selector.window == 3


def test_short_videos_and_baseline_names():
    from trainer.cli_helpers import build_selector

    for name, cls in (("xcorr_adaptive", AdaptiveSelector), ("shot_boundary", ShotBoundarySelector)):
        selector = build_selector(name, None)
        assert isinstance(selector, cls)
        for num_frames in (1, 2, 7):  # shorter than the lags
            video = crossing_video(num_frames=num_frames, crossing=(99, 99), cut=99)
            scores = selector.scores(video, stamps(video))
            assert scores.shape == (num_frames,) and torch.isfinite(scores).all()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: AdaptiveSelector(PixelDiffSelector(), window=0), "window"),
        (lambda: AdaptiveSelector(PixelDiffSelector(), mode="mean"), "mode"),
        (lambda: AdaptiveSelector(PixelDiffSelector(), mode="ratio", floor=0.0), "floor"),
        (lambda: AdaptiveSelector("xcorr"), "base must be a FrameSelector"),
        (lambda: ShotBoundarySelector(lag_seconds=(0.3, 0)), "lag"),
        (lambda: ShotBoundarySelector(lag_seconds=(0.3, 0.3)), "distinct"),
        (lambda: ShotBoundarySelector(lag_seconds=("1",)), "lag"),
        (lambda: ShotBoundarySelector(min_dip=0.0), "min_dip"),
        (lambda: frame_lags((0.2,), torch.zeros(5)), "timestamps must increase"),
        (lambda: ShotBoundarySelector().components(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(3)), "timestamps"),
        (lambda: dissolve_fit(torch.zeros(4, 6), torch.ones(3), [1]), "brightness"),
        (lambda: ShotBoundarySelector(window=1.5), "window"),
        (lambda: ShotBoundarySelector(max_residual=0.0), "max_residual"),
        (lambda: ShotBoundarySelector(max_residual=1.5), "max_residual"),
        (lambda: ShotBoundarySelector(fit_size=0), "fit_size"),
        (lambda: ShotBoundarySelector(xcorr=PixelDiffSelector()), "CrossCorrelationSelector"),
        (lambda: offset_diffs(torch.randn(4, 8, 8), []), "offsets"),
        (lambda: offset_diffs(torch.randn(4, 8, 8), [0]), "offsets"),
        (lambda: adaptive_scores(torch.zeros(2, 3)), r"\(T,\)"),
        (lambda: dissolve_features(torch.zeros(2, 1, 8, 8, dtype=torch.uint8)), "RGB"),
        (lambda: dissolve_features(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), chunk=0), "chunk"),
    ],
)
def test_bad_arguments_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
