"""Upload bytes -> checked, decoded float32 [H, W, C] in [0, 1]: formats, modes and refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.errors import CorruptImageError, ImageTooLargeError, UnsupportedImageError
from app.web.imageio import decode_image
from tests.conftest import encode, huge_png_header, random_pixels

LIMITS = {"max_bytes": 10 * 2**20, "max_pixels": 4096 * 4096}


def decode(data: bytes, h: int, w: int, c: int = 3, **limits: int):
    return decode_image(data, height=h, width=w, channels=c, **{**LIMITS, **limits})


def test_rgb_png_of_the_input_size_is_value_over_255_without_resampling():
    pixels = random_pixels(32, 24, 3)
    out = decode(encode(pixels), 32, 24)
    assert out.pixels.dtype == np.float32 and out.pixels.shape == (32, 24, 3)
    np.testing.assert_array_equal(out.pixels, pixels.astype(np.float32) / 255)
    assert out.pixels.flags.c_contiguous
    assert (out.format, out.original_size, out.resized) == ("PNG", (32, 24), False)


def test_a_different_size_is_resized_with_lanczos():
    pixels = random_pixels(48, 64, 3)
    out = decode(encode(pixels), 32, 32)
    expected = Image.fromarray(pixels).resize((32, 32), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(out.pixels, np.asarray(expected, np.float32) / 255)
    assert out.resized and out.original_size == (48, 64)


def test_grayscale_gives_one_channel_and_three_when_asked():
    grey = random_pixels(16, 16, 1)[:, :, 0]
    one = decode(encode(grey), 16, 16, c=1).pixels
    np.testing.assert_array_equal(one[:, :, 0], grey / np.float32(255))
    three = decode(encode(grey), 16, 16, c=3).pixels
    for k in range(3):
        np.testing.assert_array_equal(three[:, :, k], one[:, :, 0])


def test_rgb_to_one_channel_uses_luma():
    pure = np.zeros((4, 4, 3), np.uint8)
    pure[:, :, 1] = 255  # green: L = 255 * 587/1000
    out = decode(encode(pure), 4, 4, c=1).pixels
    assert out.shape == (4, 4, 1)
    np.testing.assert_allclose(out, 150 / 255, atol=1 / 255)


def test_transparency_is_laid_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2, :, :] = (255, 0, 0, 128)  # half-transparent red on top, fully transparent below
    out = decode(encode(rgba), 4, 4).pixels
    np.testing.assert_allclose(out[3, 0], (1, 1, 1))
    np.testing.assert_allclose(out[0, 0], (1, 127 / 255, 127 / 255), atol=1.5 / 255)


def test_grey_with_alpha_and_transparent_palette_are_laid_on_white():
    la = np.zeros((4, 4, 2), np.uint8)  # black, fully transparent
    out = decode(encode(la), 4, 4, c=1).pixels
    np.testing.assert_allclose(out, 1.0)
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 1)
    buf = io.BytesIO()
    palette.save(buf, format="PNG", transparency=0)
    out = decode(buf.getvalue(), 4, 4).pixels
    np.testing.assert_allclose(out[0, 0], (1, 0, 0))
    np.testing.assert_allclose(out[3, 3], (1, 1, 1))


def test_sixteen_bit_grey_is_value_over_65535():
    values = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, format="PNG")
    out = decode(buf.getvalue(), 2, 2, c=1).pixels
    np.testing.assert_allclose(out[:, :, 0], values / 65535, rtol=1e-6)
    assert decode(buf.getvalue(), 2, 2, c=3).pixels.shape == (2, 2, 3)


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # red
    buf = io.BytesIO()
    cmyk.save(buf, format="JPEG", quality=95)
    out = decode(buf.getvalue(), 8, 8).pixels
    np.testing.assert_allclose(out[4, 4], (1, 0, 0), atol=0.06)


def test_exif_orientation_is_applied():
    # 8 rows x 16 columns: left half black, right half white; orientation 6 = rotate 90° clockwise.
    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, 8:] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=100, exif=exif)
    out = decode(buf.getvalue(), 16, 8)
    assert out.original_size == (16, 8) and not out.resized
    assert out.pixels[:6].mean() < 0.1 and out.pixels[10:].mean() > 0.9  # left half is now on top


@pytest.mark.parametrize("fmt", ["JPEG", "GIF", "BMP", "WEBP", "TIFF"])
def test_other_supported_formats_decode(fmt):
    out = decode(encode(random_pixels(10, 12, 3), fmt), 10, 12)
    assert out.format == fmt and out.pixels.shape == (10, 12, 3)
    assert out.pixels.min() >= 0.0 and out.pixels.max() <= 1.0


def test_too_many_bytes_is_refused_with_the_sizes():
    data = encode(random_pixels(64, 64, 3))
    with pytest.raises(ImageTooLargeError) as e:
        decode(data, 8, 8, max_bytes=10_000)
    assert e.value.status_code == 413
    assert f"The file is {len(data) / 1024:.1f} KB; the limit is 9.8 KB." in e.value.message
    assert decode(data, 8, 8, max_bytes=len(data)).pixels.shape == (8, 8, 3)


def test_a_40000x40000_png_of_a_few_kb_is_refused_before_decoding():
    data = huge_png_header()
    assert len(data) < 16 * 1024
    with pytest.raises(ImageTooLargeError) as e:
        decode(data, 32, 32)
    # Decoding would have failed as truncated (422); the header check answered first.
    assert "40000x40000 = 1.6 billion pixels" in e.value.message
    assert "16.8 million" in e.value.message and "4096x4096" in e.value.message


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_just_over_the_pixel_limit_is_refused_with_the_size():
    data = encode(random_pixels(65, 64, 1)[:, :, 0])
    with pytest.raises(ImageTooLargeError, match="64x65 = 4.2 thousand pixels"):
        decode(data, 8, 8, max_pixels=64 * 64)
    assert decode(data, 8, 8, max_pixels=65 * 64).pixels.shape == (8, 8, 3)


@pytest.mark.parametrize(
    "data", [b"", b"hello, this is text", b"%PDF-1.4\n" + b"0" * 100], ids=["empty", "text", "pdf"]
)
def test_non_images_are_unsupported(data):
    with pytest.raises(UnsupportedImageError) as e:
        decode(data, 8, 8)
    assert e.value.status_code == 415 and "PNG, JPEG" in e.value.message


def test_an_image_format_we_do_not_read_is_unsupported_by_name():
    with pytest.raises(UnsupportedImageError, match="PPM images are not supported"):
        decode(encode(random_pixels(8, 8, 3), "PPM"), 8, 8)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_truncated_image_is_corrupt(fmt):
    data = encode(random_pixels(64, 64, 3), fmt)
    with pytest.raises(CorruptImageError) as e:
        decode(data[: len(data) // 2], 64, 64)
    assert e.value.status_code == 422 and "truncated or damaged" in e.value.message


def test_a_png_with_damaged_pixel_data_is_corrupt():
    data = bytearray(encode(random_pixels(32, 32, 3)))
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 60] = b"\xff" * 50
    with pytest.raises(CorruptImageError):
        decode(bytes(data), 32, 32)
