"""Robustness: which edited copies of known images screening still matches, with plain PDQ and
with the edited-copy hashes of ``vigil.signals.variants`` (mirror images and quarter turns, trimmed
borders, centre crops); what each costs in false matches against unrelated pictures and in time.

``python -m bench.robustness [--images DIR] [--seed N]`` prints the section on its own.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.edits import (
    EDITS,
    SAMPLE_DISTRACTORS,
    SAMPLE_ORIGINALS,
    Picture,
    folder_pictures,
    generated_distractors,
    generated_originals,
    pad,
    sample_picture,
    upload,
)
from bench.timing import Timing, measure_round_robin
from vigil.config import IntakeSettings, MatchingSettings
from vigil.intake import Frame, open_image
from vigil.signals import PdqHasher, compute_signals
from vigil.signals.variants import VariantOptions, crop_name

SEED = 20240601
GENERATED_ORIGINALS = 46
GENERATED_DISTRACTORS = 500
TIMING_IMAGES = 16
TIMING_REPEAT = 15
TIMING_WARMUP = 2
_MATCHING = MatchingSettings()
_INTAKE = IntakeSettings()
# Edits the centre-crop table shows: a border, alone or in a chain.
BORDER_EDITS = (
    "pad10",
    "pad20",
    "pad10_noise",
    "pad20_blurred",
    "chain_pad_resize",
    "chain_flip_pad",
)


@dataclass(frozen=True)
class Setup:
    """PDQ with some of the edited-copy hashes: what one configuration of screening searches."""

    key: str
    label: str
    options: VariantOptions

    @property
    def variants(self) -> frozenset[str]:
        return self.options.names()


_DEFAULT_CROPS = tuple(_MATCHING.centre_crops)
_CROPS_LABEL = ", ".join(f"{round(fraction * 100)}" for fraction in _DEFAULT_CROPS)
PLAIN = Setup("plain", "PDQ alone", VariantOptions())
_ALL = VariantOptions(dihedral=True, trim_borders=True, centre_crops=_DEFAULT_CROPS)
_DEFAULTS = VariantOptions.from_settings(_MATCHING)
SETUPS = (
    PLAIN,
    Setup("dihedral", "+ mirrored & turned", VariantOptions(dihedral=True)),
    Setup("trimmed", "+ trimmed border", VariantOptions(trim_borders=True)),
    Setup(
        "crops", f"+ centre crops ({_CROPS_LABEL} %)", VariantOptions(centre_crops=_DEFAULT_CROPS)
    ),
    Setup("all", "all three" + (" (**the defaults**)" if _ALL == _DEFAULTS else ""), _ALL),
    *(() if _ALL == _DEFAULTS else (Setup("defaults", "**the defaults**", _DEFAULTS),)),
)
# The default centre crops one by one: each catches a band of border widths.
CROP_SETUPS = tuple(
    Setup(
        crop_name(fraction),
        f"centre {round(fraction * 100)} %",
        VariantOptions(centre_crops=(fraction,)),
    )
    for fraction in _DEFAULT_CROPS
)
# One hasher computes every hash any setup searches; each setup then looks at its own share.
_EVERYTHING = _ALL


@dataclass(frozen=True)
class Searched:
    """One searched hash of an upload (quality at or above the floor) and its distance to every
    known image's hash."""

    variant: str | None
    distances: np.ndarray


@dataclass(frozen=True)
class Outcome:
    matched: int = 0  # edited copies that matched their own original
    wrong: int = 0  # edited copies that matched another original


@dataclass(frozen=True)
class Cost:
    false_matches: int  # distractors matching some original
    closest: int  # the smallest distance from any distractor's searched hash to any original
    searched: int  # hashes searched for all distractors together (quality floor applied)


@dataclass(frozen=True)
class RobustnessResult:
    seed: int
    threshold: int
    quality_floor: int
    originals: dict[str, int]  # source -> count
    distractors: dict[str, int]
    unreadable: int
    low_quality_originals: list[str]  # plain uploads below the quality floor: never matchable
    edits: list[tuple[str, str]]  # key, label
    setups: list[Setup]
    outcomes: dict[str, dict[str, Outcome]]  # edit -> setup -> outcome
    costs: dict[str, Cost]  # setup -> false matches
    timing_images: int
    timings: dict[str, dict[str, Timing]]  # "ordinary"/"bordered" -> setup or "intake" -> timing
    seconds: float

    @property
    def total_originals(self) -> int:
        return sum(self.originals.values())

    @property
    def total_distractors(self) -> int:
        return sum(self.distractors.values())


