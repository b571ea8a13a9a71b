"""The embedded audit log: SQLite in WAL mode, append-only, written by one supervised task.

Appends from many requests are gathered by one writer task and committed together (group
commit) on one thread, through :class:`~proxy.audit.chainfile.ChainFile`, which holds the file
and the chain's head. This module is the asynchronous half: the queue, the batches, the
deadlines, and what happens when a write fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy.audit.chainfile import MEMORY, ChainFile
from proxy.audit.record import AuditEvent, Receipt, utc_timestamp
from proxy.clock import Clock, system_clock
from proxy.errors import AuditChainTaken, AuditUnavailable
from proxy.faults import NO_FAULTS, Faults
from proxy.locks import ExclusiveFile, FileTaken
from proxy.metrics import Metrics

# An event, the future its writer waits on, and whether it is after the fact (kept, not refused).
_Item = tuple[AuditEvent, "asyncio.Future[Receipt | None]", bool]

__all__ = ["MEMORY", "SQLiteAuditLog"]
_T = TypeVar("_T")
log = logging.getLogger(__name__)


def _settle(future: asyncio.Future[Receipt | None], receipt: Receipt | None) -> None:
    if not future.done():
        future.set_result(receipt)


def _fail(future: asyncio.Future[Receipt | None], error: AuditUnavailable) -> None:
    if not future.done():
        future.set_exception(error)


class SQLiteAuditLog:
    """The audit log in one SQLite file (the request path's ``AuditLog``).

    One writer task takes appends from a queue and commits them in batches on one thread. It
    supervises itself: a batch that fails, for whatever reason, fails the requests that wrote
    it (503, nothing runs) and the writer goes on with the next one (after an unexpected error,
    on a reopened connection whose chain head is read back from the file). While the file
    refuses writes, :meth:`check_ready` says so, and the writer probes it until it takes writes
    again: no restart is needed. Whenever the loop ends, every future still queued fails.

    An after-the-fact event (:meth:`append_after`: an outcome, a transaction's end) describes
    something that already happened: it is never refused. If it cannot be written when it comes,
    it is kept in memory (at most ``late_capacity`` events) and written, marked ``late``, as soon
    as the log takes writes; meanwhile :meth:`check_ready` reports ``degraded``.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_batch: int = 256,
        signing_key: Ed25519PrivateKey | None = None,
        chain_id: str = "gateway",
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 60.0,
        append_timeout_s: float = 10.0,
        late_capacity: int = 10_000,
        retry_interval_s: float = 0.5,
        stall_after_s: float = 60.0,
        clock: Clock = system_clock,
        metrics: Metrics | None = None,
        faults: Faults = NO_FAULTS,
    ) -> None:
        self._file = ChainFile(
            path,
            signing_key=signing_key,
            chain_id=chain_id,
            checkpoint_every=checkpoint_every,
            checkpoint_interval_s=checkpoint_interval_s,
            clock=clock,
            faults=faults,
        )
        self._max_batch = max_batch
        self._checkpoint_interval_s = checkpoint_interval_s
        self._append_timeout_s = append_timeout_s
        self._late_capacity = late_capacity
        self._retry_interval_s = retry_interval_s
        self._stall_after_s = stall_after_s
        self._busy_since: float | None = None  # when the write on the thread now began
        self._clock = clock
        self._metrics = metrics or Metrics()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        # Each queued item's deadline (``append_timeout_s`` after it came, so in order), and
        # one timer for the earliest: cheaper than a timer per append (two per statement).
        self._deadlines: deque[tuple[float, _Item]] = deque()
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._getter: asyncio.Future[_Item | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        # Why the file refused its last write or reopening, until a write commits again.
        self._failing: str | None = None
        # After-the-fact events the file refused, oldest first, to be written late.
        self._late: list[AuditEvent] = []
        # One writer per chain, across processes: a second would fork the chain.
        self._path = path
        self._ownership = None if str(path) == MEMORY else ExclusiveFile(path)

    async def open(self) -> None:
        """Open (creating if needed) the log and start the writer, inside the event loop;
        :class:`AuditChainTaken` if another process writes this chain already."""
        loop = self._loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._open_owned)
        except FileTaken as taken:
            raise AuditChainTaken(str(self._path), taken.holder) from taken
        except (sqlite3.Error, OSError) as exc:
            raise AuditUnavailable(reason=f"audit_open_failed:{type(exc).__name__}") from exc
        self._writer = asyncio.create_task(self._write_loop(), name="audit-writer")

    def _open_owned(self) -> None:
        if self._ownership is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._ownership.acquire()
        try:
            self._file.open()
        except BaseException:
            if self._ownership is not None:
                self._ownership.release()
            raise

    def _close_owned(self) -> None:
        try:
            self._file.close()
        finally:
            if self._ownership is not None:
                self._ownership.release()

    async def __aenter__(self) -> SQLiteAuditLog:
        await self.open()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Write what is queued (and what is kept, if the file takes it), then stop."""
        if self._writer is not None:
            if not self._writer.done():
                await self._queue.put(None)
            await asyncio.wait({self._writer})  # how it ended was logged where it happened
        if self._late:
            log.error(
                "%d after-the-fact audit records could not be written before the gateway"
                " stopped; verify reports their decisions as unanswered",
                len(self._late),
            )
        loop = asyncio.get_running_loop()
        # A final checkpoint, if it can be written.
        with contextlib.suppress(sqlite3.Error, OSError):
            await loop.run_in_executor(self._executor, self._file.checkpoint, True)
        await loop.run_in_executor(self._executor, self._close_owned)
        self._executor.shutdown(wait=True)

    async def append(self, event: AuditEvent) -> Receipt:
        """Append ``event``; returns once it is durable, raises :class:`AuditUnavailable` if not
        (or not within ``append_timeout_s``: an event whose caller gave up is not written, or,
        if it was already being written, a decision gets an outcome saying so)."""
        receipt = await self._enqueue(event, after=False)
        if receipt is None:  # only after-the-fact events are kept rather than refused
            raise AuditUnavailable(reason="audit_write_failed")
        return receipt

    async def append_after(self, event: AuditEvent) -> Receipt | None:
        """Append an after-the-fact event; never raises. Its receipt once durable, or ``None``
        if it is kept to be written late (see the class docstring) or still on its way after
        ``append_timeout_s`` (the writer owns it then: it is written once, now or late)."""
        try:
            future = self._enqueue(event, after=True)
        except AuditUnavailable:
            self._keep(event)
            return None
        return await future  # the writer writes it even if this caller is cancelled

    async def check_alive(self) -> None:
        """Raise unless the writer task is running and its thread is not stuck in one write
        for ``stall_after_s`` (a hung disk): liveness, a gateway without its writer must go."""
        if self._writer is None or self._writer.done():
            raise AuditUnavailable(reason="audit_writer_stopped")
        busy_since = self._busy_since
        if busy_since is not None and time.monotonic() - busy_since > self._stall_after_s:
            raise AuditUnavailable(reason="audit_writer_stalled")

    async def check_ready(self) -> str | None:
        """Raise unless the writer runs and the file takes writes; ``degraded`` while
        after-the-fact events wait to be written late."""
        await self.check_alive()
        if self._failing is not None:
            raise AuditUnavailable(reason=self._failing)
        return "degraded" if self._late else None

    def _enqueue(self, event: AuditEvent, *, after: bool) -> asyncio.Future[Receipt | None]:
        if self._writer is None or self._writer.done():
            raise AuditUnavailable(reason="audit_writer_stopped")
        loop = self._loop
        if loop is None:  # never opened
            raise AuditUnavailable(reason="audit_writer_stopped")
        future: asyncio.Future[Receipt | None] = loop.create_future()
        item = (event, future, after)
        self._queue.put_nowait(item)  # unbounded: never blocks
        self._deadlines.append((loop.time() + self._append_timeout_s, item))
        if self._deadline_timer is None:
            self._deadline_timer = loop.call_at(self._deadlines[0][0], self._expire)
        return future

    def _expire(self) -> None:
        """Tell each caller whose item is not written by its deadline: an append is refused
        (and its event, if not yet being written, never is); an after-the-fact append returns
        ``None`` (the writer still owns its event: it is written once, now or late)."""
        self._deadline_timer = None
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, (_, future, after) = self._deadlines.popleft()
            if future.done():
                continue
            if after:
                future.set_result(None)
            else:
                self._metrics.audit_writer_errors.labels("append_timeout").inc()
                future.set_exception(AuditUnavailable(reason="audit_append_timeout"))
        if self._deadlines:
            self._deadline_timer = loop.call_at(self._deadlines[0][0], self._expire)

    def _settled(self) -> None:
        """Forget the deadlines of items already answered (they are answered in order)."""
        while self._deadlines and self._deadlines[0][1][1].done():
            self._deadlines.popleft()
        if not self._deadlines and self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    def _keep(self, event: AuditEvent) -> None:
        """Keep an after-the-fact event to write late, if there is room; else it is lost, and
        said loudly (verify reports its decision as unanswered)."""
        if len(self._late) >= self._late_capacity:
            self._metrics.audit_late.labels("lost").inc()
            log.error(
                "audit record (%s) of request %s lost: %d records already wait to be written",
                event.event,
                event.request_id,
                len(self._late),
            )
            return
        self._late.append(replace(event, late=True))
        self._metrics.audit_late_pending.set(len(self._late))

    # ------------------------------------------------------------------ the writer task

    async def _write_loop(self) -> None:
        try:
            stopping = False
            while not stopping:
                batch, stopping = await self._next_batch()
                if batch:
                    await self._write_batch(batch)
                    self._settled()
                elif not stopping and self._failing is None and self._file.unsealed:
                    await self._on_thread(self._file.seal_idle)
                # Kept events follow a batch taken, or are retried (a probe if none) when idle.
                if (self._late and self._failing is None) or (
                    not batch and (self._late or self._failing is not None)
                ):
                    await self._write_late()
        except BaseException:
            log.critical("the audit writer stopped", exc_info=True)
            raise
        finally:
            self._fail_queued()

    async def _next_batch(self) -> tuple[list[_Item], bool]:
        """Up to ``max_batch`` queued items whose callers still wait, and whether the log is
        closing; empty-handed after the retry interval while something waits to be retried,
        or after the checkpoint interval while records wait to be signed."""
        if self._getter is None:
            self._getter = asyncio.ensure_future(self._queue.get())
        timeout = self._retry_interval_s if self._late or self._failing is not None else None
        if timeout is None and self._file.unsealed:  # an idle writer still seals its tail
            timeout = self._checkpoint_interval_s
        if timeout is not None:
            done, _ = await asyncio.wait({self._getter}, timeout=timeout)
            if not done:
                return [], False
        item = await self._getter
        self._getter = None
        batch: list[_Item] = []
        while item is not None:
            # A refused append's event (its deadline passed, or its caller went) is not
            # written; an after-the-fact event always is.
            if item[2] or not item[1].done():
                batch.append(item)
            if len(batch) >= self._max_batch or self._queue.empty():
                break
            item = self._queue.get_nowait()
        return batch, item is None

    async def _write_batch(self, batch: list[_Item]) -> None:
        try:
            receipts = await self._on_thread(self._file.write, [event for event, _, _ in batch])
        except BaseException as exc:
            reason = await self._failed(exc)
            for event, future, after in batch:
                if after:
                    self._keep(event)
                    _settle(future, None)
                else:
                    _fail(future, AuditUnavailable(reason=reason))
            if not isinstance(exc, Exception):
                raise
            return
        self._failing = None
        self._committed(len(receipts))
        for (event, future, after), receipt in zip(batch, receipts, strict=True):
            if future.done() and not after and event.event == "decision":
                # Written, but its caller stopped waiting (append's deadline) and was told 503:
                # nothing ran, and its outcome says so, so verify finds no unanswered decision.
                self._keep(
                    replace(
                        event,
                        event="outcome",
                        time=utc_timestamp(self._clock()),
                        statement=None,
                        parameters=None,
                        status=AuditUnavailable.status,
                        error=AuditUnavailable(reason="audit_append_timeout").as_document(),
                    )
                )
            _settle(future, receipt)

    async def _write_late(self) -> None:
        """Write the kept events, marked late (or, with none kept, a probe row): each commit
        tells whether the file takes writes again."""
        late = list(self._late)
        try:
            if late:
                await self._on_thread(self._file.write, late)
            else:
                await self._on_thread(self._file.probe)
        except Exception as exc:
            if not late:
                await self._failed(exc)  # the probe: the file still refuses writes
            elif isinstance(exc, sqlite3.Error | OSError):
                # Not the file's state for new requests (a batch may commit where these do
                # not): readiness says degraded while they wait.
                self._metrics.audit_writer_errors.labels(type(exc).__name__).inc()
                log.error("audit log refused %d late records: %s", len(late), exc)
            else:
                await self._failed(exc)
                await self._write_one_by_one(late)
            return
        self._failing = None
        if late:
            self._committed(len(late))
        del self._late[: len(late)]
        self._metrics.audit_late.labels("written").inc(len(late))
        self._metrics.audit_late_pending.set(len(self._late))
        if late:
            log.warning("%d audit records written late", len(late))

    async def _write_one_by_one(self, late: list[AuditEvent]) -> None:
        """After an unexpected failure of the kept events together: write each alone, so that
        one the log can never take (the cause) does not keep the others out for good."""
        for event in late:
            try:
                await self._on_thread(self._file.write, [event])
            except (sqlite3.Error, OSError) as exc:
                await self._failed(exc)
                return  # the file, not the record: keep the rest for the next try
            except Exception:
                self._metrics.audit_late.labels("lost").inc()
                log.exception("audit record of request %s can never be written", event.request_id)
            else:
                self._committed(1)
                self._metrics.audit_late.labels("written").inc()
            self._late.remove(event)
        self._failing = None
        self._metrics.audit_late_pending.set(len(self._late))

    def _committed(self, records: int) -> None:
        self._metrics.audit_commits.inc()
        self._metrics.audit_records.inc(records)

    async def _failed(self, exc: BaseException) -> str:
        """Log and count a failed write; the reason to refuse its requests with (after an
        unexpected error, the file is reopened: the chain's head is read back)."""
        self._metrics.audit_writer_errors.labels(type(exc).__name__).inc()
        if isinstance(exc, sqlite3.Error | OSError):
            reason = f"audit_write_failed:{type(exc).__name__}"
            log.error("audit log refused a write: %s", exc)
        else:
            reason = f"audit_writer_error:{type(exc).__name__}"
            log.error("audit writer failed; the batch is refused", exc_info=exc)
            if isinstance(exc, Exception):
                try:
                    await self._on_thread(self._file.reopen)
                except Exception as reopening:
                    reason = f"audit_reopen_failed:{type(reopening).__name__}"
                    log.error("audit log cannot be reopened: %s", reopening)
        self._failing = reason
        return reason

    async def _on_thread(self, work: Callable[..., _T], *arguments: Any) -> _T:
        """``work(*arguments)`` on the writer's thread, timed for :meth:`check_alive`."""
        self._busy_since = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, work, *arguments
            )
        finally:
            self._busy_since = None

    def _fail_queued(self) -> None:
        """The loop has ended: nothing queued will be written. Fail every waiting caller (an
        after-the-fact event is kept, and reported at close if still unwritten)."""
        if self._getter is not None:
            self._getter.cancel()
            self._getter = None
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                continue
            event, future, after = item
            if after:
                self._keep(event)
                _settle(future, None)
            else:
                _fail(future, AuditUnavailable(reason="audit_writer_stopped"))
        self._settled()
