"""Opening images safely: every readable image becomes an upright 8-bit RGB picture, every
unreadable one raises `ImageError` with a one-line reason that names the file.

    open_image(path) -> PIL.Image.Image (mode "RGB")
    to_rgb(image)    -> the same conversion for an image already in memory

What it guards against (the per-file failures `deepvrm detect` reports and moves past):

- decompression bombs: the pixel count is read from the header and checked against `max_pixels`
  before any pixel data is decoded, so a tiny file claiming 100k x 100k pixels costs nothing;
- zero-byte files, truncated or corrupt data, non-images (whatever their extension), formats
  Pillow cannot decode, dangling symbolic links, folders, unreadable files.

What it normalises: EXIF orientation (the picture comes out upright), animations and multi-page
files (first frame), and every mode Pillow has: 1-bit, greyscale, 16/32-bit integer and float
greyscale (scaled to 8 bits, not clipped), palette (with or without transparency), CMYK, YCbCr,
LAB, HSV, and alpha modes (composited on white, as transformers' `convert_rgb` does).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own default limit (about 89.5 megapixels, e.g. 9459 x 9459): larger images are refused.
DEFAULT_MAX_PIXELS = 89_478_485

# Longest side / shortest side that Qwen2-VL's image processor accepts is < 200 (its smart_resize
# raises otherwise); `fit_aspect_ratio` brings images beyond this margin inside it.
MAX_ASPECT_RATIO = 150
# Padding a 1 x 10^6 strip to the ratio above would need 6.7 gigapixels: crop such strips first so
# the padded picture stays below this many pixels (the model sees at most 512x512 of them anyway).
MAX_PADDED_PIXELS = 4_000_000


class ImageError(Exception):
    """An image that cannot be scored; `reason` is one line, `str(error)` is `"<path>: <reason>"`."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = " ".join(str(reason).split())  # one line, whatever the underlying message held
        super().__init__(f"{self.path}: {self.reason}")


def open_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The image at `path` as an upright RGB picture (first frame), fully decoded and detached from
    the file. Raises `ImageError` with the reason when it cannot be.

    `max_pixels=None` lifts this function's own size limit (Pillow's global
    `Image.MAX_IMAGE_PIXELS` still applies to images over twice that).
    """
    path = os.fspath(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns (over MAX_IMAGE_PIXELS) or raises (over twice that) on its own; our limit
            # below is the one that decides, and the warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only
    except Image.DecompressionBombError as error:
        raise ImageError(path, f"refused as a possible decompression bomb, not decoded ({error})") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (or a format Pillow cannot read)") from None
    except OSError as error:
        if error.errno is not None:  # the file system's reason (permission, I/O error, ...)
            raise ImageError(path, f"cannot open it: {_describe(error)}") from None
        raise ImageError(path, f"truncated or corrupt image header ({_describe(error)})") from None
    except Exception as error:  # plugins raise SyntaxError, ValueError, struct.error on bad headers
        raise ImageError(path, f"corrupt image header ({_describe(error)})") from None
    with image:
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageError(path, f"invalid image size {width}x{height}")
        if max_pixels is not None and width * height > max_pixels:
            raise ImageError(
                path,
                f"refused as a possible decompression bomb: {width}x{height} = {width * height:,} pixels "
                f"exceeds the limit of {max_pixels:,} (not decoded)",
            )
        try:
            image.seek(0)  # animations and multi-page files: the first frame
            image.load()
        except Image.DecompressionBombError as error:
            raise ImageError(path, f"refused as a possible decompression bomb, not decoded ({error})") from None
        except MemoryError:
            raise ImageError(path, f"out of memory decoding {width}x{height} pixels") from None
        except Exception as error:  # truncated data, bad chunks, decoder errors of any plugin
            raise ImageError(path, f"truncated or corrupt image data ({_describe(error)})") from None
        try:
            rgb = to_rgb(_upright(image))
        except Exception as error:
            raise ImageError(path, f"cannot convert {image.mode} image to RGB ({_describe(error)})") from None
    return rgb


def _check_file(path: str) -> None:
    """Reasons that need no decoding: missing, dangling link, folder, empty, unreadable."""
    if not os.path.lexists(path):
        raise ImageError(path, "no such file")
    if os.path.islink(path) and not os.path.exists(path):
        raise ImageError(path, f"dangling symbolic link (points to {os.readlink(path)!r}, which does not exist)")
    if os.path.isdir(path):
        raise ImageError(path, "is a folder, not an image file")
    if not os.path.isfile(path):
        raise ImageError(path, "not a regular file")
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise ImageError(path, f"cannot read it: {_describe(error)}") from None
    if size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise ImageError(path, "permission denied")


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; an unreadable EXIF block leaves the picture as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of `image`, whatever its mode (see the module docstring)."""
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode in ("I", "F") or mode.startswith("I;16"):
        return Image.fromarray(_to_uint8(np.asarray(image), mode), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        if mode in ("RGBa", "La"):  # premultiplied alpha: Pillow converts these through RGBA only
            image = image.convert("RGBA")
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV, ...


def _to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    """Integer and float greyscale to 8 bits by scaling (Pillow's own conversion clips at 255,
    which turns most 16-bit pictures white)."""
    array = array.astype(np.float64)
    if mode.startswith("I;16"):
        scale = 65535.0
    elif mode == "F":
        finite = array[np.isfinite(array)]
        peak = float(finite.max()) if finite.size else 0.0
        array = np.nan_to_num(array, nan=0.0, posinf=peak, neginf=0.0)
        scale = 1.0 if peak <= 1.0 else (255.0 if peak <= 255.0 else 65535.0)
    else:  # "I": 32-bit; in practice 16-bit PNGs or 8-bit data widened by a plugin
        peak = float(array.max()) if array.size else 0.0
        scale = 255.0 if peak <= 255.0 else (65535.0 if peak <= 65535.0 else peak)
    return np.clip(np.rint(array * (255.0 / scale)), 0, 255).astype(np.uint8)


def fit_aspect_ratio(image: Image.Image, max_ratio: float = MAX_ASPECT_RATIO) -> Image.Image:
    """`image` unchanged when its sides are within `max_ratio` of each other; otherwise the short
    side is padded (centred, repeating the edge pixels) up to `long / max_ratio`.

    Qwen2-VL's image processor refuses aspect ratios of 200 and more, but a 1 x 1000 strip is still
    an image a user may ask about. Padding keeps every original pixel (cropping would discard most
    of the strip). For extreme strips whose padded picture would exceed `MAX_PADDED_PIXELS`, the
    long side is first cropped to its centre so the result stays small.
    """
    width, height = image.size
    long_side, short_side = max(width, height), min(width, height)
    if long_side <= max_ratio * short_side:
        return image
    max_long = int((MAX_PADDED_PIXELS * max_ratio) ** 0.5)
    if long_side > max_long:
        if width >= height:
            left = (width - max_long) // 2
            image = image.crop((left, 0, left + max_long, height))
        else:
            top = (height - max_long) // 2
            image = image.crop((0, top, width, top + max_long))
        width, height = image.size
        long_side = max_long
    target_short = -(-long_side // int(max_ratio))  # ceil
    array = np.asarray(image)
    extra = target_short - short_side
    before, after = extra // 2, extra - extra // 2
    pad = [(before, after), (0, 0)] if width >= height else [(0, 0), (before, after)]
    pad += [(0, 0)] * (array.ndim - 2)
    return Image.fromarray(np.pad(array, pad, mode="edge"), image.mode)


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageError",
    "fit_aspect_ratio",
    "open_image",
    "to_rgb",
]
