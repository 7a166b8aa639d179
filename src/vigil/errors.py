"""Every error Vigil raises on purpose, as one hierarchy.

Each class carries a stable machine-readable ``code`` and the HTTP status the API answers with, so
routes never map strings to statuses and the command line can print the same message.
"""

from __future__ import annotations


class VigilError(Exception):
    """Base class: a failure Vigil understands and can explain to the caller."""

    code = "error"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- intake: the upload itself is unacceptable ----------------------------------------------------


class IntakeError(VigilError):
    """The bytes are not an image Vigil accepts; the site should refuse the upload."""

    code = "invalid_image"
    http_status = 400


class EmptyImage(IntakeError):
    code = "empty_image"


class UnsupportedFormat(IntakeError):
    code = "unsupported_format"


class PolyglotImage(IntakeError):
    """An image with a second file (archive, document, markup) hidden inside or behind it."""

    code = "polyglot_image"


class CorruptImage(IntakeError):
    """Truncated or malformed: the declared structure does not match the bytes."""

    code = "corrupt_image"


class ImageTooLarge(IntakeError):
    """Over the byte limit: the API answers 413."""

    code = "image_too_large"
    http_status = 413


class TooManyPixels(IntakeError):
    """Declares more pixels than allowed (decompression bombs)."""

    code = "too_many_pixels"


# --- the request around the image ----------------------------------------------------------------


class InvalidConfiguration(VigilError):
    """A configuration file that cannot be read as TOML."""

    code = "invalid_configuration"


class InvalidRequest(VigilError):
    code = "invalid_request"
    http_status = 400


class InvalidContext(VigilError):
    """The uploader context sent with an image is not valid JSON or has bad fields."""

    code = "invalid_context"
    http_status = 422


class IdempotencyConflict(VigilError):
    """An Idempotency-Key was reused for a different image."""

    code = "idempotency_conflict"
    http_status = 409


class NotFound(VigilError):
    code = "not_found"
    http_status = 404


class Conflict(VigilError):
    code = "conflict"
    http_status = 409


class Unauthenticated(VigilError):
    code = "unauthenticated"
    http_status = 401


class Forbidden(VigilError):
    code = "forbidden"
    http_status = 403


class InvalidName(VigilError):
    code = "invalid_name"
    http_status = 422


# --- banks ---------------------------------------------------------------------------------------


class InvalidHash(VigilError):
    """A hash value that does not fit its hash type (wrong length, not hexadecimal)."""

    code = "invalid_hash"
    http_status = 422


class BankError(VigilError):
    code = "bank_error"
    http_status = 422


# --- Vigil cannot screen right now: the site must hold ------------------------------------------


class ScreeningUnavailable(VigilError):
    """A component Vigil needs is down; the only safe answer is "hold" (HTTP 503)."""

    code = "screening_unavailable"
    http_status = 503


class EvidenceError(VigilError):
    """The evidence vault cannot do what was asked."""

    code = "evidence_error"
    http_status = 409


class EvidenceKeyError(EvidenceError):
    """A master key (or a bundle passphrase) is missing, unreadable or wrong."""

    code = "evidence_key"
    http_status = 503


class EvidenceIntegrityError(EvidenceError):
    """Evidence fails its integrity check: a file, a wrapped key or the custody log was altered."""

    code = "evidence_integrity"
    http_status = 409
