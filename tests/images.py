"""Images made by the tests themselves: no real photographs, nothing from the internet."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import GifImagePlugin, Image


def make_photo(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    """A photo-like picture: smooth gradients, overlapping shapes and a little grain.

    Structure at every scale gives PDQ high quality, and different seeds give unrelated hashes.
    """
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    canvas = np.zeros((height, width, 3), dtype=np.float32)
    for channel in range(3):
        fx, fy, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.3)
        canvas[..., channel] = 127 + 80 * np.sin(
            xs / width * fx * 6.3 + ys / height * fy * 6.3 + phase
        )
    for _ in range(12):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.3) * height
        inside = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
        canvas[inside] = rng.uniform(0, 255, size=3)
    canvas += rng.normal(0, 6, size=canvas.shape)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")


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
