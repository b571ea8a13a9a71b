"""Bad input on the Bolt wire, against the real stack: each gets a clean FAILURE or a closed
connection, never a crash, and nothing runs unrecorded."""

from __future__ import annotations

import socket
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.codec import wire
from proxy.codec.packstream import Structure, pack, unpack
from proxy.devstack.stack import DevStack
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

V54 = bytes((0, 0, 4, 5))
PROPOSALS = V54 + bytes(12)


class Peer:
    """A raw Bolt client that says exactly what a test tells it to."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def message(self, tag: int, *fields: Any) -> None:
        self.send(wire.encode(tag, *fields))

    def read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            try:
                chunk = self.sock.recv(n - len(data))
            except ConnectionResetError:
                return data  # closed (with data of ours still unread: a reset)
            if not chunk:
                return data
            data += chunk
        return data

    def answer(self) -> Structure | None:
        """The next answer, or None if the server closed the connection."""
        body = b""
        while True:
            header = self.read(2)
            if len(header) < 2:
                return None
            size = struct.unpack(">H", header)[0]
            if size == 0:
                if body:
                    found = unpack(body)
                    assert isinstance(found, Structure)
                    return found
                continue
            body += self.read(size)

    def closed(self) -> bool:
        self.sock.settimeout(10)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peer(status: dict[str, Any]) -> Iterator[Peer]:
    client = Peer(int(status["gateway_bolt_uri"].rsplit(":", 1)[1]))
    yield client
    client.close()


def logged_on(peer: Peer, token: str) -> Peer:
    peer.send(wire.MAGIC + PROPOSALS)
    assert peer.read(4) == V54
    peer.message(0x01, {"user_agent": "test/1"})
    hello = peer.answer()
    assert hello is not None and hello.tag == b"\x70"
    peer.message(0x6A, {"scheme": "bearer", "credentials": token})
    logon = peer.answer()
    assert logon is not None and logon.tag == b"\x70", logon
    return peer


def failure(answer: Structure | None) -> str:
    assert answer is not None and answer.tag == b"\x7f", answer
    code = answer.fields[0]["code"]
    assert isinstance(code, str)
    return code


def test_not_bolt_is_closed(peer: Peer) -> None:
    peer.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert peer.closed()


def test_unsupported_versions_are_refused(peer: Peer) -> None:
    peer.send(wire.MAGIC + bytes((0, 0, 0, 4)) + bytes((0, 0, 0, 3)) + bytes(8))
    assert peer.read(4) == wire.REFUSED
    assert peer.closed()


def test_a_cut_handshake_is_closed(peer: Peer) -> None:
    peer.send(wire.MAGIC + b"\x00\x00")
    peer.sock.shutdown(socket.SHUT_WR)
    assert peer.closed()


def test_run_before_logon_fails_and_closes(stack: DevStack, peer: Peer) -> None:
    peer.send(wire.MAGIC + PROPOSALS)
    assert peer.read(4) == V54
    peer.message(0x01, {"user_agent": "test/1"})
    assert peer.answer() is not None
    peer.message(0x10, "CREATE (:BoltWireSneak)", {}, {})
    assert failure(peer.answer()) == "Neo.ClientError.Request.Invalid"
    assert peer.closed()
    with AuditReader(stack.audit_path) as log:
        assert not [r for r in log.query(RecordFilter()) if "BoltWireSneak" in str(r)]


def test_commit_without_begin_and_unknown_messages(stack: DevStack, peer: Peer) -> None:
    logged_on(peer, stack.token("demo_reader"))
    peer.message(0x12)
    assert failure(peer.answer()) == "Neo.ClientError.Request.Invalid"
    assert peer.closed()


def test_unknown_message_type(stack: DevStack, peer: Peer) -> None:
    logged_on(peer, stack.token("demo_reader"))
    peer.message(0x55, "what")
    assert failure(peer.answer()) == "Neo.ClientError.Request.Invalid"
    assert peer.closed()


@pytest.mark.parametrize(
    "body",
    [
        b"\xb3\x10\x81",  # a string longer than the message
        b"\xb3\x10\xc7",  # an undefined marker
        b"\x91\x01",  # a list, not a structure
        b"\xb1\x10" + b"\x91" * 10_000 + b"\x90",  # nested beyond the depth limit
        b"\xb3\x10\x80\xa0\xa0\x00",  # a trailing byte
        b"\xd7\xff\xff\xff\xff",  # a list of 4 billion elements, and no data
    ],
)
def test_malformed_packstream(stack: DevStack, peer: Peer, body: bytes) -> None:
    logged_on(peer, stack.token("demo_reader"))
    peer.send(wire.frame(body))
    assert failure(peer.answer()) == "Neo.ClientError.Request.Invalid"
    assert peer.closed()


def test_oversized_message_closes(stack: DevStack, peer: Peer) -> None:
    logged_on(peer, stack.token("demo_reader"))
    chunk = b"\xff\xff" + bytes(0xFFFF)
    try:
        for _ in range(20 * 1024 * 1024 // 0xFFFF + 2):
            peer.send(chunk)
    except OSError:
        pass  # the server closed while the client still wrote: as it should
    assert peer.answer() is None  # closed without an answer (a timeout would raise here)


def test_failed_state_ignores_until_reset(stack: DevStack, peer: Peer) -> None:
    logged_on(peer, stack.token("demo_reader"))
    peer.message(0x10, "CREATE (:BoltWireRefused)", {}, {})
    assert failure(peer.answer()) == "Neo.ClientError.Security.Forbidden"
    peer.message(0x3F, {"n": -1})
    ignored = peer.answer()
    assert ignored is not None and ignored.tag == b"\x7e"
    peer.message(0x0F)
    reset = peer.answer()
    assert reset is not None and reset.tag == b"\x70"
    peer.message(0x10, "RETURN 41 + 1 AS answer", {}, {})
    run = peer.answer()
    assert run is not None and run.tag == b"\x70" and run.fields[0]["fields"] == ["answer"]
    peer.message(0x3F, {"n": -1})
    record, done = peer.answer(), peer.answer()
    assert record == Structure(b"\x71", ([42],))
    assert done is not None and done.tag == b"\x70" and done.fields[0]["type"] == "r"
    peer.message(0x02)
    assert peer.closed()


def test_an_earlier_result_failing_as_the_next_statement_runs(stack: DevStack, peer: Peer) -> None:
    # The first statement fails on its third row, which is read only when the second runs (a
    # Neo4j transaction runs one statement at a time): the second is answered FAILURE, with
    # the first's error, the connection stays, and RESET rolls the transaction back.
    logged_on(peer, stack.token("demo_reader"))
    peer.message(0x11, {})  # BEGIN
    assert peer.answer() == Structure(b"\x70", ({},))
    peer.message(0x10, "UNWIND [1, 1, 0] AS x RETURN 1 / x AS failing_later", {}, {})
    assert peer.answer() is not None
    peer.message(0x3F, {"n": 1})
    assert [peer.answer(), peer.answer()] == [
        Structure(b"\x71", ([1],)),
        Structure(b"\x70", ({"has_more": True},)),
    ]
    peer.message(0x10, "RETURN 1 AS next", {}, {})
    assert failure(peer.answer()) == "Neo.ClientError.Statement.ArithmeticError"
    peer.message(0x0F)  # RESET
    assert peer.answer() == Structure(b"\x70", ({},))
    peer.message(0x10, "RETURN 2 AS after", {}, {})
    assert peer.answer() is not None
    peer.message(0x3F, {"n": -1})
    assert peer.answer() == Structure(b"\x71", ([2],))
    with AuditReader(stack.audit_path) as log:
        trail = [r for r in log.query(RecordFilter()) if "failing_later" in str(r)]
    (first,) = [r for r in trail if r["event"] == "decision"]
    with AuditReader(stack.audit_path) as log:
        ended = [
            r
            for r in log.query(RecordFilter())
            if r["event"] == "transaction" and r["transaction"]["id"] == first["transaction"]["id"]
        ]
    assert [e["transaction"]["action"] for e in ended] == ["rollback"]


def test_goodbye_mid_stream_records_the_statement(stack: DevStack, peer: Peer) -> None:
    logged_on(peer, stack.token("demo_reader"))
    peer.message(0x10, "UNWIND range(1, 50) AS i RETURN i AS goodbye_mid_stream", {}, {})
    assert peer.answer() is not None
    peer.message(0x3F, {"n": 5})
    answers = [peer.answer() for _ in range(6)]
    assert answers[-1] == Structure(b"\x70", ({"has_more": True},))
    peer.message(0x02)
    assert peer.closed()
    with AuditReader(stack.audit_path) as log:
        trail = [r for r in log.query(RecordFilter()) if "goodbye_mid_stream" in str(r)]
    assert trail and trail[0]["event"] == "decision"
    request = trail[0]["request_id"]
    with AuditReader(stack.audit_path) as log:
        both = [r for r in log.query(RecordFilter()) if r["request_id"] == request]
    assert [r["event"] for r in both] == ["decision", "outcome"]
    assert both[-1]["rows"] == 50


def straight_to_neo4j(status: dict[str, Any]) -> Peer:
    """A raw Bolt client logged on to Neo4j itself, as its administrator."""
    neo4j = status["neo4j"]
    peer = Peer(int(neo4j["bolt_uri"].rsplit(":", 1)[1]))
    peer.send(wire.MAGIC + PROPOSALS)
    assert peer.read(4) == V54
    peer.message(0x01, {"user_agent": "test/1", "bolt_agent": {"product": "test/1"}})
    hello = peer.answer()
    assert hello is not None and hello.tag == b"\x70", hello
    peer.message(
        0x6A, {"scheme": "basic", "principal": neo4j["user"], "credentials": neo4j["password"]}
    )
    logon = peer.answer()
    assert logon == Structure(b"\x70", ({},)), logon.fields if logon else None
    return peer


def trail_of(stack: DevStack, text: str) -> list[dict[str, Any]]:
    """The audit records of the request whose statement holds ``text`` (none yet: empty)."""
    with AuditReader(stack.audit_path) as log:
        decision = next(log.query(RecordFilter(text=text)), None)
        if decision is None:
            return []
        request = decision["request_id"]
        return [r for r in log.query(RecordFilter()) if r["request_id"] == request]


@pytest.mark.parametrize("end", ["reset", "goodbye", "hang_up", "unknown_message"])
def test_an_auto_commit_write_left_mid_stream_is_rolled_back_as_neo4j_does(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver, end: str
) -> None:
    """RESET, GOODBYE, a closed socket or a protocol violation while Neo4j still holds an
    auto-commit result open (more rows than the gateway's relay asks for at a time): Neo4j rolls
    the statement's transaction back, straight and through the gateway alike, and the gateway's
    record of it says so. (A result whose last row Neo4j has sent has committed: see
    test_goodbye_mid_stream.)"""
    label = f"MidStream{uuid.uuid4().hex[:10]}"

    def interrupted(peer: Peer, target: str) -> None:
        statement = f"UNWIND range(1, 3000) AS i CREATE (:`{label}` {{to: '{target}'}}) RETURN i"
        peer.message(0x10, statement, {}, {})
        assert peer.answer() is not None
        peer.message(0x3F, {"n": 5})
        answers = [peer.answer() for _ in range(6)]
        assert answers[-1] == Structure(b"\x70", ({"has_more": True},))
        if end == "reset":
            peer.message(0x0F)
            assert peer.answer() == Structure(b"\x70", ({},))
        elif end == "goodbye":
            peer.message(0x02)
        elif end == "unknown_message":  # a protocol violation: closed (by the gateway after
            peer.message(0x55, "what")  # a FAILURE saying why; by Neo4j at once)
            answer = peer.answer()
            assert answer is None or failure(answer) == "Neo.ClientError.Request.Invalid"
            assert peer.closed()
        peer.close()

    interrupted(straight_to_neo4j(status), "neo4j")
    gateway = Peer(int(status["gateway_bolt_uri"].rsplit(":", 1)[1]))
    interrupted(logged_on(gateway, stack.token("demo_writer")), "gateway")

    deadline = time.monotonic() + 30
    trail = trail_of(stack, label)
    while len(trail) < 2 and time.monotonic() < deadline:  # until the gateway records the end
        time.sleep(0.2)
        trail = trail_of(stack, label)
    reasons = {"reset": "client_reset", "unknown_message": "protocol_violation"}
    reason = reasons.get(end, "client_closed")
    assert [(r["event"], r["status"]) for r in trail] == [("decision", None), ("outcome", 499)]
    assert trail[1]["error"]["reason"] == reason
    while time.monotonic() < deadline:  # Neo4j has ended both transactions
        running = neo4j_admin.execute_query(
            "SHOW TRANSACTIONS YIELD currentQuery WHERE currentQuery CONTAINS $label RETURN 1",
            label=label,
        ).records
        if not running:
            break
        time.sleep(0.2)
    created, _, _ = neo4j_admin.execute_query(
        f"MATCH (n:`{label}`) RETURN n.to AS target, count(n) AS n ORDER BY target"
    )
    assert [(r["target"], r["n"]) for r in created] == []


def test_pack_matches_the_frame() -> None:
    assert wire.frame(pack(Structure(b"\x0f", ()))) == b"\x00\x02\xb0\x0f\x00\x00"


@pytest.mark.parametrize("end", ["reset", "rollback", "goodbye"])
def test_a_transaction_left_mid_stream_ends_at_once_as_neo4j_ends_it(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver, end: str
) -> None:
    """RESET, ROLLBACK or GOODBYE while a statement of a transaction still has rows to come:
    Neo4j ends the statement and rolls the transaction back at once, and so does the gateway
    (it read the rest first, running the statement to its end or its time-out, the client
    waiting that long for its answer), recording the statement as ended by the client."""
    label = f"MidTx{uuid.uuid4().hex[:10]}"
    statement = f"UNWIND range(1, 30000000) AS i CREATE (:`{label}`) RETURN i"

    def interrupted(peer: Peer, *, gateway: bool) -> float:
        peer.message(0x11, {})
        assert peer.answer() == Structure(b"\x70", ({},))
        peer.message(0x10, statement, {}, {})
        assert peer.answer() is not None
        peer.message(0x3F, {"n": 5})
        answers = [peer.answer() for _ in range(6)]
        assert answers[-1] == Structure(b"\x70", ({"has_more": True},))
        started = time.monotonic()
        if end == "goodbye":
            peer.message(0x02)
            # (Neo4j may answer the statement it ends before it closes: only the gateway's
            # closing is waited for.)
            assert not gateway or peer.closed()
        else:
            peer.message(0x0F if end == "reset" else 0x13)
            assert peer.answer() == Structure(b"\x70", ({},))
        peer.close()
        return time.monotonic() - started

    assert interrupted(straight_to_neo4j(status), gateway=False) < 5
    gateway = Peer(int(status["gateway_bolt_uri"].rsplit(":", 1)[1]))
    assert interrupted(logged_on(gateway, stack.token("demo_writer")), gateway=True) < 5

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the gateway records the end after a GOODBYE
        trail = trail_of(stack, label)
        if len(trail) == 3:
            break
        time.sleep(0.2)
    ended = [r for r in trail if r["event"] == "transaction"]
    trail = [r for r in trail if r["event"] != "transaction"]
    reason = {"reset": "client_reset", "rollback": "client_reset"}.get(end, "client_closed")
    assert [(r["event"], r["status"]) for r in trail] == [("decision", None), ("outcome", 499)]
    assert trail[1]["error"]["reason"] == reason
    assert [e["transaction"]["cause"] for e in ended] == [
        "closed" if end == "goodbye" else "client"
    ]
    running = neo4j_admin.execute_query(
        "SHOW TRANSACTIONS YIELD currentQuery WHERE currentQuery CONTAINS $label RETURN 1",
        label=label,
    ).records
    assert running == []
    created, _, _ = neo4j_admin.execute_query(f"MATCH (n:`{label}`) RETURN count(n) AS n")
    assert created[0]["n"] == 0


def reset_by_peer(peer: Peer) -> None:
    """Close ``peer``'s socket with a TCP reset (RST), not an orderly FIN: what a client killed
    mid-answer, or a load balancer dropping it, looks like."""
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.sock.close()


@pytest.mark.parametrize("relay", [True, False], ids=["relay", "driver"])
def test_a_client_that_resets_mid_answer_is_recorded_and_frees_what_it_held(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path, relay: bool
) -> None:
    """A client that resets its connection while the gateway writes it a long result: the
    statement is recorded once as ended by the client (499 ``client_closed``), its admission
    slot (the gateway's only one here) and its Neo4j transaction end, and the next client is
    served."""

    def configure(config: dict[str, Any]) -> None:
        config["server"]["admission"] = {"max_in_flight": 1, "max_waiting": 0}
        config["neo4j"]["bolt_relay"] = relay

    name = f"reset{'relay' if relay else 'driver'}"
    second = SecondGateway(stack, tmp_path / "gateway", name, configure, bolt=True)
    second.start()
    label = f"Rst{uuid.uuid4().hex[:10]}"
    try:
        assert second.bolt_uri is not None
        port = int(second.bolt_uri.rsplit(":", 1)[1])
        peer = logged_on(Peer(port), stack.token("demo_reader"))
        statement = f"UNWIND range(1, 5000000) AS i RETURN i, '{'x' * 200}' AS `{label}`"
        peer.message(0x10, statement, {}, {})
        assert peer.answer() is not None
        peer.message(0x3F, {"n": -1})
        assert len(peer.read(256 * 1024)) == 256 * 1024  # the answer is being written
        reset_by_peer(peer)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with AuditReader(second.audit) as log:
                decision = next(log.query(RecordFilter(text=label)), None)
                trail = (
                    []
                    if decision is None
                    else [
                        r
                        for r in log.query(RecordFilter())
                        if r["request_id"] == decision["request_id"]
                    ]
                )
            if len(trail) >= 2:
                break
            time.sleep(0.2)
        next_client = logged_on(Peer(port), stack.token("demo_reader"))
        next_client.message(0x10, "RETURN 1 AS one", {}, {})
        answer = next_client.answer()
        next_client.close()
    finally:
        second.stop()
    assert answer is not None and answer.tag == b"\x70", answer
    assert [(r["event"], r["status"]) for r in trail] == [("decision", None), ("outcome", 499)]
    assert trail[1]["error"]["reason"] == "client_closed"
    running = neo4j_admin.execute_query(
        "SHOW TRANSACTIONS YIELD currentQuery WHERE currentQuery CONTAINS $label RETURN 1",
        label=label,
    ).records
    assert running == []
