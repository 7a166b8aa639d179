"""Files the evidence work hands to people: written whole or not at all, never over another.

Every such file is built in a temporary file beside its name, made durable, and then linked to
the name: another process never sees it half written (a key file read while empty would be "no
key"), and a link, unlike a rename, refuses a name that exists.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO


class NewFile:
    """A file being built in a temporary file (0600) beside ``path``, its final name.

    Write to ``handle`` inside ``with``: leaving it without an error makes the bytes durable.
    Then :meth:`place` gives the file its name; :meth:`discard` removes the temporary name
    whatever happened (once placed, the file lives on under ``path``).
    """

    def __init__(self, path: Path, temporary: Path, handle: BinaryIO) -> None:
        self.path = path
        self.temporary = temporary
        self.handle = handle

    @classmethod
    def beside(cls, path: Path, *, suffix: str = "") -> NewFile:
        """An empty temporary file in ``path``'s folder, so it can be linked to ``path`` without
        a copy. Raises OSError if the folder cannot be written."""
        descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        handle = os.fdopen(descriptor, "w+b")
        try:
            os.fchmod(handle.fileno(), 0o600)  # mkstemp's mode, whatever the umask
        except BaseException:
            handle.close()
            os.unlink(name)
            raise
        return cls(path, Path(name), handle)

    def __enter__(self) -> NewFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Make the bytes durable (or, on an error, just close the file)."""
        try:
            if exc_type is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
        finally:
            self.handle.close()

    def sha256(self) -> str:
        """The SHA-256 (hex) of the file as written, read back in chunks."""
        digest = hashlib.sha256()
        with self.temporary.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()

    def place(self) -> None:
        """Link the finished file to ``path``, durably. Raises FileExistsError if ``path``
        exists: nothing is ever written over."""
        os.link(self.temporary, self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the new name survives a crash, as the bytes do
        finally:
            os.close(folder)

    def discard(self) -> None:
        self.temporary.unlink(missing_ok=True)


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600) holding ``data``, durably. Raises FileExistsError if ``path``
    exists: nothing is ever written over."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    new = NewFile.beside(path)
    try:
        with new:
            new.handle.write(data)
        new.place()
    finally:
        new.discard()
