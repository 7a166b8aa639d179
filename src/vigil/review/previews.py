"""What a moderator's browser is sent of a held image: a small, blurred, greyscale preview by
default, and the clear picture only when they ask for it.

The blur is applied here, not in the browser, so an image nobody chose to reveal never reaches
the screen in a form that can be seen (even with the page's styles switched off).
"""

from __future__ import annotations

import io
from enum import StrEnum

from PIL import Image, ImageFilter

from vigil.config import Settings
from vigil.errors import VigilError
from vigil.intake import open_image

_BACKDROP = (128, 128, 128)  # transparent parts become neutral grey, not a bright white
_JPEG_QUALITY = 85


class PreviewStyle(StrEnum):
    BLURRED = "blurred"
    CLEAR = "clear"


class PreviewUnavailable(VigilError):
    code = "preview_unavailable"
    http_status = 404


def render_preview(data: bytes, style: PreviewStyle, settings: Settings) -> bytes:
    """A JPEG of the image's first frame, at the screening size (at most
    ``intake.working_size`` pixels a side), in the given style."""
    try:
        image = open_image(data, settings.intake)
        frame = next(iter(image.frames())).image
    except (VigilError, StopIteration) as error:
        raise PreviewUnavailable("this image cannot be shown") from error
    if frame.mode == "RGBA":
        backdrop = Image.new("RGB", frame.size, _BACKDROP)
        backdrop.paste(frame, mask=frame.getchannel("A"))
        frame = backdrop
    frame = frame.convert("RGB")
    if style is PreviewStyle.BLURRED or not settings.review.reveal_in_colour:
        frame = frame.convert("L")
    if style is PreviewStyle.BLURRED:
        # Strong enough that shapes, not content, remain at any size.
        radius = max(8.0, max(frame.size) / 20)
        frame = frame.filter(ImageFilter.GaussianBlur(radius))
    output = io.BytesIO()
    frame.save(output, format="JPEG", quality=_JPEG_QUALITY)
    return output.getvalue()
