"""A saturated gateway refuses at once, and bounds its connections, against the real stack.

A second gateway runs with one admission slot, one place in the queue and a short wait, so a
Bolt result left open (its client pulled one row of several) holds the only slot for as long as
a test wants: statements beyond it are refused with 503 and ``Retry-After`` over HTTP, a
transient ``FAILURE`` over Bolt, each with one audit record naming its own reason. The same
gateway closes HTTP connections that send no headers in time, answers 408 to a body that does
not arrive in time, aborts one whose client reads none of its answer, and closes connections
beyond its limit at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import neo4j
import pytest
from neo4j.exceptions import TransientError

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from proxy.ports import free_ports
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

QUERY = "/db/neo4j/query/v2"
OVERLOADED = "Neo.TransientError.Request.ResourceExhaustion"
HEADER_TIMEOUT_S = 3.0
MAX_CONNECTIONS = 8


@dataclass(frozen=True)
class Tight:
    gateway: SecondGateway
    bolt_uri: str

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def port(self) -> int:
        return self.gateway.port

    @property
    def audit(self) -> Path:
        return self.gateway.audit

    def auth_header(self, dag: str) -> str:
        return self.gateway.stack.auth_header(dag)

    def token(self, dag: str) -> str:
        return self.gateway.stack.token(dag)


@pytest.fixture(scope="module")
def tight(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tight]:
    """A gateway with one slot, one waiting place, and small connection limits."""
    (bolt_port,) = free_ports(1)

    def configure(config: dict[str, Any]) -> None:
        server = config["server"]
        server["bolt_port"] = bolt_port
        server["admission"] = {
            "max_in_flight": 1,
            "max_waiting": 1,
            "max_wait_s": 0.5,
            "retry_after_s": 2,
        }
        server["http"] = {
            "max_connections": MAX_CONNECTIONS,
            "header_timeout_s": HEADER_TIMEOUT_S,
            "body_timeout_s": 1.0,
        }

    gateway = SecondGateway(stack, tmp_path_factory.mktemp("tight"), "tight", configure)
    gateway.start()
    try:
        yield Tight(gateway, f"bolt://127.0.0.1:{bolt_port}")
    finally:
        gateway.stop()


def trail(audit: Path, request_id: str) -> list[dict[str, Any]]:
    with AuditReader(audit) as log:
        return [r for r in log.query(RecordFilter()) if r["request_id"] == request_id]


@contextlib.contextmanager
def slot_held(tight: Tight) -> Iterator[None]:
    """The gateway's only slot, held by a Bolt result whose client pulled one row of ten."""
    token = tight.token("demo_reader")
    with (
        neo4j.GraphDatabase.driver(tight.bolt_uri, auth=neo4j.bearer_auth(token)) as driver,
        driver.session(database="neo4j", fetch_size=1) as session,
    ):
        result = session.run("UNWIND range(1, 10) AS x RETURN x")
        first = result.peek()
        assert first is not None
        assert first["x"] == 1  # the statement is admitted and running
        yield
        assert [r["x"] for r in result] == list(range(1, 11))  # and ends: the slot is free


def test_saturated_http_gets_503_with_retry_after_at_once(tight: Tight) -> None:
    headers = {"Authorization": tight.auth_header("demo_reader")}
    body = {"statement": "RETURN 1 AS one"}

    async def two_beyond_the_slot() -> tuple[httpx.Response, float, httpx.Response, float]:
        async with httpx.AsyncClient(base_url=tight.url, headers=headers, timeout=30) as http:

            async def timed(delay: float) -> tuple[httpx.Response, float]:
                await asyncio.sleep(delay)
                started = time.monotonic()
                response = await http.post(QUERY, json=body)
                return response, time.monotonic() - started

            (waited, waited_s), (full, full_s) = await asyncio.gather(timed(0), timed(0.2))
            return waited, waited_s, full, full_s

    with slot_held(tight):
        waited, waited_s, full, full_s = asyncio.run(two_beyond_the_slot())
    # The first waited its turn in the one waiting place, then was refused; the second found
    # the place taken and was refused at once.
    assert full.status_code == 503, full.text
    assert full_s < 0.4
    assert waited.status_code == 503, waited.text
    assert 0.4 < waited_s < 3
    for response, reason in ((full, "overloaded:queue_full"), (waited, "overloaded:wait_timeout")):
        assert response.headers["Retry-After"] == "2"
        assert response.json()["errors"][0]["code"] == OVERLOADED
        request_id = response.headers["X-CypherGate-Request-ID"]
        (record,) = trail(tight.audit, request_id)  # exactly one record, the refusal
        assert record["event"] == "decision"
        assert record["status"] == 503
        assert record["error"] == {"code": OVERLOADED, "reason": reason}
    # The slot is free again once the result ended.
    after = httpx.post(tight.url + QUERY, json=body, headers=headers, timeout=30)
    assert after.status_code == 202, after.text
    assert after.json()["data"]["values"] == [[1]]


