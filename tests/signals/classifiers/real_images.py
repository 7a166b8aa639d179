"""Real photographs that ship inside scikit-image, so nothing is fetched from the internet."""

from __future__ import annotations

import skimage.data
from PIL import Image


def astronaut() -> Image.Image:
    """Eileen Collins's NASA portrait, 512 x 512: one adult face, clearly lit, facing forward."""
    return Image.fromarray(skimage.data.astronaut(), "RGB")  # type: ignore[no-untyped-call]
