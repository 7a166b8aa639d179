"""Names people give things (banks, sites): one rule, so they are safe in URLs, logs and files."""

from __future__ import annotations

import re

from vigil.errors import InvalidName

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def validate_name(kind: str, name: str) -> str:
    """``name`` if it is 1-100 letters, digits, '_', '.', '-' starting with a letter or digit."""
    if not _NAME.fullmatch(name):
        raise InvalidName(
            f"a {kind} name is 1-100 characters: letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return name