def test_saturated_bolt_gets_a_transient_failure(tight: Tight) -> None:
    token = tight.token("demo_reader")
    uri = tight.bolt_uri
    with (
        slot_held(tight),
        neo4j.GraphDatabase.driver(uri, auth=neo4j.bearer_auth(token)) as driver,
        driver.session(database="neo4j") as session,
        pytest.raises(TransientError) as refused,
    ):
        session.run("RETURN 2 AS two").consume()
    assert refused.value.code == OVERLOADED
    assert refused.value.is_retryable()  # what makes drivers' managed transactions retry
    found = re.search(r"\(request ([^)]+)\)", refused.value.message or "")
    assert found is not None
    (record,) = trail(tight.audit, found.group(1))
    assert record["status"] == 503
    assert record["error"]["reason"] == "overloaded:wait_timeout"
    # A managed transaction (how drivers are meant to be used) retries and succeeds once the
    # slot is free.
    with neo4j.GraphDatabase.driver(uri, auth=neo4j.bearer_auth(token)) as driver:
        records, _, _ = driver.execute_query("RETURN 3 AS three", database_="neo4j")
        assert records[0]["three"] == 3


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=15)


def closed_after(connection: socket.socket) -> float:
    """Seconds until the server closes ``connection`` (reading and dropping what it sends)."""
    started = time.monotonic()
    with connection:
        while connection.recv(4096):
            pass
    return time.monotonic() - started


def test_a_connection_without_headers_is_closed_after_the_deadline(tight: Tight) -> None:
    silent = connect(tight.port)
    trickling = connect(tight.port)
    trickling.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    started = time.monotonic()
    with trickling:
        with contextlib.suppress(OSError):
            for _ in range(40):  # one byte every 0.25 s: the headers never end in time
                trickling.sendall(b"a")
                time.sleep(0.25)
        closed_at = time.monotonic() - started
    silent_s = closed_after(silent)
    assert HEADER_TIMEOUT_S - 0.5 < closed_at < HEADER_TIMEOUT_S + 4
    assert HEADER_TIMEOUT_S - 0.5 < silent_s + closed_at < HEADER_TIMEOUT_S + 6


@pytest.mark.parametrize("how", ["keep-alive", "close", "pipelined"])
def test_a_client_that_never_reads_its_answer_is_cut_off(tight: Tight, how: str) -> None:
    """An answer is written whole, and what the client has not read stays in the gateway's
    memory: a client that takes none of it for the header time-out is aborted (closing the
    connection, at the header deadline or after Connection: close, waited for it for ever; a
    second request sent behind the first had its answer built, waiting to be written)."""
    pad = "x" * 1000
    body = json.dumps(
        {"statement": "UNWIND range(1, 16000) AS x RETURN x, $pad", "parameters": {"pad": pad}}
    ).encode()
    head = (
        f"POST {QUERY} HTTP/1.1\r\nHost: x\r\nAuthorization: {tight.auth_header('demo_reader')}"
        f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        + ("Connection: close\r\n" if how == "close" else "")
        + "\r\n"
    )
    requests = (head.encode() + body) * (2 if how == "pipelined" else 1)
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # 16 MB never fit in buffers
    with reader:
        reader.connect(("127.0.0.1", tight.port))
        reader.sendall(requests)
        reader.settimeout(20)
        answered = reader.recv(4096)  # the answer has begun: the deadline counts from here
        assert answered.startswith(b"HTTP/1.1 202"), answered
        time.sleep(2 * HEADER_TIMEOUT_S + 2)  # reading nothing
        with contextlib.suppress(OSError):
            while chunk := reader.recv(1 << 20):
                answered += chunk
    # What the kernel buffers held arrived; the rest was dropped when the gateway aborted.
    assert len(answered) < 8_000_000, "a client that reads nothing kept its whole answer"


def read_answer(connection: socket.socket) -> bytes:
    answer = b""
    with contextlib.suppress(OSError):
        while chunk := connection.recv(65_536):
            answer += chunk
    return answer


def endless_header(connection: socket.socket) -> int:
    """Send a header's value until the gateway closes the connection or 8 MiB went; returns
    how many bytes went."""
    sent = 0
    with contextlib.suppress(OSError):  # the gateway closes while we send
        while sent < 8 * 1024 * 1024:
            connection.sendall(b"a" * 65_536)
            sent += 65_536
    return sent


def test_headers_beyond_the_limit_get_431_and_the_connection_closes(tight: Tight) -> None:
    """A header that never ends (found by review: one such connection took the gateway from
    136 to 267 MB and held a plain statement back 10 s): refused once past 64 KiB."""
    with connect(tight.port) as connection:
        connection.sendall(f"POST {QUERY} HTTP/1.1\r\nHost: x\r\nX-Junk: ".encode())
        sent = endless_header(connection)
        answer = read_answer(connection)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"Neo.ClientError.Request.Invalid" in answer
    assert sent < 8 * 1024 * 1024, "the gateway read 8 MiB of headers"
    # and the gateway still answers at once
    fine = httpx.post(
        tight.url + QUERY,
        json={"statement": "RETURN 1 AS x"},
        headers={"Authorization": tight.auth_header("demo_reader")},
        timeout=10,
    )
    assert fine.status_code == 202, fine.text


