"""Which format the bytes really are, from their magic numbers alone.

File names and declared content types are chosen by the uploader, so they are never consulted.
"""

from __future__ import annotations

import codecs
from enum import StrEnum

from vigil.errors import EmptyImage, UnsupportedFormat


class ImageFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    GIF = "gif"
    WEBP = "webp"
    BMP = "bmp"
    TIFF = "tiff"
    HEIF = "heif"

    @property
    def pillow_format(self) -> str:
        """The name of the only Pillow plugin allowed to decode this format."""
        return _PILLOW_FORMATS[self]


_PILLOW_FORMATS = {
    ImageFormat.JPEG: "JPEG",
    ImageFormat.PNG: "PNG",
    ImageFormat.GIF: "GIF",
    ImageFormat.WEBP: "WEBP",
    ImageFormat.BMP: "BMP",
    ImageFormat.TIFF: "TIFF",
    ImageFormat.HEIF: "HEIF",
}

# ISO base media "ftyp" brands that pillow-heif decodes as HEIF/HEIC stills or sequences.
HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
# Sizes of the BMP info headers that exist (OS/2 1.x and 2.x, Windows 3 to 5).
_BMP_INFO_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def sniff_format(data: bytes) -> ImageFormat:
    """The accepted image format the bytes start with, or an error naming what they look like."""
    if not data:
        raise EmptyImage("the upload is empty (zero bytes)")
    if data.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ImageFormat.GIF
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageFormat.WEBP
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ImageFormat.TIFF
    if _is_bmp(data):
        return ImageFormat.BMP
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return ImageFormat.HEIF
    raise UnsupportedFormat(
        f"unsupported file type ({describe_unsupported(data)}); accepted: "
        "JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC/HEIF"
    )


def _is_bmp(data: bytes) -> bool:
    if len(data) < 18 or data[:2] != b"BM":
        return False
    info_header_size = int.from_bytes(data[14:18], "little")
    return info_header_size in _BMP_INFO_HEADER_SIZES


def describe_unsupported(data: bytes) -> str:
    """A short human name for a refused file, so the error tells the site what it sent."""
    head = data[:1024]
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    known: list[tuple[bool, str]] = [
        (head.startswith(b"%PDF-"), "a PDF document"),
        (stripped.startswith(b"<svg") or b"<svg" in stripped[:512], "an SVG drawing"),
        (stripped.startswith((b"<!doctype html", b"<html")), "an HTML page"),
        (stripped.startswith(b"<?xml"), "an XML document"),
        (head.startswith((b"PK\x03\x04", b"PK\x05\x06")), "a ZIP archive"),
        (head.startswith(b"\x1f\x8b"), "a gzip archive"),
        (head.startswith(b"Rar!\x1a\x07"), "a RAR archive"),
        (head.startswith(b"7z\xbc\xaf\x27\x1c"), "a 7-Zip archive"),
        (head.startswith(b"MZ"), "a Windows executable"),
        (head.startswith(b"\x7fELF"), "an ELF executable"),
        (head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"), "an AVIF image"),
        (head[4:8] == b"ftyp", "an MP4/QuickTime video"),
        (head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")), "a JPEG XL image"),
        (head.startswith(b"\x00\x00\x01\x00"), "an icon file"),
        (head.startswith(b"8BPS"), "a Photoshop document"),
        (head.startswith(b"BM"), "a malformed BMP"),
    ]
    for matched, name in known:
        if matched:
            return name
    if _looks_like_text(head):
        return "plain text"
    return "unrecognised binary data"


def _looks_like_text(head: bytes) -> bool:
    try:
        # final=False: the 1 KiB cut may fall inside a multi-byte character.
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)
