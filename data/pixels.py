"""Bit-exact pixel arithmetic: YUV to RGB, RGB to YUV and antialiased resizing, in integers.

Why: FFmpeg's swscale, which PyAV's ``reformat`` and ``to_ndarray(format="rgb24")`` call, picks
its SIMD code by CPU and promises identical output across CPUs only in its bit-exact mode, so the
frames every selector and encoder reads, and every table computed from them, could differ from
one machine to another. The H.264 decoder's YUV planes are bit-exact by the standard; here every
RGB value is an exact integer function of those planes, the same on every CPU.

How it stays exact: a resize is a separable triangle filter ("bilinear", widened by the scale
factor when shrinking, so every source pixel counts: antialiased, like swscale's bilinear) whose
weights are integers summing to ``2**FILTER_BITS`` per output pixel, computed once per size from
exact fractions. Both passes and the colour matrix run in ``int32`` with every sum bounded below
``2**31`` (the bounds are next to the code), and each rounding is a shift; integer arithmetic
gives the same result on every CPU and in any order.

Conventions (those of swscale for these streams, whose output this matches within one level, see
``tests/test_pixels.py``): the matrix is the frame's ``colorspace`` (BT.601 when unspecified;
BT.709, BT.2020, FCC, SMPTE 240M), limited range unless the format is ``yuvj*`` or the frame says
full range; subsampled chroma sits with the left luma sample horizontally (H.264's default) and
between rows vertically; edges are handled by dropping the taps that fall outside the picture
and renormalising.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import Interpolation

FILTER_BITS = 12  # each output pixel's filter weights are integers summing to 2**12
_FRACTION_BITS = 6  # samples between the passes and before the colour matrix: 1/64 of a level
_COLOR_BITS = 12  # precision of the colour matrices' integer coefficients

# Planar 8-bit YUV formats converted exactly: chroma subsampling (horizontal, vertical).
SUBSAMPLING: dict[str, tuple[int, int]] = {
    "yuv420p": (2, 2), "yuvj420p": (2, 2), "yuv422p": (2, 1), "yuvj422p": (2, 1),
    "yuv444p": (1, 1), "yuvj444p": (1, 1),
}  # fmt: skip
# (Kr, Kb) of the luma weights, by the frame's AVColorSpace value.
_BT601 = (Fraction("0.299"), Fraction("0.114"))
MATRICES: dict[int, tuple[Fraction, Fraction]] = {
    1: (Fraction("0.2126"), Fraction("0.0722")),  # BT.709
    2: _BT601,  # unspecified: swscale reads it as BT.601 too
    4: (Fraction("0.30"), Fraction("0.11")),  # FCC
    5: _BT601,  # BT.470 BG
    6: _BT601,  # SMPTE 170M
    7: (Fraction("0.212"), Fraction("0.087")),  # SMPTE 240M
    9: (Fraction("0.2627"), Fraction("0.0593")),  # BT.2020 non-constant luminance
}
_JPEG_RANGE = 2  # AVCOL_RANGE_JPEG: full range


def is_exact(frame: av.VideoFrame) -> bool:
    """Whether :func:`frames_to_rgb` converts ``frame`` in exact integer arithmetic.

    Other formats (10-bit, NV12, RGB, palettes) and colour matrices go through swscale to RGB at
    their own size first, which is not guaranteed to be bit-identical across CPUs.
    """
    return frame.format.name in SUBSAMPLING and frame.colorspace in MATRICES


@functools.lru_cache(maxsize=256)
def _filter(src: int, dst: int, extent: Fraction, shift: Fraction) -> tuple[np.ndarray, np.ndarray] | None:
    """Integer triangle-filter taps mapping ``src`` samples to ``dst`` output pixels.

    The picture spans ``[0, extent)`` in units of source samples; sample ``i`` sits at
    ``i + 1/2 + shift`` and output pixel ``o`` at ``(o + 1/2) * extent / dst``. Each output's
    weights are ``max(0, 1 - |distance| / support)`` with ``support = max(1, extent / dst)``,
    over the samples inside the picture, scaled to integers summing to exactly ``2**FILTER_BITS``.
    Exact fractions throughout: the taps are the same on every machine.

    Returns:
        ``(indices, weights)``, both ``(taps, dst)`` (``int64`` and ``int32``; unused taps have
        weight 0), or ``None`` when the filter is the identity.
    """
    scale = extent / dst
    support = max(Fraction(1), scale)
    one = 1 << FILTER_BITS
    rows: list[dict[int, int]] = []
    for o in range(dst):
        x = (o + Fraction(1, 2)) * scale - Fraction(1, 2) - shift  # output centre, in sample indices
        taps = {}
        for i in range(max(0, math.floor(x - support)), min(src - 1, math.ceil(x + support)) + 1):
            w = 1 - abs(i - x) / support
            if w > 0:
                taps[i] = w
        if not taps:  # only when the centre lies outside the samples: the nearest one
            taps = {min(max(round(x), 0), src - 1): Fraction(1)}
        total = sum(taps.values())
        weights = {i: round(w / total * one) for i, w in taps.items()}
        largest = max(weights, key=lambda i: (weights[i], -i))
        weights[largest] += one - sum(weights.values())  # rounding leftovers: a flat area stays flat
        rows.append(weights)
    if src == dst and all(r == {o: one} for o, r in enumerate(rows)):
        return None
    width = max(len(r) for r in rows)
    indices = np.zeros((width, dst), np.int64)
    weights = np.zeros((width, dst), np.int32)
    for o, r in enumerate(rows):
        indices[: len(r), o] = list(r)
        weights[: len(r), o] = list(r.values())
    return indices, weights


def _pass(x: np.ndarray, taps: tuple[np.ndarray, np.ndarray] | None, axis: int) -> np.ndarray:
    """Filters integer samples along ``axis`` (-1: columns, -2: rows) into ``int32``, keeping ``_FRACTION_BITS``.

    ``x`` holds samples scaled by ``2**s`` (``s`` 0 or ``_FRACTION_BITS``, below ``2**14``); the
    sums stay below ``2**(14 + FILTER_BITS) < 2**31``, exact in ``int32``, and are rounded
    (half up, by a shift) to ``2**_FRACTION_BITS``.
    """
    scaled = x.dtype == np.int32  # uint8 input has scale 1, a previous pass's output 2**_FRACTION_BITS
    if taps is None:
        return x if scaled else x.astype(np.int32) << _FRACTION_BITS
    indices, weights = taps
    gathered = np.take(x, indices.reshape(-1), axis=axis)  # every tap's sample, tap by tap
    if axis == -1:
        acc = np.einsum("...td,td->...d", gathered.reshape(*x.shape[:-1], *indices.shape), weights, dtype=np.int32)
    else:
        acc = np.einsum("...tdc,td->...dc", gathered.reshape(*x.shape[:-2], *indices.shape, x.shape[-1]), weights,
                        dtype=np.int32)  # fmt: skip
    drop = FILTER_BITS if scaled else FILTER_BITS - _FRACTION_BITS
    acc += 1 << (drop - 1)
    acc >>= drop
    return acc


def _resize_plane(
    plane: np.ndarray, size: tuple[int, int], extent: tuple[Fraction, Fraction], shift: tuple[Fraction, Fraction]
) -> np.ndarray:
    """``uint8 (T, rows, cols)`` samples -> ``int32 (T, height, width)`` scaled by ``2**_FRACTION_BITS``.

    Args:
        plane: Samples of one plane of ``T`` frames.
        size: Output ``(width, height)``.
        extent: The picture's ``(width, height)`` in units of this plane's samples.
        shift: Where the plane's samples sit, as for :func:`_filter`, ``(horizontal, vertical)``.
    """
    (width, height), (_, rows, cols) = size, plane.shape
    x = _pass(plane, _filter(cols, width, extent[0], shift[0]), axis=-1)
    return _pass(x, _filter(rows, height, extent[1], shift[1]), axis=-2)


def resize(images: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resizes ``uint8 (..., H, W)`` images (planes) to ``(..., height, width)``, bit-exactly.

    The antialiased triangle filter of the module docstring, rounded half up.
    """
    *lead, rows, cols = images.shape
    picture = (Fraction(cols), Fraction(rows))
    out = _resize_plane(images.reshape(-1, rows, cols), (width, height), picture, (Fraction(0), Fraction(0)))
    return _round(out, _FRACTION_BITS).reshape(*lead, height, width)


