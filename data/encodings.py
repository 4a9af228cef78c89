"""Encoder outputs attached to batches: each candidate frame goes through the frozen vision tower once.

A selector-training step looks at every candidate frame (the importance model scores all ``T``)
and then shows the VLM many K-frame subsets of them (RL rollouts, ranking candidates, the caption
loss). The vision tower and connector are frozen, so a frame's outputs never change during a run:
:class:`FrameEncodings` computes them once per video and hands every consumer the same rows.

* ``batch["features"]``: per video a :class:`FrameRows` whose ``all()`` are the pooled features
  ``(T, D)`` the selector reads.
* ``batch["image_embeds"]``: per video a :class:`FrameRows` whose ``rows(idx)`` are the VLM's
  image embeddings of those frames (``(K, S, hidden)``), passed to the VLM instead of pixels.

Values not in the cache are computed when a step first asks for them (inside the step).

When one encoder gives both (the selector's encoder is the VLM's own checkpoint), one pass per
frame fills both. With a cache root, outputs are stored per video in a
:class:`~data.features.FeatureCache` (``<root>/<encoder id>/<decode settings>/<video key>``):
DataLoader workers read hits (:meth:`EncodingStore.read`, so the main process only computes
misses), and a warm cache means the vision tower never runs. Without a cache the outputs live for
one batch, and image embeddings that no pass gives for free are computed lazily, only for the
frames a step actually shows.

The encoders are objects with ``encode(frames, outputs) -> {name: tensor}`` and
``model_name_or_path`` (a :class:`models.encoders.FrameEncoder`); this module never imports them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from data.features import FeatureCache, output_id, weights_fingerprint

log = logging.getLogger(__name__)

OUTPUTS = ("features", "image_embeds")
TIMES_ID = "candidate-timestamps"  # the cache of each decoded video's frame times (no encoder)


class FrameRows:
    """One video's per-frame tensor, computed on first use: whole, or row by row.

    Nothing is computed when a batch is put together, only when a step asks for rows, so the
    vision tower runs inside the step (under its autocast, and, with FSDP, while the module's
    weights are gathered) and only for what the step uses.

    Args:
        values: All ``T`` rows, if known; with ``known``, only those rows.
        frames: The video's ``uint8 (T, 3, H, W)`` frames, when the rows are still to compute, or
            ``() -> frames`` that decodes them on first need (a video read from the caches).
        whole: ``() -> (T, ...)``: computes all rows at once, on first use (a full vision pass).
        compute: Frames ``(k, 3, H, W)`` -> rows ``(k, ...)``; each row is computed at most once.
        known: Indices of the rows ``values`` holds (rows cached earlier); the others are computed.
        length: ``T``, when neither all values nor the frames tensor tell it.
        on_new: ``(values, done)`` after rows were computed: all rows so far and which are known
            (to store them).
    """

    def __init__(
        self,
        values: Tensor | None = None,
        frames: Tensor | Callable[[], Tensor] | None = None,
        whole: Callable[[], Tensor] | None = None,
        compute: Callable[[Tensor], Tensor] | None = None,
        known: Tensor | None = None,
        length: int | None = None,
        on_new: Callable[[Tensor, Tensor], None] | None = None,
    ) -> None:
        if values is None and (frames is None or (whole is None) == (compute is None)):
            raise ValueError("FrameRows needs the values, or the frames and one of a whole-video or per-row function")
        if known is not None and (length is None or values is None or len(known) != len(values)):
            raise ValueError("FrameRows: known rows need their values and the video's length")
        self.frames = frames
        self.whole = whole
        self.compute = compute
        self.on_new = on_new
        if length is None:
            length = len(values) if values is not None and known is None else len(frames)  # type: ignore[arg-type]
        self.length = length
        if known is not None:  # some rows cached: the rest is computed when asked for
            self.values = values.new_zeros(length, *values.shape[1:])
            self.values[known] = values
            self.done = torch.zeros(length, dtype=torch.bool)
            self.done[known] = True
        else:
            self.values = values
            self.done = None if values is None else torch.ones(len(values), dtype=torch.bool)

    def __len__(self) -> int:
        return self.length

    def all(self) -> Tensor:
        """Every row, ``(T, ...)``."""
        return self.rows(torch.arange(len(self)))

    def per_frame(self) -> Tensor:
        """One value per frame, float ``(T,)`` on the CPU: a score output (:class:`SelectorScores`, ``(T, 1)``)."""
        return self.all().reshape(-1).float().cpu()

    def rows(self, idx: Tensor | list[int]) -> Tensor:
        """Rows ``idx`` (in that order), computing the ones not seen yet in one call."""
        idx = torch.as_tensor(idx, dtype=torch.long).cpu()
        if self.values is None and self.whole is not None:
            self.values = self.whole()
            self.done = torch.ones(len(self.values), dtype=torch.bool)
        if self.done is None or not self.done[idx].all():
            todo = idx if self.done is None else idx[~self.done[idx]]
            todo = todo.unique()
            if self.compute is None:
                raise KeyError(f"rows {todo.tolist()} are not cached and there are no frames to compute them from")
            if callable(self.frames):
                self.frames = self.frames()  # a video read from the caches: decoded now, once
            new = self.compute(self.frames[todo])
            if self.values is None:
                self.values = new.new_zeros(len(self), *new.shape[1:])
                self.done = torch.zeros(len(self), dtype=torch.bool)
            self.values[todo.to(self.values.device)] = new.to(self.values.device, self.values.dtype)
            self.done[todo] = True
            if self.on_new is not None:
                self.on_new(self.values, self.done)
        return self.values[idx.to(self.values.device)]


class EncodingStore:
    """The on-disk side of :class:`FrameEncodings`: one :class:`FeatureCache` per output.

    Small and picklable (no model inside), so DataLoader workers read cached outputs in parallel
    with decoding.

    Args:
        caches: Output name (``features``, ``image_embeds``) to its cache.
        times: Cache of each video's candidate-frame timestamps (all ``T``), for outputs cached
            row by row, whose entries hold only some frames.
        partial: Outputs whose entries may hold only some rows (the frames a step showed).
    """

    def __init__(
        self, caches: dict[str, FeatureCache], times: FeatureCache | None = None, partial: tuple[str, ...] = ()
    ) -> None:
        self.caches = caches
        self.times = times
        self.partial = partial

    def read(self, video: str | Path, timestamps: Tensor) -> dict[str, Tensor | tuple[Tensor, Tensor]]:
        """The outputs cached for ``video`` at these ``timestamps`` (the others are simply absent).

        An output in ``partial`` whose entry holds some of the frames comes as ``(indices, rows)``.
        """
        out: dict[str, Tensor | tuple[Tensor, Tensor]] = {}
        for name, cache in self.caches.items():
            if name in self.partial:
                got = self._rows(cache, video, timestamps)
                if got is not None:
                    out[name] = got
                continue
            values = cache.get_valid(video, timestamps)
            if values is not None:
                out[name] = values
        return out

    @staticmethod
    def _rows(cache: FeatureCache, video: str | Path, timestamps: Tensor) -> tuple[Tensor, Tensor] | None:
        """``(indices into timestamps, rows)`` of an entry holding some or all frames; ``None`` if
        absent or if it holds a frame time that is not one of ``timestamps`` (stale)."""
        got = cache.get(video)
        if got is None:
            return None
        values, times = got
        stamps = timestamps.detach().to("cpu", torch.float64)
        index = torch.searchsorted(stamps, times).clamp(max=len(stamps) - 1)
        if len(times) > len(stamps) or not torch.equal(stamps[index], times):
            return None
        return index, values

    def candidate_times(self, video: str | Path) -> Tensor | None:
        """The video's candidate-frame timestamps, as recorded when it was decoded, or ``None``."""
        if self.times is None:
            return None
        got = self.times.get(video)
        return None if got is None else got[1]

    def write_times(self, video: str | Path, timestamps: Tensor) -> None:
        """Records a decoded video's candidate-frame timestamps (a failed write is logged)."""
        if self.times is not None and self.times.get(video) is None:
            try:
                self.times.put(video, timestamps.detach().to(torch.float64).reshape(-1, 1), timestamps)
            except OSError as err:
                log.warning("%s: cannot store %s (%s)", self.times.name, video, err)

    def read_whole(self, video: str | Path, names: tuple[str, ...]) -> tuple[Tensor, dict[str, Any]] | None:
        """Every output of ``names`` cached for ``video``, and its timestamps, without decoding it.

        The timestamps are the ones recorded when the video was decoded (the timestamps entry, or
        else the first output's entry, from a decode at the same settings, see
        :func:`data.features.decode_id`): they stand in for decoding. Outputs in ``partial`` may
        hold some rows only (``(indices, rows)``). ``None`` when an output has no entry, or entries
        disagree on the frames.
        """
        stamps = self.candidate_times(video)
        if stamps is None and any(name in self.partial for name in names):
            return None  # rows alone do not tell the video's candidate frames
        out: dict[str, Any] = {}
        for name in names:
            if name in self.partial:
                rows = self._rows(self.caches[name], video, stamps)
                if rows is None:
                    return None
                out[name] = rows
                continue
            got = self.caches[name].get(video)
            if got is None:
                return None
            values, times = got
            if stamps is not None and not torch.equal(times, stamps):
                return None
            stamps, out[name] = times, values
        return (stamps, out) if stamps is not None else None

    def write(self, video: str | Path, name: str, values: Tensor, timestamps: Tensor) -> None:
        """Stores one output; a failed write (e.g. a full disk) is logged, never raised."""
        try:
            self.caches[name].put(video, values, timestamps)
        except OSError as err:
            log.warning("%s: cannot store %s (%s); continuing without caching it", self.caches[name].name, video, err)

    def stats(self) -> dict[str, dict[str, Any]]:
        """:meth:`FeatureCache.stats` per output."""
        return {name: cache.stats() for name, cache in self.caches.items()}

    def summary(self) -> str:
        return "; ".join(f"{name}: {cache.summary()}" for name, cache in self.caches.items())


