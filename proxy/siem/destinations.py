"""Where a sink sends its events: the :class:`Destination` seam, and JSON Lines.

A destination takes a batch of events in chain order and returns once the receiver has them,
or raises :class:`DeliveryFailed`; the sink then sends the same batch again later. A receiver
may therefore see a record twice (never out of order within a chain): ``(chain, seq)`` names
it, ``hash`` proves it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Protocol

from proxy.siem.forms import Event


class DeliveryFailed(Exception):
    """A batch the receiver did not take. ``cause`` is a short word for /metrics and the logs
    (``connect``, ``write``, ``http_503``, ...); the message never holds a token."""

    def __init__(self, cause: str, detail: str = "") -> None:
        self.cause = cause
        super().__init__(f"{cause}: {detail}" if detail else cause)


class Destination(Protocol):
    """Takes events in order, at least once."""

    async def deliver(self, events: Sequence[Event]) -> None:
        """Return once the receiver holds every event of ``events``; else raise
        :class:`DeliveryFailed` (the caller sends them again, from the first)."""
        ...

    async def aclose(self) -> None:
        """Release the connection or file."""
        ...


class JSONLines:
    """One JSON document per line, appended to a file (for a log shipper) or written to
    standard output (``path`` ``None``; the gateway's own logs go to standard error).

    Writes run on one thread of its own, never the event loop's default executor, which the
    request path needs: a write can hang (standard output piped to a stalled collector, a hung
    mount) past the sink's timeout, and while it does, a retry fails at once rather than
    taking another thread."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._file: IO[bytes] | None = None
        # One thread writes: the file and its flush are not shared between calls.
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="siem-jsonl")
        self._writing: Future[None] | None = None

    async def deliver(self, events: Sequence[Event]) -> None:
        data = b"".join(event.line + b"\n" for event in events)
        async with self._lock:
            if self._writing is not None and not self._writing.done():
                raise DeliveryFailed("write", "the previous write has not returned")
            self._writing = self._executor.submit(self._write, data)
            try:
                await asyncio.wrap_future(self._writing)
            except OSError as exc:
                await self._on_thread(self._close)  # reopened next time (a rotated file too)
                raise DeliveryFailed("write", type(exc).__name__) from exc

    async def _on_thread(self, work: Callable[[], None]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def _write(self, data: bytes) -> None:
        if self._file is None:
            if self._path is None:
                self._file = sys.stdout.buffer
            else:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self._path.open("ab")
        self._file.write(data)
        self._file.flush()

    def _close(self) -> None:
        if self._file is not None and self._path is not None:
            self._file.close()
        self._file = None

    async def aclose(self) -> None:
        async with self._lock:
            if self._writing is None or self._writing.done():
                await self._on_thread(self._close)
            # else a write hangs, holding the file: the process's end releases both
        self._executor.shutdown(wait=False)
