"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import UTC, date, datetime
from ipaddress import ip_address
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from vigil.actions.reports import CommunityReport, ReportOutcome, ReportReason
from vigil.matching.banks import BankAction
from vigil.policy import UPLOADS_PAUSED, Priority, TrustLevel, UploaderContext, UploadKind
from vigil.signals.base import HashType
from vigil.store.models import Bank, Submission

# Text that is stored: PostgreSQL refuses NUL characters, so they are refused here as bad input.
NO_NUL = r"^[^\x00]*$"
_ID_FIELD = Field(None, min_length=1, max_length=200, pattern=NO_NUL)


class AccountDetails(BaseModel):
    """What the site knows of the uploader's account, for reports to the authorities. Kept only
    with images Vigil keeps (held or blocked), never with allowed ones."""

    model_config = ConfigDict(extra="forbid")

    screen_name: str | None = Field(None, max_length=200, pattern=NO_NUL)
    display_name: str | None = Field(None, max_length=200, pattern=NO_NUL)
    email: str | None = Field(None, max_length=254, pattern=NO_NUL)
    phone: str | None = Field(None, max_length=50, pattern=NO_NUL)
    profile_url: str | None = Field(None, max_length=2000, pattern=r"^https?://[^\x00\s]+$")
    first_name: str | None = Field(None, max_length=100, pattern=NO_NUL)
    last_name: str | None = Field(None, max_length=100, pattern=NO_NUL)
    date_of_birth: date | None = None


class UploadContext(BaseModel):
    """Who uploaded the image, sent by the site as the ``context`` form field (a JSON object).

    Unknown fields are refused, so a misspelt field never silently loses its effect."""

    model_config = ConfigDict(extra="forbid")

    uploader_id: str | None = _ID_FIELD
    account_created_at: datetime | None = Field(
        None, description="ISO 8601; without a time zone it is taken as UTC."
    )
    trust_level: TrustLevel | None = None
    ip: str | None = Field(None, max_length=45)
    kind: UploadKind | None = None
    ref: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=NO_NUL,
        description="The site's own id for the post.",
    )
    port: int | None = Field(
        None, ge=0, le=65535, description="The uploader's source port (behind NAT, IP and port)."
    )
    user_agent: str | None = Field(None, max_length=1000, pattern=NO_NUL)
    page_url: str | None = Field(
        None,
        max_length=2000,
        pattern=r"^https?://[^\x00\s]+$",
        description="Where the image was to appear.",
    )
    account: AccountDetails | None = None

    @field_validator("ip")
    @classmethod
    def _valid_ip(cls, value: str | None) -> str | None:
        return None if value is None else str(ip_address(value))

    @field_validator("account_created_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def to_uploader(self) -> UploaderContext:
        fields = self.model_dump(exclude={"account"})
        account = (
            {
                key: str(value)
                for key, value in self.account.model_dump().items()
                if value is not None
            }
            if self.account is not None
            else None
        )
        return UploaderContext(**fields, account=account or None)


class PdqHashOut(BaseModel):
    frame: int
    hash: str
    quality: int
    background: str | None = Field(None, description="For transparent frames: white or black.")


class HashesOut(BaseModel):
    sha256: str
    md5: str
    sha1: str
    pdq: list[PdqHashOut]


class ScreenResponse(BaseModel):
    submission_id: str
    decision: Literal["allow", "hold", "block"]
    reasons: list[dict[str, Any]]
    hashes: HashesOut
    review: Literal["none", "pending", "decided"] = Field(
        description=(
            "'pending' while a held image (or one a model blocked) awaits a moderator; an image "
            "blocked because a bank knows it is never queued."
        )
    )
    priority: Literal["normal", "high", "urgent"] = Field(
        description="Place in the review queue: 'urgent' is the child-safety path."
    )
    flags: list[str] = Field(description="For example 'child_safety'.")
    classifications: list[dict[str, Any]] = Field(
        description=(
            "Each classifier's result: model, version, the highest score per label over the "
            "frames classified, and regions or faces where the model finds them; or, for a model "
            "that could not classify the image, 'failure' and 'message'."
        )
    )
    created_at: datetime
    uploads_paused: bool = Field(
        False,
        description="Image uploads are paused (lockdown level 3): show the uploader `message`.",
    )
    message: str | None = Field(None, description="Something the site can show the uploader.")
    lockdown_level: int = Field(
        0, description="The site's lockdown level when the image was screened (0-3)."
    )
    uploader_suspended: bool = Field(
        False,
        description="Vigil blocks this uploader's images (a known illegal upload, or a "
        "moderator's decision); an `uploader.suspended` webhook says it too.",
    )

    @classmethod
    def of(cls, submission: Submission) -> ScreenResponse:
        return cls(**_submission_fields(submission))

    @classmethod
    def screened(
        cls, submission: Submission, *, lockdown_level: int, uploader_suspended: bool
    ) -> ScreenResponse:
        """The answer to a screening: the submission plus the site's state at that moment."""
        return cls(
            **_submission_fields(submission),
            lockdown_level=lockdown_level,
            uploader_suspended=uploader_suspended,
        )


class SubmissionResponse(ScreenResponse):
    initial_decision: Literal["allow", "hold", "block"]
    uploader_id: str | None
    ref: str | None
    format: str
    width: int
    height: int
    frame_count: int
    frames_screened: int
    decided_at: datetime | None
    decision_note: str | None

    @classmethod
    def of(cls, submission: Submission) -> SubmissionResponse:
        return cls(
            **_submission_fields(submission),
            initial_decision=submission.initial_decision,
            uploader_id=submission.uploader_id,
            ref=submission.ref,
            format=submission.image_format,
            width=submission.width,
            height=submission.height,
            frame_count=submission.frame_count,
            frames_screened=submission.frames_screened,
            decided_at=submission.decided_at,
            decision_note=submission.decision_note,
        )


_PAUSED_MESSAGE = (
    "Image uploads are paused for a while to protect the community. Please try again later."
)


def _submission_fields(submission: Submission) -> dict[str, Any]:
    paused = any(reason.get("code") == UPLOADS_PAUSED for reason in submission.reasons)
    return {
        "uploads_paused": paused,
        "message": _PAUSED_MESSAGE if paused else None,
        "submission_id": submission.id,
        "decision": submission.decision,
        "reasons": submission.reasons,
        "hashes": HashesOut(
            sha256=submission.sha256,
            md5=submission.md5,
            sha1=submission.sha1,
            pdq=[PdqHashOut(**entry) for entry in submission.pdq],
        ),
        "review": submission.review_state,
        "priority": Priority.of_rank(submission.priority).value,
        "flags": submission.flags,
        "classifications": submission.classifications,
        "created_at": submission.created_at,
    }


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["allow", "block"]
    note: str | None = Field(None, max_length=2000, pattern=NO_NUL)


class BankCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    hash_type: HashType
    action: BankAction
    threshold: int | None = Field(None, description="PDQ distance; default from the settings (31).")
    enabled: bool = True
    description: str | None = Field(None, max_length=2000, pattern=NO_NUL)


class BankUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: BankAction | None = None
    threshold: int | None = None
    enabled: bool | None = None
    description: str | None = Field(None, max_length=2000, pattern=NO_NUL)


class BankResponse(BaseModel):
    name: str
    hash_type: HashType
    action: BankAction
    threshold: int
    enabled: bool
    description: str | None
    hash_count: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, bank: Bank) -> BankResponse:
        return cls(
            name=bank.name,
            hash_type=HashType(bank.hash_type),
            action=BankAction(bank.action),
            threshold=bank.threshold,
            enabled=bank.enabled,
            description=bank.description,
            hash_count=bank.hash_count,
            created_at=bank.created_at,
            updated_at=bank.updated_at,
        )


