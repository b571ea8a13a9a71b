"""Benchmark: what Cypher-aware policy costs per request, against the same request with policy
evaluation off, in one run, in-process, on the real Neo4j and OPA of a local stack.

Three variants of the gateway's request path (authentication is a stub here: it is measured by
benchmarks/auth.py), interleaved round by round so drift hits them alike:

* ``off``      a policy that allows everything, no OPA call (the baseline);
* ``cached``   real OPA, the analysis cache on (a repeated statement); OPA decides every time;
* ``uncached`` real OPA, the analysis cache off: EXPLAIN, plan reading and OPA every time.

Then the cost of analysis (EXPLAIN round trip plus plan reading, and plan reading alone) as the
statement grows. Prints p50/p99, the p50 added over ``off``, throughput ratios and peak RSS.

    .venv/bin/python benchmarks/policy.py [--requests 2000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from measure import local_stack, peak_rss_mib, percentile  # benchmarks/measure.py
from neo4j import GraphDatabase

from proxy.analysis import Analyzer, PlanReader
from proxy.app import open_neo4j, open_policy
from proxy.audit.sqlite import MEMORY, SQLiteAuditLog
from proxy.auth import SchemeRouter
from proxy.gateway.call import Call, Statement
from proxy.gateway.path import Gateway
from proxy.gateway.seams import PolicyDecider
from proxy.neo4j.executor import Neo4jExecutor
from proxy.plan import read_plan
from proxy.policy import Decision, Preflight, policy_input
from proxy.principal import DagResolver, Identity
from proxy.settings import Neo4jSettings, OPASettings, Settings

STATEMENT = "MATCH (p:Person)-[:ACTED_IN]->(m:Movie {title: $title}) RETURN p.name AS name"
IDENTITY = Identity(method="oidc", issuer="bench", subject="bench", asserted_dag="demo_labels")


class StubAuth:
    async def authenticate(self, credentials: str) -> Identity:
        del credentials  # authentication is not what this benchmark measures
        return IDENTITY

    async def check_ready(self) -> None:
        return None


class AllowAll:
    """Policy evaluation off: the baseline."""

    async def preflight(self, document: dict[str, Any]) -> Preflight:
        return Preflight(
            await self.decide(document), procedures=False, functions=False, writes=False
        )

    async def decide(self, document: dict[str, Any]) -> Decision:
        del document
        return Decision(
            allow=True, reasons=(), decision_id="off", access_mode="READ", timeout_s=None
        )


async def statement() -> Statement:
    return Statement(text=STATEMENT, parameters={"title": "The Matrix"})


async def request(gateway: Gateway, call: Call) -> None:
    """One request as the Query API front door makes it: every row read, then the summary."""
    async with gateway.run(call) as rows:
        [row async for row in rows]
        await rows.summary()


async def measure(stack_status: dict[str, Any], requests: int, rounds: int) -> dict[str, Any]:
    neo4j_status = stack_status["neo4j"]
    settings = Settings(
        neo4j=Neo4jSettings(
            uri=neo4j_status["bolt_uri"],
            user=neo4j_status["user"],
            password=neo4j_status["password"],
        )
    )
    opa = OPASettings(url=stack_status["opa"]["url"])
    audit = SQLiteAuditLog(Path(MEMORY))
    await audit.open()
    async with (
        open_neo4j(settings) as neo4j,
        open_policy(opa) as opa_engine,
    ):

        def gateway(policy: PolicyDecider, analysis_cache: int) -> Gateway:
            return Gateway(
                authenticator=SchemeRouter({"Bearer": StubAuth()}),
                resolver=DagResolver([]),
                analyzer=Analyzer(PlanReader(neo4j.executor), max_entries=analysis_cache),
                policy=policy,
                credentials=neo4j.credentials,
                executor=neo4j.executor,
                audit=audit,
                clock=time.time,
                default_timeout_s=30,
            )

        variants = {
            "off": gateway(AllowAll(), 4096),
            "cached": gateway(opa_engine, 4096),
            "uncached": gateway(opa_engine, 0),
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        seconds: dict[str, float] = dict.fromkeys(variants, 0.0)
        call = Call(
            request_id="bench",
            database="neo4j",
            authorization="Bearer x",
            client=None,
            headers={},
            statement=statement,
        )
        for gw in variants.values():  # warm-up: caches filled, connections open
            for _ in range(50):
                await request(gw, call)
        per_round = requests // rounds
        for _ in range(rounds):
            for name, gw in variants.items():
                started = time.perf_counter()
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    await request(gw, call)
                    samples[name].append((time.perf_counter() - t0) * 1000)
                seconds[name] += time.perf_counter() - started

        # The policy step alone: OPA's decision on the same input.
        document = policy_input(
            DagResolver([]).resolve(IDENTITY, {}),
            database="neo4j",
            statement=STATEMENT,
            parameter_names=["title"],
            requested_access_mode=None,
            analysis=await PlanReader(neo4j.executor).explain("neo4j", STATEMENT),
        )
        decide: dict[str, list[float]] = {"decision": []}
        for _ in range(500):
            t0 = time.perf_counter()
            await opa_engine.decide(document)
            decide["decision"].append((time.perf_counter() - t0) * 1000)

        growth = await analysis_growth(neo4j.executor)
    await audit.close()
    return {"samples": samples, "seconds": seconds, "decide": decide, "growth": growth}


async def analysis_growth(executor: Neo4jExecutor) -> list[dict[str, Any]]:
    reader = PlanReader(executor)
    rows = []
    for size in (1, 2, 4, 8, 16, 32):
        parts = [
            f"MATCH (p{i}:Person)-[:ACTED_IN]->(m{i}:Movie) WHERE m{i}.title = $t{i}"
            for i in range(size)
        ]
        statement = " WITH * ".join(parts) + " RETURN count(*) AS n"
        explain_ms: list[float] = []
        read_ms: list[float] = []
        for _ in range(30):
            t0 = time.perf_counter()
            await reader.explain("neo4j", statement)
            explain_ms.append((time.perf_counter() - t0) * 1000)
        plan = (await executor.plan("neo4j", statement)).operators
        for _ in range(200):
            t0 = time.perf_counter()
            read_plan(plan, statement=statement)
            read_ms.append((time.perf_counter() - t0) * 1000)
        rows.append(
            {
                "match_clauses": size,
                "statement_chars": len(statement),
                "explain_and_read_p50_ms": round(statistics.median(explain_ms), 3),
                "read_plan_p50_ms": round(statistics.median(read_ms), 4),
            }
        )
    return rows


def report(result: dict[str, Any]) -> None:
    samples, seconds = result["samples"], result["seconds"]
    base_p50 = statistics.median(samples["off"])
    base_rate = len(samples["off"]) / seconds["off"]
    print(f"{'variant':<9} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'added p50 ms':>12} {'throughput ratio':>16}")  # fmt: skip
    for name, values in samples.items():
        rate = len(values) / seconds[name]
        print(
            f"{name:<9} {len(values):>8} {rate:>7.0f} {statistics.median(values):>7.3f} "
            f"{percentile(values, 0.99):>7.3f} {statistics.median(values) - base_p50:>12.3f} "
            f"{rate / base_rate:>16.3f}"
        )
    for label, values in result["decide"].items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        print(f"{label}: p50 {p50:.4f} ms, p99 {p99:.4f} ms")
    print("analysis cost as the statement grows:")
    for row in result["growth"]:
        print("  " + json.dumps(row))
    print(f"benchmark process peak RSS: {peak_rss_mib(os.getpid()):.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with local_stack() as stack:
        status = stack.up()
        neo4j = status["neo4j"]
        with GraphDatabase.driver(
            neo4j["bolt_uri"], auth=(neo4j["user"], neo4j["password"])
        ) as driver:
            driver.execute_query(
                "UNWIND range(1, 200) AS i CREATE (:Person {name: 'p' + i})"
                "-[:ACTED_IN]->(:Movie {title: CASE i % 10 WHEN 0 THEN 'The Matrix' "
                "ELSE 'm' + i END})"
            )
        report(asyncio.run(measure(status, args.requests, args.rounds)))


if __name__ == "__main__":
    main()
