"""Container walking: truncated files are corrupt; nothing may hide inside or behind a picture."""

from __future__ import annotations

import pytest
from PIL import PngImagePlugin

from tests.images import encode, make_photo
from tests.intake.crafted import (
    BLUE,
    GREEN,
    RED,
    GifFrame,
    close_to,
    decode_all,
    handmade_gif,
    jpeg_with_comment,
    pixel,
    png_chunk,
    solid,
    zip_archive,
)
from vigil.errors import CorruptImage, IntakeError, PolyglotImage, UnsupportedFormat
from vigil.intake import ImageFormat

PHOTO = make_photo(160, 120, seed=7)
STILL_FORMATS = ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF"]
ENCODED = {pillow_format: encode(PHOTO, pillow_format) for pillow_format in STILL_FORMATS}


def _png_with_text(keyword: str, text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text(keyword, text)
    return encode(solid(GREEN), "PNG", pnginfo=info)


# --- truncation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pillow_format", STILL_FORMATS)
@pytest.mark.parametrize("kept", [0.1, 0.5, 0.9], ids=["10%", "50%", "90%"])
def test_a_truncated_image_is_refused_as_corrupt(pillow_format: str, kept: float) -> None:
    data = ENCODED[pillow_format]

    with pytest.raises(CorruptImage):
        decode_all(data[: int(len(data) * kept)])


@pytest.mark.parametrize("pillow_format", [f for f in STILL_FORMATS if f != "GIF"])
def test_an_image_missing_only_its_last_byte_is_refused_as_corrupt(pillow_format: str) -> None:
    with pytest.raises(CorruptImage):
        decode_all(ENCODED[pillow_format][:-1])


def test_a_gif_missing_only_its_trailer_is_accepted() -> None:
    data = ENCODED["GIF"]
    assert data.endswith(b";")

    image, frames = decode_all(data[:-1])

    assert (image.format, image.width, image.height, image.frame_count) == ("gif", 160, 120, 1)
    assert len(frames) == 1


def test_an_animated_gif_missing_only_its_trailer_keeps_every_frame() -> None:
    data = handmade_gif((8, 6), [GifFrame(0, 8, 6), GifFrame(1, 8, 6), GifFrame(2, 8, 6)])

    image, frames = decode_all(data[:-1])

    assert image.frame_count == 3
    assert [pixel(frame.image, (4, 3)) for frame in frames] == [RED, GREEN, BLUE]


def test_a_gif_cut_two_bytes_short_is_corrupt() -> None:
    # Without the trailer and the last frame's block terminator, the last frame is unfinished.
    with pytest.raises(CorruptImage):
        decode_all(ENCODED["GIF"][:-2])


def test_a_gif_with_a_header_but_no_frame_is_corrupt() -> None:
    header_only = handmade_gif((8, 6), [])

    with pytest.raises(CorruptImage, match="no frames"):
        decode_all(header_only)


SMALL_JPEG = encode(make_photo(48, 32, seed=11), "JPEG", quality=80)
SMALL_PNG = encode(make_photo(48, 32, seed=11), "PNG")


def _cut_points(length: int) -> list[int]:
    """Every byte of the headers, then evenly across the rest, and the last few bytes."""
    spread = range(64, length, max(1, (length - 64) // 48))
    return sorted({*range(1, 64), *spread, length - 3, length - 2, length - 1})


@pytest.mark.parametrize(
    ("data", "signature_length", "cut"),
    [
        pytest.param(data, signature_length, cut, id=f"{name}-{cut}")
        for name, data, signature_length in (("jpeg", SMALL_JPEG, 3), ("png", SMALL_PNG, 8))
        for cut in _cut_points(len(data))
    ],
)
def test_no_cut_of_a_jpeg_or_png_is_accepted_or_crashes(
    data: bytes, signature_length: int, cut: int
) -> None:
    # Cut inside the signature, the file is no longer recognised; after it, it is corrupt.
    expected = UnsupportedFormat if cut < signature_length else CorruptImage

    with pytest.raises(IntakeError) as refused:
        decode_all(data[:cut])

    assert type(refused.value) is expected


def test_an_mpo_cut_after_its_first_picture_is_refused_as_corrupt() -> None:
    data = encode(solid(RED, (64, 48)), "MPO", save_all=True, append_images=[solid(BLUE)])
    first_picture_end = data.index(b"\xff\xd9\xff\xd8") + 2  # EOI of the first, SOI of the second

    with pytest.raises(CorruptImage):
        decode_all(data[:first_picture_end])


# --- data appended behind the picture -----------------------------------------------------------


@pytest.mark.parametrize("pillow_format", STILL_FORMATS)
def test_an_image_with_a_zip_appended_is_refused_as_polyglot(pillow_format: str) -> None:
    with pytest.raises(PolyglotImage) as refused:
        decode_all(ENCODED[pillow_format] + zip_archive())

    assert refused.value.code == "polyglot_image"


def test_a_zip_whose_comment_runs_to_the_end_is_still_found() -> None:
    with pytest.raises(PolyglotImage, match="ZIP"):
        decode_all(ENCODED["PNG"] + zip_archive(comment=b"x" * 300))


@pytest.mark.parametrize("pillow_format", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "HEIF"])
def test_an_image_with_an_html_page_appended_is_refused_as_polyglot(pillow_format: str) -> None:
    page = b"<html><body><script>alert(document.cookie)</script></body></html>"

    with pytest.raises(PolyglotImage):
        decode_all(ENCODED[pillow_format] + page)


def test_a_gif_with_html_appended_says_how_much_data_follows_the_image() -> None:
    page = b"<html><body>hello</body></html>"

    with pytest.raises(PolyglotImage, match=f"{len(page)} bytes of other data follow"):
        decode_all(ENCODED["GIF"] + page)


def test_a_webp_with_trailing_bytes_is_refused_as_polyglot() -> None:
    with pytest.raises(PolyglotImage, match="5 bytes of other data follow"):
        decode_all(ENCODED["WEBP"] + b"extra")


@pytest.mark.parametrize(
    "appended",
    [b"appended: not part of the picture", b"\x00\x00\x00\x40" + b"junk" + b"\x00" * 24],
    ids=["text", "box-like-header"],
)
def test_a_heif_with_data_appended_is_refused_as_polyglot(appended: bytes) -> None:
    with pytest.raises(PolyglotImage, match="other data follows the image boxes"):
        decode_all(ENCODED["HEIF"] + appended)


def test_a_heif_with_a_few_stray_bytes_appended_is_refused() -> None:
    with pytest.raises(IntakeError):
        decode_all(ENCODED["HEIF"] + b"xyz")


@pytest.mark.parametrize("pillow_format", ["JPEG", "PNG", "GIF", "BMP"])
def test_an_image_followed_by_another_image_is_refused_as_polyglot(pillow_format: str) -> None:
    other = "PNG" if pillow_format == "JPEG" else "JPEG"

    with pytest.raises(PolyglotImage):
        decode_all(ENCODED[pillow_format] + ENCODED[other])


@pytest.mark.parametrize(
    ("pillow_format", "padding"),
    [
        ("JPEG", b"\x00" * 512),
        ("JPEG", b"\r\n"),
        ("PNG", b"\x00" * 64),
        ("GIF", b"\n"),
        ("BMP", b"\x00\x00"),
    ],
    ids=["jpeg-zeros", "jpeg-newline", "png-zeros", "gif-newline", "bmp-zeros"],
)
def test_harmless_padding_after_an_image_is_accepted(pillow_format: str, padding: bytes) -> None:
    image, frames = decode_all(ENCODED[pillow_format] + padding)

    assert (image.width, image.height, image.frame_count) == (160, 120, 1)
    assert len(frames) == 1


def test_a_jpeg_with_a_second_jpeg_appended_screens_both_pictures() -> None:
    # Phones append depth maps and HDR gain maps as whole JPEGs after the main picture.
    main = encode(solid(RED, (120, 90)), "JPEG")
    gain_map = encode(solid(BLUE, (60, 45)), "JPEG")

    image, frames = decode_all(main + gain_map)

    assert image.format is ImageFormat.JPEG
    assert (image.width, image.height) == (120, 90)
    assert (image.frame_count, image.frames_to_screen) == (2, 2)
    assert image.layout.parts == ((0, len(main)), (len(main), len(main) + len(gain_map)))
    assert [frame.image.size for frame in frames] == [(120, 90), (60, 45)]
    assert close_to(pixel(frames[0].image, (5, 5)), RED)
    assert close_to(pixel(frames[1].image, (5, 5)), BLUE)


def test_padding_between_appended_jpegs_is_allowed() -> None:
    main, second = encode(solid(RED), "JPEG"), encode(solid(BLUE), "JPEG")

    image, frames = decode_all(main + b"\x00" * 16 + second)

    assert image.frame_count == 2
    assert len(frames) == 2


def test_an_mpo_file_from_a_camera_screens_every_picture() -> None:
    data = encode(solid(RED, (64, 48)), "MPO", save_all=True, append_images=[solid(BLUE, (32, 24))])

    image, frames = decode_all(data)

    assert image.frame_count == 2
    assert close_to(pixel(frames[0].image, (3, 3)), RED)
    assert close_to(pixel(frames[1].image, (3, 3)), BLUE)


@pytest.mark.parametrize("appended", [zip_archive(), b"trailing text"], ids=["zip", "text"])
def test_other_data_after_appended_jpegs_is_still_refused(appended: bytes) -> None:
    two_pictures = encode(solid(RED), "JPEG") + encode(solid(BLUE), "JPEG")

    with pytest.raises(PolyglotImage):
        decode_all(two_pictures + appended)


# --- data hidden inside the picture --------------------------------------------------------------


def test_a_png_carrying_a_pdf_header_in_its_first_kilobyte_is_refused_as_polyglot() -> None:
    data = _png_with_text("Comment", "%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj")
    assert data.index(b"%PDF-1.7") < 1024

    with pytest.raises(PolyglotImage, match="PDF"):
        decode_all(data)


@pytest.mark.parametrize(
    "markup",
    [
        b"<script>alert(1)</script>",
        b"<SCRIPT src=x>",
        b"<html>",
        b"<svg onload=alert(1)>",
        b"<iframe/>",
    ],
)
def test_a_jpeg_comment_carrying_markup_near_the_start_is_refused_as_polyglot(
    markup: bytes,
) -> None:
    data = jpeg_with_comment(solid(RED), b"made with care " + markup)
    assert data.index(markup) < 1024

    with pytest.raises(PolyglotImage, match="markup"):
        decode_all(data)


def test_a_png_text_chunk_carrying_svg_markup_is_refused_as_polyglot() -> None:
    with pytest.raises(PolyglotImage, match="markup"):
        decode_all(_png_with_text("Comment", '<svg xmlns="http://www.w3.org/2000/svg">'))


def test_words_that_merely_resemble_tags_are_not_markup() -> None:
    image, _ = decode_all(jpeg_with_comment(solid(RED), b"<scripted> <htmlish> a < b"))

    assert image.format is ImageFormat.JPEG


@pytest.mark.parametrize(
    ("signature", "name"),
    [
        (b"Rar!\x1a\x07\x00", "RAR"),
        (b"Rar!\x1a\x07\x01\x00", "RAR"),
        (b"7z\xbc\xaf\x27\x1c", "7-Zip"),
    ],
    ids=["rar4", "rar5", "7zip"],
)
def test_an_archive_signature_inside_the_image_is_refused_as_polyglot(
    signature: bytes, name: str
) -> None:
    data = jpeg_with_comment(make_photo(64, 48), b"x" * 2000 + signature + b"\x00" * 32)

    with pytest.raises(PolyglotImage, match=name):
        decode_all(data)


def test_an_archive_signature_in_a_png_private_chunk_is_refused_as_polyglot() -> None:
    png = encode(solid(GREEN), "PNG")
    iend = png.rindex(b"IEND") - 4
    data = png[:iend] + png_chunk(b"prVt", b"Rar!\x1a\x07\x00" + b"\x00" * 64) + png[iend:]

    with pytest.raises(PolyglotImage, match="RAR"):
        decode_all(data)


def test_a_stray_zip_end_signature_that_does_not_reach_the_end_is_not_an_archive() -> None:
    # Four bytes of "PK\x05\x06" by chance in image data must not refuse a genuine photo.
    data = jpeg_with_comment(solid(RED), b"PK\x05\x06" + b"\x00" * 40)

    image, frames = decode_all(data)

    assert image.format is ImageFormat.JPEG
    assert len(frames) == 1
