"""Bytes -> a decoded image whose frames are what a viewer would see, within hard limits."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, TiffImagePlugin

from vigil.config import IntakeSettings
from vigil.errors import CorruptImage, ImageTooLarge, TooManyPixels, VigilError
from vigil.intake.formats import ImageFormat, sniff_format
from vigil.intake.structure import Layout, check_hidden_content, inspect_layout

pillow_heif.register_heif_opener()

_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_HIGH_BIT_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


@dataclass(frozen=True)
class Frame:
    """One frame as displayed: EXIF orientation applied, RGB (or RGBA when partly transparent),
    at most ``working_size`` pixels on its longer side."""

    index: int
    image: Image.Image


@dataclass(frozen=True)
class DecodedImage:
    """An accepted image: its format, size, frames, and which frames will not be screened.

    ``frames_to_screen`` is planned from the first frame's size; ``frames()`` may yield fewer when
    later frames turn out larger, so count what it yields to know what was screened.
    """

    data: bytes
    format: ImageFormat
    width: int
    height: int
    frame_count: int
    frames_to_screen: int
    layout: Layout
    limits: IntakeSettings

    def frames(self) -> Iterator[Frame]:
        """Decode the frames to screen, one at a time (an animation is never held in memory)."""
        try:
            if len(self.layout.parts) > 1:
                yield from self._frames_of_parts()
            else:
                yield from self._frames_of_single_part()
        except VigilError:
            raise
        except Image.DecompressionBombError as error:
            # Pillow's own check when a later frame declares a huge canvas (GIF): still a bomb.
            raise TooManyPixels(f"a frame declares too many pixels: {error}") from error
        except Exception as error:
            raise CorruptImage(f"the image could not be decoded: {_describe(error)}") from error

    def _frames_of_parts(self) -> Iterator[Frame]:
        for index, (start, end) in enumerate(self.layout.parts[: self.frames_to_screen]):
            with _open(self.data[start:end], self.format) as picture:
                yield Frame(index, _display_frame(picture, self.limits, draft=True))

    def _frames_of_single_part(self) -> Iterator[Frame]:
        # The plan assumed every frame is as large as the first, but TIFF pages and HEIF images
        # each have their own size: the budget is charged with each frame's real size before it
        # is decoded, so a small first page cannot open the door to hundreds of huge ones.
        budget = self.limits.max_animation_pixels
        with _open(self.data, self.format) as picture:
            for index in range(self.frames_to_screen):
                if index:
                    try:
                        picture.seek(index)
                    except EOFError:
                        return  # fewer frames than the header promised: all of them were seen
                    _check_pixels(picture.size, self.limits)
                width, height = picture.size
                budget -= width * height
                if budget < 0 and index:
                    return  # the rest stay unscreened, which the policy sees and holds
                yield Frame(index, _display_frame(picture, self.limits, draft=index == 0))


def read_limited(stream: BinaryIO, limit: int) -> bytes:
    """Read an upload without ever holding more than ``limit`` + 1 bytes of it."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ImageTooLarge(f"the image is over the limit of {limit} bytes")
    return data


def open_image(data: bytes, limits: IntakeSettings) -> DecodedImage:
    """Accept or refuse an upload, reading headers only; frames are decoded by ``frames()``.

    Raises an :class:`~vigil.errors.IntakeError` subclass saying why an upload is refused.
    """
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"the image is {len(data)} bytes; the limit is {limits.max_bytes}")
    image_format = sniff_format(data)
    layout = inspect_layout(data, image_format)
    check_hidden_content(data, layout)
    try:
        return _read_headers(data, image_format, layout, limits)
    except VigilError:
        raise
    except Exception as error:
        raise CorruptImage(f"the image could not be read: {_describe(error)}") from error


def _read_headers(
    data: bytes, image_format: ImageFormat, layout: Layout, limits: IntakeSettings
) -> DecodedImage:
    if layout.canvas is not None:
        _check_pixels(layout.canvas, limits)
    sizes: list[tuple[int, int]] = []
    frame_count = len(layout.parts)
    for start, end in layout.parts:
        with _open(data[start:end], image_format) as picture:
            _check_pixels(picture.size, limits)
            sizes.append(_displayed_size(picture))
            if len(layout.parts) == 1:
                # The structure's own count where there is one: Pillow would walk every frame.
                frame_count = layout.frame_count or int(getattr(picture, "n_frames", 1))
    width, height = sizes[0]
    return DecodedImage(
        data=data,
        format=image_format,
        width=width,
        height=height,
        frame_count=frame_count,
        frames_to_screen=_frames_within_budget(frame_count, sizes, limits),
        layout=layout,
        limits=limits,
    )


