"""Real dataset formats (ActivityNet Captions, YouCook2, Hugging Face datasets) mapped to VideoSample.

Every source here is a small annotation file or dataset written to a tmp dir whose videos are
links to the synthetic fixture's real MP4s, laid out the way each dataset ships them.
"""

import inspect
import json
import re
import textwrap
from pathlib import Path

import datasets
import pytest
import yaml

import data.sources
from data.datamodule import DenseCaptionDataModule
from data.schema import AnnotationError, load_annotations
from data.sources import (
    iter_hf_samples,
    load_activitynet,
    load_hf_dataset,
    load_youcook2,
)
from trainer.__main__ import main

datasets.disable_progress_bars()

EXTENSIONS = (".mp4", ".mkv", ".webm")  # cycled over videos, so lookups must try all three


def source_rows(synthetic, split=None):
    """The fixture's videos as plain rows: id, real video file, duration, events."""
    _, paths, _ = synthetic
    splits = [split] if split else list(paths)
    return [
        {"id": s.video_id, "video": Path(s.video), "duration": s.duration,
         "events": [(e.start, e.end, e.caption) for e in s.events]}
        for name in splits for s in load_annotations(paths[name])
    ]  # fmt: skip


def link(target: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def assert_matches(samples, rows):
    """Samples carry exactly the rows' ids, durations and events (events sorted by start)."""
    assert [s.video_id for s in samples] == [r["id"] for r in rows]
    for sample, row in zip(samples, rows):
        assert Path(sample.video).is_file() and sample.duration == pytest.approx(row["duration"])
        expected = sorted(row["events"])
        assert [e.caption for e in sample.events] == [c for _, _, c in expected]
        times = [t for e in sample.events for t in (e.start, e.end)]
        assert times == pytest.approx([t for s, e, _ in expected for t in (s, e)])


# ----------------------------------------------------------------------------- source writers
# Each writes rows in one format under `folder` and returns (loader, annotation path); a row whose
# "video" is None gets no file, i.e. a missing video.


def write_activitynet(folder: Path, rows, prefix_ids: bool = False, name: str = "train.json"):
    """Official form: keys only (no "video"), files named <id> or <id without v_> + some extension."""
    videos = folder / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    entries = {}
    for i, row in enumerate(rows):
        key = f"v_{row['id']}" if prefix_ids else row["id"]
        if row["video"] is not None:
            link(row["video"], videos / f"{row['id']}{EXTENSIONS[i % 3]}")
        entries[key] = {
            "duration": row["duration"],
            "timestamps": [[s, e] for s, e, _ in row["events"]],
            "sentences": [c for _, _, c in row["events"]],
        }
    path = folder / name
    path.write_text(json.dumps(entries))
    return (lambda **kw: load_activitynet(path, videos, **kw)), path


def youcook2_entry(row, subset: str, recipe: str):
    return {
        "duration": row["duration"],
        "subset": subset,
        "recipe_type": recipe,
        "annotations": [{"segment": [s, e], "sentence": c, "id": j} for j, (s, e, c) in enumerate(row["events"])],
        "video_url": f"https://www.youtube.com/watch?v={row['id']}",
    }


def write_youcook2(folder: Path, rows, subsets=None):
    """raw_videos/<subset>/<recipe_type>/<id>.<ext> for most videos, flat raw_videos/<id>.<ext> for every third."""
    root = folder / "raw_videos"
    database = {}
    for i, row in enumerate(rows):
        subset, recipe = (subsets[i] if subsets else "training"), f"{101 + i % 2}"
        if row["video"] is not None:
            nested = root / subset / recipe if i % 3 else root
            link(row["video"], nested / f"{row['id']}{EXTENSIONS[i % 3]}")
        database[row["id"]] = youcook2_entry(row, subset, recipe)
    path = folder / "youcookii_annotations_trainval.json"
    path.write_text(json.dumps({"version": "1.1", "database": database}))
    return (lambda subset="training", **kw: load_youcook2(path, root, subset=subset, **kw)), path


def hf_parallel_row(row):
    """HuggingFaceM4/ActivitiyNet_Captions's columns: the video is found by id under video_root."""
    return {
        "video_id": row["id"],
        "duration": row["duration"],
        "captions_starts": [s for s, _, _ in row["events"]],
        "captions_ends": [e for _, e, _ in row["events"]],
        "en_captions": [c for _, _, c in row["events"]],
    }


HF_PARALLEL = dict(
    video_column="video_id", id_column="video_id", start_column="captions_starts",
    end_column="captions_ends", caption_column="en_captions",
)  # fmt: skip


def write_hf_disk(folder: Path, rows):
    """A DatasetDict saved with save_to_disk, parallel list columns, videos named by id."""
    videos = folder / "videos"
    for i, row in enumerate(rows):
        if row["video"] is not None:
            link(row["video"], videos / f"{row['id']}{EXTENSIONS[i % 3]}")
    path = folder / "dataset"
    split = datasets.Dataset.from_list([hf_parallel_row(r) for r in rows])
    datasets.DatasetDict({"validation": split}).save_to_disk(str(path))
    return (lambda **kw: load_hf_dataset(path, "validation", video_root=videos, **HF_PARALLEL, **kw)), path


def write_hf_jsonl(folder: Path, rows, streaming: bool = False):
    """JSON lines with an events column and video paths relative to the file's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for row in rows:
        if row["video"] is not None:
            link(row["video"], folder / "clips" / f"{row['id']}.mp4")
        events = [{"start": s, "end": e, "caption": c} for s, e, c in row["events"]]
        lines.append(json.dumps({"video": f"clips/{row['id']}.mp4", "duration": row["duration"], "events": events}))
    path = folder / "val.jsonl"
    path.write_text("\n".join(lines))
    cache = folder / "hf-cache"

    def load(streaming=streaming, **kw):
        return load_hf_dataset(path, "validation", events_column="events", streaming=streaming, cache_dir=cache, **kw)

    return load, path


WRITERS = {
    "activitynet": write_activitynet,
    "youcook2": write_youcook2,
    "hf-disk": write_hf_disk,
    "hf-jsonl": write_hf_jsonl,
    "hf-jsonl-streaming": lambda folder, rows: write_hf_jsonl(folder, rows, streaming=True),
}


# ----------------------------------------------------------------------------- each format


def test_activitynet_resolves_extensions_and_v_prefix(tmp_path, synthetic):
    rows = source_rows(synthetic)
    load, _ = write_activitynet(tmp_path, rows, prefix_ids=True)
    samples, skipped = load()
    assert skipped == []
    # Keys are the official "v_<id>"; the files are "<id>.mp4" / ".mkv" / ".webm".
    assert_matches(samples, [{**r, "id": f"v_{r['id']}"} for r in rows])
    assert [Path(s.video).suffix for s in samples] == [EXTENSIONS[i % 3] for i in range(len(rows))]

    # An entry that names its video keeps it; one whose files all lack gets every candidate listed.
    entries = json.loads((tmp_path / "train.json").read_text())
    entries["v_named"] = {**entries[f"v_{rows[0]['id']}"], "video": str(rows[0]["video"])}
    entries["v_ghost"] = entries.pop(f"v_{rows[1]['id']}")
    (tmp_path / "train.json").write_text(json.dumps(entries))
    with pytest.raises(FileNotFoundError, match=r"train.json\['v_ghost'\]: video file not found") as info:
        load()
    assert all(f"{stem}{ext}" in str(info.value) for stem in ("v_ghost", "/ghost") for ext in EXTENSIONS)
    samples, skipped = load(skip_bad_samples=True)
    assert [vid for vid, _ in skipped] == ["v_ghost"]
    assert next(s for s in samples if s.video_id == "v_named").video == str(rows[0]["video"])


def test_youcook2_official_layout_and_subset_filtering(tmp_path, synthetic):
    rows = source_rows(synthetic)
    subsets = ["training", "validation"] * 3
    load, path = write_youcook2(tmp_path, rows, subsets)
    for subset in ("training", "validation"):
        samples, skipped = load(subset)
        wanted = [r for r, s in zip(rows, subsets) if s == subset]
        assert skipped == [] and len(wanted) == 3
        assert_matches(samples, wanted)
        assert all(s.extra["subset"] == subset and s.extra["recipe_type"] in ("101", "102") for s in samples)
    # Both layouts were used: nested <subset>/<recipe_type>/ and flat in the root.
    found = {Path(s.video).parent.name for subset in ("training", "validation") for s in load(subset)[0]}
    assert found == {"raw_videos", "101", "102"}
    with pytest.raises(AnnotationError, match=r"no video has subset 'train'; the file has \['training', 'valid"):
        load("train")
    path.write_text(json.dumps({"v1": {}}))
    with pytest.raises(AnnotationError, match="'database' object"):
        load()


def test_hf_saved_dataset_with_parallel_list_columns(tmp_path, synthetic):
    rows = source_rows(synthetic)
    load, path = write_hf_disk(tmp_path, rows)
    samples, skipped = load()
    assert skipped == []
    assert_matches(samples, rows)
    # Streaming a saved dataset reads the same rows lazily.
    assert load(streaming=True)[0] == samples
    with pytest.raises(AnnotationError, match=r"no split 'train'; it has \['validation'\]"):
        load_hf_dataset(path, "train", **HF_PARALLEL)
    with pytest.raises(AnnotationError, match=r"missing column\(s\) \['sentences'\]; the dataset has"):
        load_hf_dataset(path, "validation", **{**HF_PARALLEL, "caption_column": "sentences"})


def test_hf_json_lines_events_column_eager_and_streaming(tmp_path, synthetic):
    rows = source_rows(synthetic)
    load, path = write_hf_jsonl(tmp_path, rows)
    samples, skipped = load()
    assert skipped == []
    assert_matches(samples, rows)  # ids default to the video file name
    streamed, skipped = load(streaming=True)
    assert streamed == samples and skipped == []
    # The generator form reads one row at a time.
    rows_read = iter_hf_samples(path, "validation", events_column="events", streaming=True, cache_dir=tmp_path / "c")
    assert inspect.isgenerator(rows_read)
    assert next(rows_read) == samples[0]


# ----------------------------------------------------------------------------- bad rows


def bad_rows(synthetic):
    """One good row, then one row per kind of bad input (named by id)."""
    good, *others = source_rows(synthetic, "train")
    base = others[0]
    s, e, c = base["events"][0]
    return good, {
        "end_before_start": ({**base, "id": "end_before_start", "events": [(e, s, c)]}, r"events\[0\]: end=.* < start"),
        "empty_caption": ({**base, "id": "empty_caption", "events": [(s, e, "  ")]}, r"events\[0\]: caption is empty"),
        "missing_video": ({**base, "id": "missing_video", "video": None}, "video file not found"),
        "past_duration": (
            {**base, "id": "past_duration", "events": [(s, base["duration"] + 3, c)]},
            r"events\[0\]: end=.* is beyond the video duration",
        ),
        "zero_duration": ({**base, "id": "zero_duration", "duration": 0.0}, "'duration' must be a positive number"),
    }


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_bad_rows_are_skipped_with_reasons(tmp_path, synthetic, fmt):
    good, bad = bad_rows(synthetic)
    load, _ = WRITERS[fmt](tmp_path, [good, *(row for row, _ in bad.values())])
    samples, skipped = load(skip_bad_samples=True)
    assert_matches(samples, [good])
    assert [vid for vid, _ in skipped] == list(bad)
    for (vid, reason), (_, pattern) in zip(skipped, bad.values()):
        assert re.search(pattern, reason), (vid, reason)
        assert vid in reason  # the reason names the row


BAD_KINDS = ["end_before_start", "empty_caption", "missing_video", "past_duration", "zero_duration"]


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("fmt", list(WRITERS))
def test_bad_row_raises_naming_file_row_and_field_without_skipping(tmp_path, synthetic, fmt, kind):
    good, bad = bad_rows(synthetic)
    row, pattern = bad[kind]
    load, path = WRITERS[fmt](tmp_path, [good, row])
    error = FileNotFoundError if kind == "missing_video" else AnnotationError
    with pytest.raises(error, match=pattern) as info:
        load()
    assert path.name in str(info.value) and kind in str(info.value)


def test_hf_rows_with_unpaired_or_non_numeric_events_name_the_field(tmp_path, synthetic):
    good = source_rows(synthetic, "train")[0]
    load, path = write_hf_jsonl(tmp_path, [good])
    entry = json.loads(path.read_text())
    path.write_text(json.dumps({**entry, "events": [{"start": "soon", "end": 2.0, "caption": "x"}]}))
    with pytest.raises(AnnotationError, match=r"row 0 .*events\[0\]: 'start' must be a number, got 'soon'"):
        load()
    parallel = {**hf_parallel_row(good), "en_captions": ["only one"]}  # two starts and ends
    (tmp_path / "p.jsonl").write_text(json.dumps(parallel))
    with pytest.raises(AnnotationError, match=r"'captions_ends' and 1 'en_captions' entries; they must pair up"):
        load_hf_dataset(tmp_path / "p.jsonl", **HF_PARALLEL, video_root=tmp_path, cache_dir=tmp_path / "c")


# ----------------------------------------------------------------------------- data module


def write_for_datamodule(fmt, folder: Path, synthetic):
    """(data-module kwargs, rows per split) for train+val sources in one format."""
    train, val = source_rows(synthetic, "train"), source_rows(synthetic, "val")
    if fmt == "activitynet":
        _, train_file = write_activitynet(folder, train)
        _, val_file = write_activitynet(folder, val, name="val_1.json")
        return dict(train_file=str(train_file), val_file=str(val_file), video_root=str(folder / "videos")), train, val
    if fmt == "youcook2":
        _, path = write_youcook2(folder, train + val, ["training"] * len(train) + ["validation"] * len(val))
        return dict(train_file=str(path), val_file=str(path), video_root=str(folder / "raw_videos")), train, val
    videos = folder / "videos"
    for i, row in enumerate(train + val):
        link(row["video"], videos / f"{row['id']}{EXTENSIONS[i % 3]}")
    splits = {"train": [hf_parallel_row(r) for r in train], "dev": [hf_parallel_row(r) for r in val]}
    datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(folder / "ds")
    return dict(
        train_file=str(folder / "ds"), val_file=str(folder / "ds"), video_root=str(videos),
        hf_columns=data.sources.HFColumns(**HF_PARALLEL), hf_splits={"val": "dev"},
    ), train, val  # fmt: skip


@pytest.mark.parametrize("fmt", ["activitynet", "youcook2", "hf"])
def test_datamodule_batches_carry_the_source_events(tmp_path, synthetic, fmt):
    kwargs, train, val = write_for_datamodule(fmt, tmp_path, synthetic)
    dm = DenseCaptionDataModule(annotation_format=fmt, fps=2.0, frame_size=32, batch_size=2, **kwargs)
    dm.setup("fit")
    assert dm.skipped == []
    for loader, rows in ((dm.train_dataloader(), train), (dm.val_dataloader(), val)):
        seen = {}
        for batch in loader:
            for vid, events, frames in zip(batch["video_id"], batch["events"], batch["frames"]):
                assert frames.shape[0] > 0  # the linked file really decodes, whatever its extension
                seen[vid] = [(e["start"], e["end"], e["caption"]) for e in events]
        assert seen == {r["id"]: sorted(r["events"]) for r in rows}


def test_datamodule_skips_bad_rows_with_a_record_or_fails_fast(tmp_path, synthetic):
    good, bad = bad_rows(synthetic)
    _, path = write_youcook2(tmp_path, [good, bad["end_before_start"][0], bad["missing_video"][0]])
    kwargs = dict(train_file=str(path), video_root=str(tmp_path / "raw_videos"), annotation_format="youcook2")
    dm = DenseCaptionDataModule(**kwargs)
    dm.setup("fit")
    assert [s.video_id for s in dm.datasets["train"].samples] == [good["id"]]
    assert [vid for vid, _ in dm.skipped] == ["end_before_start", "missing_video"]
    with pytest.raises(AnnotationError, match="end_before_start"):
        DenseCaptionDataModule(**kwargs, skip_bad_samples=False).setup("fit")
    with pytest.raises(ValueError, match="annotation_format must be one of"):
        DenseCaptionDataModule(annotation_format="youcook")


def docstring_yaml_examples():
    """The ``data:`` config snippets in data.sources' module docstring, dedented."""
    blocks = re.findall(r"::\n\n((?:    .*\n|\n)+)", data.sources.__doc__)
    return [yaml.safe_load(textwrap.dedent(b)) for b in blocks]


def test_docstring_config_snippets_parse_with_the_cli(tmp_path, capsys):
    examples = docstring_yaml_examples()
    assert [e["data"]["annotation_format"] for e in examples] == ["activitynet", "youcook2", "hf"]
    smoke = Path(__file__).parents[1] / "configs" / "smoke.yaml"
    for i, example in enumerate(examples):
        snippet = tmp_path / f"data{i}.yaml"
        snippet.write_text(yaml.safe_dump(example))
        with pytest.raises(SystemExit) as info:
            main(["fit", "--config", str(smoke), "--config", str(snippet), "--print_config"])
        assert info.value.code in (0, None)
        printed = yaml.safe_load(capsys.readouterr().out)["data"]
        for key, value in example["data"].items():
            if isinstance(value, dict):  # hf_columns: the fields not set keep their defaults
                assert {k: printed[key][k] for k in value} == value, key
            else:
                assert printed[key] == value, key


def test_datamodule_without_files_reads_the_synthetic_data_whatever_the_format(tmp_path, synthetic):
    root, paths, cfg = synthetic
    (tmp_path / f"synthetic-{cfg.fingerprint()}").symlink_to(root)  # reuse the fixture's finished dataset
    dm = DenseCaptionDataModule(annotation_format="youcook2", synthetic=cfg, cache_dir=str(tmp_path))
    dm.setup("fit")
    assert [s.video_id for s in dm.datasets["train"].samples] == [r["id"] for r in source_rows(synthetic, "train")]