class SelectorScores:
    """A selector's per-frame scores as an encoder output ``(T, 1)``, so they are cached like features.

    The cache key is the selector's settings: its class, its plain attributes (numbers, strings,
    flags, tuples of them) and a hash of its weights, as :attr:`model_name_or_path`; the decode
    settings key the rest, as for every output.

    Args:
        selector: A :class:`models.selectors.FrameSelector` (``scores(frames, timestamps, k)``).
        k: The frame budget the scores are for (a budget-aware selector's depend on it); ``None``:
            the selector's default. Part of the key.
        picks: Give the selector's choice of ``k`` frames instead of its scores: 1.0 at each of
            the ``k`` frames ``choose`` returns, 0.0 elsewhere, for any selector that shows
            candidate frames (a pairwise decoder, a trained selector: whatever ``choose`` does
            with the pixels), so a run that shows them needs only the cached column.
    """

    #: What :meth:`encode` gives (float32 scores), recorded like an encoder's weights dtype.
    dtype = torch.float32

    def __init__(self, selector: Any, k: int | None = None, picks: bool = False) -> None:
        if picks and k is None:
            raise ValueError("SelectorScores(picks=True) needs the frame budget k")
        self.selector = selector
        self.k = k
        self.picks = picks
        cls = type(selector)
        settings = _settings(selector)
        decoder = getattr(selector, "decoder", None)
        if picks and decoder is not None:  # the decoder turns scores into picks: its settings key the picks too
            settings += f":{type(decoder).__qualname__}{_settings(decoder)}"
        weights = weights_fingerprint(selector)[:12]
        budget = "" if k is None else f":k{k}"
        kind = "picks" if picks else "selector"
        self.model_name_or_path = f"{kind}:{cls.__module__}.{cls.__qualname__}:{settings}:{weights}{budget}"

    def encode(self, frames: Tensor, outputs: tuple[str, ...], timestamps: Tensor | None = None) -> dict[str, Tensor]:
        with torch.no_grad():
            if self.picks:
                idx = self.selector.choose(frames, timestamps, self.k)[0]
                values = torch.zeros(len(frames), 1)
                values[idx.cpu()] = 1.0
            else:
                values = self.selector.scores(frames, timestamps, self.k).float().reshape(-1, 1).cpu()
        return dict.fromkeys(outputs, values)

    def parameters(self):  # what data.cache_export fingerprints
        return self.selector.parameters()

    def state_dict(self) -> dict[str, Tensor]:
        return self.selector.state_dict()


