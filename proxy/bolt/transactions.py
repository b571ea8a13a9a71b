"""The Bolt door's explicit transactions: begun for a caller verified again, within the slots
its identity has across the door's connections.

A Bolt transaction lives on its connection and, once its first statement has run, holds one of
its DAG's pooled Neo4j connections until it ends. One identity opening a transaction on each of
many connections held every pooled connection of a DAG that other identities share: theirs
then waited 10 s and got 503 (found by review). So, as the Query API does with its own
(:mod:`proxy.api.held`), one identity holds at most ``server.max_transactions_per_identity``
Bolt transactions at once in a gateway process; a ``BEGIN`` beyond is refused, recorded, with
``Neo.TransientError.Transaction.MaximumTransactionLimitReached``, which drivers retry later.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from proxy.bolt.messages import Begin
from proxy.errors import CypherGateError, TooManyTransactions
from proxy.gateway.call import Call
from proxy.gateway.path import Gateway
from proxy.gateway.transactions import Transaction
from proxy.principal import Identity

GiveBack = Callable[[], None]


def nothing_held() -> None:
    """What giving back costs when nothing was taken."""


class TransactionSlots:
    """At most ``per_identity`` open transactions of one identity (see the module docstring)."""

    def __init__(self, per_identity: int) -> None:
        self._per_identity = per_identity
        self._held: Counter[tuple[str, str, str]] = Counter()

    def take(self, identity: Identity) -> GiveBack:
        """One slot of ``identity``'s, or :class:`TooManyTransactions`; returns what gives it
        back (once, however often it is called)."""
        owner = (identity.method, identity.issuer, identity.subject)
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


async def begun(
    gateway: Gateway, call: Call, begin: Begin, slots: TransactionSlots
) -> tuple[Transaction, GiveBack]:
    """The transaction a ``BEGIN`` asks for, and what gives its slot back when it ends. Its
    caller is verified again (a token expired since ``LOGON`` is refused, as a statement's
    would be) and named on it before any statement runs, so its end record names it even if
    none did. A refusal is recorded and raised."""
    principal = await gateway.admit(call)  # a refusal is recorded there
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