def _round(x: np.ndarray, bits: int) -> np.ndarray:
    """``uint8`` of ``x / 2**bits``, rounded half up and clipped to ``[0, 255]`` (``x`` is overwritten)."""
    x += 1 << (bits - 1)
    x >>= bits
    return np.clip(x, 0, 255, out=x).astype(np.uint8)


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Views of the frame's planes as ``uint8 (rows, cols)`` arrays, without the line padding."""
    return [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width] for p in frame.planes]


@functools.lru_cache(maxsize=32)
def _coefficients(matrix: tuple[Fraction, Fraction], full: bool) -> tuple[int, int, int, int, int, int]:
    """``(black, Y, R from V, G from U, G from V, B from U)``: integer coefficients (x ``2**_COLOR_BITS``)."""
    kr, kb = matrix
    kg = 1 - kr - kb
    luma, chroma = (Fraction(1), Fraction(1)) if full else (Fraction(255, 219), Fraction(255, 224))
    exact = [luma, chroma * 2 * (1 - kr), chroma * 2 * (1 - kb) * kb / kg, chroma * 2 * (1 - kr) * kr / kg,
             chroma * 2 * (1 - kb)]  # fmt: skip
    return (0 if full else 16, *(round(c * (1 << _COLOR_BITS)) for c in exact))


