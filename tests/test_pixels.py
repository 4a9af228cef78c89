"""data.pixels: YUV -> RGB and resizing in integers, bit-identical on every CPU and faithful to swscale."""

import hashlib
import io

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import Interpolation

from data.pixels import SUBSAMPLING, _planes, frames_to_rgb, is_exact, resize, rgb_to_yuv444

# swscale's most faithful bilinear mode (chroma interpolated at full resolution, accurate rounding):
# what data.pixels computes. Its default mode shares chroma between pixel pairs for RGB output.
FULL_CHROMA = Interpolation.BILINEAR | Interpolation.FULL_CHR_H_INT | Interpolation.ACCURATE_RND


def planes_of(fmt: str, width: int, height: int, shift: int = 0) -> list[np.ndarray]:
    """Test planes in integer arithmetic: gradients, a bright square and saturated colour blocks."""
    sx, sy = SUBSAMPLING[fmt]
    y, x = np.mgrid[0:height, 0:width]
    luma = 16 + (x + shift) * 219 // (width - 1 + shift) - (y * 40) // height + 20
    luma[height // 4 : height // 2, width // 3 : width // 2] = 230
    cy, cx = np.mgrid[0 : -(-height // sy), 0 : -(-width // sx)]
    u = 128 + (cx * 96) // cx.shape[1] - 48
    v = 128 + (cy * 80) // cy.shape[0] - 40
    u[: cy.shape[0] // 3, -cx.shape[1] // 4 :] = 200
    v[-cy.shape[0] // 3 :, : cx.shape[1] // 4] = 60
    return [np.clip(p, 16, 240).astype(np.uint8) for p in (luma, u, v)]


def frame_of(fmt: str, planes: list[np.ndarray], colorspace: int | None = None, full: bool = False) -> av.VideoFrame:
    """A VideoFrame holding ``planes`` (rows padded to the frame's line size)."""
    frame = av.VideoFrame(planes[0].shape[1], planes[0].shape[0], fmt)
    for plane, values in zip(frame.planes, planes):
        padded = np.zeros((plane.height, plane.line_size), np.uint8)
        padded[:, : plane.width] = values
        plane.update(padded.tobytes())
    if colorspace is not None:
        frame.colorspace = colorspace
    if full:
        frame.color_range = 2  # JPEG / full range
    return frame


def decoded(fmt: str, planes: list[list[np.ndarray]], colorspace: int | None = None, full: bool = False) -> list:
    """Frames as an H.264 decoder gives them (lossless, so holding exactly ``planes``).

    Decoded frames carry H.264's chroma siting (left), which swscale reads from the frame and
    data.pixels assumes; a frame built by hand says nothing, and swscale then centres its chroma.
    """
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height = planes[0][0].shape[1], planes[0][0].shape[0]
        stream.pix_fmt = fmt.replace("yuvj", "yuv")
        stream.options = {"qp": "0", "x264-params": "cpu-independent=1:threads=1"}
        if colorspace is not None:
            stream.codec_context.colorspace = colorspace
        if full:
            stream.codec_context.color_range = 2
        for p in planes:
            for packet in stream.encode(frame_of(stream.pix_fmt, p)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer) as container:
        frames = list(container.decode(video=0))
    assert all(np.array_equal(a, b) for f, p in zip(frames, planes) for a, b in zip(_planes(f), p))  # lossless
    return frames


def swscale(frame: av.VideoFrame, width: int, height: int, interpolation=FULL_CHROMA) -> np.ndarray:
    return frame.reformat(width=width, height=height, format="rgb24", interpolation=interpolation).to_ndarray()


# sha256 (first 16 hex digits) of frames_to_rgb's output for planes_of(fmt, 48, 32): exact integer
# arithmetic from fixed planes, so the same bytes on every CPU (and any BLAS, thread count or SIMD
# width); a change here changes every decoded pixel (bump data.decode.PIXELS_VERSION).
PINNED = {
    ("yuv420p", None, False, (48, 32)): "f6c39a4e6a027532",
    ("yuv420p", None, False, (30, 20)): "eaf1789551200281",
    ("yuv420p", None, False, (96, 64)): "233ab33ad7e96b58",
    ("yuv422p", None, False, (30, 20)): "b9116c97a85cb0b9",
    ("yuv444p", None, False, (30, 20)): "6a76bb248d836394",
    ("yuv444p", None, False, (48, 32)): "5b26d6c833accfc4",
    ("yuvj420p", None, False, (30, 20)): "b0f82cbaf1a0238d",
    ("yuv420p", 1, False, (30, 20)): "f98783030f8b8a7c",
    ("yuv420p", 6, True, (30, 20)): "b0f82cbaf1a0238d",  # full range said by the frame: as yuvj420p
}


@pytest.mark.parametrize("key", PINNED, ids=str)
def test_conversion_of_fixed_planes_is_pinned(key):
    fmt, colorspace, full, (width, height) = key
    frame = frame_of(fmt, planes_of(fmt, 48, 32), colorspace, full)
    rgb = frames_to_rgb([frame], width, height)
    assert rgb.shape == (1, height, width, 3) and rgb.dtype == np.uint8
    assert hashlib.sha256(rgb.tobytes()).hexdigest()[:16] == PINNED[key]


@pytest.mark.parametrize("fmt", ["yuv420p", "yuv422p", "yuv444p", "yuvj420p"])
@pytest.mark.parametrize("colorspace, full", [(None, False), (1, False), (9, False), (5, True)])
@pytest.mark.parametrize("size", [(48, 32), (30, 20), (64, 40), (17, 9)])
def test_conversion_is_within_two_levels_of_swscale(fmt, colorspace, full, size):
    # A faithful conversion: swscale's own output differs by CPU, by one level at most here;
    # two levels leave room for that, far below what a wrong matrix, range or chroma siting gives.
    frames = decoded(fmt, [planes_of(fmt, 48, 32, shift) for shift in (0, 7)], colorspace, full or fmt == "yuvj420p")
    assert frames[0].colorspace == (colorspace or 2) and (frames[0].color_range == 2) == (full or fmt == "yuvj420p")
    ours = frames_to_rgb(frames, *size).astype(int)
    diff = np.abs(ours - np.stack([swscale(f, *size) for f in frames]).astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.2, (diff.max(), diff.mean())


def test_yuv444_matches_swscale_default_mode_too():
    # The synthetic datasets are 4:4:4: their frames barely move from what decode_video gave
    # through swscale's default mode before (every results table was measured on those).
    frame = frame_of("yuv444p", planes_of("yuv444p", 48, 32))
    for size in ((48, 32), (32, 21), (96, 64)):
        diff = np.abs(frames_to_rgb([frame], *size)[0].astype(int) - swscale(frame, *size, None).astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.05


def test_other_formats_go_through_swscale_then_the_exact_resize():
    (frame,) = decoded("yuv420p", [planes_of("yuv420p", 48, 32)])
    assert is_exact(frame)
    frame = frame.reformat(format="nv12")
    assert not is_exact(frame)
    diff = np.abs(frames_to_rgb([frame], 30, 20)[0].astype(int) - swscale(frame, 30, 20).astype(int))
    # Resized after the conversion to RGB (which clips) rather than before: close, not as close.
    assert diff.mean() < 0.5, diff.mean()
    at_size = np.abs(frames_to_rgb([frame], 48, 32)[0].astype(int) - swscale(frame, 48, 32).astype(int))
    assert at_size.max() == 0  # at its own size, it is swscale's conversion


def test_resize_keeps_flat_areas_exact_and_is_the_identity_at_the_same_size():
    flat = np.full((2, 37, 53), 201, np.uint8)
    for size in ((53, 37), (20, 11), (100, 80), (7, 3)):
        assert (resize(flat, *size) == 201).all()
    image = np.random.default_rng(0).integers(0, 256, (3, 37, 53), dtype=np.uint8)
    assert np.array_equal(resize(image, 53, 37), image)


def test_resize_is_an_antialiased_bilinear_filter():
    # Within a level of torch's bilinear with antialiasing (what data.footage resized with
    # before): the same triangle filter, widened by the scale factor when shrinking.
    image = np.random.default_rng(1).integers(0, 256, (4, 45, 60), dtype=np.uint8)
    x = torch.from_numpy(image).double()[:, None]
    for width, height in ((20, 15), (33, 27), (60, 45), (128, 96), (61, 17)):
        ours = resize(image, width, height).astype(int)
        ref = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", antialias=True)
        assert np.abs(ours - ref[:, 0].round().clamp(0, 255).numpy()).max() <= 1
    # A 2x shrink of alternating columns averages them: antialiased, not every other column.
    stripes = np.tile(np.array([0, 200], np.uint8), (1, 8, 8))
    assert np.abs(resize(stripes, 8, 8).astype(int) - 100).max() <= 25


def test_rgb_to_yuv444_matches_swscale_and_round_trips():
    rgb = np.random.default_rng(2).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    yuv = rgb_to_yuv444(rgb)
    reference = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv444p").to_ndarray()
    assert np.abs(yuv.astype(int) - reference.astype(int)).max() <= 1
    back = frames_to_rgb([av.VideoFrame.from_ndarray(yuv, format="yuv444p")], 40, 24)[0]
    assert np.abs(back.astype(int) - rgb.astype(int)).max() <= 2  # 219 luma levels for 256
