"""The widened synthetic generator: defaults unchanged bit for bit, every new knob renders and validates."""

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from helpers import color_mask

import data.synthetic as synthetic
from data.decode import decode_video
from data.synthetic import (COLORS, NEW_DISTRACTORS, VERBS, WIDENING_FIELDS, WRITER_VERSION, SyntheticConfig,
                            generate_dataset)  # fmt: skip

ROOT = Path(__file__).parents[1]
# Tiny, short videos with no old distractors: each test switches on what it checks.
TINY = dict(num_videos=1, size=48, fps=8.0, min_duration=4.0, max_duration=4.0, min_events=1, max_events=1,
            min_event_len=1.5, max_event_len=2.0, pan_prob=0.0, flicker_prob=0.0, cut_prob=0.0, seed=5)  # fmt: skip


def _yuv_planes(path) -> list[bytes]:
    """Each decoded frame's YUV planes, as the H.264 decoder gives them (no colour conversion)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray().tobytes() for f in container.decode(video=0)]


def _sha(chunks) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


@pytest.fixture
def rendered(monkeypatch):
    """Frames each generate_video call renders, by video path; encoding is skipped unless ``encode``."""
    frames: dict[str, list[np.ndarray]] = {}
    write = synthetic.write_video

    def capture(path, video, fps):
        frames[Path(path).name] = video
        if capture.encode:
            write(path, video, fps)

    capture.encode = False
    monkeypatch.setattr(synthetic, "write_video", capture)
    return frames, capture


def _render(cfg: SyntheticConfig, tmp_path, rendered, index: int = 0):
    frames, _ = rendered
    sample = synthetic.generate_video(cfg, index, tmp_path)
    return sample, np.stack(frames[Path(sample.video).name]).astype(np.int16)



# Measured on the code before the generator was widened (data/synthetic.py at the commit before
# this file existed, generated twice with equal results): sha256 of the frames passed to
# write_video, of the annotation file, and fingerprint(). The results tables and on-disk caches
# depend on these staying the same. Then, per video, sha256 of the decoded YUV planes and of
# decode_video's RGB frames, measured with write_video's WRITER_VERSION 2 (PyAV 18.1's bundled
# libx264, core 165): these hold on any CPU (the encoder runs CPU-independent code on one thread,
# the H.264 decoder is bit-exact by the standard, data.pixels converts in integers) but not for
# another libx264 build, which may choose other encodings.
BEFORE_WIDENING = {
    "default": (
        dict(num_videos=2, seed=3),
        "ab80c2c7f9",
        "046e6bc9a590b1f70129d1f293c7874235d6d1ee65ebc04a4fbf23057a7629d3",
        "59c68b174ad551b59037459dca65a38c1d62c959a971a5e9a2a2eac810cc1ddb",
        [("b7339f9214422dcd5b3eecaab9f76263e7757714ee2e66deced43f9819070a97",
          "b8de401749ae2649f1f328e371f54dcdac8b14de381ec7d22cf1cede900d4e9b"),
         ("56e4e40fb2f6b11fdcfc25a5b91efe19416c38edb8a1acb7bd7c11ed6f43af3b",
          "77f5abec74926f2dae17a70287e413821ed7b2019b6115acbbf0bc1c1662642c")],
    ),
    "small, every old distractor": (
        dict(num_videos=2, seed=3, size=48, fps=6, pan_prob=1, flicker_prob=1, cut_prob=1),
        "481a830d6a",
        "024318cebf066de520583e90bef6e71653c0e3fdfb574e284f389672e731a0a7",
        "9716542a8da1d1b454e982cc967f1805a340956ca921d9f70e97d24cffd74bbb",
        [("2cad9eeece5f733875c704570481daf2def30669c5a069cab6589f579749cfcb",
          "feab5e9af5a59c1e94267498411312adb3d382e31ba959eba5b1f515e73ffc72"),
         ("7cc945ae92d01cbee82c9fcc9160ed4f07bd6c0547377905f3286085e2152089",
          "f105c8ec1b8b9d64abf8d7be47a7a850472d8111e7a1da44d0d6aa9013f17cd8")],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", BEFORE_WIDENING)
def test_default_settings_reproduce_the_generator_before_widening(name, tmp_path, rendered):
    kwargs, fingerprint, annotations, frames_sha, decoded_sha = BEFORE_WIDENING[name]
    frames, capture = rendered
    capture.encode = True
    cfg = SyntheticConfig(**kwargs)
    assert cfg.fingerprint() == fingerprint
    paths = generate_dataset(tmp_path, cfg, splits={"train": 1.0}, progress=False)
    assert hashlib.sha256(paths["train"].read_bytes()).hexdigest() == annotations
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert _sha(f.tobytes() for v in videos for f in frames[v.name]) == frames_sha
    decoded = [(_sha(_yuv_planes(v)), _sha([decode_video(v).frames.numpy().tobytes()])) for v in videos]
    assert decoded == decoded_sha


def test_fingerprint_and_cache_ignore_new_fields_at_their_defaults(tmp_path):
    old = SyntheticConfig(num_videos=2, seed=3)
    # The same defaults as YAML would give them: lists and ints.
    spelled = SyntheticConfig(num_videos=2, seed=3, distractor_strength=[1, 1], radius_range=[0.11, 0.15],
                              event_kinds=["move"], occluder_prob=0, long_duration=[60, 120])  # fmt: skip
    assert spelled.fingerprint() == old.fingerprint() == "ab80c2c7f9"
    changes = [dict(occluder_prob=0.5), dict(distractor_strength=(0.5, 2.0)), dict(sizes=[96]),
               dict(event_kinds=["move", "blink"]), dict(fps_choices=[8.0]), dict(long_video_prob=0.1)]  # fmt: skip
    for change in changes:
        assert SyntheticConfig(num_videos=2, seed=3, **change).fingerprint() != old.fingerprint(), change
    # A dataset whose done.json was written before the widening (old field names only) is reused.
    legacy = {k: v for k, v in asdict(old).items() if k not in WIDENING_FIELDS}
    splits = {"train": 1.0}
    (tmp_path / "done.json").write_text(json.dumps({"config": legacy, "splits": splits, "writer": WRITER_VERSION}))
    generate_dataset(tmp_path, old, splits=splits, progress=False)
    assert not (tmp_path / "videos").exists()  # nothing regenerated
    # One written by an older write_video (its marker names no writer) is written again.
    (tmp_path / "done.json").write_text(json.dumps({"config": legacy, "splits": splits}))
    generate_dataset(tmp_path, old, splits=splits, progress=False)
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 2
    assert json.loads((tmp_path / "done.json").read_text())["writer"] == WRITER_VERSION


@pytest.mark.parametrize("kind", list(NEW_DISTRACTORS))
def test_each_new_distractor_is_annotated_and_changes_only_its_span(kind, tmp_path, rendered):
    off_sample, off = _render(SyntheticConfig(**TINY), tmp_path, rendered)
    on_sample, on = _render(SyntheticConfig(**TINY, **{f"{kind}_prob": 1.0}), tmp_path, rendered)
    (d,) = on_sample.extra["distractors"]
    assert d["type"] == kind and 0 <= d["start"] < d["end"] <= on_sample.duration
    # Its own random stream: events, textures and noise are those of the video without it.
    assert on_sample.events == off_sample.events
    t = np.arange(len(on)) / 8.0
    change = np.abs(on - off).mean(axis=(1, 2, 3))
    before, inside, after = t < d["start"], (t > d["start"]) & (t < d["end"]), t > d["end"]
    assert change[before].max(initial=0) == 0
    assert change[inside].max() > 1, change  # a grey level on average over the frame
    if kind in ("occluder", "fade", "shake", "drift"):  # over when the span ends (zoom and dissolve stay)
        assert change[after].max(initial=0) == 0
    if kind == "fade":  # between events: no shape fades out
        for e in on_sample.events:
            assert d["end"] <= e.start or d["start"] >= e.end


@pytest.mark.parametrize("strength", [1.0, 2.0])
def test_occluder_is_large_grey_and_never_an_event_colour(strength, tmp_path, rendered):
    kw = {**TINY, "distractor_strength": (strength, strength), "flicker_prob": 1.0}
    _, off = _render(SyntheticConfig(**kw), tmp_path, rendered)
    sample, on = _render(SyntheticConfig(**kw, occluder_prob=1.0), tmp_path, rendered)
    (d,) = [d for d in sample.extra["distractors"] if d["type"] == "occluder"]
    painted = np.abs(on - off).max(-1) > 0  # the occluder's pixels (shapes are drawn over it)
    middle = int(round((d["start"] + d["end"]) / 2 * 8))
    assert painted[middle].mean() > 0.15
    saturation = on.max(-1) - on.min(-1)  # grey, up to the sensor noise (std 4 x strength per channel)
    assert np.median(saturation[painted]) < 12 * strength
    for rgb in COLORS.values():
        assert not (color_mask(on, rgb) & painted).any()


@pytest.mark.parametrize("kind", ["move", "static", "blink", "grow"])
def test_each_event_kind_renders_and_is_captioned(kind, tmp_path, rendered):
    frames, capture = rendered
    capture.encode = True
    cfg = SyntheticConfig(**{**TINY, "min_duration": 5.0, "max_duration": 5.0, "max_events": 2}, event_kinds=[kind])
    sample = synthetic.generate_video(cfg, 0, tmp_path)
    video = decode_video(sample.video).frames.permute(0, 2, 3, 1).numpy()
    verbs = {"move": ("moves left", "moves right", "moves up", "moves down"), **{k: (v,) for k, v in VERBS.items()}}
    inside = np.zeros(len(video), bool)
    for event, (first, last), obj in zip(sample.events, sample.extra["informative_frames"], sample.extra["objects"]):
        assert obj.get("kind", "move") == kind and obj["motion"] in verbs[kind]  # no "kind" at the default
        assert event.caption == f"a {obj['color']} {obj['shape']} {obj['motion']}"
        inside[first : last + 1] = True
        counts = np.array([color_mask(f, COLORS[obj["color"]]).sum() for f in video[first : last + 1]])
        assert counts[0] > 3 and counts[-1] > 10, counts  # on at both ends, blink included
        if kind == "blink":
            assert (counts < 3).any() and (counts > 10).sum() >= 2, counts  # off in between
        else:
            assert counts.min() > 3, counts
        if kind == "grow":
            assert counts[-1] > 3 * counts[0], counts
        if kind == "static":
            ys, xs = zip(*(np.nonzero(color_mask(video[i], COLORS[obj["color"]])) for i in (first, last)))
            assert abs(xs[0].mean() - xs[1].mean()) < 1 and abs(ys[0].mean() - ys[1].mean()) < 1
    for i in np.nonzero(~inside)[0]:
        assert max(color_mask(video[i], c).sum() for c in COLORS.values()) < 3, i


def test_small_radius_range_gives_small_shapes(tmp_path, rendered):
    sample, frames = _render(SyntheticConfig(**TINY, radius_range=(0.04, 0.04), event_kinds=["static"]),
                             tmp_path, rendered)  # fmt: skip
    (first, _), obj = sample.extra["informative_frames"][0], sample.extra["objects"][0]
    area = color_mask(frames[first], COLORS[obj["color"]]).sum()
    assert 0 < area < 20  # a radius of about 2 pixels


def test_sizes_aspect_ratios_and_frame_rates_reach_the_mp4(tmp_path, rendered):
    _, capture = rendered
    capture.encode = True
    cfg = SyntheticConfig(**{**TINY, "num_videos": 6, "min_duration": 3.0, "max_duration": 3.0},
                          sizes=[32, 48], aspect_ratios=[0.75, 1.5], fps_choices=[4.0, 29.97])  # fmt: skip
    seen = set()
    for i in range(cfg.num_videos):
        sample = synthetic.generate_video(cfg, i, tmp_path)
        width, height = sample.extra["frame_size"]
        with av.open(sample.video) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (width, height)
            assert float(stream.average_rate) == pytest.approx(sample.fps, abs=1e-9)
            tick = float(stream.time_base)
            stamps = [float(f.pts * stream.time_base) for f in container.decode(stream)]
        assert min(width, height) in (32, 48)
        assert width / height == pytest.approx(1.5 if width > height else 0.75, abs=0.05)
        assert len(stamps) == round(sample.duration * sample.fps)
        # True timestamps, also at 29.97 fps (written as 30 fps before the widening).
        assert np.abs(np.array(stamps) - np.arange(len(stamps)) / sample.fps).max() <= tick
        seen.add((sample.fps, min(width, height), width > height))
    assert {fps for fps, _, _ in seen} == {4.0, 29.97} and len(seen) >= 4


def test_long_videos_hold_proportionally_more_events(tmp_path, rendered):
    base = {**TINY, "num_videos": 6, "min_events": 1, "max_events": 2, "max_event_len": 1.5, "fps": 4.0, "size": 32}
    cfg = SyntheticConfig(**base, long_video_prob=1.0, long_duration=(20.0, 24.0))
    counts = []
    for i in range(cfg.num_videos):
        sample, frames = _render(cfg, tmp_path, rendered, i)
        assert 20.0 - 0.25 <= sample.duration <= 24.0 and len(frames) == round(sample.duration * 4)
        n = len(sample.events)
        assert 1 <= n <= int(2 * sample.duration / 4.0)
        ends = [0.0] + [x for e in sample.events for x in (e.start, e.end)] + [sample.duration]
        assert all(a <= b for a, b in zip(ends, ends[1:])), ends  # in order, no overlap, inside
        counts.append(n)
    assert max(counts) > 2, counts  # more than a short video can hold
    short = SyntheticConfig(**base)
    assert all(len(_render(short, tmp_path, rendered, i)[0].events) <= 2 for i in range(3))


def test_everything_at_once_at_extreme_strength(tmp_path, rendered):
    """Zoom out, shake and pan at double strength on tall and wide frames stay inside the texture."""
    kinds = {f"{k}_prob": 1.0 for k in ("pan", "flicker", "cut", *NEW_DISTRACTORS)}
    cfg = SyntheticConfig(**{**TINY, **kinds, "num_videos": 4}, distractor_strength=(2.0, 2.0),
                          aspect_ratios=[0.5, 2.0], event_kinds=list(synthetic.EVENT_KINDS))  # fmt: skip
    for i in range(cfg.num_videos):
        sample, frames = _render(cfg, tmp_path, rendered, i)
        assert frames.shape[1:3] == tuple(sample.extra["frame_size"][::-1])
        assert len(sample.extra["distractors"]) == 9


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(event_kinds=["move", "spin"]), r"event_kinds must be a non-empty list of \['move', 'static', 'blink'"),
        (dict(event_kinds=[]), "event_kinds must be a non-empty list"),
        (dict(occluder_prob=1.5), r"occluder_prob must be a probability in \[0, 1\], got 1.5"),
        (dict(pan_prob=-0.1), r"pan_prob must be a probability in \[0, 1\]"),
        (dict(long_video_prob=2), r"long_video_prob must be a probability in \[0, 1\]"),
        (dict(distractor_strength=(2.0, 0.5)), r"distractor_strength must be \[low, high\] with 0 <= low <= high"),
        (dict(distractor_strength=(1.0,)), r"distractor_strength must be \[low, high\]"),
        (dict(radius_range=(0.1, 0.4)), r"radius_range must be \[low, high\] with 0.02 <= low <= high <= 0.2"),
        (dict(long_video_prob=0.5, long_duration=(5.0, 8.0)), "long_duration must start at or above min_duration"),
        (dict(long_duration=(9.0, 8.0)), r"long_duration must be \[low, high\]"),
        (dict(sizes=[]), "sizes must be null or a non-empty list of int"),
        (dict(sizes=[16]), r"sizes must be null or a non-empty list of int in \[32, inf\]"),
        (dict(aspect_ratios=[0.1]), r"aspect_ratios must be null or a non-empty list of float in \[0.25, 4\]"),
        (dict(fps_choices=[0.0]), r"fps_choices must be null or a non-empty list of float in \[1, 120\]"),
    ],
)  # fmt: skip
def test_bad_settings_fail_naming_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**change)


def test_new_fields_parse_from_yaml_and_the_command_line(capsys):
    """LightningCLI/jsonargparse types: lists and tuples from YAML and from ``--data.synthetic.*``."""
    from jsonargparse import ArgumentParser

    from data.datamodule import DenseCaptionDataModule
    from trainer.__main__ import main

    values = {"distractor_strength": [0.5, 2.0], "event_kinds": ["move", "blink"], "radius_range": [0.05, 0.12],
              "sizes": [64, 96], "aspect_ratios": [1.0, 1.78], "fps_choices": [8, 29.97], "occluder_prob": 0.5,
              "long_video_prob": 0.1, "long_duration": [40, 60]}  # fmt: skip
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(DenseCaptionDataModule, "data")
    parsed = parser.parse_string(yaml.safe_dump({"data": {"synthetic": values}}))
    data = parser.instantiate_classes(parsed).data
    cfg = data.synthetic
    assert isinstance(cfg, SyntheticConfig)
    assert cfg.distractor_strength == (0.5, 2.0) and cfg.radius_range == (0.05, 0.12)
    assert cfg.long_duration == (40.0, 60.0) and cfg.fps_choices == [8.0, 29.97]
    assert (cfg.event_kinds, cfg.sizes, cfg.aspect_ratios) == (["move", "blink"], [64, 96], [1.0, 1.78])
    assert data.synthetic_root().name == f"synthetic-{cfg.fingerprint()}"

    # The same through `python -m trainer` on top of configs/smoke.yaml, from the command line.
    flags = ["--data.synthetic.event_kinds=[move,blink]", "--data.synthetic.distractor_strength=[0.5,2.0]",
             "--data.synthetic.sizes=[64,96]", "--data.synthetic.fps_choices=[8,29.97]",
             "--data.synthetic.zoom_prob=0.25"]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(ROOT / "configs" / "smoke.yaml"), *flags, "--print_config"])
    assert info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)["data"]["synthetic"]
    assert printed["event_kinds"] == ["move", "blink"] and printed["distractor_strength"] == [0.5, 2.0]
    assert printed["sizes"] == [64, 96] and printed["fps_choices"] == [8.0, 29.97] and printed["zoom_prob"] == 0.25
    assert printed["num_videos"] == 32  # smoke.yaml's own values stay


def test_the_held_out_family_shares_no_distractor_or_event_kind_with_the_training_family(tiny_model_dir):
    """`evaluate --data.synthetic configs/parts/synthetic_heldout.yaml` on a wide_budget run sees that family only."""
    from trainer.__main__ import main

    root = Path(__file__).resolve().parents[1] / "configs"
    heldout = SyntheticConfig(**yaml.safe_load((root / "parts" / "synthetic_heldout.yaml").read_text()))
    wide = SyntheticConfig(**yaml.safe_load((root / "parts" / "synthetic_wide.yaml").read_text()))
    encoder = ["--model.init_args.encoder.init_args.model_name_or_path", str(tiny_model_dir)]
    trained = main(["--config", str(root / "wide_budget.yaml"), *encoder], run=False).datamodule.synthetic
    overlaid = main(["--config", str(root / "wide_budget.yaml"), *encoder,
                     "--data.synthetic", str(root / "parts" / "synthetic_heldout.yaml")], run=False).datamodule.synthetic  # fmt: skip
    # A part given on top of a config is merged over its values: every field must come from the part.
    assert asdict(trained) == asdict(wide) and asdict(overlaid) == asdict(heldout)

    def kinds(cfg):
        return {k[: -len("_prob")] for k, v in asdict(cfg).items() if k.endswith("_prob") and k != "long_video_prob" and v > 0}

    assert kinds(wide) and kinds(heldout) and not kinds(wide) & kinds(heldout)
    assert not set(wide.event_kinds) & set(heldout.event_kinds)
    assert set(heldout.fps_choices) - set(wide.fps_choices) and heldout.aspect_ratios and not wide.aspect_ratios