def test_a_pipelined_requests_headers_are_bounded_while_the_one_before_runs(tight: Tight) -> None:
    """The headers of a request sent behind one still running, on the same connection, were
    not counted until the first was answered (found by review: one caller's statement running
    for 15 s with a header streamed behind it held the event loop, a plain statement from
    elsewhere waited 17 s and got 503, the audit log unwritable in time): they are bounded as
    any request's, 431 and closed."""
    body = b'{"statement": "UNWIND range(1, 40000000) AS x WITH x WHERE x < 0 RETURN count(x)"}'
    head = (
        f"POST {QUERY} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: {tight.auth_header('demo_reader')}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with connect(tight.port) as connection:
        connection.sendall(head.encode() + body + f"POST {QUERY} HTTP/1.1\r\nX-Junk: ".encode())
        sent = endless_header(connection)
        answer = read_answer(connection)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]  # before the first's answer
    assert sent < 8 * 1024 * 1024, "the gateway read 8 MiB of a pipelined request's headers"
    deadline = time.monotonic() + 30  # the first statement, left running, frees the only slot
    while time.monotonic() < deadline:
        fine = httpx.post(
            tight.url + QUERY,
            json={"statement": "RETURN 1 AS x"},
            headers={"Authorization": tight.auth_header("demo_reader")},
            timeout=10,
        )
        if fine.status_code == 202:
            break
        time.sleep(0.5)
    assert fine.status_code == 202, fine.text


@pytest.mark.parametrize(
    "framing",
    [
        "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n{}",
    ],
)
def test_a_request_the_parser_cannot_frame_gets_a_neo4j_error(tight: Tight, framing: str) -> None:
    """Found by review: uvicorn's own 400 was text/plain ("Invalid HTTP request received."),
    where the README promises every error in Neo4j's format."""
    head = f"POST {QUERY} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with connect(tight.port) as connection:
        connection.sendall(head.encode() + framing.encode())
        answer = read_answer(connection)
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"content-type: application/json" in head_part.lower()
    (error,) = json.loads(body)["errors"]
    assert error["code"] == "Neo.ClientError.Request.Invalid"


def test_headers_near_the_limit_with_a_body_in_the_same_reads_are_served(tight: Tight) -> None:
    """The bound counts headers only: a body arriving with them is the application's."""
    body = b'{"statement": "RETURN size($pad) AS n", "parameters": {"pad": "%s"}}' % (
        b"x" * 300_000
    )
    head = (
        f"POST {QUERY} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: {tight.auth_header('demo_reader')}\r\nX-Pad: {'p' * 50_000}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with connect(tight.port) as connection:
        connection.sendall(head.encode() + body)
        answer = read_answer(connection)
    assert answer.startswith(b"HTTP/1.1 202"), answer[:300]
    assert b"300000" in answer


def test_a_body_left_unread_after_its_answer_is_not_taken_for_headers(tight: Tight) -> None:
    """A body refused as too large is answered before it is all read; the rest of it, arriving
    on the same connection, is no next request's head (it was counted as one: a 431)."""
    auth = {"Authorization": tight.auth_header("demo_reader")}
    with httpx.Client(base_url=tight.url, timeout=30) as client:
        for _ in range(2):
            big = client.post(
                QUERY, json={"statement": "RETURN '" + "x" * 1_100_000 + "'"}, headers=auth
            )
            assert big.status_code == 413, big.text[:200]
            after = client.post(QUERY, json={"statement": "RETURN 1 AS x"}, headers=auth)
            assert after.status_code == 202, after.text[:200]


def test_a_body_that_does_not_arrive_in_time_gets_408(tight: Tight) -> None:
    head = (
        f"POST {QUERY} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: {tight.auth_header('demo_reader')}\r\n"
        "Content-Length: 200\r\n\r\n"
    )
    with connect(tight.port) as connection:
        connection.sendall(head.encode() + b'{"statement": ')
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer
    headers, _, body = rest.partition(b"\r\n\r\n")
    found = re.search(rb"x-cyphergate-request-id: (\S+)", headers, re.IGNORECASE)
    assert found is not None
    assert b"Neo.ClientError.Request.Invalid" in body
    (record,) = trail(tight.audit, found.group(1).decode())
    assert record["status"] == 408
    assert record["error"]["reason"] == "body_timeout"


def test_connections_beyond_the_limit_are_closed_at_once(tight: Tight) -> None:
    opened = [connect(tight.port) for _ in range(MAX_CONNECTIONS + 4)]
    try:
        time.sleep(0.3)  # accepted and counted by the server
        kept: list[socket.socket] = []
        refused: list[socket.socket] = []
        for connection in opened:
            connection.settimeout(0.05)
            try:
                closed = connection.recv(1) == b""
            except TimeoutError:
                closed = False
            except ConnectionResetError:
                closed = True
            (refused if closed else kept).append(connection)
        # Well before the header deadline, those beyond the limit are gone, the rest still work.
        assert len(refused) >= 4
        assert 1 <= len(kept) <= MAX_CONNECTIONS
        survivor = kept[0]
        survivor.settimeout(10)
        survivor.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert survivor.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for connection in opened:
            connection.close()
