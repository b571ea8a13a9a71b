"""A Bolt client of our own for the statements the Bolt door relays, and its pools.

The official driver costs about 0.7 ms of CPU per statement in this process (sessions, result
objects, records hydrated into Python values); the Bolt door needs none of that: a caller's
records are already Bolt, so they can go back out as Neo4j sent them. :class:`BoltConnection`
speaks just enough of Bolt 5.1 to 5.4 to log in as one user and run statements (``RUN``,
``PULL``, ``DISCARD``, ``BEGIN``, ``COMMIT``, ``ROLLBACK``, ``RESET``), handing back each
answer as its raw message; :class:`BoltPool` keeps one user's idle connections, so a connection
never changes user (no ``LOGOFF``/``LOGON``, no password check per statement).

What is trusted: Neo4j, at the configured address. A message from it is still size-limited.
The caller of :meth:`BoltConnection.exchange` keeps the connection's state right: after a
``FAILURE`` the connection is reset before it is used again (:meth:`BoltPool.release` does so).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from proxy.codec import wire
from proxy.codec.packstream import PackStreamError, Structure, unpack
from proxy.errors import GraphFailed, GraphUnavailable, NothingSent, PayloadTooLarge
from proxy.neo4j.errors import from_code

# Message tags (Bolt 5): requests, then answers.
HELLO, LOGON, GOODBYE, RESET = 0x01, 0x6A, 0x02, 0x0F
RUN, BEGIN, COMMIT, ROLLBACK, DISCARD, PULL = 0x10, 0x11, 0x12, 0x13, 0x2F, 0x3F
SUCCESS, RECORD, IGNORED, FAILURE = 0x70, 0x71, 0x7E, 0x7F
# What we propose: 5.4 down to 5.1 (LOGON first came in 5.1); every 5.x encodes values alike,
# so a record passes to a caller who negotiated another 5.x with the Bolt door unchanged.
_PROPOSAL = bytes((0, 3, 4, 5)) + bytes(12)
# Neo4j's largest answer message we accept (a record of 64 MiB is a statement gone wrong).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_SCHEMES = {"bolt": None, "neo4j": None, "bolt+s": "verify", "neo4j+s": "verify"}
_SCHEMES |= {"bolt+ssc": "trust", "neo4j+ssc": "trust"}


@dataclass(frozen=True, slots=True)
class Address:
    """Where Neo4j's Bolt port is, and whether (and how) to speak TLS to it."""

    host: str
    port: int
    tls: str | None = None  # None, "verify" (+s) or "trust" (+ssc: any certificate)

    @classmethod
    def parse(cls, uri: str) -> Address:
        """The address of a ``bolt://`` or ``neo4j://`` URI (``+s``/``+ssc`` too). A
        ``neo4j://`` URI is dialled directly: the relay talks to the one server named."""
        parts = urlsplit(uri)
        if parts.scheme not in _SCHEMES or not parts.hostname:
            raise ValueError(f"not a Bolt URI: {uri!r}")
        return cls(parts.hostname, parts.port or 7687, _SCHEMES[parts.scheme])

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.create_default_context()
        if self.tls == "trust":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


class Refused(Exception):
    """Neo4j answered ``FAILURE``: its metadata (``code``, ``message``) says why."""

    def __init__(self, metadata: dict[str, Any]) -> None:
        super().__init__(metadata.get("code"))
        self.code = str(metadata.get("code") or "Neo.DatabaseError.General.UnknownError")
        self.message = str(metadata.get("message") or self.code)


def tag_of(message: bytes) -> int:
    """An answer's tag (every answer is a small structure: marker, then tag)."""
    return message[1]


def metadata_of(message: bytes) -> dict[str, Any]:
    """The metadata map of a ``SUCCESS`` or ``FAILURE``."""
    decoded = unpack(message)
    if not isinstance(decoded, Structure) or len(decoded.fields) != 1:
        raise PackStreamError("an answer without its metadata")
    found = decoded.fields[0]
    if not isinstance(found, dict):
        raise PackStreamError("an answer whose metadata is no map")
    return found


