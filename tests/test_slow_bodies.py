"""Slow request bodies of one identity leave admission slots for others, on the session gateway.

An HTTP statement takes its admission slot before its body is read (so that a refusal under
load costs nothing), and reads its body only once its caller is verified. A caller sending
bodies one byte short of complete held a slot per request for ``server.http.body_timeout_s``:
40 of them took all 32 slots, and another identity's statement was refused.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack

pytestmark = pytest.mark.integration

QUERY = "/db/neo4j/query/v2"
SLOW_BODIES = 40  # beyond the default 32 slots (server.admission.max_in_flight)


@contextlib.contextmanager
def slow_bodies(stack: DevStack, port: int) -> Iterator[list[socket.socket]]:
    """SLOW_BODIES requests of demo_reader whose bodies stop after their first byte."""
    head = (
        f"POST {QUERY} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: {stack.auth_header('demo_reader')}\r\nContent-Length: 100\r\n\r\n{{"
    ).encode()
    opened: list[socket.socket] = []
    try:
        for _ in range(SLOW_BODIES):
            connection = socket.create_connection(("127.0.0.1", port), timeout=30)
            connection.sendall(head)
            opened.append(connection)
        yield opened
    finally:
        for connection in opened:
            connection.close()


def test_slow_bodies_of_one_identity_leave_slots_for_another(
    stack: DevStack, status: dict[str, Any]
) -> None:
    url = status["gateway_url"]
    port = urlsplit(url).port
    assert port is not None
    writer = {"Authorization": stack.auth_header("demo_writer")}
    statement = {"statement": "RETURN 1 AS x"}
    with httpx.Client(base_url=url, timeout=30) as client:
        # Its DAG's first statement leases a login and plans: not what is measured here.
        assert client.post(QUERY, json=statement, headers=writer).status_code == 202
        with slow_bodies(stack, port) as opened:
            time.sleep(0.5)  # each request's head is in, its caller verified, its body awaited
            started = time.monotonic()
            answer = client.post(QUERY, json=statement, headers=writer)
            took = time.monotonic() - started
            assert answer.status_code == 202, answer.text[:300]
            assert answer.json()["data"]["values"] == [[1]]
            assert took < 0.9, took  # no wait for a slot (max_wait_s is 1 s)
            # Those beyond demo_reader's share were refused at the end of their wait (a second),
            # each recorded once; the rest still wait for their bodies.
            time.sleep(1.0)
            refused: list[str] = []
            for connection in opened:
                connection.settimeout(0.05)
                with contextlib.suppress(TimeoutError):
                    refused.append(connection.recv(4096).decode("latin-1"))
        # Their connections closed, the 24 give their slots back: demo_reader's share is its own.
        reader = {"Authorization": stack.auth_header("demo_reader")}
        deadline = time.monotonic() + 5
        while (again := client.post(QUERY, json=statement, headers=reader)).status_code != 202:
            assert time.monotonic() < deadline, again.text[:300]
            time.sleep(0.2)
    assert len(refused) == SLOW_BODIES - 24, refused[:1]
    assert all(a.startswith("HTTP/1.1 503") for a in refused), refused[:1]
    ids = [re.search(r"x-cyphergate-request-id: (\S+)", a, re.IGNORECASE) for a in refused]
    with AuditReader(stack.audit_path) as log:
        for found in ids:
            assert found is not None
            (record,) = log.query(RecordFilter(request_id=found.group(1)))
            assert record["status"] == 503
            assert record["error"]["reason"] == "overloaded:identity_share"