def measure_robustness(images_dir: Path | None, seed: int) -> RobustnessResult:
    """Edit every known image every way, screen-hash the copies and the unrelated pictures, and
    count what each setup matches; time the hashing of each setup."""
    started = time.perf_counter()
    samples = [sample_picture(name) for name in SAMPLE_ORIGINALS]
    generated = generated_originals(GENERATED_ORIGINALS, seed)
    unrelated_samples = [sample_picture(name) for name in SAMPLE_DISTRACTORS]
    unrelated = generated_distractors(GENERATED_DISTRACTORS, seed)
    own: list[Picture] = []
    own_unrelated: list[Picture] = []
    unreadable = 0
    if images_dir is not None:
        own, own_unrelated, unreadable = folder_pictures(images_dir)
    originals = samples + generated + own
    distractors = unrelated_samples + unrelated + own_unrelated

    plain_hasher, everything = PdqHasher(), PdqHasher(_EVERYTHING)
    # The bank: each original's own hash as screening computes it for the unedited picture.
    bank_hashes = [_own_hash(upload(picture), plain_hasher) for picture in originals]
    bank = _words([value for value, _ in bank_hashes])
    low_quality = [
        picture.name
        for picture, (_, quality) in zip(originals, bank_hashes, strict=True)
        if quality < _MATCHING.pdq_quality_floor
    ]

    every_setup = [*SETUPS, *CROP_SETUPS]
    outcomes: dict[str, dict[str, Outcome]] = {}
    for edit_number, edit in enumerate(EDITS):
        tally = {setup.key: [0, 0] for setup in every_setup}
        for number, picture in enumerate(originals):
            rng = np.random.default_rng([seed, edit_number, number])
            searched = _search(edit.apply(picture.image, rng), everything, bank)
            for setup in every_setup:
                mine, others = _closest(searched, setup, number)
                tally[setup.key][0] += mine <= _MATCHING.pdq_threshold
                tally[setup.key][1] += others <= _MATCHING.pdq_threshold
        outcomes[edit.key] = {key: Outcome(*counts) for key, counts in tally.items()}

    costs: dict[str, list[int]] = {setup.key: [0, 256, 0] for setup in every_setup}
    for picture in distractors:
        searched = _search(upload(picture), everything, bank)
        for setup in every_setup:
            closest, _ = _closest(searched, setup, None)
            costs[setup.key][0] += closest <= _MATCHING.pdq_threshold
            costs[setup.key][1] = min(costs[setup.key][1], closest)
            costs[setup.key][2] += sum(
                each.variant is None or each.variant in setup.variants for each in searched
            )

    timed = originals[:TIMING_IMAGES]
    bordered = pad(0.2, "uniform")
    timings = {
        "ordinary": _time_hashing([upload(picture) for picture in timed]),
        "bordered": _time_hashing(
            [
                upload(Picture(picture.name, bordered(picture.image, np.random.default_rng(seed))))
                for picture in timed
            ]
        ),
    }
    return RobustnessResult(
        seed=seed,
        threshold=_MATCHING.pdq_threshold,
        quality_floor=_MATCHING.pdq_quality_floor,
        originals={
            "scikit-image samples": len(samples),
            "generated photos": len(generated),
            "from your folder": len(own),
        },
        distractors={
            "scikit-image samples": len(unrelated_samples),
            "generated": len(unrelated),
            "from your folder": len(own_unrelated),
        },
        unreadable=unreadable,
        low_quality_originals=low_quality,
        edits=[(edit.key, edit.label) for edit in EDITS],
        setups=every_setup,
        outcomes=outcomes,
        costs={key: Cost(*values) for key, values in costs.items()},
        timing_images=len(timed),
        timings=timings,
        seconds=time.perf_counter() - started,
    )


