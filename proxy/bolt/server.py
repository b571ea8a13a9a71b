"""The Bolt front door: a listener whose connections each run a :class:`~proxy.bolt.session.
Session` over the request path.

Bounded on every side a client controls: at most ``max_connections`` at once (beyond that a
connection is closed before its handshake), the handshake within ``handshake_timeout_s`` and a
LOGON accepted within as long again (and after a LOGOFF), each message within
``max_message_bytes`` (:data:`MAX_ANONYMOUS_MESSAGE_BYTES` before a LOGON) and
``message_timeout_s`` of its first byte, between messages ``idle_timeout_s`` of silence at
most, answers the client does not read waited for ``message_timeout_s`` at most, and a result
left open no longer than its statement's time-out (and ``message_timeout_s``). The statements
themselves pass the gateway's admission (:mod:`proxy.gateway.admission`): one refused gets a
transient ``FAILURE``. A connection that breaks the protocol is closed; nothing it sent runs
unless it came down the request path as a whole statement, recorded there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.bolt.conversation import Defunct, Options
from proxy.bolt.session import Session
from proxy.codec import wire
from proxy.errors import ClientDisconnected
from proxy.gateway.path import Gateway
from proxy.tls import server_context

log = logging.getLogger(__name__)

# What the HELLO answer names when Neo4j cannot be asked its version (drivers need "Neo4j/").
_FALLBACK_AGENT = "Neo4j/5"
# Answers held back while more of the client's input waits, at most (then written, and the
# client's reading waited for: a client that only sends is still held back by its reading).
_COALESCE_BYTES = 64 * 1024


# How long a new connection waits for Neo4j's version (asked once, then kept) before it names a
# generic server instead: an unreachable Neo4j must not hold every handshake.
DESCRIBE_TIMEOUT_S = 2.0
# The largest message before LOGON succeeds (and after LOGOFF): an OIDC token or an IAM proof
# takes a few kilobytes.
MAX_ANONYMOUS_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class DoorSettings:
    """The Bolt door's configuration, as ``proxy/app/`` reads it from ``server.bolt_*``."""

    host: str
    port: int
    options: Options
    max_connections: int
    handshake_timeout_s: float
    message_timeout_s: float = 30.0
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    # The workers of one replica (proxy/workers.py) each listen on the port, SO_REUSEPORT.
    reuse_port: bool = False


