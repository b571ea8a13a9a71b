"""An auto-commit statement whose connection to Neo4j is lost after it was sent: a write may
have committed (its transaction commits when it ends), so it must not be answered as transient,
which an HTTP client retrying a 503 or a driver retrying a transient error would run twice. A
read never wrote: it stays transient, to be tried again.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import neo4j
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from tests.bolt.cutting_relay import CuttingRelay, EndingRelay, count_marked, gateway_behind
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

_RUN = b"\xb3\x10"  # a RUN message's marker and tag (its three fields)


class RunCutter(CuttingRelay):
    """Once armed with a marker, forwards the next ``RUN`` that carries it (not the gateway's own
    planning of it) and cuts that connection without passing Neo4j's answer on: the statement
    runs, its sender never hears how it ended."""

    def __init__(self, bolt_uri: str) -> None:
        self.needle = b""  # armed: cut at the next RUN whose statement or parameters hold it
        super().__init__(bolt_uri)

    def _cuts_here(self, data: bytes) -> bool:
        """Whether ``data`` runs the caller's statement (by its marker), while armed."""
        needle = self.needle
        if not needle or _RUN not in data or needle not in data or b"EXPLAIN" in data:
            return False
        self.needle = b""
        return True


def _failed_outcomes(audit: Path) -> list[str]:
    with AuditReader(audit) as log:
        return [
            r["error"]["reason"] for r in log.query(RecordFilter(event="outcome")) if r.get("error")
        ]


@pytest.mark.parametrize("relay", [True, False], ids=["relay", "driver"])
def test_an_auto_commit_write_whose_answer_is_lost_is_not_transient(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path, relay: bool
) -> None:
    cutter = RunCutter(stack.status()["neo4j"]["bolt_uri"])
    marker = f"lost-run-{uuid.uuid4().hex[:8]}"
    auth = neo4j.bearer_auth(stack.token("demo_writer"))
    with gateway_behind(
        cutter, stack, tmp_path / "gateway", f"run{int(relay)}", relays=relay
    ) as second:

        def query(statement: str) -> httpx.Response:
            return second.query("demo_writer", statement, {"m": marker})

        assert query("RETURN 1").status_code == 202  # warmed up, leases made
        cutter.needle = marker.encode()
        written = query("CREATE (:BoltDoor {name: $m})")
        assert cutter.cuts == 1
        cutter.needle = marker.encode()
        read = query("MATCH (n:BoltDoor {name: $m}) RETURN count(n)")
        assert cutter.cuts == 2
        with (
            neo4j.GraphDatabase.driver(str(second.bolt_uri), auth=auth) as driver,
            driver.session(database="neo4j") as session,
        ):
            session.run("RETURN 1").consume()
            cutter.needle = marker.encode()
            with pytest.raises(neo4j.exceptions.Neo4jError) as lost:
                session.run("CREATE (:BoltDoor {name: $m})", m=marker).consume()
        assert cutter.cuts == 3
    # Neo4j ran each write once; neither door said it could be tried again.
    assert count_marked(neo4j_admin, marker) == 2
    assert written.status_code == 502, written.text
    (error,) = written.json()["errors"]
    assert not error["code"].startswith("Neo.TransientError.")
    assert not lost.value.code.startswith("Neo.TransientError.")
    # A read wrote nothing: transient, as ever.
    assert read.status_code == 503, read.text
    assert read.json()["errors"][0]["code"].startswith("Neo.TransientError.")
    assert _failed_outcomes(second.audit) == [
        "write_outcome_unknown",
        "ServiceUnavailable",
        "write_outcome_unknown",
    ]


