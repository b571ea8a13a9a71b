"""The reviewers' use case on fakes: every request it handles leaves its access record, whatever
fails while it looks for what was asked."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from proxy.auth import SchemeRouter
from proxy.errors import RecordNotProvable
from proxy.gateway.review import AuditReview
from tests.fakes import READER, FakeAudit, FakeAuditAccess, FakeAuth, FakeReading


def review_over(audit: FakeAudit) -> AuditReview:
    return AuditReview(
        authenticator=SchemeRouter({"Bearer": FakeAuth()}),
        policy=FakeAuditAccess([READER]),
        audit=audit,
        reading=FakeReading(),
        clock=lambda: 1_800_000_000.0,
    )


def test_a_failure_of_its_own_while_looking_is_recorded_then_raised() -> None:
    """Found by review: only the gateway's own errors were caught, so a failure reading the log
    (a disk error) left the request with no access record."""
    audit = FakeAudit()
    review = review_over(audit)

    async def broken() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError):
        asyncio.run(
            review.authorize(review.bearer("Bearer good"), "r-1", "127.0.0.1:1", lookup=broken)
        )
    (event,) = audit.events
    assert event.event == "access" and event.status == 500
    assert event.error is not None and event.error["reason"] == "internal"


def test_what_looking_finds_missing_is_the_status_recorded_and_only_for_a_reviewer() -> None:
    audit = FakeAudit()
    review = review_over(audit)
    looked: list[str] = []

    async def missing() -> None:
        looked.append("looked")
        raise RecordNotProvable(reason="record_not_provable")

    with pytest.raises(RecordNotProvable):
        asyncio.run(review.authorize(review.bearer("Bearer good"), "r-1", None, lookup=missing))
    with pytest.raises(Exception, match="not_a_reviewer"):
        asyncio.run(review.authorize(review.bearer("Bearer stranger"), "r-2", None, lookup=missing))
    assert looked == ["looked"]  # never for a caller who may not read
    assert [(e.status, (e.error or {}).get("reason")) for e in audit.events] == [
        (404, "record_not_provable"),
        (403, "policy_denied"),
    ]