class BoltDoor:
    """The listener (see the module docstring); :func:`bolt_door` opens and closes it."""

    def __init__(
        self,
        gateway: Gateway,
        settings: DoorSettings,
        describe: Callable[[], Awaitable[dict[str, str]]],
    ) -> None:
        self._gateway = gateway
        self._settings = settings
        self._describe = describe
        self._connections: set[asyncio.Task[Any]] = set()
        self.port = settings.port

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection until it ends, breaks the protocol or idles out."""
        task = asyncio.current_task()
        if task is None or len(self._connections) >= self._settings.max_connections:
            log.warning("bolt: connection limit (%d) reached", self._settings.max_connections)
            writer.close()
            return
        self._connections.add(task)
        not_reading = False
        try:
            await self._serve(reader, writer)
        except (wire.ProtocolViolation, TimeoutError, ConnectionError, ClientDisconnected) as exc:
            not_reading = isinstance(exc, ClientDisconnected)
            log.info("bolt: connection closed: %s", type(exc).__name__)
        except asyncio.CancelledError:
            # The door is closing (what the connection had open ended in _serve); the task ends
            # here rather than hand asyncio's stream callback a cancellation to log.
            log.info("bolt: connection closed by shutdown")
        finally:
            self._connections.discard(task)
            await _closed(writer, within_s=0 if not_reading else self._settings.message_timeout_s)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(self._settings.handshake_timeout_s):
            proposals = await wire.read_handshake(reader)
        version = wire.choose_version(proposals)
        if version is None:
            writer.write(wire.REFUSED)
            await writer.drain()
            return
        writer.write(wire.version_bytes(version))
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")

        outbox = _Outbox(writer, self._settings.message_timeout_s)
        session = Session(
            self._gateway,
            options=self._settings.options,
            server_agent=await self._server_agent(),
            client=_address(peer),
            local_address=_address(local) or f"{self._settings.host}:{self.port}",
            send=outbox.send,
            send_packed=outbox.send_packed,
            flush=outbox.flush,
        )
        options = self._settings.options
        # Until a credential is accepted, a message is small (HELLO, LOGON with a token or an
        # IAM proof): a client nobody knows holds and makes the gateway decode little.
        anonymous = min(options.max_message_bytes, MAX_ANONYMOUS_MESSAGE_BYTES)
        messages = wire.MessageReader(reader, max_bytes=anonymous)
        loop = asyncio.get_running_loop()
        log_on_within = self._settings.handshake_timeout_s
        # Until when the client may stay without a credential accepted (after the handshake, and
        # again after a LOGOFF): RESET and keep-alives do not keep a nameless connection open.
        anonymous_until: float | None = loop.time() + log_on_within
        try:
            async with asyncio.timeout(None) as scope:
                deadline = _Deadline(
                    scope, options.idle_timeout_s, self._settings.message_timeout_s
                )
                try:
                    while True:
                        # A result left open past its statement's time-out (and the message
                        # time-out after it) ends with the connection, as Neo4j would end it.
                        due = session.results_due
                        if due is not None:
                            due += self._settings.message_timeout_s
                        deadline.reading(_earliest(anonymous_until, due))
                        message = await messages.next(deadline.begun)
                        deadline.handling()
                        if message is None:
                            return
                        more = False
                        try:
                            await session.handle(message)
                            if session.logged_on:
                                messages.max_bytes = options.max_message_bytes
                                anonymous_until = None
                            elif anonymous_until is None:
                                messages.max_bytes = anonymous
                                anonymous_until = loop.time() + log_on_within
                            # Drivers pipeline (RUN and PULL in one write): answer them in one.
                            more = messages.waiting and outbox.pending < _COALESCE_BYTES
                        finally:
                            if not more:
                                await outbox.flush()
                finally:
                    deadline.close()
        except Defunct:
            return
        finally:
            await session.close()

    async def _server_agent(self) -> str:
        try:
            async with asyncio.timeout(DESCRIBE_TIMEOUT_S):
                return f"Neo4j/{(await self._describe())['version']}"
        except Exception:  # Neo4j unreachable: the statements will say so; the door still opens
            return _FALLBACK_AGENT

    async def close(self) -> None:
        """End every open connection (each records what it had running)."""
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=10)


class _Deadline:
    """When the message being read must have begun (``idle_s`` after the last one ended) or
    ended (``message_s`` after its first chunk arrived); none while a message is handled.

    Expiry cancels the read through ``scope``, which raises :class:`TimeoutError`. A timer
    checks every quarter of the shorter time-out rather than moving with each message (a timer
    per message cost each statement a few per cent of the gateway's CPU), so a deadline is
    enforced at most that quarter late."""

    def __init__(self, scope: asyncio.Timeout, idle_s: float, message_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._scope = scope
        self._idle_s = idle_s
        self._message_s = message_s
        self._period = min(idle_s, message_s) / 4
        self._when: float | None = None
        self._timer = self._loop.call_later(self._period, self._check)

    def reading(self, until: float | None = None) -> None:
        """A message is awaited: it must begin within the idle time-out (and before ``until``)."""
        when = self._loop.time() + self._idle_s
        self._when = when if until is None else min(when, until)

    def begun(self) -> None:
        when = self._loop.time() + self._message_s
        self._when = when if self._when is None else min(when, self._when)

    def handling(self) -> None:
        self._when = None

    def close(self) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        now = self._loop.time()
        if self._when is not None and now >= self._when:
            self._scope.reschedule(now)  # the scope cancels the read and raises TimeoutError
            return
        self._timer = self._loop.call_later(self._period, self._check)


class _Outbox:
    """A connection's answers, gathered and written in one call once the messages the client
    sent together are answered (and every few hundred records of a long pull): one system call
    where a write per message would make one per record, and one per statement where a write
    per message would make two (a driver sends ``RUN`` and ``PULL`` together).

    A client that stops reading is waited for ``timeout_s`` at most: then
    :class:`ClientDisconnected` (the statement being answered is recorded with it) closes the
    connection, and what it held open (a result, a transaction, an admission slot) ends with it.
    """

    def __init__(self, writer: asyncio.StreamWriter, timeout_s: float) -> None:
        self._writer = writer
        self._timeout_s = timeout_s
        # Below this many bytes buffered, the transport is not paused: drain() returns at once.
        self._low_water = writer.transport.get_write_buffer_limits()[0]
        self._pending = bytearray()
        self._stuck = False

    @property
    def pending(self) -> int:
        """Bytes gathered, not yet written."""
        return len(self._pending)

    async def send(self, tag: int, fields: tuple[Any, ...]) -> None:
        self._pending += wire.encode(tag, *fields)

    async def send_packed(self, message: bytes) -> None:
        """A message already packed (a record relayed as Neo4j sent it); what is gathered is
        written once it passes :data:`_COALESCE_BYTES` (a result's records are otherwise
        written every few hundred, whatever their size: records of a megabyte held hundreds)."""
        self._pending += wire.frame(message)
        if len(self._pending) >= _COALESCE_BYTES:
            await self.flush()

    async def flush(self) -> None:
        """Write what is gathered, and wait while the client is slow to read (back-pressure)."""
        if self._stuck:
            raise _not_reading()
        writer = self._writer
        if writer.transport.is_closing():
            # The client reset or closed the connection (uvloop refuses a write then, with a
            # RuntimeError): what it had running ends as a client that went away ends it.
            raise ConnectionResetError("the client closed the connection")
        if self._pending:
            writer.write(bytes(self._pending))
            self._pending.clear()
        if writer.transport.get_write_buffer_size() <= self._low_water:
            await writer.drain()  # returns at once: no timer for each answer
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await writer.drain()
        except TimeoutError:
            self._stuck = True
            raise _not_reading() from None


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


async def _closed(writer: asyncio.StreamWriter, *, within_s: float) -> None:
    """Close the connection, sending what is still buffered for ``within_s`` at most: a client
    that does not read it is cut off rather than kept (with its socket) for ever."""
    if within_s <= 0:
        writer.transport.abort()
    writer.close()
    try:
        async with asyncio.timeout(within_s):
            await writer.wait_closed()
    except (TimeoutError, asyncio.CancelledError):
        writer.transport.abort()  # a cancellation (the door closing) ends the task here too
    except (ConnectionError, ssl.SSLError):
        pass


def _not_reading() -> ClientDisconnected:
    return ClientDisconnected(
        "The client stopped reading its answers.", reason="client_not_reading"
    )


@contextlib.asynccontextmanager
async def bolt_door(
    gateway: Gateway,
    settings: DoorSettings,
    describe: Callable[[], Awaitable[dict[str, str]]],
) -> AsyncIterator[BoltDoor]:
    """Listen on the configured address until the block ends."""
    door = BoltDoor(gateway, settings, describe)
    tls = _tls(settings)
    server = await asyncio.start_server(
        door.connection,
        settings.host,
        settings.port,
        ssl=tls,
        # asyncio completes TLS before the door sees the connection: its handshake is held
        # to the door's time-out too (asyncio's own is 60 s).
        ssl_handshake_timeout=settings.handshake_timeout_s if tls is not None else None,
        reuse_port=settings.reuse_port or None,
    )
    door.port = server.sockets[0].getsockname()[1]
    log.info("bolt: listening on %s:%d", settings.host, door.port)
    try:
        yield door
    finally:
        server.close()
        await door.close()
        await server.wait_closed()


def _tls(settings: DoorSettings) -> ssl.SSLContext | None:
    """A server TLS context (``bolt+s://``, ``neo4j+s://``) if a certificate is configured."""
    if settings.tls_certificate is None:
        return None
    return server_context(settings.tls_certificate, settings.tls_key)


def _address(sockname: Any) -> str | None:
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host = sockname[0]
        return f"[{host}]:{sockname[1]}" if ":" in str(host) else f"{host}:{sockname[1]}"
    return None
