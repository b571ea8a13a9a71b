"""The gateway's own deadlines on Neo4j: a Neo4j that accepts connections but never answers (a
paused process) costs a request the configured connect timeout, not the pause; a statement it
never plans costs the plan timeout."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import neo4j
import pytest

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.codec.packstream import Structure
from proxy.devstack.stack import DevStack
from proxy.errors import GraphUnavailable, PlanTimedOut
from proxy.neo4j.errors import translated_errors
from proxy.neo4j.executor import Neo4jExecutor, connect
from proxy.neo4j.logins import Login
from tests.bolt.test_wire import Peer, failure, logged_on
from tests.second_gateway import SecondGateway


def _driver(port: int) -> neo4j.AsyncDriver:
    """The gateway's driver to a Neo4j on ``port`` that is not one, with short deadlines."""
    return connect(
        f"bolt://127.0.0.1:{port}",
        neo4j.basic_auth("cyphergate", "a-long-password"),
        max_connection_lifetime_s=60,
        connection_timeout_s=0.5,
        acquisition_timeout_s=1.0,
    )


def test_a_neo4j_that_never_answers_is_unavailable_within_the_connect_timeout() -> None:
    with socket.socket() as paused:
        paused.bind(("127.0.0.1", 0))
        paused.listen(8)  # the kernel completes TCP handshakes; nothing ever answers Bolt's
        port = paused.getsockname()[1]

        async def go() -> float:
            driver = _driver(port)
            started = time.monotonic()
            try:
                with pytest.raises(GraphUnavailable):
                    async with translated_errors():
                        await driver.verify_connectivity()
            finally:
                await driver.close()
            return time.monotonic() - started

        took = asyncio.run(go())
    assert took < 3.0, f"a paused Neo4j held the request {took:.1f} s"


def test_a_write_to_a_neo4j_that_is_down_stays_transient() -> None:
    """A write that could not reach Neo4j ran nothing: still 503, to be tried again (only a
    connection lost once the statement was sent makes its outcome unknown)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: refused

        async def go() -> None:
            driver = _driver(port)
            try:
                with pytest.raises(GraphUnavailable) as down:
                    async with translated_errors(may_write=True), driver.session() as session:
                        await session.run("CREATE (:Nothing)")
            finally:
                await driver.close()
            assert type(down.value) is GraphUnavailable

        asyncio.run(go())


def nested_list(depth: int, name: str) -> str:
    """A statement Neo4j 5.26 never answers ``EXPLAIN`` of past a few hundred levels: its
    parser's stack overflows and the connection stays silent (2 minutes, until the driver's
    read times out)."""
    return "RETURN " + "[" * depth + "]" * depth + f" AS {name}"


@pytest.mark.integration
def test_a_statement_neo4j_never_plans_times_out_and_its_connection_is_dropped(
    status: dict[str, Any],
) -> None:
    """The plan timeout ends the wait; the connection that waited is not pooled again (it would
    never answer the next statement planned on it: that one would time out too)."""
    neo4j_status = status["neo4j"]

    async def go() -> tuple[float, list[float]]:
        driver = connect(
            neo4j_status["bolt_uri"],
            neo4j.basic_auth(neo4j_status["gateway_user"], neo4j_status["gateway_password"]),
            max_connection_lifetime_s=3600,
        )
        executor = Neo4jExecutor(
            driver, own=Login(user=neo4j_status["gateway_user"]), plan_timeout_s=1.0
        )
        try:
            started = time.monotonic()
            with pytest.raises(PlanTimedOut) as timed_out:
                await executor.plan("neo4j", nested_list(1000, "deep"))
            took = time.monotonic() - started
            assert timed_out.value.reason == "neo4j_plan_timeout"
            after = []
            for _ in range(3):
                started = time.monotonic()
                plan = await executor.plan("neo4j", "RETURN 1 AS one")
                after.append(time.monotonic() - started)
                assert plan.query_type == "r"
        finally:
            await driver.close()
        return took, after

    took, after = asyncio.run(go())
    assert took < 3, f"the plan timeout of 1 s held the request {took:.1f} s"
    assert max(after) < 1, after


@pytest.mark.integration
def test_a_statement_neo4j_never_plans_is_refused_on_both_doors(
    stack: DevStack, tmp_path: Path
) -> None:
    """503 ``neo4j_plan_timeout`` within ``neo4j.plan_timeout_s`` over HTTP and Bolt, one audit
    record each (nothing ran), and the door goes on serving."""

    def configure(config: dict[str, Any]) -> None:
        config["neo4j"]["plan_timeout_s"] = 1.0

    second = SecondGateway(stack, tmp_path / "gateway", "plantimeout", configure, bolt=True)
    second.start()
    try:
        started = time.monotonic()
        over_http = second.query("demo_reader", nested_list(1000, "over_http"))
        http_took = time.monotonic() - started
        assert second.query("demo_reader", "RETURN 1 AS one").json()["data"]["values"] == [[1]]
        assert second.bolt_uri is not None
        peer = logged_on(Peer(int(second.bolt_uri.rsplit(":", 1)[1])), stack.token("demo_reader"))
        started = time.monotonic()
        peer.message(0x10, nested_list(1000, "over_bolt"), {}, {})
        over_bolt = peer.answer()
        bolt_took = time.monotonic() - started
        peer.message(0x0F)  # RESET after the FAILURE, as a driver does
        assert peer.answer() == Structure(b"\x70", ({},))
        peer.message(0x10, "RETURN 1 AS one", {}, {})
        ran = peer.answer()
        assert ran is not None and ran.tag == b"\x70", ran
        peer.close()
    finally:
        second.stop()
    assert over_http.status_code == 503, over_http.text
    (error,) = over_http.json()["errors"]
    assert error["code"] == "Neo.TransientError.General.DatabaseUnavailable"
    assert "did not plan the statement within 1 s" in error["message"]
    assert failure(over_bolt) == "Neo.TransientError.General.DatabaseUnavailable"
    assert http_took < 5 and bolt_took < 5, (http_took, bolt_took)
    with AuditReader(second.audit) as log:
        for name in ("over_http", "over_bolt"):
            (record,) = log.query(RecordFilter(text=f"AS {name}"))
            assert record["status"] == 503
            assert record["error"]["reason"] == "neo4j_plan_timeout"
            request = record["request_id"]
            assert [r for r in log.query(RecordFilter()) if r["request_id"] == request] == [record]
