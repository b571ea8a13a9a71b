"""A sink: one task that tails one audit chain after its cursor and delivers what it finds.

The request path never waits for it, nor knows of it: the sink reads committed records from the
log's file on a read-only connection of its own (SQLite in WAL mode lets it read while the
writer writes), every ``poll_interval_s`` while caught up and at once while behind. A batch is
rendered, handed to the destination, and only then does the cursor move; a failed delivery is
retried, the same batch from its first record, after a back-off that doubles from
``retry_min_s`` to ``retry_max_s``. So records arrive in chain order, at least once: after a
collector's outage or a restart of the gateway the sink catches up from its cursor (and a
sink that is closing first delivers what is committed, briefly, without retrying). /metrics
shows how far behind it is and how often delivery failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from proxy.audit.reader import AuditReader
from proxy.clock import Clock, system_clock
from proxy.metrics import Metrics
from proxy.siem.cursor import START, Cursor, Position
from proxy.siem.destinations import DeliveryFailed, Destination
from proxy.siem.forms import Committed, Event, Format, render
from proxy.siem.ocsf import epoch_ms

_T = TypeVar("_T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pace:
    """How a sink reads and retries (the ``[[audit.sinks]]`` entry's numbers)."""

    batch: int = 100
    poll_interval_s: float = 0.25
    retry_min_s: float = 0.5
    retry_max_s: float = 30.0
    timeout_s: float = 5.0


class Sink:
    """Delivers the records of the chain in ``audit_path`` to ``destination``, in ``form``."""

    def __init__(
        self,
        name: str,
        *,
        audit_path: Path,
        chain: str,
        cursor: Cursor,
        destination: Destination,
        form: Format = "record",
        pace: Pace = Pace(),
        metrics: Metrics | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.name = name
        self._audit_path = audit_path
        self._chain = chain
        self._cursor = cursor
        self._destination = destination
        self._form: Format = form
        self._pace = pace
        self._metrics = metrics or Metrics()
        self._clock = clock
        # One thread: SQLite connections stay on the thread that opened them.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sink-{name}")
        self._reader: AuditReader | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._draining = False  # closing: deliver what is there, then end
        self._wake = asyncio.Event()  # cuts a pause short when closing
        self.position = START

    async def __aenter__(self) -> Sink:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start tailing; call inside the event loop, once the audit log is open."""
        self._task = asyncio.create_task(self._run(), name=f"audit-sink-{self.name}")

    async def close(self) -> None:
        """Deliver what is committed now, for ``timeout_s`` at most and without retrying, then
        stop; anything left is delivered from the cursor at the next start."""
        if self._task is not None:
            self._draining = True
            self._wake.set()
            await asyncio.wait({self._task}, timeout=self._pace.timeout_s)
            # Said twice: on Python 3.11, asyncio.wait_for can swallow a cancellation that
            # arrives as its delivery completes; the loop then stops at its next turn.
            self._draining, self._stopping = False, True
            self._task.cancel()
            # A sink that failed was logged where it failed; closing goes on.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._destination.aclose()
        with contextlib.suppress(Exception):
            await self._on_thread(self._close_reader)
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        try:
            resumed = False
            delay = self._pace.retry_min_s
            while not self._stopping:
                try:
                    if not resumed:
                        self.position = await self._on_thread(self._resume)
                        resumed = True
                    batch = await self._on_thread(self._next_batch)
                except Exception:
                    # The log unreadable for a moment (a locked file, a reopened one): later.
                    log.exception("audit sink %s cannot read the audit log", self.name)
                    with contextlib.suppress(Exception):
                        await self._on_thread(self._close_reader)
                    if self._draining:
                        return
                    await self._pause(self._pace.retry_max_s)
                    continue
                if not batch:
                    if self._draining:
                        return
                    await self._pause(self._pace.poll_interval_s)
                    continue
                if await self._delivered(batch):
                    delay = self._pace.retry_min_s
                elif self._draining:
                    return
                else:
                    await self._pause(delay)
                    delay = min(delay * 2, self._pace.retry_max_s)
        except asyncio.CancelledError:
            raise
        except BaseException:
            log.critical("audit sink %s stopped", self.name, exc_info=True)
            raise

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the sink is closing."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _delivered(self, batch: list[Event]) -> bool:
        """Send ``batch``; on success move the cursor past it. Whether it was delivered."""
        try:
            await asyncio.wait_for(self._destination.deliver(batch), self._pace.timeout_s)
        except (DeliveryFailed, TimeoutError) as exc:
            cause = exc.cause if isinstance(exc, DeliveryFailed) else "timeout"
            self._metrics.sink_failures.labels(self.name, self._chain, cause).inc()
            log.warning(
                "audit sink %s could not deliver records %d-%d (%s); retrying",
                self.name,
                batch[0].seq,
                batch[-1].seq,
                exc,
            )
            return False
        last = batch[-1]
        self.position = Position(last.seq, last.hash)
        try:
            await self._on_thread(self._cursor.save, self.position)
        except OSError as exc:
            # Delivered all the same; kept in memory, and saved with the next batch. A restart
            # before then sends these again, which at-least-once allows.
            log.error("audit sink %s cannot save its cursor: %s", self.name, exc)
        self._metrics.sink_delivered.labels(self.name, self._chain).inc(len(batch))
        return True

    # ------------------------------------------------------------------ on the sink's thread

    def _resume(self) -> Position:
        """The saved cursor, if it belongs to this log; else the chain's start (logged)."""
        position = self._cursor.load()
        if position.seq == 0:
            return START
        found = self._open_reader().hash_of(position.seq)
        if found is None or found != position.hash:
            log.error(
                "audit sink %s: its cursor (record %d) does not match the audit log in %s (a"
                " new or replaced log); delivering it from its first record",
                self.name,
                position.seq,
                self._audit_path,
            )
            return START
        return position

    def _next_batch(self) -> list[Event]:
        """The next records to deliver, rendered; updates the lag figures."""
        reader = self._open_reader()
        rows = reader.records_after(self.position.seq, self._pace.batch)
        behind, seconds = 0, 0.0
        if rows:  # caught up (the usual poll), one query; behind, the head too
            head = reader.head()
            behind = len(rows) if head is None else max(len(rows), head[0] - self.position.seq)
            seconds = max(0.0, self._clock() - epoch_ms(rows[0][1]) / 1000)
        self._metrics.sink_lag_records.labels(self.name, self._chain).set(behind)
        self._metrics.sink_lag_seconds.labels(self.name, self._chain).set(seconds)
        return [render(Committed(*row), chain=self._chain, form=self._form) for row in rows]

    def _open_reader(self) -> AuditReader:
        if self._reader is None:
            self._reader = AuditReader(self._audit_path)
        return self._reader

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def _on_thread(self, work: Callable[..., _T], *arguments: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *arguments)
