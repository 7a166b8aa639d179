"""The pictures and edits of the robustness benchmark: known images, unrelated ones, and the
edits people make to a known image before re-uploading it.

Nothing real and nothing downloaded: scikit-image's sample pictures, photos generated here
(``tests.images.make_photo``), and optionally a folder of the user's own images.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps
from skimage import data as samples
from tests.images import make_photo

# Originals larger than this are shrunk first: an edit of a 12 MP photo would cost more time than
# all the hashing, and screening decodes to 512 pixels anyway.
MAX_SIDE = 1024
PHOTO_SIZES = ((640, 480), (480, 640), (800, 800), (1024, 576), (512, 384), (600, 900))
# Sample pictures the known set is made of, and those kept apart as unrelated ones (the cat is
# Chelsea again, and the right motorcycle view is the left one's stereo twin: neither is used).
SAMPLE_ORIGINALS = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "moon",
    "coins",
    "clock",
    "cell",
    "brick",
    "stereo_motorcycle",
)
SAMPLE_DISTRACTORS = (
    "grass",
    "gravel",
    "page",
    "text",
    "colorwheel",
    "horse",
    "binary_blobs",
    "shepp_logan_phantom",
    "checkerboard",
    "logo",
    "microaneurysms",
)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})

Step = Callable[[Image.Image, np.random.Generator], Image.Image]
Encoder = Callable[[Image.Image], bytes]


@dataclass(frozen=True)
class Picture:
    name: str
    image: Image.Image  # RGB, at most MAX_SIDE a side


@dataclass(frozen=True)
class Edit:
    """One way a known image is changed before it is uploaded again."""

    key: str
    label: str
    steps: tuple[Step, ...]
    encode: Encoder

    def apply(self, image: Image.Image, rng: np.random.Generator) -> bytes:
        for step in self.steps:
            image = step(image, rng)
        return self.encode(image)


# --- encoders -------------------------------------------------------------------------------


def lossless(image: Image.Image) -> bytes:
    """Lossless, so only the named edit changes the picture: BMP, which costs next to nothing
    to write and read (PNG's compression took most of the benchmark's time)."""
    return _save(image, "BMP")


def jpeg(quality: int) -> Encoder:
    return lambda image: _save(image, "JPEG", quality=quality)


def webp(quality: int) -> Encoder:
    return lambda image: _save(image, "WEBP", quality=quality)


def _save(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


# --- steps ----------------------------------------------------------------------------------


def scale(factor: float) -> Step:
    def apply(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        return image.resize(size, Image.Resampling.LANCZOS)

    return apply


def crop(share: float) -> Step:
    """Cut ``share`` of each side away, split at random between its two ends."""

    def apply(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        cut_w, cut_h = round(image.width * share), round(image.height * share)
        left, top = int(rng.integers(0, cut_w + 1)), int(rng.integers(0, cut_h + 1))
        return image.crop((left, top, left + image.width - cut_w, top + image.height - cut_h))

    return apply


def pad(share: float, fill: str) -> Step:
    """Centre the picture on a canvas ``share`` larger each way: ``uniform`` (one random colour),
    ``noise`` (random pixels) or ``blurred`` (the picture itself, stretched and blurred)."""

    def apply(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        size = (round(image.width * (1 + share)), round(image.height * (1 + share)))
        if fill == "uniform":
            colour = tuple(int(value) for value in rng.integers(0, 256, size=3))
            canvas = Image.new("RGB", size, colour)
        elif fill == "noise":
            noise = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            canvas = Image.fromarray(noise, "RGB")
        else:
            canvas = image.resize(size).filter(ImageFilter.GaussianBlur(max(size) / 40))
        canvas.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
        return canvas

    return apply


def rotate(degrees: float) -> Step:
    """Turn anticlockwise by a few degrees, same canvas (black corners), as a tilted scan."""
    return lambda image, _rng: image.rotate(degrees, Image.Resampling.BICUBIC)


def transpose(method: Image.Transpose) -> Step:
    return lambda image, _rng: image.transpose(method)


def greyscale(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
    return image.convert("L").convert("RGB")


def gamma(value: float) -> Step:
    table = [round(255 * (level / 255) ** value) for level in range(256)] * 3
    return lambda image, _rng: image.point(table)


def blur(image: Image.Image, _rng: np.random.Generator) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(max(image.size) / 256))


def noise(sigma: float) -> Step:
    def apply(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(
            0, sigma, (image.height, image.width, 3)
        )
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")

    return apply


def caption(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A meme's caption: white outlined words across the top and the bottom."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    size = max(12, image.height // 10)
    font = ImageFont.load_default(size=size)
    words = ("WHEN THE", "MONDAY HITS", "NOBODY:", "ME AGAIN", "SEE THIS")
    for row, y in enumerate((size // 3, image.height - size - size // 2)):
        text = str(words[int(rng.integers(0, len(words)))]) if row else "LOOK AT THIS"
        width = draw.textlength(text, font=font)
        x = max(0, (image.width - width) / 2)
        draw.text((x, y), text, font=font, fill="white", stroke_width=2, stroke_fill="black")
    return image


_T = Image.Transpose
EDITS: tuple[Edit, ...] = (
    Edit("jpeg90", "JPEG quality 90", (), jpeg(90)),
    Edit("jpeg70", "JPEG quality 70", (), jpeg(70)),
    Edit("jpeg50", "JPEG quality 50", (), jpeg(50)),
    Edit("jpeg30", "JPEG quality 30", (), jpeg(30)),
    Edit("webp", "WebP quality 75", (), webp(75)),
    Edit("resize50", "Resized to 50 %", (scale(0.5),), lossless),
    Edit("resize25", "Resized to 25 %", (scale(0.25),), lossless),
    Edit("crop2", "Cropped 2 % (of each side, at random ends)", (crop(0.02),), lossless),
    Edit("crop5", "Cropped 5 %", (crop(0.05),), lossless),
    Edit("crop10", "Cropped 10 %", (crop(0.10),), lossless),
    Edit("crop20", "Cropped 20 %", (crop(0.20),), lossless),
    Edit("pad10", "Padded 10 %, one colour", (pad(0.10, "uniform"),), lossless),
    Edit("pad20", "Padded 20 %, one colour", (pad(0.20, "uniform"),), lossless),
    Edit("pad10_noise", "Padded 10 %, random noise", (pad(0.10, "noise"),), lossless),
    Edit("pad20_blurred", "Padded 20 %, blurred copy of itself", (pad(0.20, "blurred"),), lossless),
    Edit("rotate2", "Rotated 2°", (rotate(2),), lossless),
    Edit("rotate5", "Rotated 5°", (rotate(5),), lossless),
    Edit("rotate10", "Rotated 10°", (rotate(10),), lossless),
    Edit("rotate90", "Rotated 90°", (transpose(_T.ROTATE_270),), lossless),
    Edit("flip", "Mirrored (left to right)", (transpose(_T.FLIP_LEFT_RIGHT),), lossless),
    Edit("greyscale", "Greyscale", (greyscale,), lossless),
    Edit("gamma", "Gamma 0.6 (brighter)", (gamma(0.6),), lossless),
    Edit("blur", "Gaussian blur (radius 1/256 of the longer side)", (blur,), lossless),
    Edit("noise", "Gaussian noise (σ 12)", (noise(12),), lossless),
    Edit("caption", "Text overlay (meme captions)", (caption,), lossless),
    Edit(
        "chain_flip_crop",
        "Chain: mirrored, cropped 5 %, JPEG 70",
        (transpose(_T.FLIP_LEFT_RIGHT), crop(0.05)),
        jpeg(70),
    ),
    Edit(
        "chain_pad_resize",
        "Chain: padded 10 % (one colour), resized to 50 %, JPEG 50",
        (pad(0.10, "uniform"), scale(0.5)),
        jpeg(50),
    ),
    Edit(
        "chain_turn_gamma",
        "Chain: rotated 90°, gamma 0.6, WebP 75",
        (transpose(_T.ROTATE_270), gamma(0.6)),
        webp(75),
    ),
    Edit(
        "chain_flip_pad",
        "Chain: mirrored, padded 20 % (one colour), JPEG 70",
        (transpose(_T.FLIP_LEFT_RIGHT), pad(0.20, "uniform")),
        jpeg(70),
    ),
)


# --- picture sets ---------------------------------------------------------------------------


def sample_picture(name: str) -> Picture:
    """One of scikit-image's sample pictures, as RGB."""
    loaded = getattr(samples, name)()
    if name == "stereo_motorcycle":
        loaded = loaded[0]
    pixels = np.asarray(loaded)
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    elif pixels.dtype != np.uint8:
        pixels = np.clip(pixels * 255, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if image.mode == "RGBA":
        flattened = Image.new("RGB", image.size, "white")
        flattened.paste(image, mask=image.getchannel("A"))
        image = flattened
    return Picture(f"skimage {name}", _bounded(image.convert("RGB")))


def generated_originals(count: int, seed: int) -> list[Picture]:
    pictures = []
    for number in range(count):
        width, height = PHOTO_SIZES[number % len(PHOTO_SIZES)]
        pictures.append(Picture(f"photo {number}", make_photo(width, height, seed=seed + number)))
    return pictures


def generated_distractors(count: int, seed: int) -> list[Picture]:
    """Unrelated photos (their seeds far from the originals'), a quarter of them inside a plain
    border and a quarter small on a flat background, so border trimming and centre crops run on
    unrelated pictures too."""
    pictures = []
    rng = np.random.default_rng(seed)
    for number in range(count):
        width, height = PHOTO_SIZES[number % len(PHOTO_SIZES)]
        photo = make_photo(width, height, seed=seed + 1_000_000 + number)
        kind = number % 4
        if kind == 2:
            photo = pad(float(rng.uniform(0.05, 0.5)), "uniform")(photo, rng)
        elif kind == 3:
            canvas = Image.new(
                "RGB", (width, height), tuple(int(v) for v in rng.integers(0, 256, 3))
            )
            small = photo.resize((width // 3, height // 3))
            spot = (
                int(rng.integers(0, width - small.width)),
                int(rng.integers(0, height - small.height)),
            )
            canvas.paste(small, spot)
            photo = canvas
        pictures.append(Picture(f"unrelated {number}", photo))
    return pictures


def folder_pictures(folder: Path) -> tuple[list[Picture], list[Picture], int]:
    """The user's images, split into originals and distractors by a hash of each file's name
    (stable as files are added); and how many files could not be read."""
    originals: list[Picture] = []
    distractors: list[Picture] = []
    unreadable = 0
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        try:
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
        except Exception:  # any file Pillow cannot read is simply left out
            unreadable += 1
            continue
        picture = Picture(str(path.relative_to(folder)), _bounded(image))
        even = hashlib.sha256(picture.name.encode()).digest()[0] % 2 == 0
        (originals if even else distractors).append(picture)
    return originals, distractors, unreadable


def upload(picture: Picture) -> bytes:
    """A picture as a site would receive it unedited: JPEG quality 90."""
    return jpeg(90)(picture.image)


def _bounded(image: Image.Image) -> Image.Image:
    if max(image.size) > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return image
