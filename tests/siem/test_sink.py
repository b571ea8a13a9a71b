"""A sink tails a real audit log after its cursor: in order, at least once, through outages and
restarts, to a file, syslog sockets and an HEC collector that the test opens on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.audit.reader import AuditReader
from proxy.audit.record import AuditEvent, canonical, digest, utc_timestamp
from proxy.audit.sqlite import SQLiteAuditLog
from proxy.metrics import Metrics
from proxy.siem.cursor import Cursor, Position, cursor_path
from proxy.siem.destinations import DeliveryFailed, Destination, JSONLines
from proxy.siem.forms import Event, Format
from proxy.siem.hec import HEC
from proxy.siem.sink import Pace, Sink
from proxy.siem.syslog import Syslog
from tests.siem.collectors import (
    HECCollector,
    SyslogTCPCollector,
    SyslogUDPCollector,
    parsed,
    seq_of,
)
from tests.siem.ocsf_schema import problems

FAST = Pace(batch=4, poll_interval_s=0.02, retry_min_s=0.02, retry_max_s=0.1, timeout_s=2)


class Switchable:
    """A destination (at the Destination seam) that can be taken down; keeps what it got."""

    def __init__(self) -> None:
        self.down = False
        self.received: list[Event] = []
        self.attempts = 0

    async def deliver(self, events: Sequence[Event]) -> None:
        self.attempts += 1
        if self.down:
            raise DeliveryFailed("connect", "ConnectionRefusedError")
        self.received.extend(events)

    async def aclose(self) -> None:
        pass


def event(number: int, **fields: Any) -> AuditEvent:
    return AuditEvent(
        event="decision",
        time=utc_timestamp(1_796_000_000 + number),
        request_id=f"r-{number}",
        client="127.0.0.1:5000",
        principal={"method": "oidc", "issuer": "http://i/", "subject": "s", "dag": "demo"},
        database="neo4j",
        statement=f"RETURN {number}",
        query_type="r",
        decision={"allow": True, "reasons": []},
        **fields,
    )


def refused(number: int) -> AuditEvent:
    return replace(
        event(number),
        decision={"allow": False, "reasons": ["write_not_granted"]},
        status=403,
        error={"code": "Neo.ClientError.Security.Forbidden", "reason": "write_not_granted"},
    )


def sink_on(
    log_path: Path,
    destination: Destination,
    *,
    name: str = "test",
    form: Format = "record",
    metrics: Metrics | None = None,
    clock: Any = None,
    pace: Pace = FAST,
) -> Sink:
    extra = {} if clock is None else {"clock": clock}
    return Sink(
        name,
        audit_path=log_path,
        chain="gateway",
        cursor=Cursor(cursor_path(log_path, name), "gateway"),
        destination=destination,
        form=form,
        pace=pace,
        metrics=metrics,
        **extra,
    )


async def until(condition: Any, limit_s: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def gauge(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return -1.0 if value is None else value


def test_records_arrive_in_order_as_verifiable_json_lines(tmp_path: Path) -> None:
    log_path, out = tmp_path / "audit.sqlite3", tmp_path / "siem" / "audit.jsonl"

    async def go() -> None:
        async with SQLiteAuditLog(log_path) as log, sink_on(log_path, JSONLines(out)):
            for number in range(1, 11):
                await log.append(event(number))
            await until(lambda: out.exists() and len(out.read_bytes().splitlines()) == 10)

    asyncio.run(go())
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 11))
    with AuditReader(log_path) as reader:
        stored = {seq: (body, h) for seq, body, h in reader.sealed_range(1, 10)}
    for line in lines:
        assert line["chain"] == "gateway"
        # The record is its body as an object: its canonical form is the body, and hashes to hash.
        assert canonical(line["record"]) == stored[line["seq"]][0]
        assert digest(canonical(line["record"])) == line["hash"] == stored[line["seq"]][1]


def test_a_destination_down_loses_nothing_and_metrics_show_the_lag(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.sqlite3"
    destination, metrics = Switchable(), Metrics()
    labels = {"sink": "test", "chain": "gateway"}

    async def go() -> None:
        async with (
            SQLiteAuditLog(log_path) as log,
            sink_on(log_path, destination, metrics=metrics),
        ):
            for number in range(1, 4):
                await log.append(event(number))
            await until(lambda: len(destination.received) == 3)
            destination.down = True
            started = asyncio.get_running_loop().time()
            for number in range(4, 14):  # appends never wait for the sink
                await log.append(event(number))
            assert asyncio.get_running_loop().time() - started < 2
            failures = {**labels, "cause": "connect"}
            failed = "cyphergate_audit_sink_delivery_failures_total"
            await until(lambda: gauge(metrics, failed, **failures) >= 3)
            await until(lambda: gauge(metrics, "cyphergate_audit_sink_lag_records", **labels) == 10)
            assert gauge(metrics, "cyphergate_audit_sink_lag_seconds", **labels) > 0
            destination.down = False
            await until(lambda: len(destination.received) == 13)
            await until(lambda: gauge(metrics, "cyphergate_audit_sink_lag_records", **labels) == 0)
            assert gauge(metrics, "cyphergate_audit_sink_lag_seconds", **labels) == 0

    asyncio.run(go())
    assert [e.seq for e in destination.received] == list(range(1, 14))
    delivered = metrics.registry.get_sample_value(
        "cyphergate_audit_sink_delivered_records_total", labels
    )
    assert delivered == 13


def test_a_restart_resumes_after_the_cursor(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.sqlite3"
    first, second = Switchable(), Switchable()

    async def go() -> None:
        async with SQLiteAuditLog(log_path) as log:
            async with sink_on(log_path, first) as running:
                for number in range(1, 6):
                    await log.append(event(number))
                # Delivered and its cursor moved (a stop between the two sends it again).
                await until(lambda: running.position.seq == 5)
            # The sink is stopped (a restart): these wait in the log.
            for number in range(6, 10):
                await log.append(event(number))
            async with sink_on(log_path, second):
                await until(lambda: len(second.received) == 4)
                await asyncio.sleep(0.1)  # and nothing more comes

    asyncio.run(go())
    assert [e.seq for e in second.received] == [6, 7, 8, 9]
    saved = json.loads(cursor_path(log_path, "test").read_text())
    with AuditReader(log_path) as reader:
        assert saved == {"chain": "gateway", "seq": 9, "hash": reader.hash_of(9)}


def test_a_closing_sink_delivers_what_is_committed_first(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.sqlite3"
    destination = Switchable()

    async def go() -> None:
        async with SQLiteAuditLog(log_path) as log:
            # Polling rarely: what it delivers, it delivers because it is closing.
            async with sink_on(log_path, destination, pace=replace(FAST, poll_interval_s=60)):
                await asyncio.sleep(0.1)  # the sink has looked once, and found nothing
                for number in range(1, 8):
                    await log.append(event(number))
            # Closed at once, without waiting: the records committed were delivered anyway.
            assert [e.seq for e in destination.received] == list(range(1, 8))

    asyncio.run(go())
    saved = json.loads(cursor_path(log_path, "test").read_text())
    assert saved["seq"] == 7


def test_a_log_not_readable_yet_is_read_once_it_is(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.sqlite3"
    destination = Switchable()

    async def go() -> None:
        async with sink_on(log_path, destination):
            await asyncio.sleep(0.3)  # no file yet: the sink waits, it does not stop
            async with SQLiteAuditLog(log_path) as log:
                await log.append(event(1))
                await until(lambda: len(destination.received) == 1)

    asyncio.run(go())
    assert [e.seq for e in destination.received] == [1]


def test_a_cursor_of_another_log_starts_from_the_first_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_path = tmp_path / "audit.sqlite3"
    Cursor(cursor_path(log_path, "test"), "gateway").save(Position(2, "f" * 64))
    destination = Switchable()

    async def go() -> None:
        async with SQLiteAuditLog(log_path) as log:
            for number in range(1, 4):
                await log.append(event(number))
            async with sink_on(log_path, destination):
                await until(lambda: len(destination.received) == 3)

    asyncio.run(go())
    assert [e.seq for e in destination.received] == [1, 2, 3]
    assert "does not match the audit log" in caplog.text


def test_syslog_over_tcp_frames_rfc5424_and_reconnects(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.sqlite3"
    collector = SyslogTCPCollector()
    syslog = Syslog("127.0.0.1", collector.port, transport="tcp", app_name="cg", timeout_s=2)
    try:

        async def go() -> None:
            async with (
                SQLiteAuditLog(log_path) as log,
                sink_on(log_path, syslog, form="ocsf"),
            ):
                for number in range(1, 6):
                    await log.append(event(number) if number != 2 else refused(number))
                await until(lambda: len(collector.messages) == 5)
                collector.drop()  # the collector restarts: the sink connects again
                await asyncio.sleep(0.2)
                for number in range(6, 9):
                    await log.append(event(number))
                await until(lambda: len(collector.messages) == 8)

        asyncio.run(go())
    finally:
        collector.close()
    assert collector.connections == 2
    headers = [parsed(message) for message in collector.messages]
    assert [int(h["seq"]) for h, _ in headers] == list(range(1, 9))
    first, body = headers[0]
    assert first["time"] == utc_timestamp(1_796_000_001).encode()
    assert first["app"] == b"cg" and first["msgid"] == b"decision" and first["chain"] == b"gateway"
    assert int(first["pri"]) == 13 * 8 + 6  # log audit, informational
    assert int(headers[1][0]["pri"]) == 13 * 8 + 4  # a refused request: warning
    assert problems(body) == []  # OCSF in the message


def test_syslog_over_udp_sends_one_datagram_per_record(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.sqlite3"
    collector = SyslogUDPCollector()
    syslog = Syslog("127.0.0.1", collector.port, transport="udp", app_name="cg", timeout_s=2)
    try:

        async def go() -> None:
            async with SQLiteAuditLog(log_path) as log, sink_on(log_path, syslog):
                for number in range(1, 4):
                    await log.append(event(number))
                await until(lambda: len(collector.messages) == 3)

        asyncio.run(go())
    finally:
        collector.close()
    assert [parsed(m)[1]["seq"] for m in collector.messages] == [1, 2, 3]


def test_hec_posts_batches_with_the_token_and_never_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    log_path = tmp_path / "audit.sqlite3"
    token = "hec-token-0123456789abcdef"
    collector = HECCollector(token)
    metrics = Metrics()

    async def go() -> None:
        async with (
            SQLiteAuditLog(log_path) as log,
            httpx.AsyncClient(timeout=2) as http,
        ):
            hec = HEC(http, collector.url, token, sourcetype="cyphergate:ocsf", index="audit")
            async with sink_on(log_path, hec, form="ocsf", metrics=metrics):
                for number in range(1, 4):
                    await log.append(event(number))
                # Down: refused connections, retried; then up on the same port.
                await asyncio.sleep(0.3)
                collector.start()
                await until(lambda: len(collector.events) == 3)
                collector.stop()
                for number in range(4, 9):
                    await log.append(event(number))
                await asyncio.sleep(0.3)
                collector.start()
                await until(lambda: len(collector.events) == 8)

    try:
        asyncio.run(go())
    finally:
        collector.stop()
    assert collector.seqs() == list(range(1, 9))
    assert collector.refusals == 0
    path, headers = collector.requests[0]
    assert path == "/services/collector/event"
    assert headers["Authorization"] == f"Splunk {token}"
    envelope = collector.events[0]
    assert envelope["sourcetype"] == "cyphergate:ocsf" and envelope["index"] == "audit"
    assert envelope["time"] == 1_796_000_001.0
    assert all(problems(e["event"]) == [] for e in collector.events)
    assert token not in caplog.text
    assert "could not deliver" in caplog.text  # the outage was logged
    failures = metrics.registry.get_sample_value(
        "cyphergate_audit_sink_delivery_failures_total",
        {"sink": "test", "chain": "gateway", "cause": "connect"},
    )
    assert failures is not None and failures >= 1


def test_hec_counts_a_refusal_by_status(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.sqlite3"
    collector = HECCollector("right-token")
    collector.start()
    metrics = Metrics()
    failed = "cyphergate_audit_sink_delivery_failures_total"
    refused = {"sink": "test", "chain": "gateway", "cause": "http_401"}

    async def go() -> None:
        async with (
            SQLiteAuditLog(log_path) as log,
            httpx.AsyncClient(timeout=2) as http,
            sink_on(log_path, HEC(http, collector.url, "wrong"), metrics=metrics),
        ):
            await log.append(event(1))
            await until(lambda: gauge(metrics, failed, **refused) >= 2)

    try:
        asyncio.run(go())
    finally:
        collector.stop()
    assert collector.events == []
    assert collector.refusals >= 2
    assert not cursor_path(log_path, "test").exists()  # nothing counted as delivered


def test_seq_of_reads_both_forms() -> None:
    assert seq_of({"seq": 3}) == 3
    assert seq_of({"metadata": {"sequence": 4}}) == 4


def test_a_file_destination_that_hangs_holds_no_thread_the_request_path_needs(
    tmp_path: Path,
) -> None:
    """Found by review: JSON Lines wrote with asyncio.to_thread, on the event loop's default
    executor, which the request path needs too (the loop's DNS lookups for a new connection).
    A write that hangs (standard output piped to a stalled log collector, a hung mount) held
    its thread past the sink's timeout, and every retry took another, until none was left."""
    fifo = tmp_path / "collector.fifo"
    os.mkfifo(fifo)  # opening it to write waits for a reader, as a stalled pipe waits
    destination = JSONLines(fifo)
    line = Event("gateway", 1, "h", "t", "decision", refused=False, line=b"{}")
    stop = threading.Event()

    def collector() -> None:  # comes back once the test is over, to let the writes end
        stop.wait()
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            while select.select([reader], [], [], 0.5)[0] and os.read(reader, 65536):
                pass
        finally:
            os.close(reader)

    async def go() -> str:
        loop = asyncio.get_running_loop()
        for _ in range(40):  # the sink's retries, each after its timeout
            with contextlib.suppress(TimeoutError, DeliveryFailed):
                await asyncio.wait_for(destination.deliver([line]), 0.05)
        try:
            return await asyncio.wait_for(loop.run_in_executor(None, lambda: "free"), 5)
        finally:
            stop.set()

    thread = threading.Thread(target=collector)
    thread.start()
    try:
        assert asyncio.run(go()) == "free"
    finally:
        stop.set()
        thread.join(30)
    asyncio.run(destination.aclose())
