"""The Bolt door in-process, with the request path's collaborators faked at their seams: TLS, the
bounds a client controls (connections, handshake and idle time-outs), and a generator of message
sequences, hostile or not, that hunts for a crash, a statement run without its record, or a
record left without its end."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import neo4j
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.bolt.conversation import Options
from proxy.bolt.server import BoltDoor, DoorSettings, bolt_door
from proxy.bolt.transactions import TransactionSlots
from proxy.codec import wire
from proxy.codec.packstream import Structure, pack, unpack
from proxy.policy import Decision
from proxy.settings import ServerSettings
from proxy.tracing import NO_TRACING, Tracing
from tests.fakes import (
    FakeAudit,
    FakeExecutor,
    FakePolicy,
    StuckExecutor,
    fake_gateway,
)

V54 = bytes((0, 0, 4, 5))


class TextPolicy(FakePolicy):
    """Allows every statement but those that say FORBIDDEN."""

    async def decide(self, document: dict[str, Any]) -> Decision:
        self.allow = "FORBIDDEN" not in json.dumps(document)
        return await super().decide(document)


@dataclass
class Rig:
    door: BoltDoor
    audit: FakeAudit
    executor: FakeExecutor


@asynccontextmanager
async def rig(
    *,
    rows: int = 3,
    max_connections: int = 10,
    handshake_timeout_s: float = 5.0,
    idle_timeout_s: float = 5.0,
    message_timeout_s: float = 5.0,
    max_message_bytes: int = 64 * 1024,
    max_held_result_bytes: int = ServerSettings().bolt_max_held_result_bytes,
    tls: tuple[Path, Path] | None = None,
    neo4j_answers: bool = True,
    executor: FakeExecutor | None = None,
    transactions_per_identity: int = 16,
    tracing: Tracing = NO_TRACING,
) -> AsyncIterator[Rig]:
    audit = FakeAudit()
    executor = executor or FakeExecutor(rows=[[i] for i in range(rows)])
    gateway = fake_gateway(policy=TextPolicy(), executor=executor, audit=audit, tracing=tracing)
    settings = DoorSettings(
        host="127.0.0.1",
        port=0,
        options=Options(
            home_database="neo4j",
            advertised_address=None,
            routing_ttl_s=300,
            idle_timeout_s=idle_timeout_s,
            max_message_bytes=max_message_bytes,
            max_held_result_bytes=max_held_result_bytes,
            transactions=TransactionSlots(transactions_per_identity),
        ),
        max_connections=max_connections,
        handshake_timeout_s=handshake_timeout_s,
        message_timeout_s=message_timeout_s,
        tls_certificate=tls[0] if tls else None,
        tls_key=tls[1] if tls else None,
    )

    async def describe() -> dict[str, str]:
        if not neo4j_answers:
            await asyncio.Event().wait()  # an unreachable Neo4j: never answers
        return {"version": "5.26.0", "edition": "community"}

    async with bolt_door(gateway, settings, describe) as door:
        yield Rig(door, audit, executor)


async def conversation(port: int, data: bytes) -> bytes:
    """Send ``data``, close the sending side, and read everything the server answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""  # closed by the server before it read everything: nothing answered
    finally:
        with suppress(ConnectionResetError):
            await closed(writer)


