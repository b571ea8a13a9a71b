"""Leases with a fake driver at the seam: who drops a retired lease, and what is counted.

Leases against the real Neo4j (creation, renewal under load, orphans after a crash) are in
tests/test_rotation.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from proxy.metrics import Metrics
from proxy.neo4j.leases import LeaseManager


class SlowDriver:
    """Answers every statement after a round trip; records the users dropped."""

    def __init__(self) -> None:
        self.dropped: Counter[str] = Counter()

    async def execute_query(self, statement: str, parameters: Any = None, **_: Any) -> Any:
        if statement.startswith("SHOW USERS"):
            return [], None, None
        await asyncio.sleep(0.05)
        if statement.startswith("DROP USER"):
            self.dropped[parameters["user"]] += 1
        return [], None, None


def manager(driver: SlowDriver, tmp_path: Path, now: list[float], metrics: Metrics) -> LeaseManager:
    """Leases of 100 s, renewed at half their time, on ``driver``, at the clock ``now[0]``."""
    return LeaseManager(
        driver,  # type: ignore[arg-type]
        path=tmp_path / "leases.sqlite3",
        prefix="cg_test_",
        ttl_s=100,
        renew_fraction=0.5,
        clock=lambda: now[0],
        metrics=metrics,
    )


def test_a_retired_lease_is_dropped_once_by_its_last_holder_or_the_maintainer(
    tmp_path: Path,
) -> None:
    metrics, driver, now = Metrics(), SlowDriver(), [0.0]

    def sample(name: str) -> float | None:
        return metrics.registry.get_sample_value(name)

    async def go() -> None:
        leases = manager(driver, tmp_path, now, metrics)
        await leases.open()
        release = asyncio.Event()

        async def request() -> None:
            async with leases.hold("etl"):
                await release.wait()

        running = asyncio.create_task(request())
        await asyncio.sleep(0.2)
        assert sample("cyphergate_neo4j_leases_active") == 1
        now[0] = 60  # past renew_fraction: the maintainer replaces the lease in use
        await leases._maintain_once()
        assert sample("cyphergate_neo4j_leases_active") == 2  # the old one is still held
        release.set()  # its last holder leaves and starts DROP USER ...
        await asyncio.sleep(0.01)
        await leases._maintain_once()  # ... while the maintainer's next round meets it
        await running
        await asyncio.sleep(0.1)
        assert sample("cyphergate_neo4j_leases_active") == 1
        assert list(driver.dropped.values()) == [1]
        await leases.close()
        assert sample("cyphergate_neo4j_leases_active") == 0
        assert list(driver.dropped.values()) == [1, 1]

    asyncio.run(go())
    assert sample("cyphergate_neo4j_leases_created_total") == 2
    assert sample("cyphergate_neo4j_leases_dropped_total") == 2


class GatedDriver(SlowDriver):
    """Holds the creation of DAG ``a``'s users until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def execute_query(self, statement: str, parameters: Any = None, **_: Any) -> Any:
        if statement.startswith("CREATE USER") and parameters["user"].startswith("cg_test_a_"):
            await self.gate.wait()
        return await super().execute_query(statement, parameters)


def test_a_lease_renewed_while_the_maintainer_waits_is_still_dropped_in_time(
    tmp_path: Path,
) -> None:
    """The maintainer walks the DAGs' leases as they were when its round began; a lease a request
    put in place meanwhile (its round waiting on Neo4j for another DAG) is not the one it found
    expired, and must stay current, to be dropped when its own time is up."""
    metrics, driver, now = Metrics(), GatedDriver(), [0.0]

    async def go() -> None:
        leases = manager(driver, tmp_path, now, metrics)
        await leases.open()
        driver.gate.set()
        for dag in ("a", "b"):
            await leases.release(await leases.acquire(dag))
        now[0] = 60  # both used: the maintainer replaces both (the new ones unused so far)
        await leases._maintain_once()
        now[0] = 100
        await leases.release(await leases.acquire("a"))  # a's lease used, b's not
        now[0] = 170  # a's due and used; b's expired and unused
        driver.gate.clear()
        round_ = asyncio.create_task(leases._maintain_once())  # waits to create a's user
        await asyncio.sleep(0.01)
        renewed = await leases.acquire("b")  # b's lease is due: this request replaces it
        driver.gate.set()
        await round_
        await leases.release(renewed)
        now[0] = 400  # far past the renewed lease's time
        await leases._maintain_once()
        await leases._maintain_once()
        assert driver.dropped[renewed.user] == 1, "a leased user outlived its time"
        await leases.close()

    asyncio.run(go())


class RefusingDriver(SlowDriver):
    """Refuses to create any user for DAG ``a`` once ``refuse`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse = False

    async def execute_query(self, statement: str, parameters: Any = None, **_: Any) -> Any:
        if (
            self.refuse
            and statement.startswith("CREATE USER")
            and parameters["user"].startswith("cg_test_a_")
        ):
            raise RuntimeError("Neo4j refuses this one user")
        return await super().execute_query(statement, parameters)


def test_one_dag_s_lease_that_cannot_be_renewed_keeps_no_other_user_past_its_time(
    tmp_path: Path,
) -> None:
    """A round of the maintainer that fails for one DAG's lease (Neo4j refuses its new user)
    still ends every other lease whose time is up: one DAG's trouble keeps no other DAG's
    user alive past its TTL, round after round."""
    metrics, driver, now = Metrics(), RefusingDriver(), [0.0]

    async def go() -> None:
        leases = manager(driver, tmp_path, now, metrics)
        await leases.open()
        for dag in ("a", "b"):
            await leases.release(await leases.acquire(dag))
        b = await leases.acquire("b")
        await leases.release(b)
        driver.refuse = True
        now[0] = 150  # both due and used: a's renewal fails, every round; b's is past its time
        for _ in range(3):
            await leases._maintain_once()  # a failure is logged, not raised: the round goes on
        assert driver.dropped[b.user] == 1, "b's user outlived its time"
        await leases.close()

    asyncio.run(go())
