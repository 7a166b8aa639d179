"""What a replay showed: the summary, the checks the issue asks for, and the timelines."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vigil.lockdown.kinds import LockdownLevel
from vigil.simulate.replay import PostedImage, ReplayResult

# The promises a replay checks, in seconds of simulated time.
LOCKDOWN_WITHIN_SECONDS = 60.0
PAGED_WITHIN_SECONDS = 60.0


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool | None  # None: the scenario cannot show it (no known image, say)
    detail: str

    @property
    def mark(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


@dataclass(frozen=True)
class Summary:
    uploads: int
    abusive: int
    abusive_known: int
    abusive_visible: int
    abusive_visible_seconds: list[float]
    known_visible: int
    benign: int
    benign_held: int
    benign_refused: int
    strikes: list[datetime]
    first_page: datetime | None
    highest_level: int
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.passed is not False for check in self.checks)


def summarise(result: ReplayResult) -> Summary:
    images = result.images
    abusive = [image for image in images if image.abusive]
    strikes = [image.at for image in images if "bank_match" in image.reasons]
    known_visible = [image for image in images if image.known and image.ever_visible]
    benign = [image for image in images if not image.abusive]
    first_strike = strikes[0] if strikes else None
    pages_after = [
        page.at
        for page in result.pages
        if page.event == "trigger" and first_strike is not None and page.at >= first_strike
    ]
    first_page = min(pages_after, default=None)
    return Summary(
        uploads=len(images),
        abusive=len(abusive),
        abusive_known=sum(image.known for image in abusive),
        abusive_visible=sum(image.ever_visible for image in abusive),
        abusive_visible_seconds=[image.visible_seconds for image in abusive if image.ever_visible],
        known_visible=len(known_visible),
        benign=len(benign),
        benign_held=sum(image.decision == "hold" for image in benign),
        benign_refused=sum(image.decision == "paused" for image in benign),
        strikes=strikes,
        first_page=first_page,
        highest_level=max((change.level for change in result.level_changes), default=0),
        checks=_checks(result, strikes, known_visible, first_page),
    )


def _checks(
    result: ReplayResult,
    strikes: list[datetime],
    known_visible: list[PostedImage],
    first_page: datetime | None,
) -> list[Check]:
    known = [image for image in result.images if image.known]
    checks = [
        Check(
            "no image matching a bank was ever visible",
            None if not known else not known_visible,
            f"{len(known)} uploads of known images, {len(known_visible)} visible"
            if known
            else "the scenario posts no known image",
        )
    ]
    if len(strikes) < 2:
        checks.append(Check("lockdown within 60 s of the second strike", None, "fewer than two"))
    else:
        second = strikes[1]
        reached = _first_level_at_least(result, 1, second)
        delay = (reached - second).total_seconds() if reached else None
        checks.append(
            Check(
                f"lockdown level >= 1 within {LOCKDOWN_WITHIN_SECONDS:g} s of the second strike",
                delay is not None and delay <= LOCKDOWN_WITHIN_SECONDS,
                f"second strike {_clock(result, second)}, level >= 1 "
                + (f"after {delay:.0f} s" if delay is not None else "never"),
            )
        )
    if not strikes:
        checks.append(Check("on-call paged within 60 s of the first match", None, "no match"))
    else:
        delay = (first_page - strikes[0]).total_seconds() if first_page else None
        checks.append(
            Check(
                f"on-call paged within {PAGED_WITHIN_SECONDS:g} s of the first known-illegal match",
                delay is not None and delay <= PAGED_WITHIN_SECONDS,
                f"first match {_clock(result, strikes[0])}, first page "
                + (f"after {delay:.0f} s" if delay is not None else "never"),
            )
        )
    return checks


def _first_level_at_least(result: ReplayResult, level: int, since: datetime) -> datetime | None:
    """When the site's level was first at least ``level`` at or after ``since``."""
    current = 0
    for change in result.level_changes:
        if change.at > since:
            if current >= level:
                return since
            if change.level >= level:
                return change.at
        current = change.level
    return since if current >= level else None


