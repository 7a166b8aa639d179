"""Images Vigil keeps: held ones until a moderator decides, blocked ones set aside for evidence.

One file per submission, named by its id; the submission row says what the file is, so a decision
never has to move files in step with the database. Files are readable by Vigil's user only and
written atomically, so a crash never leaves half an image a row points to. Nothing here is ever
served by the API.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vigil.errors import ScreeningUnavailable


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def relative_path(name: str) -> str:
        """Where ``name`` is kept, relative to the store (fanned out so no folder grows huge)."""
        return f"{name[:2]}/{name}"

    def save(self, name: str, data: bytes) -> str:
        """Store ``data`` durably; returns the path relative to the store, for the database row."""
        relative = self.relative_path(name)
        target = self.root / relative
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
            try:
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise ScreeningUnavailable(f"the image store cannot write: {error}") from error
        return relative

    def read(self, relative: str) -> bytes:
        return (self.root / relative).read_bytes()

    def delete(self, relative: str) -> None:
        (self.root / relative).unlink(missing_ok=True)

    def exists(self, relative: str) -> bool:
        return (self.root / relative).is_file()
