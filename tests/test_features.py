"""On-disk feature cache: hits and misses, keys, atomic writes, and precomputing a dataset."""

import dataclasses
import json
import os
from types import SimpleNamespace

import datasets
import pytest
import torch
from helpers import cache_args

from data.decode import decode_video
from data.features import FeatureCache, decode_id, human_bytes, precompute_features
from data.schema import load_annotations
from models.encoders import FrameEncoder

DECODE = decode_id(fps=2.0, frame_size=32, max_frames=8)


@pytest.fixture
def video(tmp_path):
    """A stand-in video file: keys depend on the file's identity, not its content."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not really a video")
    return path


def make_frames(t: int = 5):
    frames = torch.arange(t * 3 * 4 * 4, dtype=torch.int64).remainder(256).to(torch.uint8).view(t, 3, 4, 4)
    return frames, torch.arange(t, dtype=torch.float64) / 2.0


class CountingEncoder:
    """Frames -> (T, 6) features, counting calls."""

    def __init__(self, offset: float = 0.0) -> None:
        self.calls = 0
        self.offset = offset

    def __call__(self, frames):
        self.calls += 1
        x = frames.float().flatten(1)
        return torch.stack([x.mean(1), x.std(1), x.amax(1), x.amin(1), x[:, 0], x[:, -1]], 1) + self.offset


def test_miss_then_hit_encodes_once(tmp_path, video):
    cache = FeatureCache(tmp_path / "cache", "enc", DECODE)
    encode = CountingEncoder()
    frames, ts = make_frames()

    first = cache.get_or_compute(video, frames, ts, encode)
    second = cache.get_or_compute(video, frames, ts, encode)

    assert encode.calls == 1
    assert first.dtype == torch.float32 and first.shape == (5, 6)
    assert torch.equal(first, second) and torch.equal(first, encode(frames))
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["entries"]) == (1, 1, 1)
    assert stats["bytes"] > 0 and stats["compute_seconds"] > 0
    features, stamps = cache.get(video)
    assert torch.equal(features, first)
    assert stamps.dtype == torch.float64 and torch.equal(stamps, ts)

    fresh = FeatureCache(tmp_path / "cache", "enc", DECODE)  # another process: counters are per instance
    assert fresh.get(tmp_path / "cache" / ".." / "clip.mp4") is not None
    assert (fresh.stats()["hits"], fresh.stats()["misses"]) == (1, 0)


def test_other_timestamps_recompute_and_replace(tmp_path, video):
    cache = FeatureCache(tmp_path, "enc", DECODE)
    frames, ts = make_frames()
    cache.get_or_compute(video, frames, ts, CountingEncoder())

    # Same file and folder, but the decoder now yields other frame times: the entry is stale.
    encode = CountingEncoder(offset=1.0)
    shifted = cache.get_or_compute(video, frames, ts + 0.25, encode)
    assert encode.calls == 1
    features, stamps = cache.get(video)
    assert torch.equal(stamps, ts + 0.25) and torch.equal(features, shifted)
    assert cache.stats()["entries"] == 1


def test_keys_follow_the_file(tmp_path, video):
    cache = FeatureCache(tmp_path / "cache", "enc", DECODE)
    key = cache.key(video)
    assert cache.key(str(video)) == key == cache.key(tmp_path / "." / "clip.mp4")  # resolved path
    frames, ts = make_frames()
    cache.put(video, CountingEncoder()(frames), ts)

    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    touched = cache.key(video)
    assert touched != key
    assert cache.get(video) is None  # the old entry no longer answers for this file

    video.write_bytes(b"re-encoded: another size")
    assert cache.key(video) not in (key, touched)

    with pytest.raises(FileNotFoundError):
        cache.key(tmp_path / "missing.mp4")


def test_encoders_and_decode_settings_use_separate_folders(tmp_path, video):
    root = tmp_path / "cache"
    frames, ts = make_frames()
    stub = SimpleNamespace(model_name_or_path="org/some-model", pooling="mean")
    base = FeatureCache.for_encoder(root, stub, fps=2.0, frame_size=32, max_frames=8)
    other_model = SimpleNamespace(model_name_or_path="org/other", pooling="mean")
    other_pooling = SimpleNamespace(model_name_or_path="org/some-model", pooling="pooler")
    others = [
        FeatureCache.for_encoder(root, other_model, fps=2.0, frame_size=32, max_frames=8),
        FeatureCache.for_encoder(root, other_pooling, fps=2.0, frame_size=32, max_frames=8),
        FeatureCache.for_encoder(root, stub, fps=4.0, frame_size=32, max_frames=8),
        FeatureCache.for_encoder(root, stub, fps=2.0, frame_size=64, max_frames=8),
        FeatureCache.for_encoder(root, stub, fps=2.0, frame_size=32, max_frames=None),
    ]
    assert base.decode_id == "fps2_size32_max8" and base.directory.parent.parent == root
    assert "org-some-model" in base.directory.parent.name  # readable folder names
    assert len({c.directory for c in [base, *others]}) == 6
    assert all(c.key(video) == base.key(video) for c in others)  # same file, same key: only the folder differs

    base.put(video, CountingEncoder()(frames), ts)
    assert base.get(video) is not None
    assert all(c.get(video) is None for c in others)
    for bad in ("fps2/../../escape", ".."):
        with pytest.raises(ValueError, match="folder name"):
            FeatureCache(root, "enc", bad)


def entries_on_disk(cache):
    return sorted(p.name for p in cache.directory.iterdir())


def test_two_writers_leave_one_readable_entry(tmp_path, video):
    frames, ts = make_frames()
    first, second = CountingEncoder()(frames), CountingEncoder(offset=5.0)(frames)
    a = FeatureCache(tmp_path, "enc", DECODE)
    b = FeatureCache(tmp_path, "enc", DECODE)
    a.put(video, first, ts)
    b.put(video, second, ts)  # loses the race: same video, same timestamps, so the first entry stays
    assert entries_on_disk(a) == [a.key(video)]  # no temporary folders left behind
    features, stamps = b.get(video)
    assert torch.equal(features, first) and torch.equal(stamps, ts)


def test_rival_entry_appearing_before_the_rename_wins(tmp_path, video, monkeypatch):
    frames, ts = make_frames()
    ours, theirs = CountingEncoder()(frames), CountingEncoder(offset=5.0)(frames)
    rival = FeatureCache(tmp_path, "enc", DECODE)
    real_save = datasets.Dataset.save_to_disk
    raced = []

    def save_then_lose_the_race(self, path, *args, **kwargs):
        real_save(self, path, *args, **kwargs)
        if not raced:  # while our temporary folder is complete, the rival publishes its entry
            raced.append(path)
            rival.put(video, theirs, ts)

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", save_then_lose_the_race)
    cache = FeatureCache(tmp_path, "enc", DECODE)
    cache.put(video, ours, ts)

    assert raced and entries_on_disk(cache) == [cache.key(video)]
    assert torch.equal(cache.get(video)[0], theirs)


def test_broken_folder_at_the_target_is_replaced(tmp_path, video):
    cache = FeatureCache(tmp_path, "enc", DECODE)
    frames, ts = make_frames()
    target = cache.entry_path(video)
    target.mkdir(parents=True)
    (target / "state.json").write_text("{}")  # e.g. a crashed writer that did not use a temp folder
    assert cache.get(video) is None

    features = CountingEncoder()(frames)
    cache.put(video, features, ts)
    assert torch.equal(cache.get(video)[0], features)
    assert entries_on_disk(cache) == [target.name]


@pytest.mark.parametrize("damage", ["delete data", "delete state", "truncate data"])
def test_half_written_entry_is_a_miss_and_is_rewritten(tmp_path, video, damage):
    cache = FeatureCache(tmp_path, "enc", DECODE)
    frames, ts = make_frames()
    cache.get_or_compute(video, frames, ts, CountingEncoder())
    entry = cache.entry_path(video)
    data = next(entry.glob("*.arrow"))
    if damage == "delete data":
        data.unlink()
    elif damage == "delete state":
        (entry / "state.json").unlink()
    else:
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])

    assert cache.get(video) is None
    encode = CountingEncoder()
    features = cache.get_or_compute(video, frames, ts, encode)
    assert encode.calls == 1
    assert torch.equal(cache.get(video)[0], features)


def test_put_rejects_mismatched_shapes(tmp_path, video):
    cache = FeatureCache(tmp_path, "enc", DECODE)
    with pytest.raises(ValueError, match="timestamps"):
        cache.put(video, torch.zeros(4, 3), torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError):
        cache.put(video, torch.zeros(0, 3), torch.zeros(0, dtype=torch.float64))


def test_entries_written_before_dtype_and_shape_were_recorded_still_read(tmp_path, video):
    cache = FeatureCache(tmp_path, "enc", DECODE)
    frames, ts = make_frames()
    features = CountingEncoder()(frames)
    # The entry format of earlier versions: no dtype or per-frame shape in the description.
    schema = datasets.Features(
        {"features": datasets.List(datasets.Value("float32"), length=6), "timestamp": datasets.Value("float64")}
    )
    info = datasets.DatasetInfo(description=json.dumps({"video": str(video), "encoder_id": "enc"}), features=schema)
    old = datasets.Dataset.from_dict({"features": features.numpy(), "timestamp": ts.numpy()}, info=info)
    old.save_to_disk(str(cache.entry_path(video)))

    stored, stamps = cache.get(video)
    assert stored.dtype == torch.float32 and torch.equal(stored, features) and torch.equal(stamps, ts)


def test_put_keeps_dtype_and_shape_bfloat16_included(tmp_path, video):
    """Features stay float32; a VLM's image embeddings (T, S, hidden) keep the model's dtype, bf16 too."""
    cache = FeatureCache(tmp_path, "enc", DECODE)
    frames, ts = make_frames()
    cache.put(video, CountingEncoder()(frames), ts)
    meta = json.loads(datasets.load_from_disk(str(cache.entry_path(video))).info.description)
    assert (meta["dtype"], meta["shape"], meta["encoder_id"], meta["decode_id"]) == ("float32", [6], "enc", DECODE)
    embeds = torch.randn(len(ts), 4, 8).to(torch.bfloat16)
    other = FeatureCache(tmp_path, "enc|image_embeds", DECODE)
    other.put(video, embeds, ts)
    stored = other.get(video)[0]
    assert stored.dtype == torch.bfloat16 and torch.equal(stored, embeds)  # bit for bit
    meta = json.loads(datasets.load_from_disk(str(other.entry_path(video))).info.description)
    assert (meta["dtype"], meta["shape"]) == ("bfloat16", [4, 8])
    with pytest.raises(ValueError, match=r"\(T, \.\.\.\)"):
        cache.put(video, ts, ts)


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return FrameEncoder(str(tiny_model_dir))


def test_precompute_fills_the_cache_with_the_encoder_outputs(tmp_path, synthetic, encoder):
    _, paths, _ = synthetic
    samples = [s for p in paths.values() for s in load_annotations(p)]
    cache = FeatureCache.for_encoder(tmp_path / "cache", encoder, fps=2.0, frame_size=32, max_frames=8)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    listed = [*samples, dataclasses.replace(samples[0], video_id="broken", video=str(broken))]

    stats = precompute_features(listed, cache, encoder, fps=2.0, frame_size=32, max_frames=8, progress=False)

    assert stats["entries"] == len(samples) == stats["computed"] and stats["bytes"] > 0
    assert [f["video_id"] for f in stats["failed"]] == ["broken"]
    for s in samples:
        decoded = decode_video(s.video, fps=2.0, size=32, max_frames=8)
        features, stamps = cache.get(s.video)
        assert torch.equal(features, encoder(decoded.frames))
        assert torch.equal(stamps, decoded.timestamps)

    again = precompute_features(samples, cache, encoder, 2.0, 32, 8, progress=False)
    assert again["computed"] == 0 and again["entries"] == len(samples)
    with pytest.raises(ValueError, match="decode settings"):
        precompute_features(samples, cache, encoder, fps=4.0, frame_size=32, max_frames=8, progress=False)


def test_cache_command_fills_what_a_run_reads_over_shards(tmp_path, synthetic, tiny_model_dir):
    from trainer.tools.cache import main as cache

    _, paths, _ = synthetic
    args = cache_args(synthetic, tiny_model_dir, tmp_path / "cache")
    videos = sum(len(load_annotations(paths[k])) for k in ("val", "test"))
    shards = [cache([*args, "--num_shards", "2", "--shard", str(i)]) for i in (0, 1)]
    assert sum(r["videos"] for r in shards) == sum(r["encoded"] for r in shards) == videos
    again = cache(args)  # everything is on disk now: no video is encoded again
    assert again["videos"] == videos and again["encoded"] == 0 and not again["skipped"]
    # One vision pass filled both outputs (the encoder is the VLM's checkpoint) and the frames.
    assert again["stats"]["features"]["entries"] == again["stats"]["image_embeds"]["entries"] == videos
    assert again["stats"]["frames"]["entries"] == videos


def test_rebuilding_a_local_encoder_in_place_changes_its_id(tmp_path):
    import os
    import types

    from data.features import encoder_id

    folder = tmp_path / "enc"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(b"a" * 10)
    encoder = types.SimpleNamespace(model_name_or_path=str(folder), pooling="mean")
    before = encoder_id(encoder)
    assert encoder_id(encoder) == before
    weights.write_bytes(b"b" * 12)
    os.utime(weights, ns=(1, 1))
    assert encoder_id(encoder) != before


def test_human_bytes_uses_binary_units():
    assert [human_bytes(n) for n in (0, 1023, 1024, 1536, 3.25 * 2**20, 2**31, 5 * 2**40)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "3.2 MiB", "2.0 GiB", "5.0 TiB"]
