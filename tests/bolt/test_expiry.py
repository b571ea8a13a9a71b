"""The Bolt door's watch over a transaction's deadline (proxy/bolt/transactions.py ``Expiry``),
at its seam: a stand-in transaction and end."""

from __future__ import annotations

import asyncio
from typing import cast

from proxy.bolt.transactions import Expiry
from proxy.gateway.transactions import Transaction


class _Due:
    """A transaction whose deadline on Neo4j has passed (or, ``placed=False``, not begun there)."""

    def __init__(self, *, placed: bool = True) -> None:
        self._placed = placed

    def remaining_s(self) -> float | None:
        return 0.0 if self._placed else None


def test_cancelling_the_wait_for_an_end_does_not_stop_it_half_way() -> None:
    """A connection cancelled while it waits for the end under way (the door closing, say) had
    the end cancelled with it, between the rollback and its record: no end record, nothing given
    back. The end goes on, and the connection's close waits for it again."""

    async def scenario() -> list[str]:
        steps: list[str] = []
        rolled_back = asyncio.Event()

        async def end(_: Transaction) -> None:
            steps.append("rollback")
            await rolled_back.wait()
            steps.append("recorded")

        expiry = Expiry(end, empty_s=30.0)
        expiry.arm(cast(Transaction, _Due()))
        await asyncio.sleep(0.01)  # the deadline passes: the end starts
        assert expiry.ending is not None
        waiting = asyncio.create_task(expiry.settled())
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        rolled_back.set()
        await expiry.settled()  # the close: waits for the same end, which went on
        assert expiry.ending is None
        return steps

    assert asyncio.run(scenario()) == ["rollback", "recorded"]


def test_an_empty_transaction_ends_after_its_own_time_out() -> None:
    async def scenario() -> bool:
        ended = asyncio.Event()

        async def end(_: Transaction) -> None:
            ended.set()

        expiry = Expiry(end, empty_s=0.05)
        empty = cast(Transaction, _Due(placed=False))
        expiry.arm(empty)
        await asyncio.sleep(0.02)
        expiry.arm(empty)  # another message meanwhile: the time-out is not restarted
        await asyncio.wait_for(ended.wait(), timeout=0.06)
        return ended.is_set()

    assert asyncio.run(scenario())
