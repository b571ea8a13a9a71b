"""Syslog (RFC 5424) over UDP (RFC 5426) or TCP with octet-counting framing (RFC 6587).

Each record is one message::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [cyphergate@32473 chain= seq= hash=] BOM{json}

Facility 13 (log audit); severity 6 (informational), or 4 (warning) for a refused request
(the record's verdict is ``deny``).
TIMESTAMP is the record's own time, MSGID its event (``decision``, ``outcome``, ...), and the
structured data names the record so a receiver can drop a duplicate. 32473 is the private
enterprise number RFC 5612 reserves for documentation: the SD-ID is ours, not registered.

Syslog has no acknowledgement. Over TCP a batch counts as delivered once the kernel took it, and
the connection is checked before each batch (a collector that closed it is reconnected to and
the batch sent there); a collector that crashes with records in flight may lose them. Over UDP
nothing is confirmed at all. Where every record must arrive, use the HEC or the file sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence

from proxy.siem.destinations import DeliveryFailed
from proxy.siem.forms import Event

FACILITY_LOG_AUDIT = 13
SD_ID = "cyphergate@32473"
# A datagram's payload at most (IPv4's 65,507 less room): a longer message is cut, said loudly.
UDP_MAX_BYTES = 65_000
log = logging.getLogger(__name__)


def message(event: Event, *, hostname: str, app_name: str, procid: str) -> bytes:
    """``event`` as one RFC 5424 message (no framing)."""
    severity = 4 if event.refused else 6
    header = (
        f"<{FACILITY_LOG_AUDIT * 8 + severity}>1 {event.time} {hostname} {app_name} {procid}"
        f' {_msgid(event.kind)} [{SD_ID} chain="{_sd_value(event.chain)}" seq="{event.seq}"'
        f' hash="{event.hash}"] '
    )
    return header.encode("ascii") + b"\xef\xbb\xbf" + event.line


def _msgid(kind: str) -> str:
    text = "".join(c for c in kind if "!" <= c <= "~")[:32]
    return text or "-"


def _sd_value(text: str) -> str:
    """A PARAM-VALUE: ``"``, ``\\`` and ``]`` escaped (RFC 5424, 6.3.3), ASCII kept."""
    cleaned = "".join(c for c in text if " " <= c <= "~")
    return cleaned.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _hostname() -> str:
    name = "".join(c for c in socket.gethostname() if "!" <= c <= "~")[:255]
    return name or "-"


class Syslog:
    """RFC 5424 messages to ``host:port`` over ``transport`` (``udp`` or ``tcp``)."""

    def __init__(
        self, host: str, port: int, *, transport: str, app_name: str, timeout_s: float
    ) -> None:
        if transport not in ("udp", "tcp"):
            raise ValueError(f"syslog transport {transport!r}: udp or tcp")
        self._host, self._port, self._transport = host, port, transport
        self._app_name = app_name
        self._timeout_s = timeout_s
        self._hostname = _hostname()
        self._procid = str(os.getpid())
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._datagrams: asyncio.DatagramTransport | None = None

    def _message(self, event: Event) -> bytes:
        return message(event, hostname=self._hostname, app_name=self._app_name, procid=self._procid)

    async def deliver(self, events: Sequence[Event]) -> None:
        if self._transport == "tcp":
            await self._deliver_tcp(events)
        else:
            await self._deliver_udp(events)

    async def _deliver_tcp(self, events: Sequence[Event]) -> None:
        frames = b"".join(
            str(len(data)).encode("ascii") + b" " + data
            for data in (self._message(event) for event in events)
        )
        _, writer = await self._connected()
        try:
            writer.write(frames)
            await asyncio.wait_for(writer.drain(), self._timeout_s)
        except (OSError, TimeoutError) as exc:
            await self._drop_stream()
            raise DeliveryFailed("write", type(exc).__name__) from exc

    async def _connected(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The TCP connection, opened anew if there is none or the collector closed it."""
        if self._stream is not None:
            reader, writer = self._stream
            # A collector sends nothing; anything readable is its end of the connection.
            if reader.at_eof() or writer.is_closing() or reader.exception() is not None:
                await self._drop_stream()
        if self._stream is None:
            try:
                self._stream = await asyncio.wait_for(
                    asyncio.open_connection(self._host, self._port), self._timeout_s
                )
            except (OSError, TimeoutError) as exc:
                raise DeliveryFailed("connect", type(exc).__name__) from exc
        return self._stream

    async def _drop_stream(self) -> None:
        if self._stream is not None:
            _, writer = self._stream
            self._stream = None
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self._timeout_s)

    async def _deliver_udp(self, events: Sequence[Event]) -> None:
        if self._datagrams is None:
            try:
                self._datagrams, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=(self._host, self._port)
                )
            except OSError as exc:
                raise DeliveryFailed("connect", type(exc).__name__) from exc
        for event in events:
            data = self._message(event)
            if len(data) > UDP_MAX_BYTES:
                log.warning(
                    "audit record %s:%d is %d bytes, cut to %d for a syslog datagram; use TCP",
                    event.chain,
                    event.seq,
                    len(data),
                    UDP_MAX_BYTES,
                )
                data = data[:UDP_MAX_BYTES]
            try:
                self._datagrams.sendto(data)
            except OSError as exc:
                self._datagrams.close()
                self._datagrams = None
                raise DeliveryFailed("write", type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._drop_stream()
        if self._datagrams is not None:
            self._datagrams.close()
            self._datagrams = None
