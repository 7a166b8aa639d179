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
    can be made to look harmless on one page background and show its content on the other."""

    def hash_frame(self, frame: Frame) -> list[FrameHash]:
        if frame.image.mode != "RGBA":
            value, quality = pdq_hash(frame.image)
            return [FrameHash(HashType.PDQ, value, quality, frame.index)]
        hashes = []
        for name, colour in _BACKGROUNDS:
            flattened = Image.new("RGB", frame.image.size, colour)
            flattened.paste(frame.image, mask=frame.image.getchannel("A"))
            value, quality = pdq_hash(flattened)
            hashes.append(FrameHash(HashType.PDQ, value, quality, frame.index, background=name))
        return hashes
