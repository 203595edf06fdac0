"""Upload bytes -> a checked, decoded, resized float32 image [H, W, C] in [0, 1].

Checks come before work: the byte count before opening, the pixel count from the header before
decoding (Image.open only reads the header; .load() decodes). Pixels are value / 255 (16-bit:
value / 65535), RGB or one channel (ITU-R 601 luma), EXIF orientation applied, transparency laid
on white. Resizing uses Pillow's Lanczos filter, and happens only when the size differs.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from app.errors import CorruptImageError, ImageTooLargeError, UnsupportedImageError
from app.web.validation import file_size

SUPPORTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
_SUPPORTED_TEXT = "PNG, JPEG, GIF, BMP, WebP or TIFF"
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


@dataclass(frozen=True)
class DecodedImage:
    """pixels : ndarray of shape (H, W, C), float32 in [0, 1], C = 1 or 3, C-contiguous."""

    pixels: np.ndarray
    format: str
    original_size: tuple[int, int]  # (height, width) of the file
    resized: bool


def _count(n: int) -> str:
    """1_600_000_000 -> "1.6 billion"; 16_777_216 -> "16.8 million"."""
    for size, word in ((10**9, "billion"), (10**6, "million"), (10**3, "thousand")):
        if n >= size:
            return f"{n / size:.1f} {word}"
    return str(n)


def _too_many_pixels(width: int | None, height: int | None, pixels: int, limit: int) -> str:
    side = int(limit**0.5)
    what = f"{width}x{height} = {_count(pixels)} pixels" if width else f"{_count(pixels)} pixels"
    return (
        f"The image is {what}; the limit is {_count(limit)}. "
        f"Resize it below {side}x{side} and upload it again."
    )


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG header without Pillow's decompression-bomb refusal."""
    try:
        return PngImagePlugin.PngImageFile(io.BytesIO(data)).size
    except Exception:
        return None


def _bomb_message(data: bytes, error: Exception, limit: int) -> str:
    size = _header_size(data)
    if size is not None:
        return _too_many_pixels(size[0], size[1], size[0] * size[1], limit)
    found = re.search(r"\((\d+) pixels\)", str(error))
    pixels = int(found.group(1)) if found else limit + 1
    return _too_many_pixels(None, None, pixels, limit)


# File signatures of the supported formats (BMP's two letters are too common to trust).
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


def _claimed_format(data: bytes) -> str | None:
    """The supported format whose signature the data starts with, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES.items() if data.startswith(magic)), None)


def open_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Identify an upload and refuse it before decoding: 413 bytes/pixels, 415 format.

    Returns the lazily opened PIL image (header read, pixels not decoded yet).
    """
    if len(data) > max_bytes:
        raise ImageTooLargeError(
            f"The file is {file_size(len(data))}; the limit is {file_size(max_bytes)}. "
            "Save it smaller (JPEG, or fewer pixels) and upload it again."
        )
    if not data:
        raise UnsupportedImageError(f"The file is empty. Choose a {_SUPPORTED_TEXT} image.")
    # Pillow's own bomb check (warning above the limit, error above twice it) backs ours up.
    # It is process-wide; setting it per call keeps it equal to the limit of the app in use.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError(_bomb_message(data, e, max_pixels)) from None
    except UnidentifiedImageError:
        claimed = _claimed_format(data)
        if claimed is not None:  # the right signature, then something Pillow cannot parse
            raise CorruptImageError(
                f"The file starts like a {claimed} image but is damaged or truncated. Re-save or "
                "re-download it and upload it again."
            ) from None
        raise UnsupportedImageError(
            f"The file is not an image this server can read. Upload a {_SUPPORTED_TEXT} file."
        ) from None
    except Exception as e:  # a plugin that chokes on its own header
        raise CorruptImageError(f"The image header is damaged ({e}). Re-save the image.") from None
    if image.format not in SUPPORTED_FORMATS:
        raise UnsupportedImageError(
            f"{image.format} images are not supported. Convert it to {_SUPPORTED_TEXT}."
        )
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(_too_many_pixels(width, height, width * height, max_pixels))
    return image


def _decode(image: Image.Image) -> Image.Image:
    """Decode the pixels (first frame) and apply the EXIF orientation; 422 when damaged."""
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError(f"A frame of the image is too large: {e}") from None
    except Exception as e:  # truncated data, broken zlib/JPEG streams, bad tiles ...
        raise CorruptImageError(
            f"The image could not be decoded; it looks truncated or damaged ({e}). "
            "Re-save or re-download it and upload it again."
        ) from None
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block does not spoil the pixels
        return image


def _on_white(image: Image.Image) -> Image.Image:
    """Lay any transparency on a white background: -> "RGB" or "L"."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA") or (image.mode == "L" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "RGBa", "RGBX") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode == "1":
        return image.convert("L")
    if image.mode not in ("L", "RGB"):  # CMYK, YCbCr, LAB, HSV ...
        return image.convert("RGB")
    return image


def _high_depth_gray(image: Image.Image, channels: int, size: tuple[int, int]) -> np.ndarray:
    """16-bit and float grayscale: resample in float, scale by 65535 (float: clip to [0, 1])."""
    scale = 1.0 if image.mode == "F" else 65535.0
    gray = image.convert("F")
    if gray.size != size:
        gray = gray.resize(size, Image.Resampling.LANCZOS)
    a = np.clip(np.asarray(gray, dtype=np.float32) / np.float32(scale), 0.0, 1.0)[:, :, None]
    return np.repeat(a, channels, axis=2) if channels == 3 else a


def to_array(image: Image.Image, *, channels: int, height: int, width: int) -> np.ndarray:
    """A decoded PIL image -> float32 (height, width, channels) in [0, 1]."""
    size = (width, height)
    if image.mode in _HIGH_DEPTH_MODES:
        return np.ascontiguousarray(_high_depth_gray(image, channels, size))
    image = _on_white(image)
    image = image.convert("RGB" if channels == 3 else "L")
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    a = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    return np.ascontiguousarray(a.reshape(height, width, channels))


def decode_image(
    data: bytes, *, height: int, width: int, channels: int, max_bytes: int, max_pixels: int
) -> DecodedImage:
    """Upload bytes -> DecodedImage with pixels (height, width, channels) float32 in [0, 1].

    Raises ImageTooLargeError (413), UnsupportedImageError (415) or CorruptImageError (422).
    """
    image = open_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    fmt = image.format or "unknown"
    decoded = _decode(image)
    original = (decoded.height, decoded.width)
    try:
        pixels = to_array(decoded, channels=channels, height=height, width=width)
    except Exception as e:  # an exotic mode Pillow cannot convert
        raise UnsupportedImageError(
            f"The image's pixel format ({decoded.mode}) cannot be converted ({e}). "
            "Save it as 8-bit RGB PNG or JPEG."
        ) from None
    return DecodedImage(pixels, fmt, original, original != (height, width))
