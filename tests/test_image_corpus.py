"""A corpus of awkward image files, made in the test (nothing downloaded), sent through
POST /api/v1/forward: each is refused with a clear 4xx or decoded to the right pixels.

What the server does with the ones it accepts:
- CMYK JPEG: converted to RGB (Pillow undoes Adobe's inverted CMYK).
- 16-bit grayscale PNG: full precision, value / 65535. 16-bit RGB PNG: Pillow reads the high
  byte of each sample, so value / 255 of that byte.
- Palette with a transparent index, grey + alpha: transparency is laid on white.
- Animated GIF: the first frame is used; the others are never decoded.
- EXIF orientation: applied before anything else (a phone photo comes out upright), and
  original_shape is the upright size.
"""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import encode, png_chunk, random_pixels

pytestmark = pytest.mark.anyio

API = "/api/v1"


def identity(h: int, w: int, c: int = 3) -> dict:
    """A network whose one layer (relu) returns its input, so layer 0's .npy is the image."""
    return {"input": {"height": h, "width": w, "channels": c}, "layers": [{"type": "relu"}]}


async def send(client, data: bytes, network: dict):
    return await client.post(
        f"{API}/forward",
        files={"image": ("upload", data, "application/octet-stream")},
        data={"network": json.dumps(network)},
    )


async def pixels(client, data: bytes, h: int, w: int, c: int = 3) -> tuple[np.ndarray, dict]:
    """The image as the network saw it: float32 (h, w, c) in [0, 1], and the reply."""
    r = await send(client, data, identity(h, w, c))
    assert r.status_code == 200, r.text
    body = r.json()
    npy = (await client.get(body["layers"][0]["array_url"])).content
    return np.load(io.BytesIO(npy), allow_pickle=False), body


def saved(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


# -- refused -----------------------------------------------------------------------------------
PNG = encode(random_pixels(32, 32, 3))
JPEG = encode(random_pixels(32, 32, 3), "JPEG", quality=90)
GIF = encode(random_pixels(16, 16, 3), "GIF")


def with_bad_crc(png: bytes) -> bytes:
    damaged = bytearray(png)
    damaged[30] ^= 0xFF  # inside IHDR's data: its CRC no longer matches
    return bytes(damaged)


DAMAGED = {
    "PNG cut after the signature": PNG[:8],
    "PNG cut inside IHDR": PNG[:20],
    "PNG cut after IHDR": PNG[:33],
    "PNG cut halfway through IDAT": PNG[: len(PNG) // 2],
    "PNG with a bad CRC": with_bad_crc(PNG),
    "JPEG cut after its header segments": JPEG[:20],
    "JPEG cut halfway through the scan": JPEG[: len(JPEG) // 2],
    "JPEG without its last bytes": JPEG[:-10],
    "GIF cut after the header": GIF[:13],
}


@pytest.mark.parametrize("name", DAMAGED)
async def test_a_damaged_or_truncated_image_is_422_saying_so(client, name):
    r = await send(client, DAMAGED[name], identity(8, 8))
    assert r.status_code == 422, r.text
    message = r.json()["detail"]["message"]
    assert any(word in message for word in ("damaged", "truncated")), message
    assert "Re-save" in message  # and what to do about it


WRONG_MAGIC = {
    "PNG with one signature byte changed": b"\x89PNX" + PNG[4:],
    "JPEG starting with an end-of-image marker": b"\xff\xd9" + JPEG[2:],
    "GIF88a": b"GIF88a" + GIF[6:],
    "text named .png": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    "a zip file": b"PK\x03\x04" + b"\0" * 60,
}


@pytest.mark.parametrize("name", WRONG_MAGIC)
async def test_a_file_with_no_known_signature_is_415_listing_the_formats(client, name):
    r = await send(client, WRONG_MAGIC[name], identity(8, 8))
    assert r.status_code == 415, r.text
    assert "PNG, JPEG, GIF, BMP, WebP or TIFF" in r.json()["detail"]["message"]


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, and a few bytes of image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b""))


def gif_bomb(screen: tuple[int, int], frame: tuple[int, int]) -> bytes:
    """A GIF89a of a few dozen bytes: a logical screen and one frame of the given sizes."""
    header = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, *frame, 0) + b"\x02\x02\x44\x01\x00"
    return header + image + b"\x3b"


def webp_canvas(width: int, height: int) -> bytes:
    """An extended WebP (VP8X) header declaring a width x height canvas, with no image data."""
    vp8x = b"\0\0\0\0" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_lossless_claiming(width: int, height: int) -> bytes:
    """A real 1x1 lossless WebP whose VP8L header is rewritten to claim width x height."""
    data = saved(Image.new("RGB", (1, 1)), "WEBP", lossless=True)
    at = data.index(b"VP8L") + 9  # after the chunk header and the 0x2f signature byte
    bits = int.from_bytes(data[at : at + 4], "little") & ~((1 << 28) - 1)
    bits |= (width - 1) | ((height - 1) << 14)
    return data[:at] + bits.to_bytes(4, "little") + data[at + 4 :]