def _clock(result: ReplayResult, moment: datetime) -> str:
    return result.scenario.local(moment).strftime("%H:%M:%S")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def to_markdown(result: ReplayResult, *, per_image: bool = True) -> str:
    summary = summarise(result)
    scenario = result.scenario
    lines = [
        f"## Replay: {scenario.name}",
        "",
        f"{scenario.start:%Y-%m-%d %H:%M} to {scenario.end:%Y-%m-%d %H:%M} ({scenario.timezone}), "
        f"watch every {scenario.tick_seconds:g} s.",
        "",
        "| check | result | detail |",
        "| --- | --- | --- |",
        *(f"| {c.name} | {c.mark} | {c.detail} |" for c in summary.checks),
        "",
        f"- Uploads screened: {summary.uploads} ({summary.abusive} abusive stand-ins, "
        f"{summary.abusive_known} of them known to a bank; {summary.benign} ordinary).",
        f"- Posts the site prevented by banning suspended accounts: {result.prevented_posts}.",
        f"- Abusive images ever visible: {summary.abusive_visible} of {summary.abusive}"
        + _visibility(summary.abusive_visible_seconds)
        + ".",
        f"- Known images visible: {summary.known_visible}.",
        f"- Ordinary images held for review: {summary.benign_held}; refused while uploads "
        f"were paused: {summary.benign_refused}.",
        f"- Reports sent by members: {result.reports_sent}; moderator decisions: "
        f"{result.moderator_decisions}.",
        f"- Highest lockdown level: {summary.highest_level} "
        f"({LockdownLevel(summary.highest_level).description}).",
        "",
        "### Lockdown levels",
        "",
        "| time | level | was | source | cause |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {_clock(result, c.at)} | {c.level} | {c.previous} | {c.source} | "
            f"{_cause(c.cause)} |"
            for c in result.level_changes
        ),
        "",
        "### Pages",
        "",
        "| time | channel | tier | event | incident |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {_clock(result, p.at)} | {p.channel} | {p.tier} | {p.event} | "
            f"#{p.incident_id} {_cell(p.title)} |"
            for p in result.pages
        ),
        "",
        *(
            f"- {_clock(result, a.at)}: incident #{a.incident_id} acknowledged by {a.by}"
            for a in result.acknowledgements
        ),
    ]
    if per_image:
        lines += [
            "",
            "### Abusive images",
            "",
            "| # | time | account | set | decision | visible for | ended by |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *(
                f"| {i.number} | {_clock(result, i.at)} | {i.account} | {i.image_set}[{i.index}] "
                f"| {i.decision} ({', '.join(i.reasons) or 'no reason'}) | "
                f"{_duration(i.visible_seconds) if i.ever_visible else 'never shown'} | "
                f"{i.hidden_by or ''} |"
                for i in result.images
                if i.abusive
            ),
        ]
    return "\n".join(lines) + "\n"


def _visibility(seconds: list[float]) -> str:
    if not seconds:
        return ""
    return (
        f" (median {_duration(statistics.median(seconds))}, longest {_duration(max(seconds))}, "
        f"total {_duration(sum(seconds))})"
    )


def _cause(cause: dict[str, Any]) -> str:
    if "reason" in cause:
        return _cell(f"{cause.get('by')}: {cause.get('reason')}")
    if "calm_minutes" in cause:
        return f"calm for {cause['calm_minutes']:g} min"
    rules = cause.get("rules") or []
    return _cell(
        "; ".join(
            f"{rule['signal']} {rule['measured']:g} >= {rule['at_least']:g} "
            f"in {rule['window_minutes']:g} min"
            for rule in rules
        )
        or "calm"
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_document(result: ReplayResult) -> dict[str, Any]:
    """The replay as JSON-ready data, for tooling."""
    summary = summarise(result)
    return {
        "scenario": result.scenario.name,
        "checks": [
            {"name": check.name, "passed": check.passed, "detail": check.detail}
            for check in summary.checks
        ],
        "uploads": summary.uploads,
        "abusive": summary.abusive,
        "abusive_visible": summary.abusive_visible,
        "known_visible": summary.known_visible,
        "highest_level": summary.highest_level,
        "level_changes": [
            {
                "at": change.at.isoformat(),
                "level": change.level,
                "previous": change.previous,
                "source": change.source,
                "cause": change.cause,
            }
            for change in result.level_changes
        ],
        "pages": [
            {
                "at": page.at.isoformat(),
                "channel": page.channel,
                "tier": page.tier,
                "event": page.event,
                "incident": page.incident_id,
                "kind": page.kind,
                "title": page.title,
            }
            for page in result.pages
        ],
        "acknowledgements": [
            {"at": ack.at.isoformat(), "incident": ack.incident_id, "by": ack.by}
            for ack in result.acknowledgements
        ],
        "images": [
            {
                "number": image.number,
                "at": image.at.isoformat(),
                "account": image.account,
                "set": image.image_set,
                "index": image.index,
                "abusive": image.abusive,
                "known": image.known,
                "decision": image.decision,
                "reasons": image.reasons,
                "visible_seconds": round(image.visible_seconds, 1),
                "ended_by": image.hidden_by,
            }
            for image in result.images
        ],
    }


__all__ = ["Check", "Summary", "summarise", "to_document", "to_markdown"]
