"""The admission gate on its own: slots, the bounded queue, its deadline, and hand-over."""

from __future__ import annotations

import asyncio

import pytest

from proxy.errors import Overloaded
from proxy.gateway.admission import Admission
from proxy.metrics import Metrics
from proxy.settings import AdmissionSettings


def gate(
    in_flight: int, waiting: int, wait_s: float = 5.0, metrics: Metrics | None = None
) -> Admission:
    settings = AdmissionSettings(
        max_in_flight=in_flight, max_waiting=waiting, max_wait_s=wait_s, retry_after_s=3
    )
    return Admission(settings, metrics)


def test_beyond_slots_and_queue_is_refused_at_once() -> None:
    async def scenario() -> None:
        admission = gate(2, 1)
        await admission.acquire()
        await admission.acquire()
        waiter = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0)
        assert (admission.in_flight, admission.waiting) == (2, 1)
        started = asyncio.get_running_loop().time()
        with pytest.raises(Overloaded) as refused:
            await admission.acquire()
        assert asyncio.get_running_loop().time() - started < 0.1
        assert refused.value.reason == "overloaded:queue_full"
        assert refused.value.retry_after_s == 3
        assert refused.value.status == 503
        assert refused.value.code.startswith("Neo.TransientError.")
        admission.release()  # hands the slot to the waiter
        await waiter
        assert (admission.in_flight, admission.waiting) == (2, 0)

    asyncio.run(scenario())


def test_a_waiter_is_refused_after_its_deadline() -> None:
    async def scenario() -> None:
        admission = gate(1, 4, wait_s=0.2)
        await admission.acquire()
        started = asyncio.get_running_loop().time()
        with pytest.raises(Overloaded) as refused:
            await admission.acquire()
        waited = asyncio.get_running_loop().time() - started
        assert 0.15 < waited < 2
        assert refused.value.reason == "overloaded:wait_timeout"
        assert admission.waiting == 0
        admission.release()
        assert admission.in_flight == 0

    asyncio.run(scenario())


def test_slots_go_to_waiters_first_come_first_served() -> None:
    async def scenario() -> None:
        admission = gate(1, 3)
        await admission.acquire()
        order: list[int] = []

        async def take(n: int) -> None:
            await admission.acquire()
            order.append(n)

        waiters = [asyncio.create_task(take(n)) for n in range(3)]
        await asyncio.sleep(0)
        for _ in range(3):
            admission.release()
            await asyncio.sleep(0)
        await asyncio.gather(*waiters)
        assert order == [0, 1, 2]
        assert admission.in_flight == 1  # the last one still holds its slot

    asyncio.run(scenario())


def test_a_newcomer_does_not_jump_the_queue() -> None:
    async def scenario() -> None:
        admission = gate(1, 2)
        await admission.acquire()
        first = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0)
        admission.release()  # handed to ``first`` before it even runs again
        newcomer = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0)
        await first
        assert not newcomer.done()  # it waits for the slot ``first`` holds
        admission.release()
        await newcomer
        assert (admission.in_flight, admission.waiting) == (1, 0)

    asyncio.run(scenario())


def test_a_cancelled_waiter_gives_its_place_and_any_slot_back() -> None:
    async def scenario() -> None:
        metrics = Metrics()
        admission = gate(1, 2, metrics=metrics)
        await admission.acquire()
        gone = asyncio.create_task(admission.acquire())
        after = asyncio.create_task(admission.acquire())
        await asyncio.sleep(0)
        page = metrics.render().decode()  # the gauges say what holds and waits now
        assert "cyphergate_statements_in_flight 1.0" in page
        assert "cyphergate_statements_waiting 2.0" in page
        gone.cancel()
        await asyncio.sleep(0)
        assert admission.waiting == 1
        admission.release()  # to the waiter still waiting, not the cancelled one
        await after
        assert (admission.in_flight, admission.waiting) == (1, 0)
        admission.release()
        assert admission.in_flight == 0
        page = metrics.render().decode()
        assert "cyphergate_statements_in_flight 0.0" in page
        assert "cyphergate_statements_waiting 0.0" in page

    asyncio.run(scenario())


