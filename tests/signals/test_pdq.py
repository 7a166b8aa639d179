"""PDQ: the hex convention other tools use, and the robustness screening relies on."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageFilter
from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

from tests.images import encode, make_photo
from vigil.config import IntakeSettings
from vigil.intake import open_image
from vigil.matching.index import hamming_distance
from vigil.signals import FrameHash, HashType, compute_signals, default_hashers
from vigil.signals.pdq import PDQ_BITS, pdq_hash, vector_to_hex

# The distance Vigil's PDQ banks match at by default, and the one Meta recommends.
MATCH_THRESHOLD = 31


def pdq_hashes(data: bytes) -> list[FrameHash]:
    """The PDQ hashes screening computes for an uploaded file."""
    image = open_image(data, IntakeSettings())
    return list(compute_signals(image, *default_hashers()).frame_hashes)


def only_pdq(data: bytes) -> FrameHash:
    (frame_hash,) = pdq_hashes(data)
    return frame_hash


def gradient(width: int, height: int) -> Image.Image:
    """Smooth and featureless: PDQ rates it below the usual quality floor."""
    row = np.linspace(0, 255, width, dtype=np.uint8)
    return Image.fromarray(np.tile(row, (height, 1)), "L").convert("RGB")


# Every image is at most 512 pixels a side, so neither side resizes before hashing.
REFERENCE_IMAGES: dict[str, Callable[[], bytes]] = {
    "photo 512x512": lambda: encode(make_photo(512, 512, seed=1), "PNG"),
    "photo 400x300": lambda: encode(make_photo(400, 300, seed=2), "PNG"),
    "photo 64x480": lambda: encode(make_photo(64, 480, seed=3), "PNG"),
    "photo 333x77": lambda: encode(make_photo(333, 77, seed=4), "PNG"),
    "greyscale": lambda: encode(make_photo(300, 300, seed=5).convert("L"), "PNG"),
    "blurred (middling quality)": lambda: encode(
        make_photo(256, 256, seed=3).filter(ImageFilter.GaussianBlur(20)), "PNG"
    ),
    "gradient (low quality)": lambda: encode(gradient(256, 256), "PNG"),
}


@pytest.mark.parametrize("name", REFERENCE_IMAGES)
def test_pdq_hex_and_quality_equal_metas_threatexchange_package(name: str) -> None:
    data = REFERENCE_IMAGES[name]()

    ours = only_pdq(data)
    reference_hex, reference_quality = pdq_from_bytes(data)

    assert ours.hash_type is HashType.PDQ
    assert ours.value == reference_hex
    assert ours.quality == reference_quality


def test_reference_images_cover_a_range_of_qualities() -> None:
    # The comparison above would prove little about quality if every image scored 100.
    qualities = {only_pdq(make()).quality for make in REFERENCE_IMAGES.values()}
    assert min(qualities) < 50 < max(qualities)
    assert any(0 < quality < 100 for quality in qualities)


def test_vector_element_zero_is_the_most_significant_bit_of_the_first_hex_digit() -> None:
    vector = np.zeros(PDQ_BITS, dtype=np.uint8)
    vector[0] = 1
    assert vector_to_hex(vector) == "80" + "00" * 31


def test_vector_last_element_is_the_least_significant_bit_of_the_last_hex_digit() -> None:
    vector = np.zeros(PDQ_BITS, dtype=np.uint8)
    vector[-1] = 1
    assert vector_to_hex(vector) == "00" * 31 + "01"


def test_vector_to_hex_reads_bits_in_order() -> None:
    rng = np.random.default_rng(7)
    vector = rng.integers(0, 2, PDQ_BITS, dtype=np.uint8)
    as_binary = "".join(str(bit) for bit in vector)
    assert vector_to_hex(vector) == f"{int(as_binary, 2):064x}"


def test_images_larger_than_512_pixels_are_hashed_as_their_512_pixel_thumbnail() -> None:
    large = make_photo(1500, 1000, seed=11)
    thumbnail = large.copy()
    thumbnail.thumbnail((512, 512))

    assert pdq_hash(large) == pdq_hash(thumbnail)
    # Hashed at full size, the picture gets another hash: so the shrinking really happened.
    full_size_vector, _ = pdqhash.compute(np.asarray(large))
    assert vector_to_hex(full_size_vector) != pdq_hash(large)[0]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_jpeg_reencode_resize_and_png_conversion_stay_within_the_match_threshold(
    seed: int,
) -> None:
    original_picture = make_photo(640, 480, seed=seed)
    original = encode(original_picture, "JPEG", quality=95)
    decoded = Image.open(io.BytesIO(original))
    variants = {
        "jpeg q70": encode(decoded, "JPEG", quality=70),
        "half size": encode(decoded.resize((320, 240), Image.Resampling.LANCZOS), "JPEG"),
        "png": encode(decoded, "PNG"),
    }

    original_hash = only_pdq(original).value
    for name, data in variants.items():
        distance = hamming_distance(original_hash, only_pdq(data).value)
        assert distance <= MATCH_THRESHOLD, f"{name}: distance {distance}"


def test_unrelated_pictures_are_far_apart() -> None:
    hashes = [only_pdq(encode(make_photo(seed=seed), "PNG")).value for seed in range(10)]
    distances = [hamming_distance(a, b) for a, b in itertools.combinations(hashes, 2)]
    assert min(distances) > 80


def test_transparent_image_is_hashed_over_white_and_over_black() -> None:
    picture = make_photo(300, 200, seed=21).convert("RGBA")
    # Opaque inside an ellipse, invisible around it. (Not a half-plane: a background change
    # that is constant along one axis lies in frequencies PDQ leaves out, giving equal hashes.)
    ys, xs = np.mgrid[0:200, 0:300]
    inside = ((xs - 150) / 120) ** 2 + ((ys - 100) / 80) ** 2 <= 1
    picture.putalpha(Image.fromarray(np.where(inside, 255, 0).astype(np.uint8), "L"))

    hashes = pdq_hashes(encode(picture, "PNG"))

    assert [(h.frame, h.background) for h in hashes] == [(0, "white"), (0, "black")]
    for frame_hash in hashes:
        colour = (255, 255, 255) if frame_hash.background == "white" else (0, 0, 0)
        flattened = Image.new("RGB", picture.size, colour)
        flattened.paste(picture, mask=picture.getchannel("A"))
        assert (frame_hash.value, frame_hash.quality) == pdq_hash(flattened)
    # Over the two backgrounds the picture really looks different: two hashes, not one twice.
    assert hashes[0].value != hashes[1].value


def test_opaque_rgba_image_gets_one_hash_without_a_background() -> None:
    picture = make_photo(300, 200, seed=22).convert("RGBA")  # alpha 255 everywhere

    hashes = pdq_hashes(encode(picture, "PNG"))

    assert len(hashes) == 1
    assert hashes[0].background is None
    assert hashes[0].value == pdq_hash(picture.convert("RGB"))[0]


def test_a_flat_image_has_quality_zero() -> None:
    frame_hash = only_pdq(encode(Image.new("RGB", (200, 200), (120, 130, 140)), "PNG"))
    assert frame_hash.quality == 0