BOMBS = {
    "PNG 40000x40000": (png_bomb(40_000, 40_000), "40000x40000"),
    "PNG 1 x 2^31-1": (png_bomb(1, 2**31 - 1), "2147483647"),
    "GIF screen 65535x65535": (gif_bomb((65535, 65535), (1, 1)), "billion pixels"),
    "GIF frame 65535x65535 on a 1x1 screen": (gif_bomb((1, 1), (65535, 65535)), "billion"),
    "WebP canvas 16384x16384": (webp_canvas(16384, 16384), "268.4 million pixels"),
    "WebP lossless claiming 16384x16384": (webp_lossless_claiming(16384, 16384), "268.4 million"),
    "WebP lossless claiming 5000x5000": (webp_lossless_claiming(5000, 5000), "5000x5000"),
}


@pytest.mark.parametrize("name", BOMBS)
async def test_a_tiny_file_claiming_huge_dimensions_is_413_before_decoding(client, name):
    data, shown = BOMBS[name]
    assert len(data) < 200
    r = await send(client, data, identity(8, 8))
    assert r.status_code == 413, r.text
    message = r.json()["detail"]["message"]
    assert shown in message and "the limit is 16.8 million" in message


# -- accepted, with the right pixels -----------------------------------------------------------
async def test_a_cmyk_jpeg_becomes_rgb(client):
    red = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # no cyan, full magenta and yellow
    x, body = await pixels(client, saved(red, "JPEG", quality=95), 8, 8)
    assert body["image"]["format"] == "JPEG"
    np.testing.assert_allclose(x[0, 0], [1.0, 0.0, 0.0], atol=2 / 255)


async def test_a_16_bit_grayscale_png_keeps_its_precision(client):
    values = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    x, _ = await pixels(client, saved(image, "PNG"), 8, 8, c=1)
    np.testing.assert_allclose(x[:, :, 0], values / 65535, atol=1e-6)  # finer than 1/255


def png_16_bit_rgb(samples: np.ndarray) -> bytes:
    """(h, w, 3) uint16 -> a 48-bit RGB PNG (Pillow cannot write one)."""
    h, w, _ = samples.shape
    rows = b"".join(b"\0" + samples[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b""))  # fmt: skip


async def test_a_16_bit_rgb_png_is_read_at_8_bits(client):
    samples = np.zeros((4, 4, 3), np.uint16)
    samples[..., 0], samples[..., 1], samples[..., 2] = 0x8000, 0xFFFF, 0x01FF
    x, _ = await pixels(client, png_16_bit_rgb(samples), 4, 4)
    np.testing.assert_allclose(x[2, 3], [0x80 / 255, 1.0, 0x01 / 255], atol=1e-6)


async def test_a_palette_png_with_a_transparent_index_is_laid_on_white(client):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # 0: red (transparent), 1: blue
    image.putpixel((1, 2), 1)
    x, _ = await pixels(client, saved(image, "PNG", transparency=0), 4, 4)
    np.testing.assert_array_equal(x[0, 0], [1, 1, 1])  # transparent red -> white
    np.testing.assert_array_equal(x[2, 1], [0, 0, 1])  # opaque blue stays blue


async def test_a_grey_and_alpha_png_is_laid_on_white(client):
    image = Image.new("LA", (3, 3), (0, 255))
    image.putpixel((0, 0), (0, 0))  # a transparent black pixel
    x, _ = await pixels(client, saved(image, "PNG"), 3, 3, c=1)
    assert x[0, 0, 0] == 1.0 and x[1, 1, 0] == 0.0


async def test_an_animated_gif_uses_its_first_frame(client):
    first, second = Image.new("RGB", (6, 6), (255, 0, 0)), Image.new("RGB", (6, 6), (0, 0, 255))
    data = saved(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    x, body = await pixels(client, data, 6, 6)
    assert body["image"]["format"] == "GIF"
    np.testing.assert_array_equal(x.reshape(-1, 3), np.tile([1.0, 0.0, 0.0], (36, 1)))


@pytest.mark.parametrize(("orientation", "white"), [(6, "top"), (8, "bottom"), (3, "right")])
async def test_the_exif_orientation_is_applied(client, orientation, white):
    stored = np.zeros((8, 16, 3), np.uint8)  # 16 wide, 8 high as stored
    stored[:, :8] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = orientation  # 6: turn 90 clockwise to show; 8: 90 anticlockwise; 3: 180
    data = saved(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    upright = (8, 16) if orientation == 3 else (16, 8)
    x, body = await pixels(client, data, *upright)
    assert body["image"]["original_shape"] == list(upright) and body["image"]["resized"] is False
    grey = x.mean(axis=2)
    half = {"top": grey[:8], "bottom": grey[8:], "right": grey[:, 8:]}[white]
    rest = {"top": grey[8:], "bottom": grey[:8], "right": grey[:, :8]}[white]
    assert half.min() > 0.9 and rest.max() < 0.1


async def test_a_jpeg_with_a_broken_exif_block_still_decodes(client):
    data = saved(Image.new("RGB", (4, 4), (0, 255, 0)), "JPEG", quality=95, exif=b"Exif\0\0junk")
    x, _ = await pixels(client, data, 4, 4)
    np.testing.assert_allclose(x[0, 0], [0, 1, 0], atol=2 / 255)
