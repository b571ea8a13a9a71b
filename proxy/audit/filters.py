"""What a reviewer asks of the audit log: a filter, and the times it is bounded by.

Shared by every reader (the command line, the reviewers' API and page, replay, export): a bound
that cannot be read is refused here, once, never compared with the log's times as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """What a reviewer asks for; every field narrows the result."""

    dag: str | None = None
    event: str | None = None
    request_id: str | None = None
    verdict: str | None = None
    database: str | None = None
    since: str | None = None
    until: str | None = None
    subject: str | None = None
    reason: str | None = None
    text: str | None = None
    label: str | None = None
    after_seq: int | None = None
    before_seq: int | None = None
    newest_first: bool = False
    limit: int | None = None

    def __post_init__(self) -> None:
        # Bounds are compared with the log's times as text, so they are read here, once, for
        # every reader (CLI, API, page, replay, export): an offset ignored or a typo taken as
        # text would silently return the wrong records.
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, utc_bound(value, name))


class BadFilter(ValueError):
    """A reviewer's filter that cannot be read; the message says what was expected."""


def utc_bound(text: str, name: str = "time") -> str:
    """``text`` (ISO 8601) as the log writes times: UTC, microseconds, ``Z``.

    An offset (``+01:00``, ``Z``) is honoured; a time without one is read as UTC, as the
    command line's help says. A date alone is its midnight UTC. Anything else is
    :class:`BadFilter`.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        utc = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadFilter(
            f"{name}: expected an ISO 8601 time such as 2026-11-30T04:30:00+01:00"
            " (UTC when it has no offset)"
        ) from None
    # isoformat, not strftime: it pads the year to four digits, so text order is time order.
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
