"""The reviewers' use case on fakes: every request it handles leaves its access record, whatever
fails while it looks for what was asked."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy.audit import reading as reading_module
from proxy.audit.chainfile import ChainFile
from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.reading import AuditLogReading
from proxy.auth import SchemeRouter
from proxy.errors import CypherGateError, RecordNotProvable
from proxy.gateway.review import AuditReview
from tests.audit.test_record import event
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


def test_the_pages_verify_checks_the_chain_it_names_and_its_unsigned_tail(tmp_path: Path) -> None:
    """Found by review: the page's "verify the whole chain now" checked neither that the
    checkpoints name the chain verified (a worker's file replaced by another worker's, signed
    with the replica's one key, PASSED) nor the unsigned tail (a log cut back to a checkpoint
    and rewritten with records dated as they were PASSED), both of which `audit verify
    --config` fails."""
    key = Ed25519PrivateKey.generate()
    for index, count in ((1, 6), (2, 4)):
        writer = ChainFile(
            tmp_path / f"audit-w{index}.sqlite3",
            signing_key=key,
            chain_id=f"r1-w{index}",
            checkpoint_every=2,
        )
        writer.open()
        writer.write([event(n) for n in range(count)])
        writer.close()
    review = AuditReview(
        authenticator=SchemeRouter({"Bearer": FakeAuth()}),
        policy=FakeAuditAccess([READER]),
        audit=FakeAudit(),
        reading=AuditLogReading(tmp_path / "audit-w2.sqlite3", "r1-w2"),
        clock=lambda: 1_800_000_000.0,  # long after the records' times
        public_key=key.public_key(),
        sealed_within_s=120.0,
    )
    assert asyncio.run(review.verify("r1-w2")) == (4, None)
    assert asyncio.run(review.verify(None)) == (6, None)  # the replica's first chain, r1-w1
    shutil.copy(tmp_path / "audit-w1.sqlite3", tmp_path / "audit-w2.sqlite3")
    _, moved = asyncio.run(review.verify("r1-w2"))
    assert moved is not None and "seals chain 'r1-w1', not 'r1-w2'" in moved.why
    assert asyncio.run(review.status("r1-w2")).last_signature_valid is False
    assert asyncio.run(review.status("r1-w1")).last_signature_valid is True
    forged = ChainFile(tmp_path / "audit-w1.sqlite3")  # a writer with no key appends
    forged.open()
    forged.write([event(7)])
    forged.close()
    _, unsigned = asyncio.run(review.verify("r1-w1"))
    assert unsigned is not None and unsigned.seq == 7 and unsigned.why.startswith("not sealed")


def test_reviewers_reads_never_take_the_threads_the_request_path_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: every read of the reviewers' API and page (a whole-chain verify, a text
    search over a long log: seconds to minutes each) ran on the event loop's default executor,
    which the request path needs too (the loop's DNS lookups for a new Neo4j or OPA connection,
    lease records): a few reviewers' slow reads at once held all its threads, and requests
    waited on them."""
    path = tmp_path / "audit.sqlite3"
    writer = ChainFile(path)
    writer.open()
    writer.write([event(1)])
    writer.close()
    release = threading.Event()

    class SlowReader(AuditReader):
        def __init__(self, path: Path) -> None:
            release.wait(30)  # a read that takes long
            super().__init__(path)

    monkeypatch.setattr(reading_module, "AuditReader", SlowReader)
    reading = AuditLogReading(path)

    async def go() -> str:
        loop = asyncio.get_running_loop()
        reads = [asyncio.ensure_future(reading.query(RecordFilter())) for _ in range(40)]
        await asyncio.sleep(0.2)
        try:  # what the request path runs there meanwhile
            return await asyncio.wait_for(loop.run_in_executor(None, lambda: "free"), 5)
        finally:
            release.set()
            assert all(len(found) == 1 for found in await asyncio.gather(*reads))

    assert asyncio.run(go()) == "free"


def test_a_reviewer_is_told_the_log_was_altered_not_a_bare_500(tmp_path: Path) -> None:
    """Found by review: a record edited into what no writer makes reached the reviewers' API
    and page as an unexplained 500 recorded as ``internal``."""
    path = tmp_path / "audit.sqlite3"
    log = ChainFile(path)
    log.open()
    log.write([event(1)])
    log.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER records_no_update")
        db.execute("UPDATE records SET body = '[1]'")
    reading = AuditLogReading(path)
    with pytest.raises(CypherGateError) as raised:
        asyncio.run(reading.query(RecordFilter()))
    assert raised.value.status == 500 and raised.value.reason == "audit_log_damaged"
    assert "altered" in raised.value.message and str(tmp_path) not in raised.value.message
    path.write_bytes(b"not a database")
    for name in ("audit.sqlite3-wal", "audit.sqlite3-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(CypherGateError) as unreadable:
        asyncio.run(reading.query(RecordFilter()))
    assert unreadable.value.reason == "audit_log_unreadable"