class MadeFrames:
    """The VLM's image embeddings of the frames a selector makes (frame averaging's bin averages),
    as an output cached row by row, like the captioner's shown frames.

    Row ``i`` of the output is the embedding of the made frame whose index ``select`` gives (bin
    ``i``'s centre frame): stored at that frame's time, so the caches and exports hold it like any
    row. The key is the VLM encoder's, with the selector's settings and ``k`` (its
    :attr:`preprocessing`): other bins are other frames.

    Args:
        selector: Makes frames (``shows_candidates`` false): ``choose(frames, timestamps, k)``
            returns them; ``select`` and ``shown_times`` need only the frame times.
        k: The frame budget.
        encoder: The VLM's frame encoder (``image_embeds``).
    """

    def __init__(self, selector: Any, k: int, encoder: Any) -> None:
        self.selector = selector
        self.k = k
        self.encoder = encoder
        self.model_name_or_path = encoder.model_name_or_path
        self.pooling = getattr(encoder, "pooling", "mean")
        param = next(encoder.parameters(), None)
        self.dtype = param.dtype if param is not None else torch.float32
        made = SelectorScores(selector, k).model_name_or_path
        self.preprocessing = f"{getattr(encoder, 'preprocessing', '') or ''}|dtype={self.dtype}|made by {made}"

    def made_frames(self, frames: Tensor, timestamps: Tensor) -> Tensor:
        """``frames`` with each made frame in place of the frame ``select`` names for it."""
        idx, made, _ = self.selector.choose(frames, timestamps, self.k)
        out = frames.clone()
        out[idx] = made.to(frames.dtype)
        return out

    def encode(self, frames: Tensor, outputs: tuple[str, ...]) -> dict[str, Tensor]:
        return dict.fromkeys(outputs, self.encoder.encode(frames, ("image_embeds",))["image_embeds"])

    def parameters(self):  # what data.cache_export fingerprints: the encoder's weights and the selector's
        yield from self.encoder.parameters()
        yield from self.selector.parameters()

    def state_dict(self) -> dict[str, Tensor]:
        return {**self.encoder.state_dict(), **{f"selector.{k}": v for k, v in self.selector.state_dict().items()}}


