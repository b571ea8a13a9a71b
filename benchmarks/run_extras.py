"""Benchmark: what the gateway's ``RUN`` costs Neo4j, field by field, in one run on the local
stack's Neo4j (no gateway process: the relay's own Bolt connections run in this process).

Through the gateway's Bolt door Neo4j spends more CPU per statement than straight (1.15 to 1.5
times at 16 clients). Besides the statement, the gateway's ``RUN`` names the database and
carries the access mode, a transaction time-out and its metadata (DAG, task, run, try, request
and decision ids); the variants, each given the same small reads in the same order, 16 at a time:

* ``driver``          the official async driver as the stack's administrator, one auto-commit
  statement per session (what a DAG does without the gateway);
* ``relay db``        the relay's ``RUN`` and ``PULL`` (:mod:`proxy.neo4j.relay_rows`) with the
  database only;
* ``relay +mode``, ``relay +timeout``, ``relay +metadata``: one more field each;
* ``relay all``       every field, as the gateway sends a read.

Neo4j is first sent statements straight until its JIT has warmed (as benchmarks/request_path.py
does); then each variant runs once unmeasured, then all in mirrored order (a b c ... c b a), three
times over, with Neo4j's CPU time (user plus system, from ``/proc``) read around each. It prints
Neo4j's CPU per statement, throughput, and each over the driver's.

    .venv/bin/python benchmarks/run_extras.py [--requests 4000]
"""

from __future__ import annotations

from typing import Any

import neo4j
from leased_logins import CLIENTS, Send, send_all
from measure import Work, cpu_seconds, main_on_neo4j

from proxy.codec import wire
from proxy.neo4j.bolt import RUN, Address
from proxy.neo4j.relay import UserBoltPools
from proxy.neo4j.relay_rows import RelayRows
from proxy.neo4j.secret_sources import Credential
from proxy.statement import Execution

WARM_UP_PASSES = 12
ROUNDS = 3
METADATA = {
    "cyphergate.dag": "bench",
    "cyphergate.task": "read_items",
    "cyphergate.run": "manual__2026-12-03T10:00:00+00:00",
    "cyphergate.try": 1,
    "cyphergate.request": "0192f3a0-1111-7222-8333-444455556666",
    "cyphergate.decision": "0192f3a0-1111-7222-8333-444455556667",
}
EXTRAS: dict[str, dict[str, Any]] = {
    "relay db": {"db": "neo4j"},
    "relay +mode": {"db": "neo4j", "mode": "r"},
    "relay +timeout": {"db": "neo4j", "tx_timeout": 30_000},
    "relay +metadata": {"db": "neo4j", "tx_metadata": METADATA},
    "relay all": {"db": "neo4j", "mode": "r", "tx_timeout": 30_000, "tx_metadata": METADATA},
}


async def run(status: dict[str, Any], work: Work) -> None:
    db, neo4j_pid = status["neo4j"], status["processes"]["neo4j"]["pid"]
    credential = Credential(db["user"], db["password"])
    driver = neo4j.AsyncGraphDatabase.driver(
        db["bolt_uri"], auth=credential.auth(), max_connection_pool_size=CLIENTS
    )
    pools = UserBoltPools(Address.parse(db["bolt_uri"]))
    pool = pools.pool(credential)

    async def send_driver(i: int, statement: str, parameters: dict[str, Any]) -> None:
        del i
        async with driver.session(database="neo4j") as session:
            await (await session.run(statement, parameters)).values()

    def relay(extra: dict[str, Any]) -> Send:
        async def send(i: int, statement: str, parameters: dict[str, Any]) -> None:
            del i
            execution = Execution(
                database="neo4j",
                statement=statement,
                parameters=parameters,
                access_mode="READ",
                timeout_s=30.0,
                metadata={},
            )
            message = wire.encode(RUN, statement, parameters, extra)
            connection = await pool.acquire()
            try:
                rows = await RelayRows.start(connection, execution, message, auto_commit=True)
                async for _ in rows:
                    pass
                await rows.summary()
                await rows.close(discard=True)
            finally:
                await pool.release(connection)

        return send

    variants: dict[str, Send] = {"driver": send_driver}
    variants.update((name, relay(extra)) for name, extra in EXTRAS.items())
    for n in range(WARM_UP_PASSES):  # Neo4j's JIT: its first passes cost it several times more
        before = cpu_seconds(neo4j_pid)
        await send_all(send_driver, work)
        spent = cpu_seconds(neo4j_pid) - before
        print(f"  Neo4j warm-up, pass {n + 1}: {1000 * spent / len(work):.3f} ms per statement")
    for send in variants.values():  # unmeasured: connections opened
        await send_all(send, work)
    cpu_s: dict[str, float] = dict.fromkeys(variants, 0.0)
    seconds = dict(cpu_s)
    for name in [*variants, *reversed(variants)] * ROUNDS:
        before = cpu_seconds(neo4j_pid)
        seconds[name] += await send_all(variants[name], work)
        cpu_s[name] += cpu_seconds(neo4j_pid) - before
    await driver.close()
    await pools.close()

    n = 2 * ROUNDS * len(work)
    print(f"\n{'variant':<17}{'neo4j ms':>9}{'st/s':>7}  over the driver's")
    for name in variants:
        over = cpu_s[name] / cpu_s["driver"]
        print(f"{name:<17}{1000 * cpu_s[name] / n:>9.3f}{n / seconds[name]:>7.0f}  {over:.2f}")


if __name__ == "__main__":
    main_on_neo4j(__doc__, run, requests=4000)