class BadLineOut(BaseModel):
    line: int
    error: str


class ImportResponse(BaseModel):
    added: int
    already_present: int
    low_quality_skipped: int
    bad_line_count: int
    bad_lines: list[BadLineOut] = Field(description="The first 50 bad lines (or list entries).")


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl | None = Field(description="Where decisions are sent; null turns webhooks off.")
    rotate_secret: bool = False


class WebhookResponse(BaseModel):
    url: str | None
    secret: str | None = Field(description="Verify the Vigil-Signature header with this.")


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class ReportRequest(BaseModel):
    """A community member's report, as the site passes it on: the JSON body, or the ``report``
    form field beside the reported image."""

    model_config = ConfigDict(extra="forbid")

    submission_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=NO_NUL,
        description="The submission reported; with the image sent instead, it may be left out.",
    )
    reporter_id: str = Field(
        min_length=1, max_length=200, pattern=NO_NUL, description="The site's id for the member."
    )
    reporter_trust: TrustLevel | None = Field(
        None, description="How far the site trusts the member: trusted members count more."
    )
    reason: ReportReason
    note: str | None = Field(None, max_length=2000, pattern=NO_NUL)

    def to_report(self) -> CommunityReport:
        return CommunityReport(
            reporter_id=self.reporter_id,
            reason=self.reason,
            reporter_trust=self.reporter_trust,
            note=self.note,
        )


class ReportResponse(BaseModel):
    report_id: int
    submission_id: str
    duplicate: bool = Field(
        description="The member had reported this image already: counted once, nothing changed."
    )
    weight: float = Field(description="What this member's report counts for.")
    total_weight: float = Field(
        description="What the reports since a moderator last decided weigh together."
    )
    hide_requested: bool = Field(
        description="This report passed the threshold: hide the image now, until a moderator "
        "decides (a `submission.hide_requested` webhook says it too)."
    )
    screened: bool = Field(
        description="Vigil had never screened the image sent, and screened it for this report."
    )
    decision: Literal["allow", "hold", "block"]
    review: Literal["none", "pending", "decided"]
    hidden: bool = Field(description="The image must not be shown: its decision is not `allow`.")

    @classmethod
    def of(cls, outcome: ReportOutcome) -> ReportResponse:
        return cls(
            report_id=outcome.report_id,
            submission_id=outcome.submission_id,
            duplicate=outcome.duplicate,
            weight=outcome.weight,
            total_weight=outcome.total_weight,
            hide_requested=outcome.hide_requested,
            screened=outcome.screened,
            decision=outcome.decision,
            review=outcome.review_state,
            hidden=outcome.hidden,
        )
