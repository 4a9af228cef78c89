"""The real-footage benchmark videos: shot list, plan, rendered transitions, ground truth, cache."""

import dataclasses
import json

import numpy as np
import pytest
from helpers import footage_installed, tiny_footage_config

from data.decode import decode_video
from data.footage import (
    INSTALL_HINT,
    KINDS,
    SOURCES,
    FootageConfig,
    FootageMismatchError,
    MissingFootageError,
    fit_frames,
    generate_footage,
    plan_videos,
    read_frames,
    source_path,
    transition_weights,
)

TINY = tiny_footage_config()
# Mean absolute error (0-255 levels) that H.264 at crf 12 leaves on these small frames.
CODEC_ERROR = 4.0


needs_sources = pytest.mark.skipif(not footage_installed(), reason=f"footage packages missing: {INSTALL_HINT}")


def test_shot_lists_are_ordered_ranges_inside_their_clips():
    for clip in SOURCES:
        assert clip.shots, clip.name
        previous_last = -1
        for shot in clip.shots:
            assert previous_last < shot.first <= shot.last < clip.num_frames, (clip.name, shot)
            previous_last = shot.last
        assert len(clip.sha256) == 64 and int(clip.sha256, 16) >= 0
    assert sum(len(c.shots) for c in SOURCES) >= 40


def test_transition_weights():
    w_a, w_b = transition_weights("cross-fade", 5)
    np.testing.assert_allclose(w_a + w_b, 1.0)
    assert w_a[2] == w_b[2] == 0.5 and np.all(np.diff(w_b) > 0)
    w_a, w_b = transition_weights("fade-to-black", 5)
    np.testing.assert_allclose(w_a, [2 / 3, 1 / 3, 0, 0, 0])
    np.testing.assert_allclose(w_b, [0, 0, 0, 1 / 3, 2 / 3])
    assert transition_weights("cut", 0)[0].size == 0
    with pytest.raises(ValueError, match="unknown transition"):
        transition_weights("wipe", 5)
    with pytest.raises(ValueError, match="a cut has 0 frames"):
        transition_weights("cut", 3)


def test_plan_is_deterministic_and_keeps_to_its_rules():
    cfg = FootageConfig(num_videos=3, segments_per_video=10, seed=5)
    plans = plan_videos(cfg)
    assert plans == plan_videos(cfg)
    assert plans != plan_videos(dataclasses.replace(cfg, seed=6))
    by_name = {clip.name: clip for clip in SOURCES}
    kinds = [t.kind for p in plans for t in p.transitions]
    # Whole cycles of 4 cuts, 4 cross-fades and 3 fades to black: 27 joins = 2 cycles and 5 more.
    assert len(kinds) == 27 and kinds.count("cross-fade") >= 8 and kinds.count("fade-to-black") >= 6
    for plan in plans:
        for s, seg in enumerate(plan.segments):
            shot = by_name[seg.source].shots[seg.shot]
            ratio = by_name[seg.source].fps / cfg.fps
            assert shot.first + cfg.margin <= seg.first
            assert seg.source_frame(seg.num_frames - 1, ratio) <= shot.last - cfg.margin
            if s:
                assert (seg.source, seg.shot) != (plan.segments[s - 1].source, plan.segments[s - 1].shot)
        # Between two transitions there are at least min_pure seconds of one shot.
        edges = [(t.start_frame, t.start_frame + t.num_frames) for t in plan.transitions]
        for (_, end), (start, _) in zip(edges, edges[1:]):
            assert start - end >= cfg.min_pure * cfg.fps
    # The bikes shots with vehicles and pedestrians close to the camera are in the default footage.
    default = plan_videos(FootageConfig())
    assert {("bikes", 2), ("bikes", 4)} <= {(s.source, s.shot) for p in default for s in p.segments}


def test_config_errors_name_the_setting():
    with pytest.raises(ValueError, match="segments_per_video"):
        FootageConfig(segments_per_video=1)
    with pytest.raises(ValueError, match="at least one frame"):
        FootageConfig(cross_fades=(0.01,))
    with pytest.raises(ValueError, match="no shot is long enough"):
        plan_videos(FootageConfig(cross_fades=(30.0,)))


