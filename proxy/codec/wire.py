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


async def read_message(
    reader: asyncio.StreamReader, *, max_bytes: int, begun: Callable[[], None] | None = None
) -> bytes | None:
    """The next whole message, or ``None`` if the peer closed the connection between messages.

    Keep-alive chunks are skipped. A message growing past ``max_bytes`` raises
    :class:`MessageTooLarge` before its remaining chunks are read. ``begun`` is called once the
    message's first chunk header has arrived (its deadline may then be shortened)."""
    message = bytearray()
    while True:
        try:
            header = await reader.readexactly(2)
        except asyncio.IncompleteReadError as exc:
            if not message and not exc.partial:
                return None
            raise ProtocolViolation("connection closed inside a message") from exc
        size = int.from_bytes(header, "big")
        if size == 0:
            if message:
                return bytes(message)
            continue
        if not message and begun is not None:
            begun()
        if len(message) + size > max_bytes:
            raise MessageTooLarge(f"a message larger than {max_bytes} bytes")
        try:
            message += await reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            raise ProtocolViolation("connection closed inside a chunk") from exc


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
