"""The gateway's own deadlines on Neo4j: a Neo4j that accepts connections but never answers (a
paused process) costs a request the configured connect timeout, not the pause."""

from __future__ import annotations

import asyncio
import socket
import time

import neo4j
import pytest

from proxy.errors import GraphUnavailable
from proxy.neo4j.errors import translated_errors
from proxy.neo4j.executor import connect


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