def test_missing_package_and_changed_file_are_clear_errors():
    missing = dataclasses.replace(SOURCES[0], distribution="no-such-distribution-frame-selectors")
    with pytest.raises(MissingFootageError, match=r"pip install -e '\.\[bench\]'"):
        source_path(missing)
    if not footage_installed():
        pytest.skip(f"footage packages missing: {INSTALL_HINT}")
    changed = dataclasses.replace(SOURCES[0], sha256="0" * 64)
    with pytest.raises(FootageMismatchError, match="sha256"):
        source_path(changed)
    assert source_path(SOURCES[0]).name == "bikes.mp4"


@pytest.fixture(scope="module")
def tiny_footage(tmp_path_factory):
    if not footage_installed():
        pytest.skip(f"footage packages missing: {INSTALL_HINT}")
    root = tmp_path_factory.mktemp("footage")
    return root, generate_footage(TINY, root=root, progress=False)


def _shown(segment: dict, k: int) -> np.ndarray:
    """Source frame ``k`` output frames into ``segment``, cropped and resized as the generator does."""
    clip = next(c for c in SOURCES if c.name == segment["source"])
    index = segment["source_first"] + int(np.floor(k * clip.fps / TINY.fps + 1e-9))
    raw = read_frames(source_path(clip, verify=False), [index])[index]
    return fit_frames(raw[None], TINY.width, TINY.height, clip.picture)[0].astype(np.float32)


@needs_sources
def test_generated_video_shows_the_planned_transitions(tiny_footage):
    _, videos = tiny_footage
    (video,) = videos
    decoded = decode_video(video.path)
    frames = decoded.frames.permute(0, 2, 3, 1).numpy().astype(np.float32)
    assert len(decoded) == video.num_frames
    assert sorted(video.kinds) == sorted(KINDS)
    segments = video.segments
    for j, t in enumerate(video.transitions):
        a, b = segments[j], segments[j + 1]
        start, end = t["start_frame"], t["end_frame"]
        n = end - start
        b_first = _shown(b, n)  # B's first frame that no transition touches
        a_last = _shown(a, a["num_frames"] - n - 1)  # A's last frame that no transition touches
        # Ground-truth times are the decoded timestamps of those frames.
        assert decoded.timestamps[start].item() == pytest.approx(t["start"], abs=1e-3)
        assert t["end"] == pytest.approx(t["start"] + t["length"], abs=1e-9)
        if t["kind"] == "cut":
            assert n == 0
        else:
            assert n == 5
            # The middle frame mixes the frames A and B show at that time, half and half
            # (cross-fade) or not at all (fade to black).
            a_mid, b_mid = _shown(a, a["num_frames"] - n + 2), _shown(b, 2)
            expected = 0.5 * a_mid + 0.5 * b_mid if t["kind"] == "cross-fade" else np.zeros_like(a_mid)
            assert np.abs(frames[start + 2] - expected).mean() < CODEC_ERROR, t["kind"]
        assert np.abs(frames[start - 1] - a_last).mean() < CODEC_ERROR, t["kind"]  # the last frame wholly of A
        assert np.abs(frames[end] - b_first).mean() < CODEC_ERROR, t["kind"]  # the first frame wholly of B
        assert np.abs(b_first - a_last).mean() > 5 * CODEC_ERROR  # a real change, so the test can fail


@needs_sources
def test_ground_truth_files_and_cache(tiny_footage):
    root, videos = tiny_footage
    folder = root / TINY.fingerprint()
    truth = json.loads((folder / "footage_000.json").read_text())
    assert truth["num_frames"] == videos[0].num_frames and truth["fps"] == 25.0
    assert [t["kind"] for t in truth["transitions"]] == videos[0].kinds
    mtime = videos[0].path.stat().st_mtime_ns
    again = generate_footage(TINY, root=root, progress=False)  # read from the cache, not rewritten
    assert again[0].path.stat().st_mtime_ns == mtime
    assert again[0].transitions == videos[0].transitions
    assert TINY.fingerprint() != dataclasses.replace(TINY, seed=4).fingerprint()


@needs_sources
def test_read_frames_numbers_frames_like_decode_video_and_names_missing_ones():
    clip = next(c for c in SOURCES if c.name == "carphone")
    path = source_path(clip)
    frames = read_frames(path, [0, 119])
    decoded = decode_video(path).frames
    assert len(decoded) == clip.num_frames
    np.testing.assert_array_equal(frames[119], decoded[119].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match=r"has no frames \[120\] \(it holds 120\)"):
        read_frames(path, [5, 120])