async def closed(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


def handshake() -> bytes:
    return wire.MAGIC + V54 + bytes(12)


def message(tag: int, *fields: Any) -> bytes:
    return wire.encode(tag, *fields)


LOGGED_ON = (
    handshake()
    + message(0x01, {"user_agent": "test/1"})
    + message(0x6A, {"scheme": "bearer", "credentials": "good"})
)


def answers(data: bytes) -> list[Structure]:
    """The messages in a server's answer (after its four handshake bytes)."""
    found: list[Structure] = []
    rest, body = data[4:], b""
    while len(rest) >= 2:
        size, rest = int.from_bytes(rest[:2], "big"), rest[2:]
        if size == 0:
            value = unpack(body)
            assert isinstance(value, Structure)
            found.append(value)
            body = b""
            continue
        body, rest = body + rest[:size], rest[size:]
    return found


# ---------------------------------------------------------------------------- TLS and bounds


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "bolt.pem", directory / "bolt.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_serves_bolt_s(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path)

    async def scenario() -> list[Any]:
        async with rig(tls=(cert, key)) as r:
            uri = f"bolt://127.0.0.1:{r.door.port}"  # bolt+s, with our own CA trusted
            trusted = neo4j.TrustCustomCAs(str(cert))
            async with neo4j.AsyncGraphDatabase.driver(
                uri, auth=neo4j.bearer_auth("good"), encrypted=True, trusted_certificates=trusted
            ) as driver:
                records, _, _ = await driver.execute_query("RETURN 1 AS x", database_="neo4j")
            with pytest.raises(asyncio.IncompleteReadError):  # plain Bolt on a TLS port
                reader, writer = await asyncio.open_connection("127.0.0.1", r.door.port)
                writer.write(handshake())
                await reader.readexactly(4)
            await closed(writer)
            return [record["x"] for record in records]

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_a_client_silent_in_the_tls_handshake_is_closed_within_the_handshake_time_out(
    tmp_path: Path,
) -> None:
    """asyncio finishes TLS before the door sees the connection, with a 60 s time-out of its
    own unless told the door's."""

    async def scenario() -> tuple[bytes, float]:
        async with rig(tls=certificate(tmp_path), handshake_timeout_s=0.3) as r:
            reader, writer = await asyncio.open_connection("127.0.0.1", r.door.port)
            started = time.monotonic()
            mute = await asyncio.wait_for(reader.read(), 10)  # never says ClientHello
            waited = time.monotonic() - started
            await closed(writer)
            return mute, waited

    mute, waited = asyncio.run(scenario())
    assert mute == b"" and waited < 5, waited


def test_connections_beyond_the_limit_are_closed() -> None:
    async def scenario() -> bytes:
        async with rig(max_connections=1) as r:
            reader, writer = await asyncio.open_connection("127.0.0.1", r.door.port)
            writer.write(handshake())
            assert await reader.readexactly(4) == V54  # the one allowed connection
            second = await conversation(r.door.port, handshake())
            await closed(writer)
            return second

    assert asyncio.run(scenario()) == b""


def test_silent_clients_are_closed() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        async with rig(handshake_timeout_s=0.3, idle_timeout_s=0.3) as r:
            reader, writer = await asyncio.open_connection("127.0.0.1", r.door.port)
            mute = await asyncio.wait_for(reader.read(), 5)  # never sends a handshake
            await closed(writer)
            reader, writer = await asyncio.open_connection("127.0.0.1", r.door.port)
            writer.write(handshake() + message(0x01, {"user_agent": "t"}))
            idle = await asyncio.wait_for(reader.read(), 5)  # says hello, then nothing
            await closed(writer)
            return mute, idle

    mute, idle = asyncio.run(scenario())
    assert mute == b""
    assert [a.tag for a in answers(idle)] == [b"\x70"]


def test_a_client_must_log_on_within_the_handshake_time_out() -> None:
    """RESET after RESET keeps a connection busy but nameless: it is closed all the same, while
    one that logged on stays."""

    async def resetting(port: int, opening: bytes) -> float | None:
        """Seconds until the server closed, sending RESET every 50 ms; None if it did not in 2 s."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        try:
            writer.write(opening)
            while time.monotonic() - started < 2:
                writer.write(message(0x0F))
                await writer.drain()
                with suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(65536), 0.05) == b"":
                        return time.monotonic() - started
            return None
        except ConnectionError:
            return time.monotonic() - started
        finally:
            with suppress(ConnectionError):
                await closed(writer)

    async def scenario() -> tuple[float | None, float | None]:
        async with rig(handshake_timeout_s=0.3, idle_timeout_s=5, message_timeout_s=0.3) as r:
            nameless = await resetting(
                r.door.port, handshake() + message(0x01, {"user_agent": "t"})
            )
            named = await resetting(r.door.port, LOGGED_ON)
            return nameless, named

    nameless, named = asyncio.run(scenario())
    assert nameless is not None and nameless < 1.5
    assert named is None


def test_a_result_left_open_past_its_statements_time_out_ends_with_the_connection() -> None:
    """Neo4j ends a statement at its time-out; a result the gateway holds for a client that
    neither reads it nor lets it go must end then too (it holds an admission slot)."""

    async def scenario() -> tuple[bytes, float, list[str]]:
        async with rig(rows=5000, idle_timeout_s=30, message_timeout_s=0.3) as r:
            reader, writer = await asyncio.open_connection("127.0.0.1", r.door.port)
            started = time.monotonic()
            writer.write(LOGGED_ON + message(0x10, "UNWIND rows", {}, {}) + message(0x3F, {"n": 1}))
            answered = await asyncio.wait_for(reader.read(), 10)  # until the server closes
            seconds = time.monotonic() - started
            await closed(writer)
            return answered, seconds, [e.event for e in r.audit.events]

    answered, seconds, events = asyncio.run(scenario())
    assert [a.tag for a in answers(answered)][-2:] == [b"\x71", b"\x70"]  # a row, has_more
    # The policy's 5 s for the statement and the message time-out, not the idle time-out's 30 s.
    assert 5 < seconds < 15
    assert events == ["decision", "outcome"]


def test_a_statement_running_when_the_door_closes_leaves_its_outcome() -> None:
    """The door closing (the gateway stopping) cancels its connections: a statement of a
    transaction still running on Neo4j then must leave its outcome beside its decision, or
    verify reports a decision unanswered for a statement that was rolled back."""

    async def scenario() -> Rig:
        stuck = StuckExecutor()
        async with rig(executor=stuck) as r:
            _, writer = await asyncio.open_connection("127.0.0.1", r.door.port)
            writer.write(LOGGED_ON + message(0x11, {}) + message(0x10, "CREATE (:N)", {}, {}))
            await writer.drain()
            await asyncio.wait_for(stuck.running.wait(), 5)
            await r.door.close()
            writer.close()
        return r

    r = asyncio.run(scenario())
    assert [(e.event, e.status) for e in r.audit.events] == [
        ("decision", None),
        ("outcome", 503),
        ("transaction", 202),
    ]
    (upstream,) = r.executor.transactions
    assert upstream.ended == "rollback" and upstream.closed


def test_hello_is_answered_while_neo4j_does_not_answer() -> None:
    async def scenario() -> tuple[bytes, float]:
        async with rig(neo4j_answers=False) as r:
            started = time.monotonic()
            answered = await conversation(
                r.door.port, handshake() + message(0x01, {"user_agent": "t"})
            )
            return answered, time.monotonic() - started

    answered, seconds = asyncio.run(scenario())
    (hello,) = answers(answered)
    assert hello.tag == b"\x70" and hello.fields[0]["server"].startswith("Neo4j/")
    assert seconds < 4  # the version is given up on after DESCRIBE_TIMEOUT_S


def test_a_message_begun_must_end_within_its_deadline() -> None:
    """Silence between messages may last the idle timeout; a message trickled in may not."""

    async def scenario() -> tuple[bytes, float]:
        async with rig(idle_timeout_s=30, message_timeout_s=0.3) as r:
            reader, writer = await asyncio.open_connection("127.0.0.1", r.door.port)
            writer.write(handshake())
            assert await reader.readexactly(4) == V54
            started = time.monotonic()
            writer.write((100).to_bytes(2, "big") + b"\xb1\x01")  # 2 of a chunk's 100 bytes
            answered = await asyncio.wait_for(reader.read(), 10)
            await closed(writer)
            return answered, time.monotonic() - started

    answered, seconds = asyncio.run(scenario())
    assert answered == b""
    assert 0.2 < seconds < 5  # the message deadline, far from the idle timeout's 30 s


def test_a_client_that_stops_reading_is_closed_and_its_statement_ends() -> None:
    """Answers the client does not take fill the socket: the door waits the message deadline
    for them, not for ever, then closes, ending (and recording) what the client held open."""

    async def scenario() -> tuple[list[str], list[Any], int, float]:
        async with rig(rows=400_000, idle_timeout_s=30, message_timeout_s=0.3) as r:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # set before connecting
            sock.connect(("127.0.0.1", r.door.port))
            sock.setblocking(False)
            _reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(
                LOGGED_ON + message(0x10, "UNWIND rows", {}, {}) + message(0x3F, {"n": -1})
            )
            for _ in range(200):  # bounded: 10 s
                if r.audit.events:  # the statement runs, its rows on their way
                    break
                await asyncio.sleep(0.05)
            started = time.monotonic()
            for _ in range(200):
                if not r.door._connections:
                    break
                await asyncio.sleep(0.05)
            seconds = time.monotonic() - started
            left = len(r.door._connections)
            await closed(writer)
            reasons = [(e.error or {}).get("reason") for e in r.audit.events]
            return [e.event for e in r.audit.events], reasons, left, seconds

    events, reasons, left, seconds = asyncio.run(scenario())
    assert left == 0, "the connection is still open, waiting on a client that does not read"
    assert events == ["decision", "outcome"]
    assert reasons == [None, "client_not_reading"]
    assert seconds < 8


@pytest.mark.parametrize("rows", [50, 5000])
def test_a_result_read_ahead_for_the_next_statement_is_held_within_its_bound(rows: int) -> None:
    """A transaction's second RUN before its first result was read: the first result's rows are
    read ahead and held for the client, up to server.bolt_max_held_result_bytes; beyond, the
    first statement fails (recorded), the second gets the FAILURE, the transaction rolls back."""
    conversation_ = (
        LOGGED_ON
        + message(0x11, {})
        + message(0x10, "UNWIND first", {}, {})
        + message(0x10, "UNWIND second", {}, {})
        + message(0x3F, {"n": -1, "qid": 0})
        + message(0x3F, {"n": -1, "qid": 1})
        + message(0x12)
    )

    async def scenario() -> tuple[list[Structure], Rig]:
        async with rig(rows=rows, max_held_result_bytes=20_000) as r:
            return answers(await conversation(r.door.port, conversation_)), r

    found, r = asyncio.run(scenario())
    tags = [answer.tag for answer in found[2:]]  # after HELLO's and LOGON's SUCCESS
    outcomes = [e for e in r.audit.events if e.event == "outcome"]
    (upstream,) = r.executor.transactions
    if rows == 50:  # 50 rows take about 2 KB: held, then pulled, then committed
        assert tags == [b"\x70"] * 3 + ([b"\x71"] * 50 + [b"\x70"]) * 2 + [b"\x70"]
        assert [e.status for e in outcomes] == [202, 202] and upstream.ended == "commit"
        return
    failure = found[4]
    assert failure.tag == b"\x7f"
    assert "server.bolt_max_held_result_bytes" in failure.fields[0]["message"]
    assert tags[3:] == [b"\x7e"] * 3  # the PULLs and COMMIT IGNORED after the FAILURE
    first = outcomes[0]
    assert first.status == 413 and first.error is not None
    assert first.error["reason"] == "held_result_too_large"
    assert upstream.ended == "rollback"


def test_a_failed_transaction_gives_its_slot_back_before_the_reset() -> None:
    """A transaction whose statement failed was rolled back and holds nothing on Neo4j, but its
    identity's slot was held until the client's RESET, which a client need never send (until
    its connection idled out, 300 s)."""

    async def scenario() -> list[Structure]:
        async with rig(transactions_per_identity=1) as r:
            r.executor.fail_on = "boom"
            reader, writer = await asyncio.open_connection("127.0.0.1", r.door.port)
            try:  # stays open, FAILED, without a RESET
                writer.write(LOGGED_ON + message(0x11, {}) + message(0x10, "RETURN boom", {}, {}))
                received = b""
                while b"\x7f" not in received[4:]:  # the FAILURE
                    received += await asyncio.wait_for(reader.read(1 << 16), 10)
                second = LOGGED_ON + message(0x11, {}) + message(0x10, "RETURN 1", {}, {})
                second += message(0x3F, {"n": -1}) + message(0x12)  # PULL, COMMIT
                return answers(await conversation(r.door.port, second))
            finally:
                await closed(writer)

    found = asyncio.run(scenario())[2:]  # after HELLO's and LOGON's SUCCESS
    assert found[0].tag == b"\x70", f"the second BEGIN was refused: {found[0].fields}"
    assert found[-1].tag == b"\x70" and found[-1].fields[0]["bookmark"]  # committed


def test_results_read_ahead_are_held_within_one_bound_together() -> None:
    """server.bolt_max_held_result_bytes bounds what a connection holds for its client, not each
    result: a client that starts statement after statement of a transaction without reading
    any (each result under the bound) held the bound once per statement, without end."""
    statements = 5  # 300 rows take about 12 KB: each under the 20 KB bound, two over it
    conversation_ = (
        LOGGED_ON
        + message(0x11, {})
        + b"".join(message(0x10, f"UNWIND s{i}", {}, {}) for i in range(statements))
        + message(0x12)
    )

    async def scenario() -> tuple[list[Structure], Rig]:
        async with rig(rows=300, max_held_result_bytes=20_000) as r:
            return answers(await conversation(r.door.port, conversation_)), r

    found, r = asyncio.run(scenario())
    tags = [answer.tag for answer in found[3:]]  # after HELLO's, LOGON's and BEGIN's SUCCESS
    assert tags[:2] == [b"\x70", b"\x70"]  # the first two RUNs: the first result is held
    assert tags[2] == b"\x7f", "a third result was held beside two others over the bound"
    assert "server.bolt_max_held_result_bytes" in found[5].fields[0]["message"]
    outcomes = [e for e in r.audit.events if e.event == "outcome"]
    assert [(e.error or {}).get("reason") for e in outcomes][:2] == [None, "held_result_too_large"]
    (upstream,) = r.executor.transactions
    assert upstream.ended == "rollback"


def test_large_records_are_written_as_they_come_not_gathered_by_the_hundred() -> None:
    """A pulled result's records were gathered 256 at a time before a write, whatever their
    size: records of a megabyte each (a long string or list per row, which a short statement
    makes) held hundreds of megabytes for one connection, its client reading or not."""
    record = "x" * 1_000_000
    conversation_ = (
        LOGGED_ON
        + message(0x10, "RETURN large", {}, {})
        + message(0x3F, {"n": -1})
        + message(0x02)  # GOODBYE: the gateway closes once it has answered
    )

    async def scenario() -> tuple[int, int]:
        async with rig() as r:
            r.executor.rows = [[record]] * 100
            reader, writer = await asyncio.open_connection("127.0.0.1", r.door.port)
            tracemalloc.start()
            try:
                writer.write(conversation_)
                received = 0
                while chunk := await reader.read(1 << 16):  # read and dropped as it comes
                    received += len(chunk)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
                await closed(writer)
            return received, peak

    received, peak = asyncio.run(scenario())
    assert received > 100 * len(record)  # every record reached the client
    assert peak < 32 * 1024 * 1024, f"{peak / 1e6:.0f} MB held while the records went out"


def test_a_large_message_waits_for_a_logon() -> None:
    """Before a credential is accepted a message may be 64 KiB; after it, the configured size."""
    padding = "x" * (70 * 1024)

    async def scenario() -> tuple[bytes, bytes]:
        async with rig(max_message_bytes=1024 * 1024) as r:
            early = handshake() + message(0x01, {"user_agent": "t", "padding": padding})
            refused = await conversation(r.door.port, early)
            late = LOGGED_ON + message(0x10, "RETURN $p", {"p": padding}, {})
            accepted = await conversation(r.door.port, late + message(0x3F, {"n": -1}))
            return refused, accepted

    refused, accepted = asyncio.run(scenario())
    assert answers(refused) == []  # closed, nothing answered
    assert [a.tag for a in answers(accepted)] == [b"\x70"] * 3 + [b"\x71"] * 3 + [b"\x70"]


def test_what_a_nameless_client_sends_costs_little() -> None:
    """Found by review: before a LOGON, a 64 KiB RESET holding 65,505 empty lists was decoded
    whole (about 65 ms of CPU) and ignored, and RESETs kept coming. Now a field on a fieldless
    message closes the connection before decoding, a nameless message is decoded within tight
    limits, and at most 32 come before a LOGON."""
    empty_lists = b"\xb1\x0f\xd5" + (65_505).to_bytes(2, "big") + b"\x90" * 65_505
    hello = message(0x01, {"user_agent": "t"})

    async def scenario() -> list[bytes]:
        async with rig() as r:
            answered = []
            for data in (
                handshake() + wire.frame(empty_lists),  # a RESET with a field
                handshake() + message(0x01, {"user_agent": "t", "x": [[]] * 65}),
                handshake() + message(0x01, {"user_agent": "t", "x": [[[[[]]]]]}),
                handshake() + hello + message(0x0F) * 40,
                handshake() + hello + message(0x0F) * 30,
            ):
                started = time.process_time()
                answered.append(await conversation(r.door.port, data))
                assert time.process_time() - started < 1.0
            return answered

    fields, containers, depth, flood, within = asyncio.run(scenario())
    for refused, why in ((fields, "carries no fields"), (containers, "64"), (depth, "deeper")):
        (failure,) = answers(refused)  # and closed
        assert failure.tag == b"\x7f" and why in failure.fields[0]["message"], failure
    # HELLO and 31 RESETs answered, the 33rd message refused, the rest never read.
    assert [a.tag for a in answers(flood)] == [b"\x70"] * 32 + [b"\x7f"]
    assert [a.tag for a in answers(within)] == [b"\x70"] * 31


def test_a_driver_may_log_on_again_as_often_as_its_token_is_renewed() -> None:
    """Found by review: a driver's auth manager renews its token on a pooled connection with
    LOGOFF and LOGON (Bolt 5.1's re-authentication), and each LOGON counted towards the 32
    messages a connection may send before a LOGON, over the connection's whole life: the 31st
    renewal was refused as a protocol violation and the connection closed. The limit holds for
    what comes before each accepted LOGON, not for a connection's life."""
    renew = message(0x6B) + message(0x6A, {"scheme": "bearer", "credentials": "good"})
    run = message(0x10, "RETURN 1", {}, {}) + message(0x3F, {"n": -1})

    async def scenario() -> bytes:
        async with rig() as r:
            return await conversation(r.door.port, LOGGED_ON + renew * 40 + run)

    tags = [a.tag for a in answers(asyncio.run(scenario()))]
    assert tags == [b"\x70"] * (2 + 80 + 1) + [b"\x71"] * 3 + [b"\x70"]


def test_a_chunked_message_larger_than_one_chunk() -> None:
    statement = "RETURN '" + "x" * 70_000 + "' AS long"

    async def scenario() -> bytes:
        async with rig() as r:
            big = LOGGED_ON + message(0x10, statement[:60_000] + "'", {}, {})
            return await conversation(r.door.port, big)

    # 60 kB is within the rig's 64 KiB limit but needs two chunks of 0xFFFF at most.
    tags = [a.tag for a in answers(asyncio.run(scenario()))]
    assert tags[:3] == [b"\x70", b"\x70", b"\x70"]


# ---------------------------------------------------------------------------- the generator

STATEMENTS = ["RETURN 1", "CREATE (:N)", "MATCH (n) RETURN n // FORBIDDEN", "CALL missing.x()"]
N = st.sampled_from([-1, 1, 2, 5, 0, -7, "x"])


def _messages() -> st.SearchStrategy[bytes]:
    run = st.builds(
        lambda s, extra: message(0x10, s, {}, extra),
        st.sampled_from(STATEMENTS),
        st.sampled_from([{}, {"mode": "r"}, {"imp_user": "neo4j"}, {"bookmarks": [1]}]),
    )
    pull = st.builds(
        lambda n, qid: message(0x3F, {"n": n, "qid": qid}), N, st.sampled_from([-1, 0, 1, 9])
    )
    discard = st.builds(lambda n: message(0x2F, {"n": n}), N)
    fixed = st.sampled_from(
        [
            message(0x01, {"user_agent": "fuzz"}),
            message(0x6A, {"scheme": "bearer", "credentials": "good"}),
            message(0x6A, {"scheme": "bearer", "credentials": "bad"}),
            message(0x6B),
            message(0x11, {}),
            message(0x11, {"mode": "r", "tx_metadata": {"dag_id": "evil"}}),
            message(0x12),
            message(0x13),
            message(0x0F),
            message(0x54, 1),
            message(0x66, {"address": "x:1"}, [], {"db": None}),
            message(0x10, 1, 2, 3),
            message(0x55),
            wire.frame(b"\xb1\x10\xc7"),
            wire.frame(pack([1, 2])),
            b"\x00\x00",
        ]
    )
    garbage = st.binary(min_size=1, max_size=40).map(wire.frame)
    return st.one_of(run, pull, discard, fixed, garbage)


PREFIXES = st.sampled_from([LOGGED_ON, handshake()])
SEQUENCES = st.lists(_messages(), max_size=14)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=PREFIXES, sequence=SEQUENCES)
def test_no_message_sequence_breaks_the_rules(prefix: bytes, sequence: list[bytes]) -> None:
    """Whatever a client sends: only Bolt's four answers come back, the door keeps serving,
    nothing runs without its decision on record first, and every call's records end."""
    holds(prefix, sequence)


@pytest.mark.fuzz
def test_many_message_sequences(pytestconfig: pytest.Config) -> None:
    """The same, on demand and for as long as asked: ``pytest -m fuzz --fuzz-examples N``."""
    examples = int(pytestconfig.getoption("--fuzz-examples"))
    run = settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )(given(prefix=PREFIXES, sequence=SEQUENCES)(holds))
    run()


