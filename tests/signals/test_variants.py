"""Edited-copy hashes: a known image mirrored, turned or put in a border still finds its hash."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageFilter, ImageOps
from pydantic import ValidationError

from tests.images import animated_gif, encode, make_photo
from vigil.config import IntakeSettings, MatchingSettings, load_settings
from vigil.intake import Frame, open_image
from vigil.signals import FrameHash, PdqHasher, Signals, compute_signals, default_hashers
from vigil.signals.pdq import pdq_hash, vector_to_hex
from vigil.signals.variants import (
    DIHEDRAL,
    TRIMMED,
    VariantOptions,
    describe_variant,
    uniform_border_box,
)

THRESHOLD = MatchingSettings().pdq_threshold
QUALITY_FLOOR = MatchingSettings().pdq_quality_floor
EVERYTHING = VariantOptions.from_settings(MatchingSettings())
Pixels = np.ndarray


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def known(seed: int = 21, size: tuple[int, int] = (640, 480)) -> Image.Image:
    return make_photo(*size, seed=seed)


def bank_hash(image: Image.Image) -> str:
    """What a bank holds for a known image: its own PDQ, as screening computes it."""
    signals = compute_signals(
        open_image(encode(image, "PNG"), IntakeSettings()), *default_hashers()
    )
    return signals.frame_hashes[0].value


def screened(data: bytes, options: VariantOptions = EVERYTHING) -> Signals:
    return compute_signals(open_image(data, IntakeSettings()), [], [PdqHasher(options)])


def searchable(signals: Signals) -> list[FrameHash]:
    """The hashes the matcher searches: quality at the floor or above."""
    return [each for each in signals.searched_hashes() if each.quality >= QUALITY_FLOOR]


def closest(signals: Signals, target: str) -> FrameHash:
    return min(searchable(signals), key=lambda each: distance(each.value, target))


def upload(pixels: Pixels | Image.Image, quality: int = 80) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    return encode(image, "JPEG", quality=quality)


# Each edit done with NumPy, not with the Pillow transpositions the code undoes them with, so a
# variant named the wrong way round (90° for 270°) fails here.
EDITS: dict[str, Callable[[Pixels], Pixels]] = {
    "flip_h": lambda pixels: pixels[:, ::-1],
    "flip_v": lambda pixels: pixels[::-1],
    "rotate90": lambda pixels: np.rot90(pixels, -1),  # clockwise
    "rotate180": lambda pixels: np.rot90(pixels, 2),
    "rotate270": lambda pixels: np.rot90(pixels, 1),  # anticlockwise
    "transpose": lambda pixels: pixels.transpose(1, 0, 2),
    "transverse": lambda pixels: np.rot90(pixels, 2).transpose(1, 0, 2),
}


def test_every_dihedral_variant_is_named_and_tested() -> None:
    assert set(EDITS) == set(DIHEDRAL)


@pytest.mark.parametrize("edit", EDITS)
def test_a_mirrored_or_turned_copy_matches_through_the_variant_named_after_its_edit(
    edit: str,
) -> None:
    original = known()
    entry = bank_hash(original)

    signals = screened(upload(np.ascontiguousarray(EDITS[edit](np.asarray(original)))))

    (own,) = signals.frame_hashes
    assert distance(own.value, entry) > THRESHOLD  # plain PDQ misses it
    best = closest(signals, entry)
    assert best.variant == edit
    assert distance(best.value, entry) <= THRESHOLD


def test_pdqhash_compute_dihedral_order_is_the_one_its_comment_documents() -> None:
    # Vigil transposes the picture itself instead (see VARIANT_SIDE); should it ever switch to
    # compute_dihedral, this is the order of its eight hashes.
    picture = known(seed=29)
    vectors, _ = pdqhash.compute_dihedral(np.asarray(picture))
    order = [
        None,
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_180,
        Image.Transpose.ROTATE_270,
        Image.Transpose.FLIP_TOP_BOTTOM,
        Image.Transpose.FLIP_LEFT_RIGHT,
        Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE,
    ]
    real = [
        pdq_hash(picture if method is None else picture.transpose(method))[0] for method in order
    ]
    for vector, expected in zip(vectors, real, strict=True):
        distances = [distance(vector_to_hex(vector), each) for each in real]
        assert distances.index(min(distances)) == real.index(expected)
        assert min(distances) <= THRESHOLD


def test_variant_hashes_are_searched_but_never_reported_as_the_images_own() -> None:
    signals = screened(upload(known()))

    assert [each.variant for each in signals.frame_hashes] == [None]
    assert signals.variant_hashes
    assert all(each.variant is not None for each in signals.variant_hashes)
    assert signals.searched_hashes() == signals.frame_hashes + signals.variant_hashes
    reported = [entry["hash"] for entry in signals.pdq_record()]
    assert reported == [signals.frame_hashes[0].value]


def test_without_settings_the_hashers_give_only_the_images_own_hashes() -> None:
    # Bank entries and `vigil hash` are the image's own hashes: no edited copies.
    data = upload(known())
    signals = compute_signals(open_image(data, IntakeSettings()), *default_hashers())
    assert signals.variant_hashes == ()
    with_settings = compute_signals(
        open_image(data, IntakeSettings()), *default_hashers(MatchingSettings())
    )
    assert with_settings.frame_hashes == signals.frame_hashes
    assert with_settings.variant_hashes


def letterboxed(image: Image.Image, bars: int, colour: tuple[int, int, int]) -> Image.Image:
    return ImageOps.expand(image, (0, bars, 0, bars), fill=colour)


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("black letterbox", lambda image: letterboxed(image, 120, (0, 0, 0))),
        ("white pillarbox", lambda image: ImageOps.expand(image, (150, 0), fill="white")),
        ("coloured padding", lambda image: ImageOps.expand(image, 64, fill=(200, 40, 90))),
        (
            "letterbox and pillarbox of two colours",
            lambda image: ImageOps.expand(letterboxed(image, 60, (0, 0, 0)), (80, 0), fill="grey"),
        ),
    ],
)
@pytest.mark.parametrize("quality", [90, 30])
def test_a_known_image_in_a_uniform_border_matches_once_the_border_is_trimmed(
    name: str, frame: Callable[[Image.Image], Image.Image], quality: int
) -> None:
    original = known(seed=22)
    entry = bank_hash(original)

    signals = screened(upload(frame(original), quality))

    assert distance(signals.frame_hashes[0].value, entry) > THRESHOLD
    trimmed = [each for each in searchable(signals) if each.variant == TRIMMED]
    assert trimmed, f"no border found in the {name}"
    assert distance(trimmed[0].value, entry) <= THRESHOLD


def test_the_trimmed_box_is_the_picture_within_a_couple_of_pixels_despite_jpeg_noise() -> None:
    picture = known(seed=23, size=(400, 300))
    framed = ImageOps.expand(picture, (30, 50, 30, 50), fill=(10, 10, 10))  # 460 x 400
    decoded = Image.open(io.BytesIO(upload(framed, quality=30))).convert("RGB")

    box = uniform_border_box(decoded)

    assert box is not None
    assert np.abs(np.array(box) - np.array((30, 50, 430, 350))).max() <= 2


def test_a_picture_without_a_border_gets_no_trimmed_hash() -> None:
    image = known(seed=24)
    assert uniform_border_box(image) is None
    signals = screened(upload(image))
    assert TRIMMED not in {each.variant for each in signals.variant_hashes}


def test_a_border_thinner_than_a_percent_of_the_side_is_left_alone() -> None:
    # A hairline frame or a JPEG edge artefact: hashing the picture without it gains nothing.
    image = ImageOps.expand(known(seed=24, size=(500, 400)), 2, fill="black")
    assert uniform_border_box(image) is None


def test_a_known_image_in_a_noisy_frame_matches_through_a_centre_crop() -> None:
    original = known(seed=25)
    entry = bank_hash(original)
    rng = np.random.default_rng(25)
    canvas = Image.fromarray(rng.integers(0, 256, (528, 704, 3), dtype=np.uint8))  # 10 % larger
    canvas.paste(original, (32, 24))

    signals = screened(upload(canvas))

    assert distance(signals.frame_hashes[0].value, entry) > THRESHOLD
    assert not uniform_border_box(Image.open(io.BytesIO(upload(canvas))).convert("RGB"))
    best = closest(signals, entry)
    assert best.variant == "crop_90"
    assert distance(best.value, entry) <= THRESHOLD


def test_a_known_image_in_a_blurred_copy_of_itself_matches_through_a_centre_crop() -> None:
    original = known(seed=26)
    entry = bank_hash(original)
    canvas = original.resize((768, 576)).filter(ImageFilter.GaussianBlur(20))  # 20 % larger
    canvas.paste(original, (64, 48))

    best = closest(screened(upload(canvas)), entry)

    assert str(best.variant).startswith("crop_")
    assert distance(best.value, entry) <= THRESHOLD


def test_a_mirrored_copy_in_a_border_matches_through_the_trimmed_mirror_image() -> None:
    original = known(seed=27)
    entry = bank_hash(original)
    edited = letterboxed(original.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 100, (0, 0, 0))

    best = closest(screened(upload(edited)), entry)

    assert best.variant == "trimmed_flip_h"
    assert distance(best.value, entry) <= THRESHOLD


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(Image.new("RGB", (500, 400), (120, 130, 140)), id="flat grey"),
        pytest.param(Image.new("RGB", (500, 400), "black"), id="black"),
        pytest.param(
            Image.fromarray(np.tile(np.linspace(0, 255, 500, dtype=np.uint8), (400, 1))),
            id="gradient",
        ),
    ],
)
def test_no_hash_of_a_featureless_picture_or_its_edited_copies_is_searched(
    image: Image.Image,
) -> None:
    signals = screened(upload(image.convert("RGB"), quality=90))
    assert signals.frame_hashes
    assert searchable(signals) == []


def test_a_flat_picture_inside_a_border_is_all_border_and_gets_no_trimmed_hash() -> None:
    # Trimming goes on through the flat inside: nothing is left worth a hash.
    image = ImageOps.expand(Image.new("RGB", (300, 200), (90, 90, 90)), 100, fill="white")
    assert uniform_border_box(image) is None
    signals = screened(upload(image, quality=90))
    assert TRIMMED not in {each.variant for each in signals.variant_hashes}


def test_each_setting_switches_its_own_variants_off() -> None:
    data = upload(letterboxed(known(seed=28), 100, (0, 0, 0)))
    every = {each.variant for each in screened(data).variant_hashes}
    assert set(DIHEDRAL) | {TRIMMED, "crop_94", "crop_90", "crop_86", "crop_82"} <= every

    def variants(**changes: object) -> set[str | None]:
        settings = MatchingSettings().model_copy(update=changes)
        return {
            each.variant
            for each in screened(data, VariantOptions.from_settings(settings)).variant_hashes
        }

    assert variants(dihedral=False) == every - set(DIHEDRAL) - {f"trimmed_{n}" for n in DIHEDRAL}
    assert variants(trim_borders=False) == every - {TRIMMED} - {f"trimmed_{n}" for n in DIHEDRAL}
    assert variants(centre_crops=[]) == {n for n in every if not str(n).startswith("crop_")}
    assert variants(centre_crops=[0.9]) & {"crop_94", "crop_90"} == {"crop_90"}
    assert variants(dihedral=False, trim_borders=False, centre_crops=[]) == set()
    assert variants(variant_frames=0) == set()


def test_only_the_first_frames_of_an_animation_get_edited_copies() -> None:
    frames = [make_photo(160, 120, seed=seed) for seed in (30, 31, 32)]
    data = animated_gif(frames)

    def frames_with_variants(count: int) -> set[int]:
        options = VariantOptions(dihedral=True, frames=count)
        return {each.frame for each in screened(data, options).variant_hashes}

    assert frames_with_variants(1) == {0}
    assert frames_with_variants(2) == {0, 1}
    assert frames_with_variants(10) == {0, 1, 2}
    assert {each.frame for each in screened(data).frame_hashes} == {0, 1, 2}


def test_a_transparent_frame_gets_edited_copies_over_both_backgrounds() -> None:
    picture = known(seed=33, size=(200, 150)).convert("RGBA")
    frame = Frame(0, picture)

    hashes = PdqHasher(VariantOptions(dihedral=True)).hash_frame(frame)

    flips = {each.background for each in hashes if each.variant == "flip_h"}
    assert flips == {"white", "black"}


def test_variants_are_described_as_the_edit_the_upload_had() -> None:
    assert describe_variant("flip_h") == "mirrored left to right"
    assert describe_variant("rotate90") == "turned 90° clockwise"
    assert describe_variant("trimmed") == "inside a uniform border"
    assert describe_variant("trimmed_rotate270") == (
        "inside a uniform border, turned 90° anticlockwise"
    )
    assert describe_variant("crop_86") == "inside a border (the upload's central 86 % matched)"


def test_the_robustness_settings_are_on_by_default_and_checked(tmp_path: Path) -> None:
    matching = MatchingSettings()
    assert (matching.dihedral, matching.trim_borders, matching.variant_frames) == (True, True, 1)
    assert matching.centre_crops == [0.94, 0.9, 0.86, 0.82]
    for crops in ([0.3], [1.0], [0.9, 0.9001]):
        with pytest.raises(ValidationError):
            load_settings(data_dir=tmp_path, matching={"centre_crops": crops})
    off = load_settings(data_dir=tmp_path, matching={"dihedral": False, "centre_crops": []})
    assert not VariantOptions.from_settings(off.matching).dihedral
