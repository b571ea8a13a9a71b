"""Bolt's framing: the version handshake, and messages cut into chunks.

A client opens with the magic ``60 60 B0 17`` and four version proposals of four bytes each
(``reserved, range, minor, major``: "``major.minor`` down to ``major.(minor - range)``"), in its
order of preference. The server answers the version it picked (``00 00 minor major``), or four
zero bytes and closes. After that, each message is a PackStream structure sent as chunks: a
two-byte big-endian size, then that many bytes, the message ending with an empty chunk
(``00 00``). An empty chunk between messages is a keep-alive and means nothing.

Nothing here trusts the peer: a message larger than the configured limit is refused before it
is read whole, and every read has a deadline (the caller's), so a slow or idle client cannot hold
a connection for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from proxy.codec.packstream import Structure, pack

MAGIC = b"\x60\x60\xb0\x17"
HANDSHAKE_SIZE = len(MAGIC) + 16
REFUSED = b"\x00\x00\x00\x00"
# Newest first. 5.1 brought LOGON and LOGOFF (credentials no longer ride on HELLO); 5.2
# notification filters, 5.3 the bolt agent and 5.4 TELEMETRY, all of which this server accepts.
SUPPORTED: tuple[tuple[int, int], ...] = ((5, 4), (5, 3), (5, 2), (5, 1))
# Drivers offering the newer "manifest" negotiation propose it as version 255.1; a server that
# does not speak it simply picks one of the plain proposals, as older Neo4j servers do.
_MANIFEST_MAJOR = 0xFF
_MAX_CHUNK = 0xFFFF
# Keep-alive chunks a client may send in a row between two messages. A driver sends one now and
# then while it waits; a stream of them only costs the reader (they are scanned one by one).
# Neo4j sends them while a long statement runs, so a reader of Neo4j's answers sets no limit.
MAX_KEEP_ALIVES = 1024


class ProtocolViolation(Exception):
    """The peer broke Bolt's framing or handshake; the connection is closed, nothing answered."""


class MessageTooLarge(ProtocolViolation):
    """A message beyond the configured size limit."""


def choose_version(
    proposals: bytes, supported: Iterable[tuple[int, int]] = SUPPORTED
) -> tuple[int, int] | None:
    """The version to speak: in the client's order of preference, the newest we support within
    its first proposal that has one. ``None`` if none of its proposals is ours."""
    ours = sorted(supported, reverse=True)
    for offset in range(0, 16, 4):
        _, span, minor, major = proposals[offset : offset + 4]
        if major in (0, _MANIFEST_MAJOR):
            continue  # an empty slot, or the manifest negotiation
        for version in ours:
            if version[0] == major and minor - span <= version[1] <= minor:
                return version
    return None


def version_bytes(version: tuple[int, int]) -> bytes:
    """The server's answer to the handshake for ``version``."""
    return bytes((0, 0, version[1], version[0]))


async def read_handshake(reader: asyncio.StreamReader) -> bytes:
    """The client's 16 bytes of proposals, after checking its magic."""
    try:
        opening = await reader.readexactly(HANDSHAKE_SIZE)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolViolation("handshake cut short") from exc
    if opening[:4] != MAGIC:
        raise ProtocolViolation("not a Bolt handshake")
    return opening[4:]


