"""Benchmark: the same small read queries sent (a) straight to Neo4j's Query API and (b) through
CypherGate, at 1 and 16 concurrent clients, in one run on the same local stack.

Prints throughput, p50 and p99 latency for each, the ratios (b)/(a), and the gateway's peak
resident memory. Every server is on 127.0.0.1; every loop is bounded by a request count.

    .venv/bin/python benchmarks/request_path.py [--requests 2000] [--concurrency 1 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass

import httpx
from measure import (
    BENCH_ITEM_READ,
    BENCH_READER,
    local_stack,
    peak_rss_mib,
    percentile,
    seed_bench_items,
)  # benchmarks/measure.py

STATEMENTS = (
    BENCH_ITEM_READ,
    "MATCH (i:BenchItem) WHERE i.id < $id RETURN count(i) AS n",
    "RETURN $id AS id, $id * 2 AS twice",
)


@dataclass
class Run:
    target: str
    concurrency: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


async def drive(
    name: str, url: str, auth: httpx.Auth | None, headers: dict[str, str], total: int, clients: int
) -> Run:
    rng = random.Random(7)  # the same mix for both targets
    bodies = [
        {"statement": rng.choice(STATEMENTS), "parameters": {"id": rng.randrange(1, 1000)}}
        for _ in range(total)
    ]
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(auth=auth, headers=headers, limits=limits, timeout=30) as http:

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                response = await http.post(url, json=body)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 202:
                    errors += 1

        for _ in range(min(50, total)):  # warm-up, not measured
            await http.post(url, json=bodies[0])
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        seconds = time.perf_counter() - started
    return Run(name, clients, total, seconds, latencies, errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()

    with local_stack(extra_clients=[BENCH_READER]) as stack:
        status = stack.up(with_gateway=True)
        neo4j = status["neo4j"]
        seed_bench_items(neo4j)
        token = stack.client_token(BENCH_READER.client_id)
        direct_url = neo4j["http_uri"] + "/db/neo4j/query/v2"
        gateway_url = status["gateway_url"] + "/db/neo4j/query/v2"
        basic = httpx.BasicAuth(neo4j["user"], neo4j["password"])
        bearer = {"Authorization": f"Bearer {token}"}
        runs: list[tuple[Run, Run]] = []
        for clients in args.concurrency:
            direct = asyncio.run(drive("neo4j", direct_url, basic, {}, args.requests, clients))
            through = asyncio.run(
                drive("gateway", gateway_url, None, bearer, args.requests, clients)
            )
            runs.append((direct, through))
        gateway_pid = status["processes"]["gateway"]["pid"]
        report(runs, peak_rss_mib(gateway_pid))


def report(runs: list[tuple[Run, Run]], rss_mib: float) -> None:
    print(
        f"{'target':<8} {'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6}"
    )
    summary = []
    for pair in runs:
        for run in pair:
            print(
                f"{run.target:<8} {run.concurrency:>7} {run.requests:>8} {run.throughput:>8.0f} "
                f"{run.percentile(0.5):>7.2f} {run.percentile(0.99):>7.2f} {run.errors:>6}"
            )
        direct, through = pair
        summary.append(
            {
                "clients": direct.concurrency,
                "throughput_ratio": round(through.throughput / direct.throughput, 3),
                "p50_ratio": round(through.percentile(0.5) / direct.percentile(0.5), 3),
                "p99_ratio": round(through.percentile(0.99) / direct.percentile(0.99), 3),
                "p50_added_ms": round(
                    statistics.median(through.latencies_ms)
                    - statistics.median(direct.latencies_ms),
                    3,
                ),
            }
        )
    print("\nratios gateway / direct Neo4j:")
    for row in summary:
        print("  " + json.dumps(row))
    print(f"gateway peak RSS: {rss_mib:.1f} MiB")


if __name__ == "__main__":
    main()
