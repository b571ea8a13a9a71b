"""The Bolt door's explicit transactions: begun for a caller verified again, within the slots
its identity and the door have, and ended at Neo4j's deadline for them.

A Bolt transaction lives on its connection and, once its first statement has run, holds one of
its DAG's pooled Neo4j connections until it ends. One identity opening a transaction on each of
many connections held every pooled connection of a DAG that other identities share: theirs
then waited 10 s and got 503 (found by review). So, as the Query API does with its own
(:mod:`proxy.api.held`), one identity holds at most ``server.max_transactions_per_identity``
Bolt transactions at once in a gateway process, and the door ``server.bolt_max_transactions``
in all (many identities' transactions held as many Neo4j connections); a ``BEGIN`` beyond is
refused, recorded, with ``Neo.TransientError.Transaction.MaximumTransactionLimitReached``,
which drivers retry later.

Neo4j ends a transaction whose time-out passed, but keeps it (and the gateway its connection,
leased user and slot) until its client speaks again, which a client that went quiet never
does. So the connection ends it at its deadline (:class:`Expiry`): rolled back and recorded
once, ``expired``, and the client's next message told with Neo4j's code for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from proxy.bolt.messages import Begin
from proxy.errors import CypherGateError, TooManyTransactions
from proxy.gateway.call import Call
from proxy.gateway.path import Gateway
from proxy.gateway.transactions import Transaction
from proxy.principal import Identity

log = logging.getLogger(__name__)
GiveBack = Callable[[], None]


def nothing_held() -> None:
    """What giving back costs when nothing was taken."""


class TransactionSlots:
    """At most ``per_identity`` open transactions of one identity, and ``total`` of all (see
    the module docstring)."""

    def __init__(self, per_identity: int, total: int | None = None) -> None:
        self._per_identity = per_identity
        self._total = total
        self._held: Counter[tuple[str, str, str]] = Counter()

    def take(self, identity: Identity) -> GiveBack:
        """One slot of ``identity``'s, or :class:`TooManyTransactions`; returns what gives it
        back (once, however often it is called)."""
        owner = (identity.method, identity.issuer, identity.subject)
        if self._total is not None and self._held.total() >= self._total:
            raise TooManyTransactions(reason="bolt_max_transactions")
        if self._held[owner] >= self._per_identity:
            raise TooManyTransactions(reason="max_transactions_per_identity")
        self._held[owner] += 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self._held[owner] -= 1
                if self._held[owner] <= 0:
                    del self._held[owner]

        return give_back


class Expiry:
    """A connection's watch over its transaction's deadline: ``end`` is called (in a task of its
    own) once the deadline passes, unless the connection is answering a message then; it is
    called again after that message (:meth:`arm`). ``end`` must check that the transaction it
    is handed is still the connection's."""

    def __init__(self, end: Callable[[Transaction], Awaitable[None]], empty_s: float) -> None:
        self._end = end
        # A transaction that has run nothing has no deadline on Neo4j (none is begun there
        # before its first statement), yet it holds a slot of the door's: it ends after this.
        self._empty_s = empty_s
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: Transaction | None = None
        self._placed = False  # whether the timer is for Neo4j's deadline or _empty_s
        self._empty_until = 0.0  # the loop's time at which the transaction, still empty, ends
        self.ending: asyncio.Task[None] | None = None  # an end under way
        self.busy = False  # the connection is answering a message
        self.expired = False  # a transaction ended so: the client's next message is told

    def arm(self, transaction: Transaction) -> None:
        """Watch ``transaction``'s deadline: Neo4j's once it is begun there, else ``empty_s``
        from the first time it is armed (no-op if watched so already)."""
        remaining = transaction.remaining_s()
        placed = remaining is not None
        if transaction is self._armed_for and self._timer is not None and placed == self._placed:
            return
        loop = asyncio.get_running_loop()
        if remaining is None:
            if transaction is not self._armed_for:  # counted from when it is first watched
                self._empty_until = loop.time() + self._empty_s
            remaining = max(0.0, self._empty_until - loop.time())
        self.disarm()
        self._armed_for, self._placed = transaction, placed
        self._timer = loop.call_later(remaining, self._fire, transaction)

    def disarm(self) -> None:
        """The transaction ended otherwise: its deadline no longer matters."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None

    async def settled(self) -> None:
        """Wait for the end under way, if any (the connection's next message comes after it).
        Shielded, and forgotten only once done: cancelling the wait (the door closing, an idle
        time-out) must not stop a rollback half-way, before its end record is written and what
        the transaction held given back; a later wait (the connection's close) waits again."""
        ending = self.ending
        if ending is not None:
            await asyncio.shield(ending)
            self.ending = None

    def _fire(self, transaction: Transaction) -> None:
        self._timer = None
        if not self.busy:  # else the message's end arms it again, due at once
            self.ending = asyncio.get_running_loop().create_task(self._ended(transaction))

    async def _ended(self, transaction: Transaction) -> None:
        try:
            await self._end(transaction)
        except Exception:  # what failed is recorded; the connection goes on
            log.exception("bolt: ending transaction %s at its deadline failed", transaction.id)


async def begun(
    gateway: Gateway, call: Call, begin: Begin, slots: TransactionSlots
) -> tuple[Transaction, GiveBack]:
    """The transaction a ``BEGIN`` asks for, and what gives its slot back when it ends. Its
    caller is verified again (a token expired since ``LOGON`` is refused, as a statement's
    would be), its DAG must have a grant for the database (``Gateway.opening``: else it takes
    no slot), and it is named on it before any statement runs, so its end record names it even
    if none did. A refusal is recorded and raised."""
    principal = await gateway.opening(call)  # a refusal is recorded there
    try:
        give_back = slots.take(principal.identity)
    except CypherGateError as error:
        await gateway.refuse(call, error, identity=principal.identity)
        raise
    transaction = gateway.begin(
        database=call.database,
        access_mode=begin.access_mode,
        bookmarks=begin.bookmarks,
        metadata=begin.metadata,
        timeout_s=begin.timeout_s,
    )
    transaction.opened_by(principal, call.client)
    return transaction, give_back
