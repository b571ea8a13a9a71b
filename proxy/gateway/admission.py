"""Bounded admission: how many statements the gateway works on at once, and how many wait.

A statement of either front door takes a slot before anything else is done for it (before its
caller is authenticated) and gives it back once its outcome is recorded. At most
``server.admission.max_in_flight`` statements hold a slot; up to ``max_waiting`` more wait for
one, first come first served, each for ``max_wait_s`` at most. A statement that finds the queue
full, or waits longer, is refused at once with :class:`~proxy.errors.Overloaded` (HTTP 503 with
``Retry-After``; over Bolt a transient ``FAILURE`` that drivers retry), recorded like any
refusal.

Why: past the point where the gateway's core (one event loop) is busy, more statements at once
only lengthen every answer and grow every queue behind them (the audit writer's, the driver's
pools, Neo4j's). With the gate, the work in the process is bounded by ``max_in_flight +
max_waiting`` statements whatever the number of clients: the audit writer holds no more records
of admitted statements than that, no driver pool is asked for more than ``max_in_flight``
connections, and a client beyond the bound learns it at once instead of after seconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

from proxy.errors import Overloaded
from proxy.metrics import Metrics
from proxy.settings import AdmissionSettings


class Admission:
    """The gate (see the module docstring); one per process, shared by both front doors."""

    def __init__(self, settings: AdmissionSettings, metrics: Metrics | None = None) -> None:
        self._limit = settings.max_in_flight
        self._queue = settings.max_waiting
        self._wait_s = settings.max_wait_s
        self._retry_after_s = settings.retry_after_s
        self._free = self._limit
        # Futures of waiting statements, oldest first; a slot is handed over by resolving one.
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        if metrics is not None:
            # Read when /metrics is, not set at each slot taken and given back (two gauges
            # twice per statement).
            metrics.statements_in_flight.set_function(lambda: self.in_flight)
            metrics.statements_waiting.set_function(lambda: self.waiting)

    @property
    def in_flight(self) -> int:
        return self._limit - self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        """Take a slot, waiting in turn if need be; raises :class:`Overloaded` if none is to be
        had. Every successful call is paired with one :meth:`release`."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        if len(self._waiters) >= self._queue:
            raise self._refusal("queue_full")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._wait_s):
                await waiter
        except TimeoutError:
            if _granted(waiter):  # handed a slot just as the deadline passed: keep it
                return
            raise self._refusal("wait_timeout") from None
        except BaseException:  # the caller went away while waiting
            if _granted(waiter):
                self.release()
            raise
        finally:
            if not _granted(waiter):
                self._forget(waiter)

    def release(self) -> None:
        """Hand the slot to the oldest waiter still waiting, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):  # already taken off by release
            self._waiters.remove(waiter)

    def _refusal(self, cause: str) -> Overloaded:
        return Overloaded(retry_after_s=self._retry_after_s, reason=f"overloaded:{cause}")


def _granted(waiter: asyncio.Future[None]) -> bool:
    return waiter.done() and not waiter.cancelled()