def _own_hash(data: bytes, hasher: PdqHasher) -> tuple[str, int]:
    signals = compute_signals(open_image(data, _INTAKE), [], [hasher])
    first = signals.frame_hashes[0]
    return first.value, first.quality


def _words(values: Sequence[str]) -> np.ndarray:
    """256-bit hashes as rows of four big-endian 64-bit words, for XOR and popcount."""
    return np.frombuffer(b"".join(bytes.fromhex(value) for value in values), dtype=">u8").reshape(
        -1, 4
    )


def _search(data: bytes, hasher: PdqHasher, bank: np.ndarray) -> list[Searched]:
    """What screening searches for an upload: every hash the hasher gives (the image's own and
    its edited copies'), less those under the quality floor, as the matcher skips them."""
    signals = compute_signals(open_image(data, _INTAKE), [], [hasher])
    kept = [
        each for each in signals.searched_hashes() if each.quality >= _MATCHING.pdq_quality_floor
    ]
    if not kept:
        return []
    distances = np.bitwise_count(
        _words([each.value for each in kept])[:, None, :] ^ bank[None]
    ).sum(axis=2)
    return [Searched(each.variant, row) for each, row in zip(kept, distances, strict=True)]


def _closest(searched: list[Searched], setup: Setup, own: int | None) -> tuple[int, int]:
    """The smallest distance, over the hashes this setup searches, to the original ``own`` and
    to any other original (to every original when ``own`` is None: the first figure)."""
    variants = setup.variants
    mine = others = 256
    for each in searched:
        if each.variant is not None and each.variant not in variants:
            continue
        if own is None:
            mine = min(mine, int(each.distances.min()))
            continue
        mine = min(mine, int(each.distances[own]))
        rest = np.delete(each.distances, own)
        if rest.size:
            others = min(others, int(rest.min()))
    return mine, others


def _time_hashing(uploads: list[bytes]) -> dict[str, Timing]:
    """Per setup, the time to PDQ-hash every upload's decoded frame as screening does; and, for
    scale, the intake of the same uploads (open and decode to the working size)."""
    frames: list[Frame] = [next(open_image(data, _INTAKE).frames()) for data in uploads]
    hashers = {setup.key: PdqHasher(setup.options) for setup in SETUPS}

    def intake() -> object:
        return [next(open_image(data, _INTAKE).frames()) for data in uploads]

    def hashing(hasher: PdqHasher) -> object:
        return [hasher.hash_frame(frame) for frame in frames]

    cases = {"intake": intake} | {
        key: (lambda hasher=hasher: hashing(hasher)) for key, hasher in hashers.items()
    }
    return measure_round_robin(cases, repeat=TIMING_REPEAT, warmup=TIMING_WARMUP)


# --- the section ----------------------------------------------------------------------------