def holds(prefix: bytes, sequence: list[bytes]) -> None:
    """Send ``prefix`` and ``sequence`` on one connection, then check the rules."""

    async def scenario() -> tuple[bytes, bytes, Rig]:
        async with rig(rows=3) as r:
            data = await conversation(r.door.port, prefix + b"".join(sequence))
            after = await conversation(r.door.port, LOGGED_ON + message(0x02))
        return data, after, r

    data, after, r = asyncio.run(scenario())
    assert data[:4] == V54
    assert {a.tag for a in answers(data)} <= {b"\x70", b"\x71", b"\x7e", b"\x7f"}
    assert [a.tag for a in answers(after)] == [b"\x70", b"\x70"], "the door stopped serving"
    ran = len(r.executor.ran) + sum(len(t.ran) for t in r.executor.transactions)
    events = r.audit.events
    allowed = [e for e in events if e.event == "decision" and e.status is None]
    assert ran <= len(allowed), "a statement ran without its decision on record"
    ends = Counter(e.request_id for e in events if e.event == "outcome")
    assert all(ends[e.request_id] == 1 for e in allowed), "a decision was left without its end"
    assert all(t.ended is not None or t.closed for t in r.executor.transactions)


# ---------------------------------------------------------------------------- coalesced answers


class EmptyTransport:
    """A transport whose buffer is always empty (every write taken at once)."""

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (16_384, 65_536)

    def abort(self) -> None:
        return None

    def is_closing(self) -> bool:
        return False


