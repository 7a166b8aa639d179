"""Decoding: every accepted format becomes frames that show what a viewer sees, decoded lazily."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from tests.images import animated_gif, encode, make_photo
from tests.intake.crafted import (
    BLUE,
    GREEN,
    RED,
    WHITE,
    GifFrame,
    close_to,
    corner_colours,
    decode_all,
    handmade_gif,
    pixel,
    quadrants,
    shows_quadrants,
    solid,
)
from vigil.config import IntakeSettings
from vigil.errors import CorruptImage
from vigil.intake import ImageFormat, open_image

COLOURS = [RED, GREEN, BLUE]


def _animation(pillow_format: str, **options: object) -> Callable[[], bytes]:
    def build() -> bytes:
        frames = [solid(colour, (60, 40)) for colour in COLOURS]
        return encode(frames[0], pillow_format, save_all=True, append_images=frames[1:], **options)

    return build


def _still(pillow_format: str, **options: object) -> Callable[[], bytes]:
    return lambda: encode(solid(RED, (60, 40)), pillow_format, **options)


@pytest.mark.parametrize(
    ("build", "expected_format", "expected_colours"),
    [
        (_still("JPEG"), ImageFormat.JPEG, [RED]),
        (_still("PNG"), ImageFormat.PNG, [RED]),
        (_still("GIF"), ImageFormat.GIF, [RED]),
        (_still("WEBP"), ImageFormat.WEBP, [RED]),
        (_still("WEBP", lossless=True), ImageFormat.WEBP, [RED]),
        (_still("BMP"), ImageFormat.BMP, [RED]),
        (_still("TIFF"), ImageFormat.TIFF, [RED]),
        (_still("TIFF", compression="tiff_deflate"), ImageFormat.TIFF, [RED]),
        (_still("HEIF"), ImageFormat.HEIF, [RED]),
        (lambda: animated_gif([solid(c, (60, 40)) for c in COLOURS]), ImageFormat.GIF, COLOURS),
        (_animation("PNG"), ImageFormat.PNG, COLOURS),  # APNG
        (_animation("WEBP", lossless=True), ImageFormat.WEBP, COLOURS),
        (_animation("TIFF"), ImageFormat.TIFF, COLOURS),  # multi-page
        (_animation("HEIF"), ImageFormat.HEIF, COLOURS),  # an image collection
    ],
    ids=[
        "jpeg",
        "png",
        "gif",
        "webp-lossy",
        "webp-lossless",
        "bmp",
        "tiff",
        "tiff-deflate",
        "heif",
        "animated-gif",
        "apng",
        "animated-webp",
        "multipage-tiff",
        "heif-collection",
    ],
)
def test_every_accepted_format_decodes_to_the_frames_a_viewer_sees(
    build: Callable[[], bytes],
    expected_format: ImageFormat,
    expected_colours: list[tuple[int, ...]],
) -> None:
    image, frames = decode_all(build())

    assert image.format is expected_format
    assert (image.width, image.height) == (60, 40)
    assert image.frame_count == image.frames_to_screen == len(expected_colours)
    assert [frame.index for frame in frames] == list(range(len(expected_colours)))
    for frame, colour in zip(frames, expected_colours, strict=True):
        assert frame.image.mode == "RGB"
        assert frame.image.size == (60, 40)
        # Frames are kept after the next one is decoded: each must still hold its own picture.
        assert close_to(pixel(frame.image, (30, 20)), colour), (frame.index, colour)


@pytest.mark.parametrize("pillow_format", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF"])
@pytest.mark.parametrize("working_size", [64, 512])
def test_frames_are_shrunk_to_the_working_size_keeping_their_shape(
    pillow_format: str, working_size: int
) -> None:
    data = encode(quadrants(1000, 700), pillow_format)

    image, [frame] = decode_all(data, IntakeSettings(working_size=working_size))

    assert (image.width, image.height) == (1000, 700)  # the picture's own size, not the frame's
    assert frame.image.size == (working_size, round(700 * working_size / 1000))
    assert frame.image.mode == "RGB"
    assert shows_quadrants(frame.image, tolerance=48)


def test_a_picture_smaller_than_the_working_size_is_not_enlarged() -> None:
    _, [frame] = decode_all(encode(solid(RED, (30, 20)), "PNG"))

    assert frame.image.size == (30, 20)


def test_a_tall_picture_is_shrunk_by_its_height() -> None:
    _, [frame] = decode_all(
        encode(solid(RED, (300, 1200)), "PNG"), IntakeSettings(working_size=256)
    )

    assert frame.image.size == (64, 256)


def test_a_photo_keeps_its_detail_through_decoding() -> None:
    photo = make_photo(200, 150, seed=5)

    _, [frame] = decode_all(encode(photo, "PNG"))

    assert np.array_equal(np.asarray(frame.image), np.asarray(photo))


# --- what a viewer sees: orientation -------------------------------------------------------------

# The turn or flip that stores an upright picture so that the EXIF orientation turns it back.
_STORED_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _stored_with_orientation(upright: Image.Image, orientation: int, pillow_format: str) -> bytes:
    transpose = _STORED_AS[orientation]
    stored = upright if transpose is None else upright.transpose(transpose)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, pillow_format, exif=exif.tobytes())


@pytest.mark.parametrize("pillow_format", ["JPEG", "PNG", "WEBP", "TIFF", "HEIF"])
@pytest.mark.parametrize("orientation", sorted(_STORED_AS))
def test_exif_orientation_is_applied_so_the_frame_is_upright(
    pillow_format: str, orientation: int
) -> None:
    data = _stored_with_orientation(quadrants(120, 80), orientation, pillow_format)

    image, [frame] = decode_all(data)

    assert (image.width, image.height) == (120, 80)  # the displayed size, not the stored one
    assert frame.image.size == (120, 80)
    assert shows_quadrants(frame.image), corner_colours(frame.image)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_large_rotated_jpeg_is_upright_and_shrunk(orientation: int) -> None:
    # Large enough that the JPEG is decoded at reduced scale before it is turned and shrunk.
    data = _stored_with_orientation(quadrants(1600, 1200), orientation, "JPEG")

    image, [frame] = decode_all(data)

    assert (image.width, image.height) == (1600, 1200)
    assert frame.image.size == (512, 384)
    assert shows_quadrants(frame.image)


# --- what a viewer sees: colour modes and transparency ------------------------------------------


def test_a_16_bit_greyscale_png_decodes_to_a_visible_picture() -> None:
    ramp = np.linspace(0, 65535, 128 * 64).reshape(64, 128).astype(np.uint16)
    source = Image.fromarray(ramp)
    assert source.mode == "I;16"

    _, [frame] = decode_all(encode(source, "PNG"))
    pixels = np.asarray(frame.image)

    assert frame.image.mode == "RGB"
    assert pixels[0, 0].tolist() == [0, 0, 0]  # the dark end stays dark...
    assert pixels[-1, -1].tolist() == [255, 255, 255]  # ...and the light end light
    assert 100 < pixels.mean() < 155  # a ramp, not a flat white (or black) field
    assert np.all(np.diff(pixels[:, :, 0].ravel().astype(int)) >= 0)  # still a ramp, in order


def test_a_low_contrast_16_bit_png_still_shows_its_shapes() -> None:
    # A naive 8-bit conversion clips every value above 255 to white, and both halves with it.
    values = np.full((40, 60), 1000, np.uint16)
    values[:, 30:] = 3000
    _, [frame] = decode_all(encode(Image.fromarray(values), "PNG"))

    left, right = pixel(frame.image, (10, 20)), pixel(frame.image, (50, 20))

    assert left != right


@pytest.mark.parametrize(("value", "shown"), [(0, 0), (32896, 128), (60000, 233), (65535, 255)])
def test_16_bit_values_show_as_a_viewer_shows_them(value: int, shown: int) -> None:
    """Full range to full range: a flat near-white picture stays near-white, not stretched."""
    flat = Image.fromarray(np.full((30, 40), value, np.uint16))

    _, [frame] = decode_all(encode(flat, "PNG"))

    assert pixel(frame.image, (20, 15)) == (shown, shown, shown)


def test_a_png_orientation_before_the_pixels_gives_the_displayed_size() -> None:
    data = _stored_with_orientation(quadrants(120, 80), 6, "PNG")
    assert data.index(b"eXIf") < data.index(b"IDAT"), "Pillow writes eXIf before the pixels"

    image, [frame] = decode_all(data)

    assert (image.width, image.height) == (120, 80)
    assert shows_quadrants(frame.image)


def test_a_float_tiff_decodes_to_a_visible_picture() -> None:
    values = np.linspace(-1.0, 1.0, 40 * 30, dtype=np.float32).reshape(30, 40)

    _, [frame] = decode_all(encode(Image.fromarray(values, "F"), "TIFF"))

    assert frame.image.mode == "RGB"
    assert np.asarray(frame.image).min() == 0
    assert np.asarray(frame.image).max() == 255


def _palette_image() -> Image.Image:
    """Left half index 2 (blue), right half index 1 (red); index 0 (black) is never used."""
    image = Image.new("P", (40, 30), 1)
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (253 * 3))
    image.paste(2, (0, 0, 20, 30))
    return image


@pytest.mark.parametrize("pillow_format", ["PNG", "GIF"])
def test_a_palette_image_whose_transparent_colour_is_used_keeps_its_alpha(
    pillow_format: str,
) -> None:
    _, [frame] = decode_all(encode(_palette_image(), pillow_format, transparency=2))

    assert frame.image.mode == "RGBA"
    assert pixel(frame.image, (5, 5))[3] == 0
    assert pixel(frame.image, (35, 5)) == (*RED, 255)


@pytest.mark.parametrize("pillow_format", ["PNG", "GIF"])
def test_a_palette_image_whose_transparent_colour_is_unused_is_rgb(pillow_format: str) -> None:
    _, [frame] = decode_all(encode(_palette_image(), pillow_format, transparency=0))

    assert frame.image.mode == "RGB"
    assert (pixel(frame.image, (5, 5)), pixel(frame.image, (35, 5))) == (BLUE, RED)


def test_a_greyscale_image_with_transparency_keeps_its_grey_and_its_alpha() -> None:
    source = Image.new("LA", (40, 30), (128, 255))
    source.paste((200, 0), (0, 0, 20, 30))

    _, [frame] = decode_all(encode(source, "PNG"))

    assert frame.image.mode == "RGBA"
    assert pixel(frame.image, (35, 5)) == (128, 128, 128, 255)
    assert pixel(frame.image, (5, 5))[3] == 0


def test_a_fully_opaque_greyscale_alpha_image_is_rgb() -> None:
    _, [frame] = decode_all(encode(Image.new("LA", (40, 30), (77, 255)), "PNG"))

    assert frame.image.mode == "RGB"
    assert pixel(frame.image, (5, 5)) == (77, 77, 77)


@pytest.mark.parametrize("pillow_format", ["PNG", "WEBP", "TIFF", "HEIF"])
def test_an_rgba_image_with_transparent_pixels_stays_rgba(pillow_format: str) -> None:
    source = Image.new("RGBA", (40, 30), (*RED, 255))
    source.paste((0, 0, 0, 0), (0, 0, 20, 30))

    _, [frame] = decode_all(encode(source, pillow_format))

    assert frame.image.mode == "RGBA"
    assert pixel(frame.image, (5, 5))[3] == 0
    assert close_to(pixel(frame.image, (35, 5)), (*RED, 255))


@pytest.mark.parametrize("pillow_format", ["PNG", "WEBP", "TIFF", "HEIF"])
def test_an_rgba_image_that_is_fully_opaque_is_rgb(pillow_format: str) -> None:
    _, [frame] = decode_all(encode(Image.new("RGBA", (40, 30), (*BLUE, 255)), pillow_format))

    assert frame.image.mode == "RGB"
    assert close_to(pixel(frame.image, (5, 5)), BLUE)


def test_an_rgb_png_with_a_transparent_colour_shows_its_transparency() -> None:
    source = solid(RED, (40, 30))
    source.paste(GREEN, (0, 0, 20, 30))

    _, [frame] = decode_all(encode(source, "PNG", transparency=GREEN))

    assert frame.image.mode == "RGBA"
    assert pixel(frame.image, (5, 5))[3] == 0
    assert pixel(frame.image, (35, 5)) == (*RED, 255)


def test_a_cmyk_jpeg_decodes_to_the_colour_it_shows() -> None:
    red_in_cmyk = (0, 255, 255, 0)

    _, [frame] = decode_all(encode(Image.new("CMYK", (60, 40), red_in_cmyk), "JPEG"))

    assert frame.image.mode == "RGB"
    assert close_to(pixel(frame.image, (30, 20)), RED)


@pytest.mark.parametrize(("mode", "value"), [("1", 1), ("L", 77)])
@pytest.mark.parametrize("pillow_format", ["PNG", "BMP", "TIFF"])
def test_black_and_white_and_grey_images_decode_to_rgb(
    mode: str, value: int, pillow_format: str
) -> None:
    _, [frame] = decode_all(encode(Image.new(mode, (40, 30), value), pillow_format))

    grey = 255 if mode == "1" else value
    assert frame.image.mode == "RGB"
    assert pixel(frame.image, (5, 5)) == (grey, grey, grey)


# --- lazy decoding -------------------------------------------------------------------------------


def test_opening_reads_headers_only_and_decoding_finds_the_missing_pixels() -> None:
    # A valid header for 2000 x 1500 pixels, followed by the data of a single pixel.
    data = handmade_gif((2000, 1500), [GifFrame(0, 2000, 1500, encoded_pixels=1)])

    image = open_image(data, IntakeSettings())

    assert (image.format, image.width, image.height, image.frame_count) == ("gif", 2000, 1500, 1)
    with pytest.raises(CorruptImage, match="could not be decoded"):
        list(image.frames())


@pytest.mark.parametrize(
    "broken",
    [GifFrame(2, 8, 6, code_size=15), GifFrame(2, 8, 6, encoded_pixels=5)],
    ids=["impossible-code-size", "pixel-data-ends-early"],
)
def test_a_gif_with_a_broken_middle_frame_fails_only_when_that_frame_is_decoded(
    broken: GifFrame,
) -> None:
    frames = [GifFrame(0, 8, 6), GifFrame(1, 8, 6), broken, GifFrame(3, 8, 6)]
    image = open_image(handmade_gif((8, 6), frames), IntakeSettings())
    assert image.frame_count == 4

    decoding = image.frames()
    first, second = next(decoding), next(decoding)

    assert (pixel(first.image, (4, 3)), pixel(second.image, (4, 3))) == (RED, GREEN)
    with pytest.raises(CorruptImage, match="could not be decoded"):
        next(decoding)


def test_frames_can_be_decoded_again_from_the_start() -> None:
    image = open_image(animated_gif([solid(c, (20, 10)) for c in COLOURS]), IntakeSettings())

    first = [pixel(frame.image, (5, 5)) for frame in image.frames()]
    second = [pixel(frame.image, (5, 5)) for frame in image.frames()]

    assert first == second == COLOURS


def test_a_gif_frame_drawn_over_part_of_the_canvas_is_shown_over_the_frame_before() -> None:
    frames = [GifFrame(2, 8, 6), GifFrame(3, 4, 2, left=2, top=2)]

    _, decoded = decode_all(handmade_gif((8, 6), frames))

    second = decoded[1].image
    assert second.size == (8, 6)
    assert (pixel(second, (0, 0)), pixel(second, (3, 3))) == (BLUE, WHITE)
