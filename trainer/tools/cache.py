"""Fill a config's caches ahead of training: ``python -m trainer cache --config CONFIG``.

Decodes every video of the chosen splits at the config's ``data`` settings and runs the vision
passes its LightningModule would run, storing what the run will read: decoded frames (with
``data.frame_cache``), selector features and VLM image embeddings (with ``data.feature_cache``).
A later ``fit``, ``validate`` or ``evaluate`` of the same config then reads them instead of
decoding and encoding. DataLoader workers decode while the main process encodes on the GPU
(when there is one); ``--num_shards N --shard i`` spreads the videos over processes or GPUs (the
caches take concurrent writers), and a rerun skips what is cached. Under a launcher the shard
comes from the environment: each process of ``torchrun --nproc_per_node G`` (``RANK``/
``WORLD_SIZE``, on any number of nodes) or of SLURM's ``srun`` (``SLURM_PROCID``/
``SLURM_NTASKS``) takes its own videos and, with ``--device auto``, its local rank's GPU; the
shards are disjoint, so no two processes encode one video, and every entry is published
atomically into the shared ``data.cache_dir``. A ``data.cache_dir`` that is a
file or cannot be written is refused (exit status 2) before any video is decoded; a video whose
entries could not be stored (the caches log why and carry on, as in training: a full disk) is
counted as not stored, and the command then exits with status 1 naming the first ones.

Examples::

    python -m trainer cache --config configs/recipes/smolvlm2_256m_activitynet_rl_likelihood.yaml
    for i in 0 1 2 3; do CUDA_VISIBLE_DEVICES=$i python -m trainer cache --config CONFIG \\
        --num_shards 4 --shard $i & done; wait
    torchrun --nproc_per_node 8 -m trainer cache --config CONFIG       # one process per GPU
    srun --ntasks 64 --gpus-per-task 1 python -m trainer cache --config CONFIG   # 8 nodes x 8 GPUs
"""

from __future__ import annotations

import time
from typing import Any

from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from data.cache_export import ExportError, portable_encoder, write_export
from data.datamodule import SPLIT_STAGES, VideoItems, as_is, collate_videos, skip_report
from data.features import human_bytes
from data.outputs import check_writable
from trainer.cli_helpers import add_run_arguments, check_shard, resolve_device, training_command


def fill(
    datamodule: Any, module: Any, splits: list[str], num_shards: int = 1, shard: int = 0, workers: int | None = None
) -> dict[str, Any]:
    """Decodes and encodes this shard's videos of ``splits``, storing everything the caches take.

    Args:
        datamodule: A :class:`~data.datamodule.DenseCaptionDataModule`, set up for ``splits``.
        module: The config's LightningModule (it says which encoders a run uses).
        splits: Split names (``train``, ``val``, ``test``).
        num_shards: Processes the videos are spread over.
        shard: This process's shard: videos ``shard, shard + num_shards, ...`` of each split.
        workers: Decoding processes (default: ``data.num_workers``).

    Returns:
        ``videos`` (visited), ``encoded`` (videos whose outputs were computed now), ``stored``
        (decoded videos whose every entry is on disk afterwards: the frame cache's, each output
        computed whole), ``unstored`` (``(video_id, [the caches it has no entry in])``: the
        stores log why and carry on, e.g. on a read-only or full disk), ``skipped``
        (``(video_id, reason)``), ``seconds``, and the caches' ``stats``.
    """
    # Filling is what decodes: a config that trains from the caches alone (data.require_cache) fills them here.
    datamodule.require_cache = False
    encodings = module.register_encoders(datamodule)
    for dataset in datamodule.datasets.values():
        dataset.decode_free = ()  # every video is decoded, so the frame cache fills too
    store = encodings.store if encodings is not None else None
    workers = datamodule.num_workers if workers is None else workers
    start, videos, encoded, stored = time.perf_counter(), 0, 0, 0
    skipped: list[tuple[str, str]] = []
    unstored: list[tuple[str, list[str]]] = []
    for split in splits:
        dataset = datamodule.datasets[split]
        indices = list(range(shard, len(dataset), num_shards))
        loader = DataLoader(VideoItems(dataset, indices), batch_size=None, collate_fn=as_is, num_workers=workers)
        for item in tqdm(loader, total=len(indices), desc=f"caching {split}", unit="video"):
            videos += 1
            if "skipped" in item:
                skipped.append((item["video_id"], item["skipped"]))
                continue
            # Decoding alone fills the frame cache (in the worker that decoded the video).
            caches = {"frames": datamodule.frame_cache} if datamodule.frame_cache is not None else {}
            if encodings is not None:
                batch = encodings.attach(collate_videos([item]))
                fresh = False
                for name in encodings.encoders:
                    rows = batch[name][0]
                    if rows.whole is not None:  # a whole-video pass: computing it stores it
                        rows.all()
                        fresh = True
                        if store is not None and name in store.caches:
                            caches[name] = store.caches[name]
                if store is not None and store.partial and hasattr(module, "select_frames"):
                    # Rows cached one by one (the captioner's shown frames): the rows its step
                    # shows, computed and stored now, with the candidate times that key them.
                    before = sum(encodings.passes.values())
                    module.select_frames(batch)  # (under no_grad itself)
                    store.write_times(item["video"], item["timestamps"])
                    caches.update({name: store.caches[name] for name in store.partial} | {"times": store.times})
                    fresh = fresh or sum(encodings.passes.values()) > before
                encoded += fresh
            # The stores log a failed write and carry on (the cache only saves time): what is
            # on disk now is what a later run will read.
            missing = [name for name, cache in caches.items() if not cache.entry_path(item["video"]).is_dir()]
            if missing:
                unstored.append((item["video_id"], missing))
            else:
                stored += 1
    stats = {"frames": datamodule.frame_cache.stats() if datamodule.frame_cache is not None else None,
             **(encodings.store.stats() if encodings is not None and encodings.store is not None else {})}  # fmt: skip
    return {"videos": videos, "encoded": encoded, "stored": stored, "unstored": unstored, "skipped": skipped,
            "seconds": time.perf_counter() - start, "stats": stats}  # fmt: skip