class CountingWriter:
    """A connection's sending side that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.wrote = asyncio.Event()
        self.transport = EmptyTransport()

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.wrote.set()

    async def drain(self) -> None:
        return None

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 7687)

    def close(self) -> None:
        return None

    async def wait_closed(self) -> None:
        return None


def test_messages_sent_together_are_answered_in_one_write() -> None:
    """A driver sends RUN and PULL in one write: their answers leave in one too (a write per
    message would cost a system call each)."""

    async def scenario() -> list[bytes]:
        async with rig() as r:
            reader, writer = asyncio.StreamReader(), CountingWriter()
            reader.feed_data(LOGGED_ON + message(0x10, "RETURN 1", {}, {}) + message(0x3F, {}))
            reader.feed_eof()
            await r.door.connection(reader, cast(asyncio.StreamWriter, writer))
            return writer.writes

    writes = asyncio.run(scenario())
    assert writes[0] == V54  # the handshake's answer
    assert len(writes) == 2
    tags = [a.tag for a in answers(b"".join(writes))]
    assert tags == [b"\x70", b"\x70", b"\x70", b"\x71", b"\x71", b"\x71", b"\x70"]


def test_an_answer_is_not_held_back_by_a_keep_alive_or_by_silence() -> None:
    """Only the start of a next message holds an answer back: after a keep-alive chunk, or
    with nothing more sent, the answer leaves at once."""

    async def scenario() -> list[bytes]:
        async with rig() as r:
            reader, writer = asyncio.StreamReader(), CountingWriter()
            reader.feed_data(handshake() + message(0x01, {"user_agent": "t/1"}) + b"\x00\x00")
            serving = asyncio.create_task(
                r.door.connection(reader, cast(asyncio.StreamWriter, writer))
            )
            for _ in range(2):  # bounded: the handshake's answer, then HELLO's
                if len(writer.writes) < 2:
                    writer.wrote.clear()
                    await asyncio.wait_for(writer.wrote.wait(), 5)
            assert len(writer.writes) == 2  # HELLO answered with the connection still open
            reader.feed_eof()
            await asyncio.wait_for(serving, 5)
            return writer.writes

    writes = asyncio.run(scenario())
    assert [a.tag for a in answers(b"".join(writes))] == [b"\x70"]
