"""A real gateway streaming its audit log: a file sink, an HEC sink (OCSF) to a collector the
test runs on 127.0.0.1, and syslog over TCP and UDP to sockets the test opens. The collector is
down for a while, the gateway restarts meanwhile: every record arrives, in order, none lost,
nothing before the cursor sent again; /metrics shows the lag while it lasts."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.audit.reader import AuditReader
from proxy.audit.record import canonical, digest
from proxy.devstack.stack import DevStack
from tests.second_gateway import SecondGateway
from tests.siem.collectors import (
    HECCollector,
    SyslogTCPCollector,
    SyslogUDPCollector,
    parsed,
    wait_for,
)
from tests.siem.ocsf_schema import problems

pytestmark = pytest.mark.integration
TOKEN = "siem-test-token-4f1c9a"


def metric(gateway: SecondGateway, name: str, sink: str) -> float:
    page = httpx.get(gateway.url + "/metrics", timeout=10).text
    found = re.search(rf'^{name}{{chain="gateway",sink="{sink}"}} (\S+)$', page, re.MULTILINE)
    assert found is not None, f"{name} for {sink} not on /metrics"
    return float(found[1])


def chain(gateway: SecondGateway) -> list[tuple[int, str, str]]:
    with AuditReader(gateway.audit) as reader:
        head = reader.head()
        return [] if head is None else list(reader.sealed_range(1, head[0]))


def first_seen(seqs: list[int]) -> list[int]:
    """Each seq once, where it first arrived (a receiver drops duplicates by seq)."""
    seen: set[int] = set()
    first: list[int] = []
    for seq in seqs:
        if seq not in seen:
            seen.add(seq)
            first.append(seq)
    return first


def test_records_stream_through_an_outage_and_a_restart(stack: DevStack, tmp_path: Path) -> None:
    hec = HECCollector(TOKEN)
    hec.start()
    tcp, udp = SyslogTCPCollector(), SyslogUDPCollector()
    token_file = tmp_path / "hec-token"
    token_file.write_text(TOKEN + "\n")
    jsonl = tmp_path / "siem" / "audit.jsonl"
    fast = {"poll_interval_s": 0.05, "retry_min_s": 0.1, "retry_max_s": 0.5}

    def sinks(config: dict[str, Any]) -> None:
        config["audit"]["sinks"] = [
            {"name": "file", "kind": "jsonl", "path": str(jsonl), **fast},
            {
                "name": "splunk",
                "kind": "hec",
                "format": "ocsf",
                "url": hec.url,
                "token_file": str(token_file),
                **fast,
            },
            {
                "name": "syslog_tcp",
                "kind": "syslog",
                "transport": "tcp",
                "address": f"127.0.0.1:{tcp.port}",
                **fast,
            },
            {
                "name": "syslog_udp",
                "kind": "syslog",
                "format": "ocsf",
                "address": f"127.0.0.1:{udp.port}",
                **fast,
            },
        ]

    gateway = SecondGateway(stack, tmp_path / "gw", "siem", sinks)
    gateway.start()
    try:
        assert gateway.query("demo_reader", "MATCH (p:Person) RETURN count(p)").status_code == 202
        assert gateway.query("demo_reader", "CREATE (:Nope)").status_code == 403
        bad = httpx.post(
            f"{gateway.url}/db/neo4j/query/v2",
            json={"statement": "RETURN 1"},
            headers={"Authorization": "Bearer not.a.token"},
            timeout=30,
        )
        assert bad.status_code == 401
        auditor = {"Authorization": "Bearer " + stack.client_token("demo_auditor")}
        assert httpx.get(f"{gateway.url}/audit/records", headers=auditor).status_code == 200
        count = len(chain(gateway))
        wait_for(lambda: len(hec.events) >= count, what="the HEC collector to catch up")

        # The collector goes down; requests go on, unslowed; the lag grows on /metrics.
        hec.stop()
        started = time.monotonic()
        for number in range(5):
            answer = gateway.query("demo_reader", f"RETURN {number} AS n")
            assert answer.status_code == 202
        assert time.monotonic() - started < 20
        behind = len(chain(gateway)) - count
        wait_for(
            lambda: metric(gateway, "cyphergate_audit_sink_lag_records", "splunk") == behind,
            what="the lag on /metrics",
        )
        assert metric(gateway, "cyphergate_audit_sink_lag_seconds", "splunk") > 0
        assert metric(gateway, "cyphergate_audit_sink_lag_records", "file") == 0
        failures = httpx.get(gateway.url + "/metrics").text
        assert re.search(
            r'cyphergate_audit_sink_delivery_failures_total\{cause="connect",chain="gateway",'
            r'sink="splunk"\} [1-9]',
            failures,
        ), failures
        delivered_before_restart = len(hec.events)

        # The gateway restarts while the collector is still down, then the collector returns.
        gateway.stop()
        gateway.start()
        gateway.query("demo_reader", "RETURN 'after the restart'")
        hec.start()
        total = len(chain(gateway))
        wait_for(lambda: len(first_seen(hec.seqs())) >= total, what="every record over HEC")
        wait_for(
            lambda: metric(gateway, "cyphergate_audit_sink_lag_records", "splunk") == 0,
            what="the lag back to 0",
        )
        wait_for(lambda: len(jsonl.read_text().splitlines()) >= total, what="the file")
        wait_for(lambda: len(tcp.messages) >= total, what="syslog over TCP")
        wait_for(lambda: len(udp.messages) >= total, what="syslog over UDP")
        records = chain(gateway)
    finally:
        gateway.stop()
        hec.stop()
        tcp.close()
        udp.close()

    seqs = [seq for seq, _, _ in records]
    assert seqs == list(range(1, len(records) + 1))
    hashes = {seq: h for seq, _, h in records}

    # HEC: every record, in order; none sent twice from before the cursor.
    received = hec.seqs()
    assert first_seen(received) == seqs
    assert received == sorted(received)  # in order: a retry re-sends a batch, never goes back
    assert received[:delivered_before_restart] == seqs[:delivered_before_restart]
    for envelope in hec.events:
        event = envelope["event"]
        assert problems(event) == [], event
        cyphergate = event["unmapped"]["cyphergate"]
        assert cyphergate["hash"] == hashes[cyphergate["seq"]] == digest(event["raw_data"])
    classes = {envelope["event"]["class_uid"] for envelope in hec.events}
    assert classes == {6005, 3002, 6003}  # statements, a refused credential, a reviewer's read

    # The file: our own form, each record verifiable by its hash.
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert first_seen([line["seq"] for line in lines]) == seqs
    for line in lines:
        assert digest(canonical(line["record"])) == line["hash"] == hashes[line["seq"]]

    # Syslog: RFC 5424, octet-counted over TCP, one datagram each over UDP (OCSF there).
    tcp_seqs = [int(parsed(message)[0]["seq"]) for message in tcp.messages]
    assert first_seen(tcp_seqs) == seqs
    udp_events = [parsed(message)[1] for message in udp.messages]
    assert first_seen([e["metadata"]["sequence"] for e in udp_events]) == seqs
    assert all(problems(e) == [] for e in udp_events)


def test_each_worker_streams_its_own_chain(stack: DevStack, tmp_path: Path) -> None:
    jsonl = tmp_path / "siem" / "audit.jsonl"

    def two_workers(config: dict[str, Any]) -> None:
        config["server"]["workers"] = 2
        config["audit"]["sinks"] = [
            {"name": "file", "kind": "jsonl", "path": str(jsonl), "poll_interval_s": 0.05}
        ]

    gateway = SecondGateway(stack, tmp_path / "gw", "siemw", two_workers)
    gateway.start()
    try:
        for number in range(12):  # a connection each: the kernel spreads them over the workers
            assert gateway.query("demo_reader", f"RETURN {number}").status_code == 202
        chains = {index: gateway.audit.with_name(f"audit-w{index}.sqlite3") for index in (1, 2)}
        files = {index: jsonl.with_name(f"audit-w{index}.jsonl") for index in (1, 2)}

        def records_of(index: int) -> list[tuple[int, str, str]]:
            if not chains[index].exists():
                return []
            with AuditReader(chains[index]) as reader:
                head = reader.head()
                return [] if head is None else list(reader.sealed_range(1, head[0]))

        def streamed(index: int) -> list[dict[str, Any]]:
            if not files[index].exists():
                return []
            return [json.loads(line) for line in files[index].read_text().splitlines()]

        wait_for(
            lambda: all(len(streamed(i)) >= len(records_of(i)) for i in (1, 2)),
            what="both workers' files",
        )
        expected = {i: records_of(i) for i in (1, 2)}
        got = {i: streamed(i) for i in (1, 2)}
    finally:
        gateway.stop()
    assert sum(len(records) for records in expected.values()) >= 24  # decision and outcome each
    assert not jsonl.exists()  # one file per worker, none shared
    for index in (1, 2):
        assert [(line["seq"], line["hash"]) for line in got[index]] == [
            (seq, hash_) for seq, _, hash_ in expected[index]
        ]
        assert {line["chain"] for line in got[index]} <= {f"gateway-w{index}"}
        cursor = chains[index].with_name(f"audit-w{index}.sqlite3.sink-file.cursor")
        if expected[index]:
            assert json.loads(cursor.read_text())["seq"] == expected[index][-1][0]
