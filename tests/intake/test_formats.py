"""Format sniffing: the magic bytes alone decide, and a refusal names what the file looks like."""

from __future__ import annotations

import gzip

import pytest
from PIL import PngImagePlugin

from tests.images import encode, make_photo
from tests.intake.crafted import solid, zip_archive
from vigil.config import IntakeSettings
from vigil.errors import EmptyImage, UnsupportedFormat
from vigil.intake import ImageFormat, open_image, sniff_format

PHOTO = make_photo(64, 48, seed=3)


@pytest.mark.parametrize(
    ("pillow_format", "expected"),
    [
        ("JPEG", ImageFormat.JPEG),
        ("PNG", ImageFormat.PNG),
        ("GIF", ImageFormat.GIF),
        ("WEBP", ImageFormat.WEBP),
        ("BMP", ImageFormat.BMP),
        ("TIFF", ImageFormat.TIFF),
        ("HEIF", ImageFormat.HEIF),
    ],
)
def test_each_accepted_format_is_recognised_by_its_magic_bytes(
    pillow_format: str, expected: ImageFormat
) -> None:
    data = encode(PHOTO, pillow_format)

    assert sniff_format(data) is expected
    assert open_image(data, IntakeSettings()).format is expected
    assert expected.pillow_format == pillow_format


@pytest.mark.parametrize("version", [b"GIF87a", b"GIF89a"])
def test_both_gif_versions_are_gifs(version: bytes) -> None:
    assert sniff_format(version + b"\x01\x00\x01\x00\x00\x00\x00") is ImageFormat.GIF


@pytest.mark.parametrize("byte_order", [b"II*\x00", b"MM\x00*"])
def test_both_tiff_byte_orders_are_tiffs(byte_order: bytes) -> None:
    assert sniff_format(byte_order + b"\x00\x00\x00\x08") is ImageFormat.TIFF


@pytest.mark.parametrize("brand", [b"heic", b"heix", b"hevc", b"mif1", b"msf1"])
def test_heif_brands_are_heif(brand: bytes) -> None:
    assert sniff_format(b"\x00\x00\x00\x18ftyp" + brand + b"\x00" * 12) is ImageFormat.HEIF


@pytest.mark.parametrize("info_header_size", [12, 40, 108, 124])
def test_bmp_is_recognised_by_signature_and_a_real_info_header_size(info_header_size: int) -> None:
    data = b"BM" + b"\x00" * 12 + info_header_size.to_bytes(4, "little") + b"\x00" * 40
    assert sniff_format(data) is ImageFormat.BMP


def test_bm_without_a_known_info_header_is_not_a_bmp() -> None:
    data = b"BM" + b"\x00" * 12 + (99).to_bytes(4, "little") + b"\x00" * 40

    with pytest.raises(UnsupportedFormat, match="a malformed BMP"):
        sniff_format(data)


def test_a_png_is_a_png_whatever_other_magic_its_text_chunks_carry() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", "GIF89a \xff\xd8\xff RIFF....WEBP BM <?xml")
    data = encode(solid((10, 20, 30)), "PNG", pnginfo=info)

    assert sniff_format(data) is ImageFormat.PNG
    assert open_image(data, IntakeSettings()).format is ImageFormat.PNG


def test_magic_bytes_must_open_the_file_not_merely_appear_in_it() -> None:
    jpeg = encode(PHOTO, "JPEG")

    with pytest.raises(UnsupportedFormat):
        sniff_format(b" " + jpeg)


@pytest.mark.parametrize(
    "data",
    [
        b"GIF88a\x01\x00\x01\x00",  # not a GIF version
        b"RIFF\x24\x00\x00\x00WAVEfmt ",  # a RIFF container, but audio
        b"\xff\xd8",  # a JPEG's first two bytes only
        b"\x89PNG\r\n",  # a PNG signature cut short
    ],
    ids=["gif88a", "riff-wave", "jpeg-soi-only", "png-signature-cut"],
)
def test_near_misses_of_accepted_magic_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedFormat):
        sniff_format(data)


def test_zero_bytes_are_an_empty_upload() -> None:
    with pytest.raises(EmptyImage, match="empty") as refused:
        sniff_format(b"")
    assert refused.value.code == "empty_image"


def test_zero_bytes_are_refused_as_empty_by_open_image_too() -> None:
    with pytest.raises(EmptyImage):
        open_image(b"", IntakeSettings())


_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
_UTF8_BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"hello, this is just a note\nwith two lines\n", "plain text"),
        ("größe: ½ — ünïcode text\n".encode(), "plain text"),
        (_SVG, "an SVG drawing"),
        (b'<?xml version="1.0" encoding="UTF-8"?>\n' + _SVG, "an SVG drawing"),
        (b"  \r\n\t" + _SVG, "an SVG drawing"),
        (_UTF8_BOM + _SVG, "an SVG drawing"),
        (_UTF8_BOM + b'\n <?xml version="1.0"?>\n' + _SVG, "an SVG drawing"),
        (
            b'<!-- drawn by hand -->\n<SVG xmlns="http://www.w3.org/2000/svg"></SVG>',
            "an SVG drawing",
        ),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\n", "a PDF document"),
        (b"<!DOCTYPE html>\n<html><body>hi</body></html>", "an HTML page"),
        (b"<html><head><title>x</title></head></html>", "an HTML page"),
        (_UTF8_BOM + b"\n  <!doctype HTML>\n<html></html>", "an HTML page"),
        (b'<?xml version="1.0"?><catalog><book/></catalog>', "an XML document"),
        (zip_archive(), "a ZIP archive"),
        (gzip.compress(b"a compressed note"), "a gzip archive"),
        (b"Rar!\x1a\x07\x01\x00" + b"\x00" * 24, "a RAR archive"),
        (b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 24, "a 7-Zip archive"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 16, "an AVIF image"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 16, "an MP4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  " + b"\x00" * 16, "QuickTime"),
        (b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 24, "a Windows executable"),
        (b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 24, "an ELF executable"),
        (b"\x00\x00\x01\x00\x01\x00\x10\x10" + b"\x00" * 24, "an icon file"),
        (b"8BPS\x00\x01" + b"\x00" * 24, "a Photoshop document"),
        (b"\xff\x0a\xfa\x7f" + b"\x00" * 24, "a JPEG XL image"),
        (bytes(range(256)), "unrecognised binary data"),
    ],
    ids=[
        "text",
        "utf8-text",
        "svg",
        "svg-xml-prolog",
        "svg-leading-whitespace",
        "svg-bom",
        "svg-bom-whitespace-prolog",
        "svg-comment-uppercase",
        "pdf",
        "html-doctype",
        "html-tag",
        "html-bom-whitespace",
        "xml",
        "zip",
        "gzip",
        "rar",
        "7zip",
        "avif-ftyp",
        "mp4-ftyp",
        "quicktime-ftyp",
        "exe",
        "elf",
        "ico",
        "psd",
        "jpeg-xl",
        "binary",
    ],
)
def test_refused_files_are_named_for_what_they_look_like(data: bytes, looks_like: str) -> None:
    with pytest.raises(UnsupportedFormat) as refused:
        open_image(data, IntakeSettings())

    assert looks_like in refused.value.message
    assert "accepted: JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC/HEIF" in refused.value.message
    assert refused.value.code == "unsupported_format"
    assert refused.value.http_status == 400


def test_text_whose_first_kilobyte_ends_inside_a_character_is_still_text() -> None:
    data = b"a" * 1023 + "é and more".encode()  # the 1 KiB cut falls inside "é"

    with pytest.raises(UnsupportedFormat, match="plain text"):
        sniff_format(data)