def export(datamodule: Any, encodings: Any, splits: list[str], output: str) -> dict[str, int]:
    """Writes the filled caches of ``splits`` as a ``datasets`` folder (:mod:`data.cache_export`).

    Raises:
        ExportError: If a decodable video of a split has an output missing from the caches.
    """
    if encodings is None or encodings.store is None:
        raise ExportError("nothing to export: the config's module caches no encoder outputs (data.feature_cache: true)")
    names = tuple(encodings.encoders)
    bad = {video_id for video_id, _ in datamodule.skipped}

    def rows(split: str):
        dataset = datamodule.datasets[split]
        for sample in dataset.samples:
            if sample.video_id in bad:
                continue
            cached = encodings.store.read_whole(sample.video, names)
            if cached is None:
                raise ExportError(f"{sample.video_id}: {sample.video} has no cached {' and '.join(names)}; "
                                  "run python -m trainer cache without --export first (all shards)")  # fmt: skip
            yield sample, cached[0], cached[1]

    encoders = {name: portable_encoder(encoder) for name, encoder in encodings.encoders.items()}
    return write_export(output, {split: rows(split) for split in splits}, encoders, datamodule.decode_id, tqdm)


def add_arguments(parser: Any) -> None:
    """``cache``'s own options (beside the training config's, which ``fit`` reads)."""
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"], choices=sorted(SPLIT_STAGES))
    add_run_arguments(parser, shards=True)
    parser.add_argument("--export", default=None, metavar="DIR",
                        help="then write the filled caches of --splits as a datasets folder that trains without the "
                             "videos (data.from_cache: DIR); with shards, run it once all shards are done")  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m trainer cache``; returns :func:`fill`'s report.

    The training config and its overrides are ``fit``'s (:func:`trainer.cli_helpers.training_command`).
    """
    cli = training_command("cache", add_arguments, argv, lambda args, parser: check_shard(parser, args))
    args, datamodule, module, parser = cli.config, cli.datamodule, cli.model.eval(), cli.parser
    try:
        check_writable(datamodule.cache_dir)  # before any video is decoded or encoded
    except OSError as err:
        parser.error(f"data.cache_dir: {err}")
    module.to(resolve_device(args.device))
    datamodule.prepare_data()
    splits = [s for s in args.splits if datamodule.files.get(s) is not None or datamodule.uses_synthetic]
    for split in splits:
        datamodule.setup(SPLIT_STAGES[split])
    report = fill(datamodule, module, splits, args.num_shards, args.shard, args.workers)
    if report["skipped"] and len(report["skipped"]) == report["videos"]:
        raise RuntimeError(f"no video could be decoded: {skip_report(report['skipped'])}")
    where = f"shard {args.shard} of {args.num_shards}: " if args.num_shards > 1 else ""
    print(f"{where}{report['videos']} videos in {report['seconds']:.0f} s; encoded now: {report['encoded']}; "
          f"stored: {report['stored']}; not stored: {len(report['unstored'])}; skipped: {len(report['skipped'])}")  # fmt: skip
    for name, stats in report["stats"].items():
        if stats is not None:
            print(f"{name}: {stats['entries']} entries, {human_bytes(stats['bytes'])} in {stats['directory']}")
    if args.export is not None:
        if args.num_shards > 1:
            parser.error("--export writes one folder from every shard's entries: run it alone, after the shards")
        try:
            counts = export(datamodule, datamodule.encodings, splits, args.export)
        except ExportError as err:
            parser.exit(1, f"{parser.prog}: error: {err}\n")
        report["exported"] = counts
        print(f"exported {', '.join(f'{s}: {n} videos' for s, n in counts.items())} to {args.export}")
    if report["unstored"]:
        first = "; ".join(f"{video}: no {', '.join(names)} entry" for video, names in report["unstored"][:3])
        parser.exit(1, f"{parser.prog}: error: {len(report['unstored'])} of {report['videos']} videos could not be "
                       f"stored in the caches under {datamodule.cache_dir} (the warnings above say why: a read-only "
                       f"or full disk?); first: {first}\n")  # fmt: skip
    return report


if __name__ == "__main__":
    main()
