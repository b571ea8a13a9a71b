"""The least a Python process between a Bolt client and Neo4j can do: the relays that
benchmarks/bolt_floor.py measures the gateway's Bolt door against. Not a gateway: no
authentication, no policy, nothing refused. Run as a process of its own:

    python benchmarks/floor_relay.py PORT UPSTREAM_PORT [--recorded FILE [--store journal]]

It listens on 127.0.0.1:PORT and, for each connection, opens one to 127.0.0.1:UPSTREAM_PORT
(Neo4j's Bolt port) and copies bytes both ways as they come, on the event loop the gateway runs
(uvloop), with asyncio protocols (no streams, no task per connection): the floor of any relay.

``--recorded``: the client's bytes are cut into Bolt messages (chunks up to the empty one that
ends a message, nothing decoded), and each ``RUN`` is held until one record of it, as large as
the gateway's (a JSON body, its SHA-256 chained to the previous one), is durable in a SQLite
file in WAL mode with ``synchronous=FULL``, written by one thread that commits whatever is
queued together (group commit), as the gateway's audit log does. After the ``SUCCESS`` that
ends its result, a second record (the outcome) is written, without holding anything. So two
records per statement, as through the gateway: the floor of "nothing runs that was not
recorded" in Python on this machine. ``--store journal`` writes the same records as lines
appended to a flat file (one ``write`` and one ``fdatasync`` per commit) instead: what the
durable write itself costs without SQLite's pages and index.

Prints ``ready`` once it listens; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import uvloop

HANDSHAKE = 20  # the magic preamble and four proposed versions
RUN, SUCCESS, FAILURE = 0x10, 0x70, 0x7F
BODY = json.dumps({"event": "decision", "statement": "x" * 700, "principal": {"dag": "bench"}})


class Log:
    """Group commit of chained records, one writer thread, every commit on disk before its
    appenders go on. ``store``: ``sqlite`` (a table and an index, WAL, ``synchronous=FULL``, as
    the gateway's log) or ``journal`` (lines appended to a flat file, then ``fdatasync``)."""

    def __init__(self, path: Path, store: str = "sqlite") -> None:
        self._journal: int | None = None
        self._db: sqlite3.Connection | None = None
        if store == "journal":
            self._journal = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        else:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS records"
                " (seq INTEGER PRIMARY KEY, time TEXT, request_id TEXT, body TEXT, hash TEXT)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS records_request ON records (request_id)")
        self._thread = ThreadPoolExecutor(max_workers=1)
        self._queue: list[tuple[str, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None  # while it runs, it takes what is queued
        self._seq, self._head = 0, "0" * 64

    def append(self, request_id: str) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((request_id, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return future

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue, []
            await loop.run_in_executor(self._thread, self._commit, [r for r, _ in batch])
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    def _commit(self, request_ids: list[str]) -> None:
        rows = []
        for request_id in request_ids:
            self._seq += 1
            body = f'{{"prev_hash":"{self._head}","seq":{self._seq},"r":"{request_id}",{BODY[1:]}'
            self._head = hashlib.sha256(body.encode()).hexdigest()
            rows.append((self._seq, time.time(), request_id, body, self._head))
        if self._journal is not None:
            os.write(self._journal, "".join(f"{row[3]}\t{row[4]}\n" for row in rows).encode())
            os.fdatasync(self._journal)
            return
        assert self._db is not None
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?)", rows)
        self._db.execute("COMMIT")


def plain_versions(preamble: bytes) -> bytes:
    """The client's preamble without a proposal of the handshake manifest (major version 255),
    which would have Neo4j answer with more than the four bytes of one version: what follows
    the handshake is then cut into messages at a known place."""
    proposals = [preamble[at : at + 4] for at in range(4, HANDSHAKE, 4)]
    return preamble[:4] + b"".join(b"\0\0\0\0" if p[3] == 0xFF else p for p in proposals)


def messages(buffer: bytearray) -> tuple[int, list[int]]:
    """How many bytes of ``buffer`` are whole Bolt messages, and each one's tag."""
    at, start, tags = 0, 0, []
    while at + 2 <= len(buffer):
        (size,) = struct.unpack_from(">H", buffer, at)
        if size == 0:  # a message ends
            tags.append(buffer[start + 3] if at > start + 3 else -1)
            at += 2
            start = at
        elif at + 2 + size <= len(buffer):
            at += 2 + size
        else:
            break
    return start, tags


class Half(asyncio.Protocol):
    """One side of a relayed connection: what it receives goes to the other side (``peer``).
    With a log, what comes after the handshake (``greeting`` bytes) is cut into whole messages
    and handed to :meth:`messages_received` with their tags."""

    greeting = 0

    def __init__(self, log: Log | None) -> None:
        self.log = log
        self.peer: asyncio.Transport | None = None
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._handshaken = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self.log is None and self.peer is not None and not self._buffer:
            self.forward(data)  # a byte relay: as it comes
            return
        self._buffer += data
        if self.peer is None:  # Neo4j's side is not open yet
            return
        if self.log is None:
            self.forward(bytes(self._buffer))
            self._buffer.clear()
            return
        if not self._handshaken:
            if len(self._buffer) < self.greeting:
                return
            self._handshaken = True
            self.forward(self.handshake(bytes(self._buffer[: self.greeting])))
            del self._buffer[: self.greeting]
        self.drain()

    def drain(self) -> None:
        whole, tags = messages(self._buffer)
        if whole:
            chunk = bytes(self._buffer[:whole])
            del self._buffer[:whole]
            self.messages_received(chunk, tags)

    def handshake(self, greeting: bytes) -> bytes:
        return greeting

    def messages_received(self, chunk: bytes, tags: list[int]) -> None:  # noqa: ARG002 (sides use them)
        self.forward(chunk)

    def forward(self, data: bytes) -> None:
        if self.peer is not None and not self.peer.is_closing():
            self.peer.write(data)

    def connection_lost(self, _exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.close()


class ClientSide(Half):
    """The client's connection: opens one to Neo4j, and holds each ``RUN`` until recorded."""

    greeting = HANDSHAKE

    def __init__(self, log: Log | None, upstream_port: int) -> None:
        super().__init__(log)
        self._upstream_port = upstream_port
        self._connecting: asyncio.Task[None] | None = None
        self._held = False
        self._runs = 0
        self.awaited = 0  # SUCCESSes due from Neo4j before the open statement's outcome

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._connecting = asyncio.get_running_loop().create_task(self._connect())
        self._connecting.add_done_callback(_failed)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.peer, _ = await loop.create_connection(
            lambda: Neo4jSide(self), "127.0.0.1", self._upstream_port
        )
        self.data_received(b"")  # what came before

    def handshake(self, greeting: bytes) -> bytes:
        return plain_versions(greeting)

    def drain(self) -> None:
        if not self._held:
            super().drain()

    def messages_received(self, chunk: bytes, tags: list[int]) -> None:
        runs = tags.count(RUN)
        if not runs or self.log is None:
            self.forward(chunk)
            return
        for _ in range(runs):  # a record for each RUN; the last one's commit holds them all
            self._runs += 1
            held = self.log.append(f"r{id(self)}-{self._runs}")
        self.awaited += 2 * runs
        self._held = True
        if self.transport is not None:
            self.transport.pause_reading()
        held.add_done_callback(lambda _: self._released(chunk))

    def _released(self, chunk: bytes) -> None:
        self._held = False
        self.forward(chunk)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self.drain()

    def answered(self, tags: list[int]) -> None:
        """Neo4j's answers passed on: a statement's ``RUN`` gets a ``SUCCESS``, then its
        ``PULL`` another that ends the result (or a ``FAILURE`` ends it): its outcome record."""
        for tag in tags:
            if self.awaited and tag in (SUCCESS, FAILURE):
                self.awaited = 0 if tag == FAILURE else self.awaited - 1
                if self.awaited == 0 and self.log is not None:
                    self.log.append(f"o{id(self)}-{self._runs}")


class Neo4jSide(Half):
    """Neo4j's connection for one client: its answers go back, counted for outcomes."""

    greeting = 4  # the version Neo4j chose

    def __init__(self, client: ClientSide) -> None:
        super().__init__(client.log)
        self.peer = client.transport
        self._client = client

    def messages_received(self, chunk: bytes, tags: list[int]) -> None:
        self.forward(chunk)
        self._client.answered(tags)


def _failed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        print(f"relay: cannot reach Neo4j: {error!r}", file=sys.stderr, flush=True)


async def serve(port: int, upstream: int, log: Log | None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ClientSide(log, upstream), "127.0.0.1", port)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("upstream_port", type=int)
    parser.add_argument("--recorded", type=Path, help="the audit file: hold each RUN for it")
    parser.add_argument("--store", choices=("sqlite", "journal"), default="sqlite")
    args = parser.parse_args()
    log = Log(args.recorded, args.store) if args.recorded else None
    uvloop.run(serve(args.port, args.upstream_port, log))


if __name__ == "__main__":
    main()
