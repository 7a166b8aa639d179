"""Files built byte by byte, for what no encoder writes: bombs, broken frames, hidden archives.

Everything here is made by the tests themselves; the pictures are flat colours and shapes.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vigil.config import IntakeSettings
from vigil.intake import DecodedImage, Frame, open_image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def decode_all(
    data: bytes, limits: IntakeSettings | None = None
) -> tuple[DecodedImage, list[Frame]]:
    """Open an upload and decode every frame Vigil would screen."""
    image = open_image(data, limits or IntakeSettings())
    return image, list(image.frames())


def solid(
    colour: tuple[int, ...], size: tuple[int, int] = (48, 32), mode: str = "RGB"
) -> Image.Image:
    return Image.new(mode, size, colour)


def quadrants(width: int, height: int) -> Image.Image:
    """Red, green, blue and white corners (clockwise from top left): any turn or flip shows."""
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[: height // 2, : width // 2] = RED
    pixels[: height // 2, width // 2 :] = GREEN
    pixels[height // 2 :, width // 2 :] = BLUE
    pixels[height // 2 :, : width // 2] = WHITE
    return Image.fromarray(pixels, "RGB")


def pixel(image: Image.Image, point: tuple[int, int]) -> tuple[int, ...]:
    """One pixel's channel values, as a tuple whatever the image's mode."""
    value = image.getpixel(point)
    assert isinstance(value, tuple), f"{image.mode} pixel {value!r} is not a tuple"
    return tuple(int(channel) for channel in value)


def corner_colours(image: Image.Image) -> list[tuple[int, ...]]:
    """The colours a little way in from each corner, clockwise from top left."""
    width, height = image.size
    inset_x, inset_y = max(1, width // 8), max(1, height // 8)
    points = [
        (inset_x, inset_y),
        (width - 1 - inset_x, inset_y),
        (width - 1 - inset_x, height - 1 - inset_y),
        (inset_x, height - 1 - inset_y),
    ]
    return [pixel(image.convert("RGB"), point) for point in points]


def shows_quadrants(image: Image.Image, tolerance: int = 24) -> bool:
    """Whether the picture shows :func:`quadrants` the right way up, red at the top left."""
    return all(
        close_to(actual, expected, tolerance)
        for actual, expected in zip(corner_colours(image), [RED, GREEN, BLUE, WHITE], strict=True)
    )


def close_to(actual: Sequence[int], expected: Sequence[int], tolerance: int = 24) -> bool:
    """Colour equality up to lossy-compression noise."""
    return len(actual) == len(expected) and all(
        abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)
    )


def zip_archive(comment: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload/readme.txt", "not an image")
        archive.comment = comment
    return buffer.getvalue()


# --- PNG -----------------------------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its correct CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header declares ``width`` x ``height`` RGB pixels.

    The IDAT holds one scanline of zeros: a decoder that believed the header would run out of
    data long before the declared picture, so only a header check can refuse it cheaply.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * (1 + 3 * min(width, 64))))
        + png_chunk(b"IEND", b"")
    )


# --- JPEG ----------------------------------------------------------------------------------------


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) is rewritten to declare another size."""
    position = 2
    while True:
        marker, length = (
            jpeg[position + 1],
            int.from_bytes(jpeg[position + 2 : position + 4], "big"),
        )
        if marker == 0xC0:
            size_at = position + 5  # marker (2), length (2), sample precision (1)
            return jpeg[:size_at] + struct.pack(">HH", height, width) + jpeg[size_at + 4 :]
        if marker == 0xDA:
            raise ValueError("no baseline frame header before the scan")
        position += 2 + length


def jpeg_with_comment(image: Image.Image, comment: bytes) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", comment=comment)
    return buffer.getvalue()


# --- GIF -----------------------------------------------------------------------------------------

# A four-colour global palette: index 0 red, 1 green, 2 blue, 3 white.
GIF_PALETTE = (RED, GREEN, BLUE, WHITE)
_GIF_CODE_SIZE = 2  # the smallest LZW code size: colour indexes are 2 bits
_GIF_CLEAR, _GIF_END = 4, 5


@dataclass(frozen=True)
class GifFrame:
    """One frame of a hand-written GIF: a flat colour over a rectangle of the canvas."""

    colour_index: int
    width: int
    height: int
    left: int = 0
    top: int = 0
    # The LZW minimum code size as written; anything outside 2..8 is a broken frame.
    code_size: int = _GIF_CODE_SIZE
    # Pixels actually encoded (default: all of them); fewer gives a frame whose data ends early.
    encoded_pixels: int | None = None


def handmade_gif(
    screen: tuple[int, int], frames: Sequence[GifFrame], *, trailer: bool = True
) -> bytes:
    """An animated GIF written block by block, so every header field can be set at will.

    The pixel data is valid LZW made the simplest way: a clear code before every pixel, which
    keeps every code three bits wide.
    """
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", *screen, 0x80 | 0x01, 0, 0)  # global palette of 4 colours
    out += b"".join(bytes(colour) for colour in GIF_PALETTE)
    for frame in frames:
        out += b"\x21\xf9\x04\x04\x0a\x00\x00\x00"  # graphic control: keep frame, 100 ms
        out += b"\x2c" + struct.pack("<HHHHB", frame.left, frame.top, frame.width, frame.height, 0)
        pixels = (
            frame.width * frame.height if frame.encoded_pixels is None else frame.encoded_pixels
        )
        out += bytes([frame.code_size]) + _sub_blocks(_lzw_flat(frame.colour_index, pixels))
    if trailer:
        out += b"\x3b"
    return bytes(out)


def _lzw_flat(colour_index: int, pixels: int) -> bytes:
    codes = [code for _ in range(pixels) for code in (_GIF_CLEAR, colour_index)] + [_GIF_END]
    bits = 0
    for number, code in enumerate(codes):
        bits |= code << (3 * number)
    return bits.to_bytes((3 * len(codes) + 7) // 8, "little")


def _sub_blocks(data: bytes) -> bytes:
    blocks = b"".join(
        bytes([len(data[start : start + 255])]) + data[start : start + 255]
        for start in range(0, len(data), 255)
    )
    return blocks + b"\x00"
