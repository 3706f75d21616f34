"""Safe image opening: odd images become upright 8-bit RGB, bad files a one-line reason naming them.

Every image here is built in the test (no binary fixtures)."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from deepvrm.inference.images import ImageError, fit_aspect_ratio, open_image, to_rgb


# ---------------------------------------------------------------------------------------- builders
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, raw_rows: bytes | None) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB, nor lie about its size)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = zlib.compress(raw_rows if raw_rows is not None else b"")
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def rgb16_png(array: np.ndarray) -> bytes:
    """16-bit-per-channel RGB PNG of a uint16 array [h, w, 3]."""
    big_endian = array.astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in big_endian)
    return png_bytes(array.shape[1], array.shape[0], 16, 2, raw)


def bomb_png(width: int, height: int) -> bytes:
    """A few dozen bytes whose header claims width x height RGB pixels (and holds no pixel data)."""
    return png_bytes(width, height, 8, 2, None)


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def write(path, data: bytes):
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------- readable images
def test_greyscale_palette_and_one_bit_become_rgb(tmp_path):
    grey = write(tmp_path / "grey.png", encoded(Image.new("L", (6, 4), 77), "PNG"))
    palette = Image.new("P", (5, 5), 3)
    palette.putpalette([0, 0, 0] * 3 + [10, 200, 30] + [0, 0, 0] * 252)
    pal = write(tmp_path / "pal.png", encoded(palette, "PNG"))
    one = write(tmp_path / "one.bmp", encoded(Image.new("1", (3, 3), 1), "BMP"))
    for path, pixel in ((grey, (77, 77, 77)), (pal, (10, 200, 30)), (one, (255, 255, 255))):
        image = open_image(path)
        assert image.mode == "RGB"
        assert image.getpixel((0, 0)) == pixel, path.name


def test_16bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 10, 32896, 65535]], dtype=np.uint16)
    path = write(tmp_path / "g16.png", encoded(Image.fromarray(values), "PNG"))
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")  # Pillow reads it as 16/32-bit integers
    pixels = np.asarray(open_image(path))[0, :, 0]
    # Pillow's own convert("RGB") would clip everything above 255 to white: 0, 255, 255, 255.
    assert pixels.tolist() == [0, 10, 128, 255]


def test_16bit_rgb_png(tmp_path):
    array = np.zeros((2, 3, 3), dtype=np.uint16)
    array[0, 0] = (65535, 0, 257 * 100)
    path = write(tmp_path / "rgb16.png", rgb16_png(array))
    image = open_image(path)
    assert image.mode == "RGB" and image.size == (3, 2)
    assert image.getpixel((0, 0)) == (255, 0, 100)


def test_float_and_32bit_modes():
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    assert np.asarray(to_rgb(floats))[0, :, 0].tolist() == [0, 128, 255]
    ints = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32), "I")
    assert np.asarray(to_rgb(ints))[0, :, 0].tolist() == [0, 100, 255]


def test_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    path = write(tmp_path / "rgba.png", encoded(rgba, "PNG"))
    image = open_image(path)
    assert image.getpixel((0, 0)) == (0, 0, 255)  # opaque pixel kept
    assert image.getpixel((1, 1)) == (255, 255, 255)  # fully transparent -> white, not the hidden red
    la = write(tmp_path / "la.png", encoded(Image.new("LA", (2, 2), (0, 0)), "PNG"))
    assert open_image(la).getpixel((0, 0)) == (255, 255, 255)
    trans = Image.new("P", (2, 2), 0)
    trans.putpalette([9, 9, 9] * 256)
    trans_path = write(tmp_path / "ptrans.png", encoded(trans, "PNG", transparency=0))
    assert open_image(trans_path).getpixel((0, 0)) == (255, 255, 255)


def test_cmyk_jpeg(tmp_path):
    path = write(tmp_path / "cmyk.jpg", encoded(Image.new("CMYK", (16, 8), (0, 255, 255, 0)), "JPEG", quality=95))
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    red, green, blue = open_image(path).getpixel((4, 4))
    assert red > 200 and green < 60 and blue < 60


def test_animation_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), color) for color in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    gif = write(tmp_path / "anim.gif", encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50))
    webp = write(tmp_path / "anim.webp", encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True))
    for path in (gif, webp):
        with Image.open(path) as raw:
            assert raw.n_frames == 3
        red, green, blue = open_image(path).getpixel((4, 4))
        assert red > 200 and green < 50 and blue < 50, path.name


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (30, 10), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 10))  # white square on the stored left end
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = write(tmp_path / "rotated.jpg", encoded(image, "JPEG", exif=exif, quality=95))
    upright = open_image(path)
    assert upright.size == (10, 30)
    assert sum(upright.getpixel((5, 5))) > 600  # the stored left end is now at the top
    assert sum(upright.getpixel((5, 25))) < 60


def test_tiny_and_odd_named_files(tmp_path):
    path = write(tmp_path / "naïve photo 写真 (1).png", encoded(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"))
    image = open_image(path)
    assert image.size == (1, 1) and image.getpixel((0, 0)) == (1, 2, 3)


def test_image_is_detached_from_its_file(tmp_path):
    path = write(tmp_path / "a.png", encoded(Image.new("RGB", (5, 5), (9, 9, 9)), "PNG"))
    image = open_image(path)
    path.unlink()  # the file is gone: the picture must still be usable
    assert image.getpixel((2, 2)) == (9, 9, 9)


# ---------------------------------------------------------------------------------------- bad files
def _reason(path, **kwargs) -> str:
    with pytest.raises(ImageError) as info:
        open_image(path, **kwargs)
    error = info.value
    assert error.path == os.fspath(path)
    assert str(error).startswith(os.fspath(path) + ": ")  # the message names the file
    assert "\n" not in str(error)  # one line
    return error.reason


def test_bad_files_get_a_clear_reason(tmp_path):
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    png, jpeg = encoded(noisy, "PNG"), encoded(noisy, "JPEG", quality=90)
    cases = {
        "empty.jpg": (b"", "empty file"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "text.png": (b"this is not an image, just text\n", "not an image"),
        "random.jpg": (np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an image"),
    }
    for name, (data, expected) in cases.items():
        assert expected in _reason(write(tmp_path / name, data)), name


def test_links_folders_and_missing_files(tmp_path):
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    assert "dangling symbolic link" in _reason(tmp_path / "dangling.png")
    (tmp_path / "folder.jpg").mkdir()
    assert "is a folder" in _reason(tmp_path / "folder.jpg")
    assert "no such file" in _reason(tmp_path / "missing.png")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    path = write(tmp_path / "locked.png", encoded(Image.new("RGB", (2, 2)), "PNG"))
    path.chmod(0)
    try:
        assert "permission denied" in _reason(path).lower()
    finally:
        path.chmod(0o644)


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    # Beyond twice Pillow's limit (10 gigapixels): Pillow's own guard refuses at open.
    huge = write(tmp_path / "huge.png", bomb_png(100_000, 100_000))
    # Above our limit but below Pillow's hard one: our header check refuses it. The file holds no
    # pixel data at all, so a "decompression bomb" reason (not "truncated") proves nothing was decoded.
    big = write(tmp_path / "big.png", bomb_png(12_000, 12_000))
    started = time.perf_counter()
    assert "decompression bomb" in _reason(huge)
    reason = _reason(big)
    assert "decompression bomb" in reason and "12000x12000" in reason and "not decoded" in reason
    assert time.perf_counter() - started < 2.0
    # The limit is a parameter: a real image over it is refused, under it accepted.
    small = write(tmp_path / "small.png", encoded(Image.new("RGB", (20, 20)), "PNG"))
    assert "decompression bomb" in _reason(small, max_pixels=399)
    assert open_image(small, max_pixels=400).size == (20, 20)


# ---------------------------------------------------------------------------------------- aspect ratio
def test_fit_aspect_ratio_pads_strips_the_processor_would_refuse():
    from deepvrm.processing_deepvrm import DeepVRMImageProcessor

    processor = DeepVRMImageProcessor(size={"shortest_edge": 112 * 112, "longest_edge": 112 * 112})
    strip = Image.new("RGB", (1000, 2), (5, 6, 7))
    with pytest.raises(ValueError, match="aspect ratio"):
        processor(images=[strip], return_tensors="pt")
    fitted = fit_aspect_ratio(strip)
    assert fitted.width == 1000 and 2 < fitted.height <= 10
    assert np.all(np.asarray(fitted) == (5, 6, 7))  # edge padding: no foreign border
    assert processor(images=[fitted], return_tensors="pt")["image_grid_thw"].shape == (1, 3)
    square = Image.new("RGB", (50, 40))
    assert fit_aspect_ratio(square) is square
    tall = fit_aspect_ratio(Image.new("L", (1, 2_000_000)))
    assert tall.height / tall.width <= 150 and tall.width * tall.height < 4_100_000  # about MAX_PADDED_PIXELS
