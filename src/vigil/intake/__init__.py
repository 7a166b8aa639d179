"""Intake: bytes in, a decoded and normalised image out; anything else is refused."""

from vigil.intake.decode import DecodedImage, Frame, open_image, read_limited
from vigil.intake.formats import ImageFormat, sniff_format

__all__ = ["DecodedImage", "Frame", "ImageFormat", "open_image", "read_limited", "sniff_format"]
