"""The explicit transactions the Query API holds open between a client's requests.

Neo4j's Query API keeps a transaction open between requests under an id it hands out, until the
client commits or rolls it back or leaves it idle too long. The gateway does the same, in its
own process (a client sends every request of a transaction to the replica that opened it, as
it would to the Neo4j server that did):

- an id is 128 random bits (URL-safe base64): nobody guesses one;
- a transaction is its opener's: to any other identity (method, issuer, subject) it does not
  exist, and a request naming it gets the 404 of an unknown id (recorded with its reason);
- idle longer than ``server.transaction_timeout_s`` (every request to it, a statement or an
  empty keep-alive, starts the count again), or past Neo4j's timeout for it (counted from its
  begin, which no request restarts: Neo4j has ended it by then, and keep-alives must not hold
  its connection and its DAG's leased user for ever), it is rolled back and the rollback
  recorded as ``expired``: by the request that next names it, or by a sweep at most a second
  later;
- at most ``server.max_transactions`` are open at once, since each holds a Neo4j connection and
  its DAG's credential, and ``server.max_transactions_per_identity`` of one identity, so that
  no caller can hold them all: beyond that, opening one is refused (503,
  ``MaximumTransactionLimitReached``, which Neo4j's drivers try again later);
- when the gateway stops, those still open are rolled back (``closed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from proxy.clock import Clock
from proxy.errors import TooManyTransactions, TransactionNotFound
from proxy.gateway.transactions import EndCause, Transaction
from proxy.principal import Identity

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Held:
    """One open transaction, whose it is, and until when it may stay idle."""

    id: str
    transaction: Transaction
    owner: tuple[str, str, str]
    expires_at: float
    busy: int = 0  # requests using it now: never expired under them

    @property
    def expires(self) -> str:
        """When it expires if left idle, as Neo4j writes it (UTC, whole seconds, rounded down):
        never past Neo4j's timeout for it, once begun there."""
        deadline = self.transaction.deadline
        at = self.expires_at if deadline is None else min(self.expires_at, deadline)
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HeldTransactions:
    """The open transactions of the Query API (see the module docstring)."""

    def __init__(
        self, *, timeout_s: float, maximum: int, clock: Clock, per_identity: int | None = None
    ) -> None:
        self._timeout_s = timeout_s
        self._maximum = maximum
        self._per_identity = maximum if per_identity is None else per_identity
        self._clock = clock
        self._held: dict[str, Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    def add(self, transaction: Transaction, owner: Identity) -> Held:
        """Hold ``transaction`` for ``owner``, in use by the request that opened it (release
        it with :meth:`release`); refused beyond the configured maximum."""
        if len(self._held) >= self._maximum:
            raise TooManyTransactions(reason="max_transactions")
        whose = _owner(owner)
        if sum(held.owner == whose for held in self._held.values()) >= self._per_identity:
            raise TooManyTransactions(reason="max_transactions_per_identity")
        held = Held(
            id=secrets.token_urlsafe(16),
            transaction=transaction,
            owner=whose,
            expires_at=self._clock() + self._timeout_s,
            busy=1,
        )
        self._held[held.id] = held
        return held

    async def claim(self, transaction_id: str, owner: Identity, database: str) -> Held:
        """The transaction ``transaction_id`` of ``owner`` on ``database``, in use by the
        calling request until :meth:`release`; :class:`TransactionNotFound` if there is none
        (an expired one is rolled back first)."""
        held = self._held.get(transaction_id)
        if held is None:
            raise TransactionNotFound(reason="transaction_unknown")
        if held.owner != _owner(owner):
            raise TransactionNotFound(reason="transaction_of_another_identity")
        if held.transaction.database != database:
            raise TransactionNotFound(reason="transaction_of_another_database")
        now = self._clock()
        if held.busy == 0 and held.expires_at <= now:
            await self._end(held, "expired")
            raise TransactionNotFound(reason="transaction_expired")
        held.busy += 1
        held.expires_at = self._expiry(held, now)
        return held

    def release(self, held: Held) -> None:
        """The request using ``held`` is done: its idle time starts now; an ended transaction
        is let go."""
        held.busy -= 1
        held.expires_at = self._expiry(held, self._clock())
        if not held.transaction.open:
            self._held.pop(held.id, None)

    async def sweep(self) -> None:
        """Roll back every transaction idle past its time."""
        now = self._clock()
        for held in [h for h in self._held.values() if h.busy == 0 and h.expires_at <= now]:
            await self._end(held, "expired")

    @contextlib.asynccontextmanager
    async def sweeping(self) -> AsyncIterator[None]:
        """Sweep in the background for the block; at its end, roll back what is still open."""
        interval_s = min(1.0, self._timeout_s / 4)

        async def sweeper() -> None:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    await self.sweep()
                except Exception:
                    log.exception("sweeping expired transactions failed")

        task = asyncio.create_task(sweeper(), name="cyphergate-transaction-sweeper")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for held in list(self._held.values()):
                await self._end(held, "closed")

    def _expiry(self, held: Held, now: float) -> float:
        """When ``held`` expires if left idle from ``now``: never past Neo4j's timeout for it."""
        idle = now + self._timeout_s
        deadline = held.transaction.deadline
        return idle if deadline is None else min(idle, deadline)

    async def _end(self, held: Held, cause: EndCause) -> None:
        self._held.pop(held.id, None)
        await held.transaction.rollback(cause=cause)


def _owner(identity: Identity) -> tuple[str, str, str]:
    return identity.method, identity.issuer, identity.subject
