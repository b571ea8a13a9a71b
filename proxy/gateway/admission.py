"""Bounded admission: how many statements the gateway works on at once, and how many wait.

A statement of either front door takes a slot before anything else is done for it (before its
caller is authenticated) and gives it back once its outcome is recorded. At most
``server.admission.max_in_flight`` statements hold a slot; up to ``max_waiting`` more wait for
one, first come first served, each for ``max_wait_s`` at most. A statement that finds the queue
full, or waits longer, is refused at once with :class:`~proxy.errors.Overloaded` (HTTP 503 with
``Retry-After``; over Bolt a transient ``FAILURE`` that drivers retry), recorded like any
refusal.

A share per identity: a slot is held until a statement's outcome is recorded, which over Bolt
is once its client has read its result, so a client that runs statements and never reads them
holds slots for as long as their time-outs allow. One identity doing so on 40 connections held
every slot, and every other caller was refused. So a statement whose front door knows its
caller before verifying it (a Bolt connection, from its ``LOGON``) counts against that
identity's share, ``max_in_flight_per_identity`` (three quarters of the slots by default:
the last quarter is always left to the others), and one whose
caller is known only once verified (an HTTP statement's) from then on (:meth:`claim`), before
its body is read: 40 requests of one identity whose bodies never came held every slot for
``server.http.body_timeout_s``, and every other caller was refused. One beyond its share waits
in the queue like any other, but a slot freed goes to the oldest waiter whose identity is
below its share, and one arriving when a slot is free takes it if its own identity is. A
waiter refused when its wait ends while a slot is free, its identity at its share, says so:
``overloaded:identity_share`` (otherwise ``overloaded:wait_timeout``).

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

from proxy.errors import Overloaded
from proxy.metrics import Metrics
from proxy.settings import AdmissionSettings

# Whose share a statement counts against: an identity (method, issuer, subject), or None.
Owner = tuple[str, str, str] | None


class Admission:
    """The gate (see the module docstring); one per process, shared by both front doors."""

    def __init__(self, settings: AdmissionSettings, metrics: Metrics | None = None) -> None:
        self._limit = settings.max_in_flight
        self._queue = settings.max_waiting
        self._wait_s = settings.max_wait_s
        self._retry_after_s = settings.retry_after_s
        self._free = self._limit
        share = settings.max_in_flight_per_identity
        # Three quarters by default, not half: one DAG's 64 clients over Bolt held to 16 slots
        # of 32 cost it 18 % of its throughput and the gateway 18 % more CPU per statement
        # (benchmarks/request_path.py, --variant max_in_flight_per_identity=32, same run).
        self._share = self._limit - self._limit // 4 if share is None else share
        self._held: dict[tuple[str, str, str], int] = {}  # slots by identity, while held
        # Waiting statements (their future, whose they are), oldest first; a slot is handed
        # over by resolving one. While a slot is free, every waiter is at its identity's share.
        self._waiters: collections.deque[tuple[asyncio.Future[None], Owner]] = collections.deque()
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

    async def acquire(self, owner: Owner = None) -> None:
        """Take a slot for ``owner`` (see the module docstring), waiting in turn if need be;
        raises :class:`Overloaded` if none is to be had. Every successful call is paired with
        one :meth:`release` of the same ``owner``."""
        if self._free > 0 and (owner is None or self._held.get(owner, 0) < self._share):
            self._free -= 1  # no waiter may take it (see __init__)
            if owner is not None:
                self._held[owner] = self._held.get(owner, 0) + 1
            return
        if len(self._waiters) >= self._queue:
            raise self._refusal("queue_full")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((waiter, owner))
        try:
            async with asyncio.timeout(self._wait_s):
                await waiter
        except TimeoutError:
            if _granted(waiter):  # handed a slot just as the deadline passed: keep it
                return
            # A slot was free all along, but not this identity's to take.
            held_back = self._free > 0 and self._at_share(owner)
            raise self._refusal("identity_share" if held_back else "wait_timeout") from None
        except BaseException:  # the caller went away while waiting
            if _granted(waiter):
                self.release(owner)
            raise
        finally:
            if not _granted(waiter):
                self._forget(waiter)

    async def claim(self, owner: tuple[str, str, str]) -> None:
        """Count a slot taken for no one against ``owner``'s share, now that its caller is
        verified (an HTTP statement's, before its body is read). At its share, the slot is
        given back (as by :meth:`release`) and one is waited for as ``owner``'s, as by
        :meth:`acquire`. Every successful call is paired with one :meth:`release` of
        ``owner``; if it raises, no slot is held."""
        held = self._held.get(owner, 0)
        if held < self._share:
            self._held[owner] = held + 1
            return
        self.release()
        await self.acquire(owner)

    def release(self, owner: Owner = None) -> None:
        """Give back ``owner``'s slot: to the oldest waiter still waiting whose identity is
        below its share, or free it."""
        if owner is not None:
            left = self._held[owner] - 1
            if left:
                self._held[owner] = left
            else:
                del self._held[owner]
        for entry in self._waiters:  # none, unless every slot is taken or shares are
            waiter, whose = entry
            if not waiter.done() and not self._at_share(whose):
                self._waiters.remove(entry)
                if whose is not None:
                    self._held[whose] = self._held.get(whose, 0) + 1
                waiter.set_result(None)
                return
        self._free += 1

    def _at_share(self, owner: Owner) -> bool:
        return owner is not None and self._held.get(owner, 0) >= self._share

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        for entry in self._waiters:  # unless already taken off by release
            if entry[0] is waiter:
                self._waiters.remove(entry)
                return

    def _refusal(self, cause: str) -> Overloaded:
        return Overloaded(retry_after_s=self._retry_after_s, reason=f"overloaded:{cause}")


def _granted(waiter: asyncio.Future[None]) -> bool:
    return waiter.done() and not waiter.cancelled()
