"""What is preserved with an illegal image besides the image: who sent it, from where, and the
image's own metadata, exactly as received."""

from __future__ import annotations

import io
import warnings
from datetime import datetime
from typing import Any

from PIL import ExifTags, Image, UnidentifiedImageError

from vigil.store.models import Submission

# Bounds, because the metadata is the uploader's to choose: hostile EXIF must not bloat a row.
_MAX_TAGS = 500
_MAX_VALUE_CHARS = 2000
_MAX_BYTES_SHOWN = 256
_IFDS = {
    "Exif": ExifTags.IFD.Exif,
    "GPS": ExifTags.IFD.GPSInfo,
    "Interop": ExifTags.IFD.Interop,
}


def capture_record(submission: Submission) -> dict[str, Any]:
    """The upload's circumstances as the site sent them, with the time Vigil received it."""
    record = dict(submission.context)
    record["received_at"] = submission.created_at.isoformat()
    return record


def read_exif(data: bytes) -> dict[str, Any]:
    """The EXIF tags of an image as received, by name and IFD; {} if it has none or cannot be
    read. Never fails: metadata is a bonus, the image is the evidence."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as picture:
                exif = _exif_of(picture)
                tags: dict[str, Any] = {}
                _add_tags(tags, "Image", dict(exif), ExifTags.TAGS)
                for ifd_name, ifd in _IFDS.items():
                    names = ExifTags.GPSTAGS if ifd is ExifTags.IFD.GPSInfo else ExifTags.TAGS
                    try:
                        values = dict(exif.get_ifd(ifd))
                    except KeyError:
                        continue  # the image has no such section
                    try:
                        _add_tags(tags, ifd_name, values, names)
                    except Exception as error:
                        tags[f"{ifd_name}.unreadable"] = str(error)[:200]
                return tags
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return {}
    except Exception:
        return {}


def _exif_of(picture: Image.Image) -> Image.Exif:
    """The EXIF block, read without decoding pixels (Pillow's PNG ``getexif()`` would decode the
    whole image to look for a chunk after the pixels: a cost a flood of one image must not pay)."""
    if picture.format == "PNG":
        exif = Image.Exif()
        raw = picture.info.get("exif")
        if isinstance(raw, bytes):
            exif.load(raw)
        return exif
    return picture.getexif()


def _add_tags(
    tags: dict[str, Any], ifd_name: str, values: dict[int, Any], names: dict[int, str]
) -> None:
    for tag, value in values.items():
        if len(tags) >= _MAX_TAGS:
            return
        if ifd_name == "Image" and tag in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
            continue  # pointers to the IFDs read separately
        name = names.get(tag, f"0x{tag:04x}")
        tags[f"{ifd_name}.{name}"] = _plain(value)


def _plain(value: Any) -> Any:
    """A JSON value for an EXIF value: numbers and text as they are, bytes as hex, ratios as
    floats, sequences as lists; long values cut."""
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        # As text: PostgreSQL's JSONB rewrites some floats (1e16 comes back an integer, -0.0 as 0),
        # and the custody chain fixes a digest of these values that must survive the round trip.
        return repr(value)
    if isinstance(value, bytes):
        shown = value[:_MAX_BYTES_SHOWN].hex()
        return shown + ("..." if len(value) > _MAX_BYTES_SHOWN else "")
    if isinstance(value, str):
        text = value.replace("\x00", "")
        return text[:_MAX_VALUE_CHARS]
    if isinstance(value, tuple | list):
        return [_plain(part) for part in value[:64]]
    if isinstance(value, datetime):
        return value.isoformat()
    try:
        return repr(float(value))  # IFDRational and friends, as text (see floats above)
    except (TypeError, ValueError, ZeroDivisionError):
        return str(value)[:_MAX_VALUE_CHARS]
