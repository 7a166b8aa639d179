"""Hash types and the canonical form of a hash value."""

from __future__ import annotations

import pytest

from vigil.errors import InvalidHash
from vigil.signals import HashType, normalize_hash


def test_hex_lengths_are_those_of_the_algorithms() -> None:
    assert {kind: kind.hex_length for kind in HashType} == {
        HashType.MD5: 32,
        HashType.SHA1: 40,
        HashType.SHA256: 64,
        HashType.PDQ: 64,
    }


def test_only_pdq_matches_by_distance() -> None:
    assert [kind for kind in HashType if not kind.is_exact] == [HashType.PDQ]


@pytest.mark.parametrize("kind", list(HashType))
def test_normalised_hash_is_lowercase_without_surrounding_whitespace(kind: HashType) -> None:
    value = ("0123456789ABCDEF" * 4)[: kind.hex_length]

    assert normalize_hash(kind, f"  {value}\t\r\n") == value.lower()


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (HashType.SHA256, "ab" * 31, "a sha256 hash has 64 hex characters, got 62"),
        (HashType.MD5, "ab" * 20, "a md5 hash has 32 hex characters, got 40"),
        (HashType.SHA1, "", "a sha1 hash has 40 hex characters, got 0"),
        (HashType.PDQ, "g" * 64, "a pdq hash is hexadecimal (0-9, a-f)"),
        (HashType.SHA256, "0x" + "a" * 62, "a sha256 hash is hexadecimal (0-9, a-f)"),
        (HashType.MD5, "a" * 15 + " " + "a" * 16, "a md5 hash is hexadecimal (0-9, a-f)"),
        # Unicode digits are digits, but not hexadecimal ones.
        (HashType.MD5, "\u0661" * 32, "a md5 hash is hexadecimal (0-9, a-f)"),
    ],
)
def test_malformed_hash_is_refused_saying_why(kind: HashType, value: str, message: str) -> None:
    with pytest.raises(InvalidHash) as raised:
        normalize_hash(kind, value)
    assert raised.value.message == message


def test_a_digest_of_another_type_is_refused_by_length() -> None:
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    assert normalize_hash(HashType.MD5, md5) == md5
    with pytest.raises(InvalidHash):
        normalize_hash(HashType.SHA1, md5)