class BoltConnection:
    """One connection to Neo4j, logged in as one user (see the module docstring)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, lifetime_s: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._answers = wire.MessageReader(
            reader, max_bytes=MAX_MESSAGE_BYTES, max_keep_alives=math.inf
        )
        self._sent = False  # written since the last drain
        self._expires = time.monotonic() + lifetime_s
        self.broken = False  # lost, or in a state nobody knows: never used again
        self.failed = False  # Neo4j answered FAILURE: RESET before the next use
        # A BEGIN sent whose COMMIT or ROLLBACK has not succeeded: RESET before the next use,
        # whatever ended its user's block (Neo4j then rolls it back), or the next statement of
        # the pool's user would run inside it.
        self.in_transaction = False
        # Never yet given back to the pool: a connection that sat idle may have been ended
        # meanwhile, and a statement whose first message found it so is sent again elsewhere.
        self.fresh = True

    @classmethod
    async def open(
        cls, address: Address, user: str, password: str, *, lifetime_s: float, timeout_s: float
    ) -> BoltConnection:
        """Connect, agree on a version and log in; a refused login raises :class:`Refused`."""
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(
                    address.host, address.port, ssl=address.ssl_context()
                )
                connection = cls(reader, writer, lifetime_s=lifetime_s)
                try:
                    await connection._log_in(user, password)
                except BaseException:
                    connection.close()
                    raise
                return connection
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise GraphUnavailable(reason="ServiceUnavailable") from exc

    async def _log_in(self, user: str, password: str) -> None:
        self._writer.write(wire.MAGIC + _PROPOSAL)
        agreed = await self._reader.readexactly(4)
        minor, major = agreed[2], agreed[3]
        if major != 5 or not 1 <= minor <= 4:
            raise GraphFailed(reason="bolt_version_refused")
        hello: dict[str, Any] = {"user_agent": "cyphergate"}
        if minor >= 3:
            hello["bolt_agent"] = {"product": "cyphergate"}
        auth = {"scheme": "basic", "principal": user, "credentials": password}
        answers = await self.exchange(wire.encode(HELLO, hello) + wire.encode(LOGON, auth), 2)
        for answer in answers:
            if tag_of(answer) == FAILURE:
                raise Refused(metadata_of(answer))

    @property
    def usable(self) -> bool:
        """Neither lost nor past its lifetime (a closed socket shows as end of input, a reset
        one as the reader's exception)."""
        reader = self._reader
        return (
            not self.broken
            and time.monotonic() < self._expires
            and not reader.at_eof()
            and reader.exception() is None
        )

    def send(self, messages: bytes) -> None:
        """Queue framed ``messages`` (written with the next read). :class:`NothingSent` if the
        connection is found lost as they are written: closed before, or the write itself
        refused (the transport closes at once only when its first send fails whole)."""
        transport = self._writer.transport
        if not transport.is_closing():  # (uvloop raises on a write to a closed transport)
            self._writer.write(messages)
            if not transport.is_closing():
                self._sent = True
                return
        self.broken = True
        raise NothingSent

    async def receive(self) -> bytes:
        """The next answer, whole."""
        try:
            if self._sent:
                self._sent = False
                await self._writer.drain()
            message = await self._answers.next()
        except wire.MessageTooLarge as exc:
            # The statement's doing, not Neo4j's absence: a transient error would have drivers
            # run it again (a write too), to fail alike. The stream is lost halfway through.
            self.broken = True
            raise PayloadTooLarge(
                f"A row of the statement's result takes more than {self._answers.max_bytes}"
                " bytes, more than the gateway relays: return less of it in one row.",
                reason="record_too_large",
            ) from exc
        except (OSError, wire.ProtocolViolation, asyncio.IncompleteReadError) as exc:
            self.broken = True
            raise GraphUnavailable(reason="ServiceUnavailable") from exc
        except BaseException:
            self.broken = True  # cancelled halfway through a message: the stream is lost
            raise
        if message is None:
            self.broken = True
            raise GraphUnavailable(reason="ServiceUnavailable")
        if tag_of(message) == FAILURE:
            self.failed = True
        return message

    async def exchange(self, messages: bytes, answers: int) -> list[bytes]:
        """Send ``messages`` and read the ``answers`` that summarise them (no records)."""
        self.send(messages)
        return [await self.receive() for _ in range(answers)]

    async def reset(self) -> None:
        """Back to a clean state after a failure (a transaction Neo4j still holds is ended)."""
        (answer,) = await self.exchange(wire.encode(RESET), 1)
        if tag_of(answer) != SUCCESS:
            self.broken = True
        self.failed = False
        self.in_transaction = False

    def close(self) -> None:
        """Say goodbye and close (nothing is waited for)."""
        with contextlib.suppress(Exception):
            if not self.broken:
                self._writer.write(wire.encode(GOODBYE))
            self._writer.close()
        self.broken = True


class BoltPool:
    """One user's connections: idle ones kept for the next statement, at most ``size`` in use
    at once (a statement beyond waits up to ``acquire_timeout_s``, then fails as unavailable)."""

    def __init__(
        self,
        address: Address,
        user: str,
        password: str,
        *,
        size: int,
        lifetime_s: float,
        connect_timeout_s: float,
        acquire_timeout_s: float,
    ) -> None:
        self._address = address
        self._user = user
        self._password = password
        self._lifetime_s = lifetime_s
        self._connect_timeout_s = connect_timeout_s
        self._acquire_timeout_s = acquire_timeout_s
        self._idle: deque[BoltConnection] = deque()
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[BoltConnection]:
        """A connection logged in as the pool's user, for the block (:meth:`acquire` and
        :meth:`release`)."""
        connection = await self.acquire()
        try:
            yield connection
        finally:
            await self.release(connection)

    async def acquire(self) -> BoltConnection:
        """A connection logged in as the pool's user, until :meth:`release` gives it back."""
        if self._slots.locked():  # only a wait needs a deadline (a timer costs each statement)
            try:
                async with asyncio.timeout(self._acquire_timeout_s):
                    await self._slots.acquire()
            except TimeoutError as exc:
                raise GraphUnavailable(reason="neo4j_acquisition_timeout") from exc
        else:
            await self._slots.acquire()
        try:
            return await self._take()
        except BaseException:
            self._slots.release()
            raise

    async def release(self, connection: BoltConnection) -> None:
        """Give back a connection :meth:`acquire` gave: reset first if Neo4j refused something
        on it, closed if it broke."""
        try:
            await self._give_back(connection)
        finally:
            self._slots.release()

    async def _take(self) -> BoltConnection:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable:
                return connection
            connection.close()
        try:
            return await BoltConnection.open(
                self._address,
                self._user,
                self._password,
                lifetime_s=self._lifetime_s,
                timeout_s=self._connect_timeout_s,
            )
        except Refused as refused:
            raise failure_error(refused) from refused

    async def _give_back(self, connection: BoltConnection) -> None:
        if (connection.failed or connection.in_transaction) and not connection.broken:
            try:
                await connection.reset()
            except GraphUnavailable:
                connection.broken = True
            except asyncio.CancelledError:
                connection.close()  # halfway through the reset: its state is unknown
                raise
        if self._closed or not connection.usable:
            connection.close()
        else:
            connection.fresh = False
            self._idle.append(connection)

    def close(self) -> None:
        """Close the idle connections; those in use close when given back."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()


def failure_error(refused: Refused) -> Exception:
    """The gateway's error for a ``FAILURE``, as :func:`proxy.neo4j.errors.translated` gives it
    for the driver's exception of the same code."""
    return from_code(refused.code, refused.message)