def render_robustness(result: RobustnessResult) -> str:
    """The robustness section of RESULTS.md."""
    main = [setup for setup in result.setups if setup.key in {each.key for each in SETUPS}]
    crops = [setup for setup in result.setups if setup not in main]
    n = result.total_originals
    lines = [
        "## Robustness: edited copies of known images",
        "",
        *_method(result),
        "",
        f"### Recall: edited copies matched to their original (of {n}), "
        f"distance ≤ {result.threshold}",
        "",
        "| Edit | " + " | ".join(setup.label for setup in main) + " |",
        "|---|" + "--:|" * len(main),
    ]
    for key, label in result.edits:
        cells = [_percent(result.outcomes[key][setup.key].matched, n) for setup in main]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    means = [
        _percent(
            sum(result.outcomes[key][setup.key].matched for key, _ in result.edits),
            n * len(result.edits),
        )
        for setup in main
    ]
    lines.append(
        "| **mean over the edits** | " + " | ".join(f"**{cell}**" for cell in means) + " |"
    )
    lines += [
        "",
        "### What it costs",
        "",
        _cost_header(main),
        "|---|" + "--:|" * len(main),
        *_cost_rows(result, main),
        "",
        *_timing_table(result, main),
        "",
        "### Centre crops one by one: recall on bordered copies",
        "",
        "Each column searches the upload's own hash and one centre crop; the defaults are "
        f"{_CROPS_LABEL} %.",
        "",
        "| Edit | " + " | ".join([PLAIN.label, *(setup.label for setup in crops)]) + " |",
        "|---|" + "--:|" * (len(crops) + 1),
    ]
    for key, label in result.edits:
        if key not in BORDER_EDITS:
            continue
        cells = [_percent(result.outcomes[key][setup.key].matched, n) for setup in [PLAIN, *crops]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [*_cost_rows(result, [PLAIN, *crops]), "", *_reading(result)]
    return "\n".join(lines) + "\n"


def _method(result: RobustnessResult) -> list[str]:
    originals = ", ".join(
        f"{count} {source}" for source, count in result.originals.items() if count
    )
    distractors = ", ".join(
        f"{count} {source}" for source, count in result.distractors.items() if count
    )
    lines = [
        f"Known images: {originals} (scikit-image: {', '.join(SAMPLE_ORIGINALS)}; generated: "
        "`tests.images.make_photo` at six sizes). Each is edited every way below (fixed random "
        f"choices, seed {result.seed}) and uploaded as the edit says (lossless BMP where no "
        "compression is named, so only the edit acts). A bank holds each original's PDQ hash "
        "as screening computes it for the unedited picture (JPEG 90). Every upload goes through "
        "intake "
        "(`open_image`, decode to 512 px) and `PdqHasher.hash_frame` with `VariantOptions`, the "
        "code screening runs; a copy is **matched** when any hash the setup searches, of quality "
        f"≥ {result.quality_floor} (`matching.pdq_quality_floor`), is within {result.threshold} "
        "(`matching.pdq_threshold`) of its original's hash: exactly what the matcher's radius "
        "search returns, computed here by brute force.",
        "",
        f"Unrelated pictures: {distractors} (generated photos with seeds far from the originals', "
        "a quarter of them inside a plain border and a quarter small on a flat background, so "
        "trimming and cropping run on them too), uploaded as JPEG 90. A **false match** is an "
        "unrelated picture matching any known image.",
    ]
    if result.originals.get("from your folder") or result.distractors.get("from your folder"):
        lines += [
            "",
            "The folder's images (`--images`) are split between known and unrelated by a hash of "
            "each file's name; two of them showing the same scene would count as a false match.",
        ]
    if result.low_quality_originals:
        lines += [
            "",
            f"Below the quality floor even unedited (never matchable, counted as misses): "
            f"{', '.join(result.low_quality_originals)}.",
        ]
    if result.unreadable:
        lines += [
            "",
            f"{result.unreadable} file(s) of the folder could not be read and were left out.",
        ]
    return lines


def _cost_header(setups: Sequence[Setup]) -> str:
    return "| | " + " | ".join(setup.label for setup in setups) + " |"


def _cost_rows(result: RobustnessResult, setups: Sequence[Setup]) -> list[str]:
    d = result.total_distractors
    copies = result.total_originals * len(result.edits)
    false = [f"{result.costs[setup.key].false_matches} of {d}" for setup in setups]
    closest = [str(result.costs[setup.key].closest) for setup in setups]
    wrong = [
        str(sum(result.outcomes[key][setup.key].wrong for key, _ in result.edits))
        for setup in setups
    ]
    searched = [f"{result.costs[setup.key].searched / d:.1f}" for setup in setups]
    return [
        "| hashes searched per unrelated picture (mean) | " + " | ".join(searched) + " |",
        "| unrelated pictures falsely matched | " + " | ".join(false) + " |",
        "| closest unrelated picture (distance) | " + " | ".join(closest) + " |",
        f"| edited copies matching another known image (of {copies}) | " + " | ".join(wrong) + " |",
    ]


def _timing_table(result: RobustnessResult, setups: Sequence[Setup]) -> list[str]:
    lines = [
        f"Hashing time per upload (`PdqHasher.hash_frame` on the decoded frame), median of "
        f"{TIMING_REPEAT} round-robin rounds over {result.timing_images} known images uploaded "
        "as JPEG 90 (ordinary) and padded 20 % with one colour (bordered: trimming finds a "
        "border and hashes one more copy); intake (open and decode to 512 px) of the same "
        "uploads for scale.",
        "",
        "| | intake | " + " | ".join(setup.label for setup in setups) + " |",
        "|---|--:|" + "--:|" * len(setups),
    ]
    for group, timings in result.timings.items():
        plain = timings[PLAIN.key].median
        cells = [f"{timings['intake'].median / result.timing_images * 1000:.2f} ms"]
        for setup in setups:
            median = timings[setup.key].median
            cells.append(f"{median / result.timing_images * 1000:.2f} ms ({median / plain:.2f}×)")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return lines


def _reading(result: RobustnessResult) -> list[str]:
    defaults = next(setup for setup in result.setups if setup.options == _DEFAULTS)
    outcomes = result.outcomes
    n = result.total_originals
    ordinary = result.timings["ordinary"]
    extra_ms = (ordinary[defaults.key].median - ordinary[PLAIN.key].median) * 1000
    extra_ms /= result.timing_images

    def recall(key: str, setup: Setup) -> str:
        return _percent(outcomes[key][setup.key].matched, n)

    return [
        "Reading the tables: percentages are the share of known images whose edited copy "
        "matched. With the defaults, mirrored copies go from "
        f"{recall('flip', PLAIN)} to {recall('flip', defaults)}, quarter turns from "
        f"{recall('rotate90', PLAIN)} to {recall('rotate90', defaults)}, 20 % one-colour padding "
        f"from {recall('pad20', PLAIN)} to {recall('pad20', defaults)} and a 20 % blurred frame "
        f"from {recall('pad20_blurred', PLAIN)} to {recall('pad20_blurred', defaults)}, for "
        f"{extra_ms:.1f} ms more hashing per ordinary upload. Crops and rotations by a few "
        "degrees are beyond what hashing edited copies of the upload can undo (what was cut off "
        "is gone; the angle is unknown). Every hash searched is one more search of the PDQ index "
        "and one more chance of a false match; the closest unrelated picture says how much room "
        f"is left under the threshold of {result.threshold} (unrelated PDQ hashes lie about 128 "
        "apart). A known image below the quality floor is a miss in every row.",
    ]


def headline_robustness(result: RobustnessResult) -> list[str]:
    """The figures the closing note of RESULTS.md quotes: the defaults against PDQ alone."""
    defaults = next(setup for setup in result.setups if setup.options == _DEFAULTS)
    n, edits = result.total_originals, [key for key, _ in result.edits]

    def mean(setup: Setup) -> str:
        matched = sum(result.outcomes[key][setup.key].matched for key in edits)
        return _percent(matched, n * len(edits))

    def recall(key: str, setup: Setup) -> str:
        return _percent(result.outcomes[key][setup.key].matched, n)

    ordinary = result.timings["ordinary"]
    ratio = ordinary[defaults.key].median / ordinary[PLAIN.key].median
    return [
        f"- **Robustness, default edited-copy hashes**: mean recall over {len(edits)} edits "
        f"{mean(PLAIN)} → {mean(defaults)} (mirrored {recall('flip', PLAIN)} → "
        f"{recall('flip', defaults)}, padded 20 % {recall('pad20', PLAIN)} → "
        f"{recall('pad20', defaults)}, blurred frame {recall('pad20_blurred', PLAIN)} → "
        f"{recall('pad20_blurred', defaults)}); false matches "
        f"{result.costs[defaults.key].false_matches} of {result.total_distractors} unrelated "
        f"pictures (closest at distance {result.costs[defaults.key].closest}); hashing "
        f"{ratio:.1f}× PDQ alone.",
    ]


def _percent(count: int, total: int) -> str:
    return f"{100 * count / total:.0f} %" if total else "–"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.robustness",
        description="Recall of edited copies of known images, false matches and hashing time, "
        "for PDQ alone and with each edited-copy hash; prints the RESULTS.md section.",
    )
    parser.add_argument("--images", type=Path, help="a folder of your own images to add")
    parser.add_argument("--seed", type=int, default=SEED)
    arguments = parser.parse_args(argv)
    result = measure_robustness(arguments.images, arguments.seed)
    print(f"measured in {result.seconds:.0f} s", file=sys.stderr)
    print(render_robustness(result))


if __name__ == "__main__":
    main()