MINE = ("oidc", "https://issuer", "mine")
THEIRS = ("oidc", "https://issuer", "theirs")


def shared(in_flight: int, waiting: int, share: int | None, wait_s: float = 5.0) -> Admission:
    settings = AdmissionSettings(
        max_in_flight=in_flight,
        max_waiting=waiting,
        max_wait_s=wait_s,
        max_in_flight_per_identity=share,
    )
    return Admission(settings)


def test_one_identity_holds_its_share_and_others_pass_its_waiters() -> None:
    async def scenario() -> None:
        admission = shared(4, 8, share=2)
        await admission.acquire(MINE)
        await admission.acquire(MINE)
        beyond = asyncio.create_task(admission.acquire(MINE))
        await asyncio.sleep(0)
        assert (admission.in_flight, admission.waiting) == (2, 1)  # waits, slots free
        await admission.acquire(THEIRS)  # a free slot, below its share: at once
        await admission.acquire()  # a caller not known before verification too
        assert admission.in_flight == 4
        admission.release(THEIRS)  # not MINE's to take: MINE is at its share
        await asyncio.sleep(0)
        assert not beyond.done() and admission.in_flight == 3
        admission.release(MINE)  # now it is
        await beyond
        assert (admission.in_flight, admission.waiting) == (3, 0)

    asyncio.run(scenario())


def test_a_waiter_still_at_its_share_is_refused_so() -> None:
    async def scenario() -> None:
        admission = shared(4, 8, share=1, wait_s=0.2)
        await admission.acquire(MINE)
        with pytest.raises(Overloaded) as refused:
            await admission.acquire(MINE)
        assert refused.value.reason == "overloaded:identity_share"
        assert (admission.in_flight, admission.waiting) == (1, 0)
        admission.release(MINE)
        await admission.acquire(MINE)  # its share given back is its to take again
        assert admission.in_flight == 1

    asyncio.run(scenario())


def test_a_freed_slot_goes_to_the_oldest_waiter_below_its_share() -> None:
    async def scenario() -> None:
        admission = shared(2, 8, share=1)
        await admission.acquire(MINE)
        await admission.acquire(THEIRS)
        mine = asyncio.create_task(admission.acquire(MINE))  # older, but at its share
        theirs = asyncio.create_task(admission.acquire(THEIRS))
        await asyncio.sleep(0)
        admission.release(THEIRS)
        await theirs
        assert not mine.done()
        admission.release(MINE)
        await mine
        assert (admission.in_flight, admission.waiting) == (2, 0)

    asyncio.run(scenario())


def test_a_slot_taken_for_no_one_counts_against_its_caller_once_claimed() -> None:
    """The HTTP door's: its caller is known only once verified, after the slot is taken."""

    async def scenario() -> None:
        admission = shared(3, 8, share=1, wait_s=0.2)
        await admission.acquire()
        await admission.claim(MINE)  # below its share: the slot is now MINE's
        await admission.acquire()
        with pytest.raises(Overloaded) as refused:
            await admission.claim(MINE)  # at its share: given back, waited for in vain
        assert refused.value.reason == "overloaded:identity_share"
        assert (admission.in_flight, admission.waiting) == (1, 0)
        await admission.acquire()
        await admission.claim(THEIRS)  # another identity's is not held back
        await admission.acquire()
        assert admission.in_flight == 3
        unknown = asyncio.create_task(admission.acquire())  # waits: no slot free
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as refused:
            await admission.claim(MINE)
        assert refused.value.reason == "overloaded:wait_timeout"  # its slot went to the waiter
        await unknown
        assert (admission.in_flight, admission.waiting) == (3, 0)
        admission.release(MINE)
        admission.release(THEIRS)
        admission.release()
        assert admission.in_flight == 0

    asyncio.run(scenario())
