"""Hard limits: bytes, pixels per frame (decompression bombs), frames and pixels per animation."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.images import animated_gif, encode, make_photo
from tests.intake.crafted import (
    BLUE,
    GREEN,
    RED,
    GifFrame,
    close_to,
    decode_all,
    handmade_gif,
    jpeg_declaring,
    pixel,
    png_declaring,
    solid,
)
from vigil.config import IntakeSettings
from vigil.errors import ImageTooLarge, TooManyPixels
from vigil.intake import open_image

# --- bytes ---------------------------------------------------------------------------------------


def test_an_upload_over_the_byte_limit_is_too_large() -> None:
    data = encode(make_photo(100, 80), "PNG")

    with pytest.raises(ImageTooLarge, match=f"{len(data)} bytes") as refused:
        open_image(data, IntakeSettings(max_bytes=len(data) - 1))

    assert (refused.value.code, refused.value.http_status) == ("image_too_large", 413)


def test_an_upload_of_exactly_the_byte_limit_is_accepted() -> None:
    data = encode(make_photo(100, 80), "PNG")

    image, frames = decode_all(data, IntakeSettings(max_bytes=len(data)))

    assert (image.width, image.height, len(frames)) == (100, 80, 1)


def test_the_byte_limit_is_checked_before_anything_else() -> None:
    # Not even an image: the size alone refuses it.
    with pytest.raises(ImageTooLarge):
        open_image(b"%PDF-1.7" + b"\x00" * 100, IntakeSettings(max_bytes=50))


# --- pixels per frame: decompression bombs -------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height"),
    [(100_000, 100_000), (65_535, 65_535), (8_000, 8_000), (1_000_000, 60)],
    ids=["100k-square", "65k-square", "8k-square", "very-wide"],
)
def test_a_tiny_png_declaring_huge_dimensions_is_refused_without_decoding(
    width: int, height: int
) -> None:
    data = png_declaring(width, height)
    assert len(data) < 100

    with pytest.raises(TooManyPixels, match="declares") as refused:
        open_image(data, IntakeSettings())

    assert refused.value.code == "too_many_pixels"


def test_a_png_bomb_names_its_dimensions_when_vigil_refuses_it() -> None:
    with pytest.raises(TooManyPixels, match="8000x8000 = 64000000 pixels; the limit is 50000000"):
        open_image(png_declaring(8000, 8000), IntakeSettings())


@pytest.mark.parametrize(("width", "height"), [(65_500, 65_500), (8_000, 8_000)])
def test_a_jpeg_declaring_huge_dimensions_is_refused(width: int, height: int) -> None:
    data = jpeg_declaring(encode(make_photo(64, 48), "JPEG"), width, height)

    with pytest.raises(TooManyPixels):
        open_image(data, IntakeSettings())


@pytest.mark.parametrize(
    ("screen", "frame"),
    [((65_535, 65_535), GifFrame(0, 1, 1)), ((8_000, 8_000), GifFrame(0, 1, 1))],
    ids=["65k-screen", "8k-screen"],
)
def test_a_gif_whose_screen_declares_huge_dimensions_is_refused(
    screen: tuple[int, int], frame: GifFrame
) -> None:
    with pytest.raises(TooManyPixels):
        open_image(handmade_gif(screen, [frame]), IntakeSettings())


@pytest.mark.parametrize("huge_frame", [0, 2], ids=["first-frame", "later-frame"])
def test_a_gif_frame_reaching_far_outside_a_small_screen_is_refused_when_opened(
    huge_frame: int,
) -> None:
    # Decoders grow the canvas to hold such a frame; it must be refused before they do.
    frames = [GifFrame(index % 4, 8, 6) for index in range(4)]
    frames[huge_frame] = GifFrame(1, 12_000, 12_000, encoded_pixels=1)

    with pytest.raises(TooManyPixels, match="12000x12000"):
        open_image(handmade_gif((8, 6), frames), IntakeSettings())


def test_a_gif_frame_placed_far_from_the_origin_counts_its_offset() -> None:
    frames = [GifFrame(0, 8, 6), GifFrame(1, 10, 10, left=9_990, top=9_990)]

    with pytest.raises(TooManyPixels, match="10000x10000"):
        open_image(handmade_gif((8, 6), frames), IntakeSettings())


def test_a_gif_frame_pillow_itself_refuses_as_a_bomb_is_reported_as_too_many_pixels() -> None:
    # With Vigil's limit raised above Pillow's own, Pillow's check is the one that fires while
    # seeking to the frame; it must still be reported as a bomb, not as a corrupt file.
    pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    side = int(pillow_limit**0.5) + 1000
    frames = [GifFrame(0, 8, 6), GifFrame(1, 8, 6), GifFrame(2, side, side, encoded_pixels=1)]
    limits = IntakeSettings(max_pixels=2 * side * side)
    image = open_image(handmade_gif((8, 6), frames), limits)

    with pytest.raises(TooManyPixels):
        list(image.frames())


@pytest.mark.parametrize("pillow_format", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF"])
def test_a_real_image_over_a_lowered_pixel_limit_is_refused(pillow_format: str) -> None:
    data = encode(make_photo(100, 80), pillow_format)

    with pytest.raises(TooManyPixels, match="100x80 = 8000 pixels; the limit is 7999"):
        open_image(data, IntakeSettings(max_pixels=7_999))


@pytest.mark.parametrize("pillow_format", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF"])
def test_a_real_image_exactly_at_the_pixel_limit_is_accepted(pillow_format: str) -> None:
    data = encode(make_photo(100, 80), pillow_format)

    image, frames = decode_all(data, IntakeSettings(max_pixels=8_000))

    assert (image.width, image.height, len(frames)) == (100, 80, 1)


def test_a_later_page_over_the_pixel_limit_is_refused_when_it_is_reached() -> None:
    pages = [solid(RED, (10, 10)), solid(GREEN, (100, 100))]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    image = open_image(data, IntakeSettings(max_pixels=5_000))

    frames = image.frames()

    assert next(frames).index == 0
    with pytest.raises(TooManyPixels, match="100x100"):
        next(frames)


def test_an_appended_jpeg_over_the_pixel_limit_refuses_the_file() -> None:
    small, large = solid(RED, (40, 30)), solid(BLUE, (200, 100))
    data = encode(small, "JPEG") + encode(large, "JPEG")

    with pytest.raises(TooManyPixels, match="200x100"):
        open_image(data, IntakeSettings(max_pixels=10_000))


# --- frames per animation ------------------------------------------------------------------------

_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
            (255, 255, 255), (0, 0, 0)]  # fmt: skip


def _eight_frames(pillow_format: str) -> bytes:
    frames = [solid(colour, (40, 30)) for colour in _COLOURS]
    if pillow_format == "GIF":
        return animated_gif(frames)
    options = {"lossless": True} if pillow_format == "WEBP" else {}
    return encode(frames[0], pillow_format, save_all=True, append_images=frames[1:], **options)


@pytest.mark.parametrize("pillow_format", ["GIF", "PNG", "WEBP", "TIFF", "HEIF"])
def test_an_animation_over_the_frame_limit_screens_only_the_first_frames(
    pillow_format: str,
) -> None:
    image = open_image(_eight_frames(pillow_format), IntakeSettings(max_frames=5))

    frames = list(image.frames())

    assert (image.frame_count, image.frames_to_screen) == (8, 5)
    assert [frame.index for frame in frames] == [0, 1, 2, 3, 4]
    assert all(
        close_to(pixel(frame.image, (20, 15)), colour)
        for frame, colour in zip(frames, _COLOURS, strict=False)
    )


def test_a_long_gif_reports_its_true_frame_count() -> None:
    frames = [GifFrame(index % 4, 4, 4) for index in range(40)]

    image, decoded = decode_all(handmade_gif((4, 4), frames), IntakeSettings(max_frames=5))

    assert (image.frame_count, image.frames_to_screen, len(decoded)) == (40, 5, 5)


def test_appended_jpegs_over_the_frame_limit_screen_only_the_first() -> None:
    data = encode(solid(RED), "JPEG") + encode(solid(BLUE), "JPEG")

    image, frames = decode_all(data, IntakeSettings(max_frames=1))

    assert (image.frame_count, image.frames_to_screen, len(frames)) == (2, 1, 1)


# --- pixels per animation ------------------------------------------------------------------------

_FRAME_PIXELS = 40 * 30


@pytest.mark.parametrize(
    ("budget", "screened"),
    [
        (8 * _FRAME_PIXELS, 8),  # exactly enough for every frame
        (8 * _FRAME_PIXELS - 1, 7),
        (4 * _FRAME_PIXELS + 100, 4),
        (_FRAME_PIXELS, 1),
        (1, 1),  # less than one frame: the first is still screened
    ],
)
def test_the_animation_pixel_budget_limits_the_frames_screened(budget: int, screened: int) -> None:
    image = open_image(_eight_frames("GIF"), IntakeSettings(max_animation_pixels=budget))

    frames = list(image.frames())

    assert image.frame_count == 8
    assert image.frames_to_screen == screened
    assert len(frames) == screened


@pytest.mark.parametrize("pillow_format", ["TIFF", "HEIF"])
def test_later_frames_larger_than_the_first_are_charged_at_their_real_size(
    pillow_format: str,
) -> None:
    # A tiny first page must not let the budget, planned from its size, pay for large ones.
    pages = [solid(RED, (10, 10))] + [solid(c, (100, 100)) for c in _COLOURS[1:6]]
    data = encode(pages[0], pillow_format, save_all=True, append_images=pages[1:])
    budget = 25_000
    image = open_image(data, IntakeSettings(max_animation_pixels=budget))

    frames = list(image.frames())
    decoded_pixels = sum(page.width * page.height for page in pages[: len(frames)])

    assert image.frame_count == 6
    assert len(frames) == 3  # 100 + 10,000 + 10,000 pixels; a fourth page would exceed the budget
    assert decoded_pixels <= budget