def _write_past_the_answer_bound(
    stack: DevStack,
    folder: Path,
    name: str,
    relay: bool,
    statement: str,
    parameters: dict[str, Any],
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """Run a write through a gateway whose Query API answers are bound to 20,000 bytes (on its
    relay, or on the driver path); its answer and its failed outcome records."""

    def configure(config: dict[str, Any]) -> None:
        config["server"].setdefault("http", {})["max_answer_bytes"] = 20_000
        config["neo4j"]["http_relay"] = relay

    second = SecondGateway(stack, folder, name, configure)
    second.start()
    try:
        answer = second.query("demo_writer", statement, parameters)
    finally:
        second.stop()
    with AuditReader(second.audit) as log:
        failed = [r for r in log.query(RecordFilter(event="outcome")) if r.get("error")]
    return answer, failed


@pytest.mark.parametrize("relay", [True, False], ids=["relay", "driver"])
def test_an_auto_commit_write_whose_answer_is_too_large_is_recorded_as_it_ended(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path, relay: bool
) -> None:
    """A write whose Query API answer grows past server.http.max_answer_bytes while Neo4j still
    holds its result open: rolled back (413 answer_too_large), on the driver as on the relay,
    never committed behind a record that says it failed."""
    marker = f"too-large-{uuid.uuid4().hex[:8]}"
    answer, failed = _write_past_the_answer_bound(
        stack,
        tmp_path / "gateway",
        f"big{int(relay)}",
        relay,
        "UNWIND range(1, 5000) AS i CREATE (:BoltDoor {name: $m}) RETURN i",
        {"m": marker},
    )
    assert answer.status_code == 413, answer.text
    (outcome,) = failed
    assert outcome["error"]["reason"] == "answer_too_large"
    assert "committed" not in outcome
    assert count_marked(neo4j_admin, marker) == 0


@pytest.mark.parametrize("relay", [True, False], ids=["relay", "driver"])
def test_an_auto_commit_write_neo4j_finished_is_recorded_as_committed(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path, relay: bool
) -> None:
    """One row larger than the answer's bound: Neo4j sent it with its summary, so the statement
    had committed when the gateway refused the answer; the record says so on either path."""
    marker = f"finished-{uuid.uuid4().hex[:8]}"
    answer, failed = _write_past_the_answer_bound(
        stack,
        tmp_path / "gateway",
        f"done{int(relay)}",
        relay,
        "CREATE (:BoltDoor {name: $m}) RETURN $big AS big",
        {"m": marker, "big": "x" * 20_001},
    )
    assert answer.status_code == 413, answer.text
    assert count_marked(neo4j_admin, marker) == 1
    (outcome,) = failed
    assert outcome["error"]["reason"] == "answer_too_large"
    assert outcome["committed"] is True
    assert outcome["counters"]["nodesCreated"] == 1


@pytest.mark.parametrize("door", ["http", "bolt"])
def test_a_read_whose_connection_neo4j_resets_mid_stream_is_unavailable_on_the_driver(
    stack: DevStack, tmp_path: Path, door: str
) -> None:
    """On the driver path (relays off), Neo4j's connection reset while a read's rows stream (its
    first batch sent, the next being made): 503 with a transient code, one outcome record saying
    so, never a 500; and the door serves the next statement."""
    relay = EndingRelay(stack.status()["neo4j"]["bolt_uri"])
    marker = f"rst{uuid.uuid4().hex[:10]}"
    # 1,000 rows at once, then rows that take Neo4j seconds to make: the reset comes between.
    statement = (
        "UNWIND range(1, 3000) AS i RETURN i, CASE WHEN i > 1000"
        f" THEN reduce(s = 0, x IN range(1, 300000) | s + x) ELSE 0 END AS `{marker}`"
    )
    timer = threading.Timer(1.5, relay.end_all, kwargs={"reset": True})
    with gateway_behind(relay, stack, tmp_path / "gateway", f"rst{door}", relays=False) as second:
        try:
            timer.start()
            if door == "http":
                answer = second.query("demo_reader", statement)
                assert answer.status_code == 503, answer.text
                (error,) = answer.json()["errors"]
                code = error["code"]
            else:
                auth = neo4j.bearer_auth(stack.token("demo_reader"))
                with (
                    neo4j.GraphDatabase.driver(str(second.bolt_uri), auth=auth) as driver,
                    driver.session(database="neo4j") as session,
                    pytest.raises(neo4j.exceptions.Neo4jError) as lost,
                ):
                    session.run(statement).consume()
                code = lost.value.code or ""
            after = second.query("demo_reader", "RETURN 1 AS one")
        finally:
            timer.cancel()
    assert code == "Neo.TransientError.General.DatabaseUnavailable"
    assert after.status_code == 202, after.text
    with AuditReader(second.audit) as log:
        (decision,) = log.query(RecordFilter(event="decision", text=marker))
        trail = [r for r in log.query(RecordFilter()) if r["request_id"] == decision["request_id"]]
    assert [(r["event"], r["status"]) for r in trail] == [("decision", None), ("outcome", 503)]