class MessageReader:
    """Whole messages from a stream. Each read takes whatever has arrived, and every message it
    holds is cut from it without reading again: messages sent together (a driver's ``RUN`` and
    ``PULL``; Neo4j's ``SUCCESS``, records and ``SUCCESS``) cost one read, where reading a chunk
    at a time cost three each (its size, its bytes, the empty chunk that ends it).

    Keep-alive chunks between messages are skipped and what they took is let go, however many
    arrive; more than ``max_keep_alives`` in a row is a :class:`ProtocolViolation`. A message
    whose chunks declare more than ``max_bytes`` raises :class:`MessageTooLarge` as soon as their
    sizes have arrived, before the rest is read. A message of one chunk (most are) is cut from
    the read as it is; the chunks of a longer one are copied into one buffer as each is
    complete, and what was read of them let go after each read, so what is kept of one message
    is bounded by ``max_bytes``, one chunk and one read, whatever its chunks' sizes (a message of
    one-byte chunks held 132 bytes per byte when each chunk was kept apart). The chunks of a
    message still arriving are scanned once each, however many reads it takes.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        *,
        max_bytes: int,
        max_keep_alives: float = MAX_KEEP_ALIVES,
        read_size: int = 65_536,
    ) -> None:
        self._reader = reader
        self.max_bytes = max_bytes  # may change between messages (a door's, once logged on)
        self._max_keep_alives = max_keep_alives
        self._read_size = read_size
        self._buffer = bytearray()
        self._start = 0  # where the message being received begins in _buffer
        self._scan = 0  # where its next chunk's size is (or will be)
        self._last: tuple[int, int] | None = None  # its latest chunk, as (start, stop)
        self._before: bytearray | None = None  # the bytes of the chunks before that one
        self._size = 0  # the bytes of all its chunks
        self._keep_alives = 0  # in a row since the last message

    @property
    def waiting(self) -> bool:
        """Whether the start of another message has arrived already (keep-alive chunks do not
        count: a peer may send one and wait). A peer never waits for an answer halfway through
        sending a message, so the rest will come."""
        buffer, start = self._buffer, self._start
        while buffer[start : start + 2] == b"\x00\x00":
            start += 2
        return len(buffer) > start

    async def next(self, begun: Callable[[], None] | None = None) -> bytes | None:
        """The next whole message, or ``None`` if the peer closed the connection between
        messages. ``begun`` is called once the message's first chunk size has arrived (its
        deadline may then be shortened)."""
        while True:
            message = self._cut(begun)
            if message is not None:
                return message
            received = await self._reader.read(self._read_size)
            if not received:
                if self._last is not None or self._scan < len(self._buffer):
                    raise ProtocolViolation("connection closed inside a message")
                return None
            self._buffer += received

    def _cut(self, begun: Callable[[], None] | None) -> bytes | None:
        buffer = self._buffer
        end = len(buffer)
        scan = self._scan
        while scan + 2 <= end:
            size = buffer[scan] << 8 | buffer[scan + 1]
            last = self._last
            if size == 0:
                scan += 2
                if last is None:  # a keep-alive between messages
                    self._keep_alives += 1
                    if self._keep_alives > self._max_keep_alives:
                        raise ProtocolViolation("keep-alive chunks without end")
                    self._start = self._scan = scan
                    continue
                message = bytes(buffer[last[0] : last[1]])
                if self._before is not None:
                    message = bytes(self._before) + message
                self._next_message(scan)
                return message
            if last is None:
                if begun is not None:
                    begun()
            elif self._before is None:  # only a chunk before it is complete by now
                self._before = buffer[last[0] : last[1]]
            else:
                self._before += buffer[last[0] : last[1]]
            self._size += size
            if self._size > self.max_bytes:
                raise MessageTooLarge(f"a message larger than {self.max_bytes} bytes")
            self._last = (scan + 2, scan + 2 + size)
            scan += 2 + size
        # Where the next chunk's size is: past the end while a chunk's bytes are still arriving
        # (that chunk is counted already).
        self._scan = scan
        if self._last is None:
            if self._start >= min(end, self._read_size):
                self._forget(self._start)  # only keep-alives since the last message
        elif self._before is not None:
            self._keep_only(self._last)
        return None

    def _keep_only(self, latest: tuple[int, int]) -> None:
        """Of a message of several chunks, drop what was read before its ``latest`` chunk (the
        chunks before it are copied)."""
        start, stop = latest
        drop = start - 2  # its size's first byte
        del self._buffer[:drop]
        self._last = (start - drop, stop - drop)
        self._scan -= drop
        self._start = 0

    def _next_message(self, start: int) -> None:
        """Forget the message just cut; drop what was read before ``start`` once it is a lot."""
        self._last = None
        self._before = None
        self._size = 0
        self._keep_alives = 0
        if start == len(self._buffer) or start >= self._read_size:
            self._forget(start)
        else:
            self._start = self._scan = start

    def _forget(self, start: int) -> None:
        """Drop what was read before ``start``, where the next message begins."""
        if start == len(self._buffer):
            self._buffer.clear()
        else:
            del self._buffer[:start]
        self._start = self._scan = 0


def frame(message: bytes) -> bytes:
    """``message`` as chunks, ended by an empty one."""
    if len(message) <= _MAX_CHUNK:
        return len(message).to_bytes(2, "big") + message + b"\x00\x00"
    out = bytearray()
    view = memoryview(message)
    for start in range(0, len(message), _MAX_CHUNK):
        chunk = view[start : start + _MAX_CHUNK]
        out += len(chunk).to_bytes(2, "big")
        out += chunk
    out += b"\x00\x00"
    return bytes(out)


def encode(tag: int, *fields: object) -> bytes:
    """One message, packed and framed."""
    return frame(pack(Structure(bytes((tag,)), fields)))
