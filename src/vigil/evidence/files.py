"""Files the evidence work hands to people: written whole or not at all, never over another."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600) holding ``data``, durably. Raises FileExistsError if ``path``
    exists: nothing is ever written over.

    The bytes go to a temporary file first, which is then linked to ``path``: another process
    never sees the file half written (a key file read while empty would be "no key").
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)  # fails if path exists, unlike a rename
    finally:
        os.unlink(temporary)