def _frames_within_budget(
    frame_count: int, sizes: list[tuple[int, int]], limits: IntakeSettings
) -> int:
    """How many frames fit both the frame limit and the decoded-pixel budget (at least one)."""
    budget = limits.max_animation_pixels
    screened = 0
    for index in range(min(frame_count, limits.max_frames)):
        width, height = sizes[index] if index < len(sizes) else sizes[0]
        budget -= width * height
        if budget < 0 and screened:
            break
        screened += 1
    return screened


def _open(data: bytes, image_format: ImageFormat) -> Image.Image:
    """Open with the sniffed format's plugin only, so no other parser ever sees the bytes."""
    with warnings.catch_warnings():
        # Vigil's own pixel limit decides; Pillow's bomb check stays as a backstop error.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data), formats=[image_format.pillow_format])
        except Image.DecompressionBombError as error:
            raise TooManyPixels(f"the image declares too many pixels: {error}") from error


def _check_pixels(size: tuple[int, int], limits: IntakeSettings) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise CorruptImage(f"the image declares an impossible size {width}x{height}")
    if width * height > limits.max_pixels:
        raise TooManyPixels(
            f"the image declares {width}x{height} = {width * height} pixels; "
            f"the limit is {limits.max_pixels} (decompression bomb protection)"
        )


def _displayed_size(picture: Image.Image) -> tuple[int, int]:
    width, height = _stored_size(picture)
    orientation = _header_orientation(picture)
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def _header_orientation(picture: Image.Image) -> int | None:
    """The EXIF orientation, read without decoding pixels.

    Pillow's PNG ``getexif()`` decodes the whole image to find an eXIf chunk placed after the
    pixel data; here only a chunk before the pixels counts (``frames()`` applies either).
    """
    if picture.format == "PNG":
        raw = picture.info.get("exif")
        if not isinstance(raw, bytes):
            return None
        exif = Image.Exif()
        exif.load(raw)
        value = exif.get(_ORIENTATION_TAG)
    else:
        value = picture.getexif().get(_ORIENTATION_TAG)
    return value if isinstance(value, int) else None


def _stored_size(picture: Image.Image) -> tuple[int, int]:
    """The size of the pixel data as stored, before any orientation is applied."""
    if isinstance(picture, TiffImagePlugin.TiffImageFile):
        # Pillow 11 and later report a TIFF's size already turned upright (Pillow 10 reported the
        # stored size); the tags hold the stored size in every version.
        tags = picture.tag_v2
        return int(tags[TiffImagePlugin.IMAGEWIDTH]), int(tags[TiffImagePlugin.IMAGELENGTH])
    return picture.size


def _display_frame(picture: Image.Image, limits: IntakeSettings, *, draft: bool) -> Image.Image:
    """The current frame as a viewer sees it, shrunk to the working size."""
    size = limits.working_size
    if draft and picture.format in ("JPEG", "MPO"):  # MPO: a JPEG with more pictures (phones)
        # JPEG decodes at 1/2, 1/4 or 1/8 scale for free; never below the working size.
        picture.draft("RGB", (size, size))
    picture.load()
    frame = ImageOps.exif_transpose(picture) if picture.getexif().get(_ORIENTATION_TAG) else picture
    frame = _display_mode(frame)
    width, height = frame.size
    if max(width, height) > size:
        scale = size / max(width, height)
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        # Bilinear (antialiased in Pillow: its support widens with the ratio) measured 40-50 %
        # cheaper than bicubic per frame and moved PDQ hashes by 0-2 bits.
        return frame.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
    # Detach from the file object, which moves on to (and paints over) the next frame.
    return frame.copy() if frame is picture else frame


def _display_mode(frame: Image.Image) -> Image.Image:
    """RGB, or RGBA when transparency actually shows; 16-bit and float images mapped to 8 bits
    as a viewer shows them (full range to full range, not stretched to the image's own range)."""
    if frame.mode in _HIGH_BIT_DEPTH_MODES:
        values = np.asarray(frame, dtype=np.float64)
        if frame.mode == "F":
            scale = 255.0 if float(values.max(initial=0.0)) <= 1.0 else 1.0  # 0-1 or 0-255 data
        else:
            scale = 255.0 / 65535.0
        grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if frame.mode in _ALPHA_MODES or "transparency" in frame.info:
        rgba = frame.convert("RGBA")
        alpha_low = rgba.getchannel("A").getextrema()[0]
        return rgba if int(alpha_low) < 255 else rgba.convert("RGB")  # type: ignore[arg-type]
    return frame if frame.mode == "RGB" else frame.convert("RGB")


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text[:200]
