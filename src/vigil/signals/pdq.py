"""PDQ, Meta's perceptual hash: near-identical images get hashes a small Hamming distance apart.

Hashes are written as 64 lowercase hex characters with bit 0 of PDQ's hash vector as the most
significant bit of the first character: the convention of Meta's reference implementation and the
``threatexchange`` package, so hash lists from other tools compare unchanged.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pdqhash
from PIL import Image

from vigil.intake import Frame
from vigil.signals.base import FrameHash, HashType
from vigil.signals.variants import VariantOptions, edited_copies

PDQ_BITS = 256
# PDQ is defined on images of at most 512 pixels a side; larger ones are shrunk first.
PDQ_MAX_SIDE = 512
_BACKGROUNDS = (("white", (255, 255, 255)), ("black", (0, 0, 0)))


def vector_to_hex(vector: npt.NDArray[np.integer]) -> str:
    """PDQ's 256-element bit vector as hex, element 0 first (most significant)."""
    return np.packbits(vector.astype(np.uint8)).tobytes().hex()


def pdq_hash(image: Image.Image) -> tuple[str, int]:
    """PDQ hash (hex) and quality (0-100) of an RGB image."""
    if max(image.size) > PDQ_MAX_SIDE:
        image = image.copy()
        image.thumbnail((PDQ_MAX_SIDE, PDQ_MAX_SIDE))
    vector, quality = pdqhash.compute(np.asarray(image.convert("RGB")))
    return vector_to_hex(vector), int(quality)


class PdqHasher:
    """PDQ of every frame. A transparent frame is hashed over white and over black: a picture
    can be made to look harmless on one page background and show its content on the other.

    With ``variants``, the first ``variants.frames`` frames also get the hashes of their edited
    copies (:mod:`vigil.signals.variants`), as ``FrameHash``es whose ``variant`` names the edit;
    a transparent frame gets them over both backgrounds.
    """

    def __init__(self, variants: VariantOptions | None = None) -> None:
        self.variants = variants or VariantOptions()

    def hash_frame(self, frame: Frame) -> list[FrameHash]:
        if frame.image.mode != "RGBA":
            return self._hash_displayed(frame.image, frame.index, None)
        hashes = []
        for name, colour in _BACKGROUNDS:
            flattened = Image.new("RGB", frame.image.size, colour)
            flattened.paste(frame.image, mask=frame.image.getchannel("A"))
            hashes.extend(self._hash_displayed(flattened, frame.index, name))
        return hashes

    def _hash_displayed(
        self, image: Image.Image, index: int, background: str | None
    ) -> list[FrameHash]:
        value, quality = pdq_hash(image)
        hashes = [FrameHash(HashType.PDQ, value, quality, index, background)]
        if index >= self.variants.frames or not self.variants.enabled:
            return hashes
        if max(image.size) > PDQ_MAX_SIDE:
            image = image.copy()
            image.thumbnail((PDQ_MAX_SIDE, PDQ_MAX_SIDE))
        seen = {value}
        for variant, copy in edited_copies(image.convert("RGB"), self.variants):
            variant_value, variant_quality = pdq_hash(copy)
            if variant_value in seen:
                continue  # a symmetric or flat picture: one search of a hash is enough
            seen.add(variant_value)
            hashes.append(
                FrameHash(HashType.PDQ, variant_value, variant_quality, index, background, variant)
            )
        return hashes
