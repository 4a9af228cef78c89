"""Selector speed benchmark: ``python -m trainer.bench [--frames 300] [--size 128]``.

On one synthetic video it prints, in one run (so the ratios are meaningful on a noisy machine):
the direct cross-correlation formula vs the FFT version on the same frame pairs and their
ratio, decoding frames/s (the physical limit of any selector that reads pixels), and the
frames/s of every selector. Speeds are wall-clock on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from data.decode import decode_video
from data.synthetic import SyntheticConfig, generate_dataset
from data.schema import load_annotations
from models.selectors import FrameAveragingSelector, OpticalFlowSelector, PixelDiffSelector, RandomSelector, UniformSelector
from models.xcorr import CrossCorrelationSelector, direct_similarity, normalize_frames, xcorr_fft


def _timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames in the benchmark video")
    parser.add_argument("--size", type=int, default=128, help="video side and cross-correlation working size")
    parser.add_argument("--direct-pairs", type=int, default=3, help="pairs timed with the direct formula")
    parser.add_argument("--k", type=int, default=8, help="frame budget for the selectors")
    args = parser.parse_args(argv)

    fps = 10.0
    duration = args.frames / fps
    event_len = min(3.0, duration / 2 - 0.5)  # short benchmark videos still fit their events
    cfg = SyntheticConfig(num_videos=1, min_duration=duration, max_duration=duration, fps=fps, size=args.size,
                          min_events=1, max_events=max(1, min(3, int(duration // 4))),
                          min_event_len=min(1.5, event_len), max_event_len=event_len,
                          pan_prob=1.0, flicker_prob=1.0, cut_prob=1.0, seed=0)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate_dataset(tmp, cfg, splits={"all": 1.0}, progress=False)
        sample = load_annotations(paths["all"])[0]
        decode_s, video = _timed(lambda: decode_video(sample.video), repeat=2)
    frames, stamps = video.frames, video.timestamps
    t = len(frames)
    print(f"video: {t} frames of {args.size}x{args.size}, torch threads: {torch.get_num_threads()}")
    print(f"decode: {t / decode_s:10.1f} frames/s  (physical limit)")

    # Direct formula vs FFT on the same consecutive pairs; the direct cost is per pair, so the
    # full-video direct time is extrapolated from a few pairs (the research notes report 398 s).
    x = normalize_frames(frames[: args.direct_pairs + 1], size=args.size).double()[:, 0]
    direct_s, direct = _timed(lambda: [direct_similarity(x[i], x[i + 1]) for i in range(args.direct_pairs)])
    fft_s, fast = _timed(lambda: xcorr_fft(x[:-1], x[1:]), repeat=5)
    err = max(abs(float(d) - float(f)) for d, f in zip(direct, fast))
    per_pair_direct = direct_s / args.direct_pairs
    per_pair_fft = fft_s / args.direct_pairs
    print(
        f"cross-correlation per pair: direct {per_pair_direct * 1e3:9.2f} ms, FFT {per_pair_fft * 1e3:7.3f} ms, "
        f"ratio {per_pair_direct / per_pair_fft:8.0f}x, max |diff| {err:.1e}"
    )
    print(f"direct formula over the whole video (extrapolated): {per_pair_direct * (t - 1):8.1f} s")

    selectors = {
        "uniform": UniformSelector(),
        "random": RandomSelector(),
        "pixel-L1": PixelDiffSelector(p=1),
        "pixel-L2": PixelDiffSelector(p=2),
        "optical-flow": OpticalFlowSelector(),
        "frame-averaging": FrameAveragingSelector(),
        f"cross-correlation {args.size}": CrossCorrelationSelector(size=args.size),
        f"cross-correlation {args.size}, max_shift 8": CrossCorrelationSelector(size=args.size, max_shift=8),
    }
    print(f"selectors (K={args.k}):")
    for name, selector in selectors.items():
        seconds, _ = _timed(lambda: selector.gather(frames, stamps, args.k), repeat=2)
        note = "  < decode cost" if seconds < decode_s else ""
        print(f"  {name:40s} {t / seconds:12.1f} frames/s{note}")


if __name__ == "__main__":
    main()