def frames_to_rgb(frames: Sequence[av.VideoFrame], width: int, height: int) -> np.ndarray:
    """Converts decoded frames to ``uint8 (N, height, width, 3)`` RGB, bit-exactly for planar 8-bit YUV.

    Each plane is resized straight to the output size (subsampled chroma is upsampled by the same
    filter), then the colour matrix is applied and the result rounded. Frames of other formats
    (see :func:`is_exact`) are converted to RGB by swscale at their own size first, then resized
    the same way.

    Args:
        frames: Decoded frames, all of one format, size, colour matrix and range.
        width: Output width.
        height: Output height.
    """
    first = frames[0]
    if not is_exact(first):
        full_chroma = Interpolation.BILINEAR | Interpolation.FULL_CHR_H_INT | Interpolation.ACCURATE_RND
        rgb = np.stack([f.reformat(format="rgb24", interpolation=full_chroma).to_ndarray() for f in frames])
        return np.moveaxis(resize(np.moveaxis(rgb, -1, 1), width, height), 1, -1)
    picture = (Fraction(first.width), Fraction(first.height))
    planes = [np.stack(p) for p in zip(*(_planes(f) for f in frames))]
    y = _resize_plane(planes[0], (width, height), picture, (Fraction(0), Fraction(0)))
    full = first.format.name.startswith("yuvj") or first.color_range == _JPEG_RANGE
    black, cy, rv, gu, gv, bu = _coefficients(MATRICES[first.colorspace], full)
    # Samples below 2**14 times coefficients below 2**14, three terms: every sum is below 2**30.
    y -= black << _FRACTION_BITS
    y *= cy
    bits = _FRACTION_BITS + _COLOR_BITS
    sx, sy = SUBSAMPLING[first.format.name]
    # Chroma sample j sits with luma sample sx * j: left of its own cell's centre.
    shift = (Fraction(1 - sx, 2 * sx), Fraction(0))
    extent = (picture[0] / sx, picture[1] / sy)
    u, v = (_resize_plane(p, (width, height), extent, shift) for p in planes[1:])
    u -= 128 << _FRACTION_BITS
    v -= 128 << _FRACTION_BITS
    rgb = np.empty((*y.shape, 3), np.uint8)
    rgb[..., 0] = _round(rv * v + y, bits)
    green = gu * u
    green += gv * v
    rgb[..., 1] = _round(np.subtract(y, green, out=green), bits)
    rgb[..., 2] = _round(np.add(bu * u, y, out=u), bits)
    return rgb


def rgb_to_yuv444(rgb: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, 3)`` RGB -> ``uint8 (3, H, W)`` limited-range BT.601 YUV planes, bit-exactly.

    The inverse of what :func:`frames_to_rgb` applies to an unspecified colour space, rounded half
    up; what :func:`data.synthetic.write_video` hands the encoder (swscale's conversion would
    depend on the CPU).
    """
    kr, kb = _BT601
    kg = 1 - kr - kb
    bits = 16
    rows = (
        (16, [c * Fraction(219, 255) for c in (kr, kg, kb)]),
        (128, [c * Fraction(224, 255) / (2 * (1 - kb)) for c in (-kr, -kg, 1 - kb)]),
        (128, [c * Fraction(224, 255) / (2 * (1 - kr)) for c in (1 - kr, -kg, -kb)]),
    )
    x = rgb.astype(np.int32)
    out = []
    for offset, row in rows:
        r, g, b = (round(c * (1 << bits)) for c in row)
        acc = r * x[..., 0] + g * x[..., 1] + b * x[..., 2] + ((2 * offset + 1) << (bits - 1))
        out.append(np.clip(acc >> bits, 0, 255).astype(np.uint8))
    return np.stack(out)
