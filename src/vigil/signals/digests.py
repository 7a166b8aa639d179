"""Cryptographic digests of the file exactly as uploaded: they match byte-identical copies only."""

from __future__ import annotations

import hashlib

from vigil.signals.base import HashType


class FileDigester:
    """SHA-256, MD5 and SHA-1 of the bytes, the three digests hash lists are published in."""

    def hash_bytes(self, data: bytes) -> dict[HashType, str]:
        return {
            HashType.SHA256: hashlib.sha256(data).hexdigest(),
            # MD5 and SHA-1 identify files in shared hash lists; they protect nothing here.
            HashType.MD5: hashlib.md5(data, usedforsecurity=False).hexdigest(),
            HashType.SHA1: hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        }