def _settings(obj: Any) -> str:
    """``obj``'s public plain attributes (numbers, strings, flags, tuples of them) as sorted JSON."""
    plain = {k: v for k, v in sorted(vars(obj).items())
             if not k.startswith("_") and k != "training" and isinstance(v, (bool, int, float, str, tuple))}  # fmt: skip
    return json.dumps(plain, sort_keys=True, default=str)


class FrameEncodings:
    """Attaches encoder outputs to collated batches, computing each frame's at most once.

    Args:
        features: Encoder of ``batch["features"]`` (all frames of every video), or ``None``.
        image_embeds: Encoder of ``batch["image_embeds"]`` (the VLM's), or ``None``. The same
            object as ``features`` means one pass gives both.
        cache_root: Folder of the on-disk cache (``None``: outputs live for one batch).
        decode_id: Decoding settings of the videos (see :func:`data.features.decode_id`).
        embed_all_frames: With a cache, compute and store the image embeddings of all frames of
            a video on its first visit (right when every step samples new subsets). ``False``
            computes only the frames a step shows, as without a cache (right for a captioner
            that shows the same K frames; cached entries are still read).
        scores: Per-frame outputs a step reads that come from pixels, by output name: a
            :class:`SelectorScores` (a teacher's scores, a selector's picks), cached whole like
            the encoders' outputs, or a :class:`MadeFrames` (embeddings of the frames a selector
            makes), cached row by row; a step that reads them needs no frames once they are stored.

    Attributes:
        store: The :class:`EncodingStore`, or ``None`` without a cache.
        passes: Vision passes run here, per output name (frames encoded), for reports and tests.
    """

    def __init__(
        self,
        features: Any | None = None,
        image_embeds: Any | None = None,
        cache_root: str | Path | None = None,
        decode_id: str = "",
        embed_all_frames: bool = True,
        scores: dict[str, SelectorScores] | None = None,
    ) -> None:
        if features is None and image_embeds is None and not scores:
            raise ValueError("FrameEncodings needs a features or an image_embeds encoder, or scores")
        if image_embeds is not None and not getattr(image_embeds, "gives_image_embeds", False):
            raise ValueError(f"{image_embeds.model_name_or_path} gives no image embeddings (not a SmolVLM checkpoint)")
        self.encoders = {name: enc for name, enc in zip(OUTPUTS, (features, image_embeds)) if enc is not None}
        self.encoders.update(scores or {})
        self.embed_all_frames = embed_all_frames
        self.store = None
        if cache_root is not None:
            # Image embeddings of the frames a step shows, when not of all frames: cached row by row.
            partial = ("image_embeds",) if "image_embeds" in self.encoders and not embed_all_frames else ()
            partial += tuple(name for name, enc in self.encoders.items() if isinstance(enc, MadeFrames))
            self.store = EncodingStore(
                {name: FeatureCache(cache_root, output_id(enc, name), decode_id) for name, enc in self.encoders.items()},
                times=FeatureCache(cache_root, TIMES_ID, decode_id),
                partial=partial,
            )
        self.passes = dict.fromkeys(self.encoders, 0)
        #: ``video -> uint8 frames`` at the data module's settings, for the rows a step asks of a
        #: video read from the caches alone (set by the data module).
        self.frames_of: Callable[[Any], Tensor] | None = None

    def _run(self, encoder: Any, frames: Tensor, names: tuple[str, ...], stamps: Tensor) -> dict[str, Tensor]:
        if isinstance(encoder, SelectorScores):
            out = encoder.encode(frames, outputs=names, timestamps=stamps)
        else:
            out = encoder.encode(frames, outputs=names)
        for name in names:
            self.passes[name] += len(frames)
        return out

    def attach(self, batch: dict[str, list]) -> dict[str, list]:
        """Adds ``features`` and/or ``image_embeds`` (a :class:`FrameRows` per video) to a collated batch.

        Outputs the workers found in the cache (``batch["encoded"]``) are used as they are; the
        rest is computed on first use, on the encoders' device, and stored when there is a cache.
        """
        n = len(batch["frames"])
        looked = "encoded" in batch  # DataLoader workers already read the cache
        found = batch["encoded"] if looked else [{} for _ in range(n)]
        rows: dict[str, list[FrameRows]] = {name: [] for name in self.encoders}
        for i in range(n):
            video, frames, stamps = batch["video"][i], batch["frames"][i], batch["timestamps"][i]
            if frames is None and self.frames_of is not None:  # read from the caches: decoded only if a row is missing
                frames = partial(self.frames_of, video)
            have = dict(found[i])
            if self.store is not None and not looked and len(have) < len(self.encoders):
                have.update(self.store.read(video, stamps))
            missing = [name for name in self.encoders if name not in have]
            # One pass per encoder: the features pass also gives the embeddings when it is the same
            # encoder; otherwise the embeddings are computed whole only to be cached, else per row.
            shared = "features" in missing and self.encoders.get("image_embeds") is self.encoders.get("features")
            passes = {}
            for name, encoder in self.encoders.items():
                made = isinstance(encoder, MadeFrames)
                per_row = made or (name == "image_embeds" and not shared
                                   and not (self.store is not None and self.embed_all_frames))  # fmt: skip
                if name in have and not isinstance(have[name], tuple):
                    rows[name].append(FrameRows(values=have[name]))
                elif per_row:
                    store = self._store_rows(video, name, stamps) if self.store is not None else None
                    compute = self._per_row(encoder, name) if frames is not None else None
                    # made frames: the video's frames with them in place, made when a row is first missing
                    source = partial(_made, encoder, frames, stamps) if made and frames is not None else frames
                    if name in have:  # some rows cached: the others computed (and stored) when shown
                        index, values = have[name]
                        rows[name].append(FrameRows(values=values, known=index, length=len(stamps), frames=source,
                                                    compute=compute, on_new=store))  # fmt: skip
                    else:
                        rows[name].append(FrameRows(frames=source, compute=compute, length=len(stamps), on_new=store))
                else:
                    # the key of this video's pass: one pass of the shared encoder gives features and embeddings
                    names = tuple(m for m in missing if m in OUTPUTS) if shared and name in OUTPUTS else (name,)
                    if names not in passes:
                        passes[names] = self._whole_pass(self.encoders[name], names, video, frames, stamps)
                    rows[name].append(FrameRows(frames=frames, whole=partial(passes[names], name), length=len(stamps)))
        batch.update(rows)
        batch.pop("encoded", None)
        return batch

    def _whole_pass(self, encoder: Any, names: tuple[str, ...], video: Any, frames: Tensor, stamps: Tensor):
        """``get(name)``: runs one pass for all ``names`` over every frame on first call, stores the results."""
        done: dict[str, Tensor] = {}

        def get(name: str) -> Tensor:
            if not done:
                pixels = frames() if callable(frames) else frames  # a video read from the caches: decoded now
                done.update(self._run(encoder, pixels, names, stamps))
                if self.store is not None:
                    for key, value in done.items():
                        self.store.write(video, key, value, stamps)
            return done[name]

        return get

    def _store_rows(self, video: Any, name: str, stamps: Tensor) -> Callable[[Tensor, Tensor], None]:
        """Stores a video's known rows of ``name`` (with their frame times) each time new ones are computed."""

        def store(values: Tensor, done: Tensor) -> None:
            self.store.write(video, name, values[done], stamps[done])

        return store

    def _per_row(self, encoder: Any, name: str) -> Callable[[Tensor], Tensor]:
        def compute(frames: Tensor) -> Tensor:
            return self._run(encoder, frames, (name,), None)[name]

        return compute

    def summary(self) -> str:
        """Cache entries and hits, and the frames encoded in this process."""
        done = ", ".join(f"{name} {count} frames" for name, count in self.passes.items())
        cache = self.store.summary() if self.store is not None else "no cache"
        return f"encoded here: {done}; {cache}"


def _made(encoder: MadeFrames, frames: Tensor | Callable[[], Tensor], stamps: Tensor) -> Tensor:
    """The frames with ``encoder``'s made frames in place (``frames`` decoded first if it is a callable)."""
    return encoder.made_frames(frames() if callable(frames) else frames, stamps)
