"""Walk an image's container before decoding it: truncation, appended files, polyglots.

Decoders are lenient on purpose (they show what they can of a damaged file); a screening gateway
must not be. What a site publishes is the whole file, so every byte of it must belong to the
picture Vigil screened: a ZIP, PDF or HTML page riding inside or behind an image is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vigil.errors import CorruptImage, PolyglotImage
from vigil.intake.formats import ImageFormat


@dataclass(frozen=True)
class Layout:
    """Where the pictures are in the file."""

    # Byte ranges of the pictures: one for most files; JPEG files may hold several one after
    # another (phones append depth maps and HDR gain maps), and each is screened.
    parts: tuple[tuple[int, int], ...]
    # Where the image data ends, or None for formats (TIFF) whose data may lie anywhere.
    end: int | None
    # Frames counted from the structure itself, where that is cheap and exact (GIF).
    frame_count: int | None = None
    # The largest canvas the frames draw on, where frames may reach past the declared size (GIF):
    # checked before any decoder sees the file, because Pillow allocates it while seeking.
    canvas: tuple[int, int] | None = None


def inspect_layout(data: bytes, image_format: ImageFormat) -> Layout:
    """The layout of an image file; :class:`CorruptImage` if it is truncated or malformed."""
    if image_format is ImageFormat.JPEG:
        parts = _jpeg_parts(data)
        return Layout(parts=parts, end=parts[-1][1])
    if image_format is ImageFormat.GIF:
        end, frames, canvas = _gif_end(data)
        return Layout(parts=((0, end),), end=end, frame_count=frames, canvas=canvas)
    if image_format is ImageFormat.TIFF:
        return Layout(parts=((0, len(data)),), end=None)
    end = _END_FINDERS[image_format](data)
    return Layout(parts=((0, end),), end=end)


_MARKUP = re.compile(
    rb"<(?:script|html|svg|iframe|body|!doctype|object|embed)[\s>/]", re.IGNORECASE
)
_ARCHIVE_SIGNATURES = (
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
)
_ZIP_END_OF_DIRECTORY = b"PK\x05\x06"
_ZIP_END_RECORD_SIZE = 22
_PADDING = b"\x00 \t\r\n"


def check_hidden_content(data: bytes, layout: Layout) -> None:
    """Refuse files that another program would read as something other than this image."""
    head = data[:1024]
    # PDF readers look for the header anywhere in the first kilobyte.
    if b"%PDF-" in head:
        raise PolyglotImage("the image also carries a PDF document (a polyglot file)")
    if _MARKUP.search(head):
        raise PolyglotImage("the image carries HTML or SVG markup (a polyglot file)")
    if _has_zip_directory(data):
        raise PolyglotImage("a ZIP archive is hidden in the image (a polyglot file)")
    for signature, name in _ARCHIVE_SIGNATURES:
        if signature in data:
            raise PolyglotImage(f"{name} is hidden in the image (a polyglot file)")
    if layout.end is not None and data[layout.end :].strip(_PADDING):
        raise PolyglotImage(
            f"{len(data) - layout.end} bytes of other data follow the end of the image; "
            "re-encode the image or strip the appended data"
        )


def _has_zip_directory(data: bytes) -> bool:
    """Whether the file ends with a ZIP end-of-directory record, as unzip tools look for it.

    The record's comment length must reach exactly to the end of the file, which makes a chance
    occurrence of its four-byte signature in image data practically impossible.
    """
    tail_start = max(0, len(data) - (_ZIP_END_RECORD_SIZE + 0xFFFF))
    position = data.rfind(_ZIP_END_OF_DIRECTORY, tail_start)
    while position >= 0:
        if position + _ZIP_END_RECORD_SIZE <= len(data):
            comment_length = int.from_bytes(data[position + 20 : position + 22], "little")
            if position + _ZIP_END_RECORD_SIZE + comment_length == len(data):
                return True
        position = data.rfind(_ZIP_END_OF_DIRECTORY, tail_start, position)
    return False


def _truncated(kind: str, detail: str) -> CorruptImage:
    return CorruptImage(f"truncated or corrupt {kind}: {detail}")


# --- JPEG ----------------------------------------------------------------------------------------

_JPEG_SOI = b"\xff\xd8\xff"
_JPEG_EOI, _JPEG_SOS, _JPEG_TEM = 0xD9, 0xDA, 0x01


def _jpeg_parts(data: bytes) -> tuple[tuple[int, int], ...]:
    parts = [(0, _jpeg_end(data, 0))]
    while True:
        start = parts[-1][1]
        # Skip padding between pictures, then continue only if another JPEG starts there.
        while start < len(data) and data[start] in _PADDING:
            start += 1
        if not data.startswith(_JPEG_SOI, start):
            return tuple(parts)
        parts.append((start, _jpeg_end(data, start)))


def _jpeg_end(data: bytes, start: int) -> int:
    """Offset just past the end-of-image marker of the JPEG starting at ``start``."""
    size = len(data)
    position = start + 2
    while True:
        if position >= size:
            raise _truncated("JPEG", "the end-of-image marker is missing")
        if data[position] != 0xFF:
            raise _truncated("JPEG", f"expected a marker at byte {position}")
        while position < size and data[position] == 0xFF:  # fill bytes before a marker
            position += 1
        if position >= size:
            raise _truncated("JPEG", "the file ends inside a marker")
        marker = data[position]
        position += 1
        if marker == _JPEG_EOI:
            return position
        if 0xD0 <= marker <= 0xD7 or marker == _JPEG_TEM:  # markers without a length
            continue
        if marker in (0x00, 0xD8):
            raise _truncated("JPEG", f"unexpected marker at byte {position - 1}")
        if position + 2 > size:
            raise _truncated("JPEG", "the file ends inside a segment header")
        length = int.from_bytes(data[position : position + 2], "big")
        if length < 2:
            raise _truncated("JPEG", f"a segment at byte {position} has an impossible length")
        position += length
        if position > size:
            raise _truncated("JPEG", "the file ends inside a segment")
        if marker == _JPEG_SOS:
            position = _skip_entropy_coded_data(data, position)


# In compressed scan data 0xFF is followed by 0x00 (a stuffed byte), a restart marker
# (0xD0-0xD7) or fill (0xFF); anything else after 0xFF is the next real marker.
_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _skip_entropy_coded_data(data: bytes, position: int) -> int:
    """Offset of the first real marker after compressed scan data."""
    found = _MARKER_AFTER_SCAN.search(data, position)
    if found is None:
        raise _truncated("JPEG", "the compressed data ends without an end-of-image marker")
    return found.start()


# --- PNG, WebP, BMP, HEIF -------------------------------------------------------------------------


def _png_end(data: bytes) -> int:
    size = len(data)
    position = 8
    while True:
        if position + 8 > size:
            raise _truncated("PNG", "the IEND chunk is missing")
        length = int.from_bytes(data[position : position + 4], "big")
        chunk_type = data[position + 4 : position + 8]
        if length > 0x7FFFFFFF:
            raise _truncated("PNG", f"chunk at byte {position} has an impossible length")
        position += 12 + length
        if position > size:
            raise _truncated("PNG", f"the file ends inside a {chunk_type!r} chunk")
        if chunk_type == b"IEND":
            return position


def _webp_end(data: bytes) -> int:
    if len(data) < 16:
        raise _truncated("WebP", "the header is incomplete")
    riff_size = int.from_bytes(data[4:8], "little")
    end = 8 + riff_size + (riff_size & 1)
    if riff_size < 4 or end > len(data) + (riff_size & 1):
        raise _truncated("WebP", f"the header declares {end} bytes, the file has {len(data)}")
    return min(end, len(data))


def _bmp_end(data: bytes) -> int:
    declared = int.from_bytes(data[2:6], "little")
    pixel_offset = int.from_bytes(data[10:14], "little")
    if declared > len(data):
        raise _truncated("BMP", f"the header declares {declared} bytes, the file has {len(data)}")
    # Some writers leave the size field zero or wrong; then the decoder is the only judge.
    if declared <= pixel_offset:
        return len(data)
    return declared


# Boxes that stand at the top level of ISO base media files (ISO/IEC 14496-12 and 23008-12). A box
# of one of these types that runs past the end of the file was cut off; any other "box" that does
# is not part of the image at all but data appended behind it.
_ISO_TOP_LEVEL_BOXES = frozenset(
    {
        b"ftyp", b"styp", b"meta", b"mdat", b"moov", b"moof", b"mfra", b"free", b"skip",
        b"uuid", b"pdin", b"sidx", b"ssix", b"prft", b"emsg", b"meco",
    }
)  # fmt: skip


def _heif_end(data: bytes) -> int:
    """Walk the top-level ISO base media boxes; every byte must belong to one."""
    size = len(data)
    position = 0
    while position < size:
        if position + 8 > size:
            raise _truncated("HEIF", f"the file ends inside a box header at byte {position}")
        box_size = int.from_bytes(data[position : position + 4], "big")
        box_type = data[position + 4 : position + 8]
        header = 8
        if not all(0x20 <= byte < 0x7F for byte in box_type):
            raise PolyglotImage(f"other data follows the image boxes at byte {position}")
        if box_size == 1:
            if position + 16 > size:
                raise _truncated("HEIF", "the file ends inside a box header")
            box_size = int.from_bytes(data[position + 8 : position + 16], "big")
            header = 16
        elif box_size == 0:  # the last box runs to the end of the file
            box_size = size - position
        if box_size < header:
            raise _truncated("HEIF", f"the box at byte {position} has an impossible size")
        if position + box_size > size:
            if box_type not in _ISO_TOP_LEVEL_BOXES:
                raise PolyglotImage(f"other data follows the image boxes at byte {position}")
            raise _truncated("HEIF", f"the {box_type.decode()} box runs past the end of the file")
        position += box_size
    return position


_END_FINDERS = {
    ImageFormat.PNG: _png_end,
    ImageFormat.WEBP: _webp_end,
    ImageFormat.BMP: _bmp_end,
    ImageFormat.HEIF: _heif_end,
}


# --- GIF -----------------------------------------------------------------------------------------


def _gif_end(data: bytes) -> tuple[int, int, tuple[int, int]]:
    """Offset past the trailer, the number of frames and the canvas, decompressing nothing.

    A frame may lie partly outside the logical screen; decoders then grow the canvas to hold it,
    so the canvas is the logical screen stretched to reach every frame.
    """
    size = len(data)
    if size < 13:
        raise _truncated("GIF", "the header is incomplete")
    canvas_width, canvas_height = _u16(data, 6), _u16(data, 8)
    position = 13 + _colour_table_size(data[10])
    frames = 0
    while True:
        if position >= size:
            if position == size and frames:
                # Many encoders omit the one-byte trailer; every frame is still complete.
                return size, frames, (canvas_width, canvas_height)
            raise _truncated("GIF", "the file ends before its first frame")
        introducer = data[position]
        if introducer == 0x3B:  # trailer
            if not frames:
                raise _truncated("GIF", "the file has no frames")
            return position + 1, frames, (canvas_width, canvas_height)
        if introducer == 0x21:  # extension: label, then data sub-blocks
            position = _skip_sub_blocks(data, position + 2)
        elif introducer == 0x2C:  # image descriptor: left, top, width, height, flags
            if position + 10 > size:
                raise _truncated("GIF", "the file ends inside an image descriptor")
            canvas_width = max(canvas_width, _u16(data, position + 1) + _u16(data, position + 5))
            canvas_height = max(canvas_height, _u16(data, position + 3) + _u16(data, position + 7))
            position += 10 + _colour_table_size(data[position + 9]) + 1  # +1: LZW code size
            position = _skip_sub_blocks(data, position)
            frames += 1
        else:
            raise _truncated("GIF", f"unexpected block type 0x{introducer:02x} at byte {position}")


def _u16(data: bytes, position: int) -> int:
    return int.from_bytes(data[position : position + 2], "little")


def _colour_table_size(flags: int) -> int:
    return 3 * (2 ** ((flags & 0x07) + 1)) if flags & 0x80 else 0


def _skip_sub_blocks(data: bytes, position: int) -> int:
    size = len(data)
    while True:
        if position >= size:
            raise _truncated("GIF", "the file ends inside a frame")
        block_size = data[position]
        position += 1 + block_size
        if block_size == 0:
            return position
