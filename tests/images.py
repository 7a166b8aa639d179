"""Images made by the tests themselves: no real photographs, nothing from the internet."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import GifImagePlugin, Image

from vigil.simulate.images import make_picture


def make_photo(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    """A photo-like picture (see :func:`vigil.simulate.images.make_picture`): structure at every
    scale gives PDQ high quality, and different seeds give unrelated hashes."""
    return make_picture(width, height, seed)


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def animated_gif(frames: Sequence[Image.Image], duration_ms: int = 100) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(
        buffer, "GIF", save_all=True, append_images=list(frames[1:]), duration=duration_ms, loop=0
    )
    return buffer.getvalue()


def gif_with_every_frame(frames: Sequence[Image.Image], duration_ms: int = 100) -> bytes:
    """An animated GIF holding exactly these frames, repeats included.

    Pillow's own GIF writer merges a frame identical to the one before into it (adding the
    durations), so an animation that repeats a frame can only be written block by block. All
    frames share one palette, so each decodes to exactly the same pixels wherever it appears.
    """
    width, height = frames[0].size
    sheet = Image.new("RGB", (width, height * len(frames)))
    for number, frame in enumerate(frames):
        sheet.paste(frame.convert("RGB"), (0, height * number))
    palette = sheet.quantize(256)
    indexed = [
        frame.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames
    ]
    buffer = io.BytesIO()
    header, _ = GifImagePlugin.getheader(indexed[0], indexed[0].getpalette())
    for chunk in header:
        buffer.write(chunk)
    for frame in indexed:
        for chunk in GifImagePlugin.getdata(frame, duration=duration_ms):
            buffer.write(chunk)
    buffer.write(b";")  # the GIF trailer
    return buffer.getvalue()
