"""Benchmark: what running statements as leased per-DAG users costs Neo4j, by how the gateway's
driver logs in, in one run on the local stack's Neo4j (no gateway process: the executor runs
in this process, so only the driver's use differs).

The variants, each given the same small reads in the same order, 16 at a time:

* ``direct``            the official async driver logged in as one leased user (the baseline);
* ``one pool, 1 DAG``   the executor's shared driver, the user named per session (session auth);
* ``one pool, 4 DAGs``  the same, the statements of four DAGs interleaved;
* ``own pools, 1 DAG``  a driver per leased user (:mod:`proxy.neo4j.pools`), one DAG;
* ``own pools, 4 DAGs`` the same, four DAGs interleaved.

Every variant first runs once unmeasured with the driver's debug log counted (the Bolt messages
it sends per statement: ``LOGOFF``/``LOGON`` is a connection changing user, which makes Neo4j
check a password); then the variants run in mirrored order, twice, with Neo4j's CPU time (user
plus system, from ``/proc``) read around each. It prints Neo4j's CPU milliseconds per statement,
throughput, and the messages per statement.

    .venv/bin/python benchmarks/leased_logins.py [--requests 2000]
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import neo4j
from measure import Work, cpu_seconds, main_on_neo4j

from proxy.neo4j.executor import Neo4jExecutor, connect
from proxy.neo4j.leases import LeaseManager
from proxy.neo4j.logins import Login
from proxy.neo4j.pools import UserPools
from proxy.neo4j.secret_sources import Credential
from proxy.statement import Execution

CLIENTS = 16
DAGS = ("bench_a", "bench_b", "bench_c", "bench_d")
_SENT = re.compile(r"\]\s+C: ([A-Z]+)")
Send = Callable[[int, str, dict[str, Any]], Awaitable[None]]


class BoltMessages(logging.Handler):
    """Counts the Bolt messages the driver sends, from its debug log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sent: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        sent = _SENT.search(record.getMessage())
        if sent is not None:
            self.sent[sent[1]] += 1


async def send_all(send: Send, work: Work) -> float:
    """Send ``work`` from ``CLIENTS`` concurrent clients; the seconds it took."""
    pending = iter(enumerate(work))

    async def client() -> None:
        for i, (statement, parameters) in pending:
            await send(i, statement, parameters)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return time.perf_counter() - started


async def run(status: dict[str, Any], work: Work) -> None:
    db, neo4j_pid = status["neo4j"], status["processes"]["neo4j"]["pid"]
    uri = db["bolt_uri"]
    gateway = neo4j.basic_auth(db["gateway_user"], db["gateway_password"])
    shared = connect(uri, gateway, max_connection_lifetime_s=3600)
    pools = UserPools(lambda c: connect(uri, c.auth(), max_connection_lifetime_s=3600))
    leases = LeaseManager(
        shared,
        path=Path(tempfile.mkdtemp(prefix="cyphergate-bench-")) / "leases.sqlite3",
        prefix="cg_bench_",
        ttl_s=3600,
        renew_fraction=0.9,
        on_dropped=pools.close_user,
    )
    await leases.open()
    users: dict[str, Credential] = {}
    for dag in DAGS:
        async with leases.hold(dag) as lease:
            users[dag] = lease.credential
    executor = Neo4jExecutor(shared, own=Login(user=db["gateway_user"]))
    direct = neo4j.AsyncGraphDatabase.driver(uri, auth=users[DAGS[0]].auth())

    def through_executor(login: Callable[[str], Login], dags: int) -> Send:
        async def send(i: int, statement: str, parameters: dict[str, Any]) -> None:
            dag = DAGS[i % dags]
            execution = Execution(
                database="neo4j",
                statement=statement,
                parameters=parameters,
                access_mode="READ",
                timeout_s=30.0,
                metadata={"cyphergate.dag": dag, "cyphergate.request": str(i)},
            )
            async with executor.run(execution, login(dag)) as rows:
                async for _ in rows:
                    pass
                await rows.summary()

        return send

    async def send_direct(i: int, statement: str, parameters: dict[str, Any]) -> None:
        del i
        async with direct.session(database="neo4j") as session:
            await (await session.run(statement, parameters)).values()

    def session_auth(dag: str) -> Login:
        return Login(user=users[dag].user, auth=users[dag].auth())

    def own_pool(dag: str) -> Login:
        return Login(user=users[dag].user, driver=pools.driver(users[dag]))

    variants: dict[str, Send] = {
        "direct": send_direct,
        "one pool, 1 DAG": through_executor(session_auth, 1),
        "one pool, 4 DAGs": through_executor(session_auth, 4),
        "own pools, 1 DAG": through_executor(own_pool, 1),
        "own pools, 4 DAGs": through_executor(own_pool, 4),
    }
    messages, driver_log = BoltMessages(), logging.getLogger("neo4j")
    sent: dict[str, Counter[str]] = {}
    for name, send in variants.items():  # unmeasured: connections opened, messages counted
        messages.sent.clear()
        driver_log.addHandler(messages)
        driver_log.setLevel(logging.DEBUG)
        await send_all(send, work)
        driver_log.removeHandler(messages)
        driver_log.setLevel(logging.WARNING)
        sent[name] = Counter(messages.sent)
    cpu_s: dict[str, float] = dict.fromkeys(variants, 0.0)
    seconds: dict[str, float] = dict.fromkeys(variants, 0.0)
    for name in [*variants, *reversed(variants)] * 2:
        before = cpu_seconds(neo4j_pid)
        seconds[name] += await send_all(variants[name], work)
        cpu_s[name] += cpu_seconds(neo4j_pid) - before
    await direct.close()
    await leases.close()
    await pools.close()
    await shared.close()

    n = 4 * len(work)
    print(f"{'variant':<19}{'neo4j ms':>9}{'st/s':>7}  Bolt messages per statement")
    for name in variants:
        counts = ", ".join(f"{m} {c / len(work):.2f}" for m, c in sorted(sent[name].items()))
        print(f"{name:<19}{1000 * cpu_s[name] / n:>9.3f}{n / seconds[name]:>7.0f}  {counts}")
    base = cpu_s["direct"]
    print("\nNeo4j CPU per statement / direct: ", end="")
    print(", ".join(f"{name} {cpu_s[name] / base:.2f}" for name in variants if name != "direct"))


if __name__ == "__main__":
    main_on_neo4j(__doc__, run, requests=2000)
