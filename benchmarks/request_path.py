"""Benchmark: the same small reads sent straight to Neo4j and through CypherGate, over Bolt and
over HTTP, at several numbers of concurrent clients, in one run on the same local stack.

The targets, each given the same statements in the same order:

* (a) ``bolt-neo4j``    Neo4j's Bolt port, the official async driver, basic auth: the baseline,
  what a DAG uses without the gateway;
* (b) ``bolt-gateway``  the gateway's Bolt door, the same driver, a bearer token;
* (c) ``http-neo4j``    Neo4j's Query API v2, basic auth;
* (d) ``http-gateway``  the gateway's Query API door, a bearer token.

A client runs one auto-commit statement at a time (a session, ``run``, every row read), as
Airflow's ``Neo4jHook`` does. First every target gets one unmeasured pass (Neo4j's JIT, the
gateway's caches), then the idle CPU rate of each process is read over a few seconds. At each
number of clients the targets then run in mirrored order (a b c d d c b a), each on half of its
statements, so that drift falls on all of them alike; each half begins with an unmeasured
warm-up that opens its connections. Every loop is bounded by a statement count.

A statement the gateway refuses as overloaded (503 with ``Retry-After``; over Bolt a transient
``FAILURE``) is counted apart from errors (column ``503s``); its client waits as told (or the
drivers' first retry delay, 1 s) and goes on with the next statement. Throughput and the CPU per
statement count the statements that ran; the CPU spent refusing is in the latter.

For each target and number of clients it prints throughput, p50/p99 latency, errors, and the CPU
time (user plus system, read from ``/proc/<pid>/stat`` around each measured half) per statement
of the gateway (and of its event-loop thread alone), Neo4j's JVM, OPA and this client; then the
ratios (b)/(a) and (d)/(c), the issue's targets, the gateway's peak RSS at each number of clients
(``VmHWM``, reset before each), each target's throughput over its own at 16 clients, and the
gateway's cache hit rates from ``/metrics``. On a busy machine trust the CPU time per statement:
throughput and latency move with whatever else runs (the load average is printed before and
after). At one client the CPU per statement includes each process's idle rate times the time a
statement takes.

    .venv/bin/python benchmarks/request_path.py [--requests 4000] [--concurrency 1 16 64 256]
        [--targets bolt-neo4j bolt-gateway http-neo4j http-gateway] [--profile FILE]
        [--gateway-setting server.admission.max_in_flight=16 ...]

``--requests`` counts the statements per target and number of clients. ``--profile FILE``:
afterwards ``bolt-gateway`` runs once more, unmeasured, at 16 clients (or the highest number
given) on twice ``--requests`` statements with py-spy sampling the gateway; FILE gets py-spy's
raw stacks and benchmarks/hotspots.py's summary of them is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import neo4j
from hotspots import summarise  # benchmarks/hotspots.py
from measure import (  # benchmarks/measure.py
    BENCH_ITEM_READ,
    BENCH_READER,
    Client,
    bolt_client,
    cache_hit_rates,
    cpu_seconds,
    cpu_snapshot,
    http_client,
    local_stack,
    peak_rss_mib,
    percentile,
    reset_peak_rss,
    seed_bench_items,
    send_all,
    thread_cpu_seconds,
)

STATEMENTS = (
    BENCH_ITEM_READ,
    "MATCH (i:BenchItem) WHERE i.id < $id RETURN count(i) AS n",
    "RETURN $id AS id, $id * 2 AS twice",
)
TARGETS = ("bolt-neo4j", "bolt-gateway", "http-neo4j", "http-gateway")
# The processes whose CPU time is read, and the columns they are printed in; "gw loop" is the
# gateway's main thread (its event loop), a part of "gateway", not added to the total.
COLUMNS = (("gateway", 9), ("gw loop", 8), ("neo4j", 7), ("opa", 6), ("client", 7))
# The targets: gateway CPU per Bolt statement, and Bolt throughput (b)/(a) at 16 clients.
CPU_TARGET_MS, THROUGHPUT_TARGET = 0.6, 0.5
Work = list[tuple[str, dict[str, Any]]]


@dataclass
class Result:
    """One target at one number of clients, over its measured halves."""

    target: str
    clients: int
    statements: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    refused: int = 0  # overload refusals (503 + Retry-After, Bolt's transient FAILURE)
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def answered(self) -> int:
        """Statements that ran (neither refused nor failed)."""
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        """Statements that ran, per second."""
        return self.answered / self.seconds

    def cpu_ms(self, process: str) -> float:
        """CPU milliseconds ``process`` spent per statement that ran (refusals' cost included)."""
        return 1000 * self.cpu_s.get(process, 0.0) / max(1, self.answered)

    def total_cpu_ms(self) -> float:
        return sum(self.cpu_ms(process) for process, _ in COLUMNS if process != "gw loop")


async def measure_half(
    client: Client, work: Work, clients: int, processes: dict[str, Any], result: Result
) -> None:
    """Warm up (open the connections), then send ``work`` and add it to ``result``."""
    async with client(clients) as send:
        await send_all(send, work[: max(50, 4 * clients)], clients)
        before, started = cpu_snapshot(processes), time.perf_counter()
        latencies, failures, refused = await send_all(send, work, clients)
        seconds, after = time.perf_counter() - started, cpu_snapshot(processes)
    result.statements += len(work)
    result.seconds += seconds
    result.latencies_ms += latencies
    result.failures += failures
    result.refused += refused
    for name in processes:
        result.cpu_s[name] = result.cpu_s.get(name, 0.0) + after[name] - before[name]
    print(f"  {result.target:<12} x{clients:<3} {len(work)} in {seconds:.1f} s", file=sys.stderr)


async def unmeasured(client: Client, work: Work, clients: int) -> None:
    async with client(clients) as send:
        await send_all(send, work, clients)


def idle_rates(processes: dict[str, Any], seconds: float = 5.0) -> dict[str, float]:
    """CPU milliseconds per second each process spends with no statement to run."""
    before = cpu_snapshot(processes)
    time.sleep(seconds)
    after = cpu_snapshot(processes)
    return {name: 1000 * (after[name] - before[name]) / seconds for name in processes}


def profile_gateway(pid: int, client: Client, work: Work, clients: int, out: Path) -> None:
    """One unmeasured run of ``client`` with py-spy sampling process ``pid`` into ``out``; print
    the summary, weighed by each thread's CPU time over the run."""
    py_spy = Path(sys.executable).parent / "py-spy"
    command = [str(py_spy), "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(out)]
    spy = subprocess.Popen([*command, "--threads"], stdout=subprocess.DEVNULL)
    time.sleep(2)  # attached before the load starts
    threads, process, started = thread_cpu_seconds(pid), cpu_seconds(pid), time.perf_counter()
    asyncio.run(unmeasured(client, work, clients))
    seconds, total = time.perf_counter() - started, cpu_seconds(pid) - process
    cpu = {tid: spent - threads.get(tid, 0.0) for tid, spent in thread_cpu_seconds(pid).items()}
    spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
    spy.wait(timeout=60)
    print(
        f"\npy-spy on the gateway, bolt-gateway x{clients}, {len(work)} statements in"
        f" {seconds:.1f} s, gateway CPU {1000 * total / len(work):.3f} ms per"
        f" statement ({out}):"
    )
    summarise(out.read_text().splitlines(), cpu_by_thread=cpu, statements=len(work))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000, help="per target and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--profile", type=Path, help="py-spy raw output of a profiled extra run")
    parser.add_argument(
        "--gateway-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a gateway setting, its value in TOML (server.admission.max_in_flight=16)",
    )
    args = parser.parse_args()
    targets = [t for t in TARGETS if t in args.targets]  # (a) to (d), whatever order was given

    rng = random.Random(7)  # the same statements, in the same order, for every target
    work = [(rng.choice(STATEMENTS), {"id": rng.randrange(1, 1000)}) for _ in range(args.requests)]
    halves = (work[: len(work) // 2], work[len(work) // 2 :])

    overrides = [gateway_setting(text) for text in args.gateway_setting]

    def configure(config: dict[str, Any]) -> None:
        for keys, value in overrides:
            section = config
            for key in keys[:-1]:
                section = section.setdefault(key, {})
            section[keys[-1]] = value

    with local_stack(extra_clients=[BENCH_READER], configure_gateway=configure) as stack:
        status = stack.up(with_gateway=True)
        db = status["neo4j"]
        seed_bench_items(db)
        token = stack.client_token(BENCH_READER.client_id)  # outlives the run; see measure.py
        pid = {name: process["pid"] for name, process in status["processes"].items()}
        processes = {
            "gateway": (pid["gateway"], None),
            "gw loop": (pid["gateway"], pid["gateway"]),
            "neo4j": (pid["neo4j"], None),
            "opa": (pid["opa"], None),
            "client": (os.getpid(), None),
        }
        query_api = "/db/neo4j/query/v2"
        clients: dict[str, Client] = {
            "bolt-neo4j": bolt_client(db["bolt_uri"], neo4j.basic_auth(db["user"], db["password"])),
            "bolt-gateway": bolt_client(status["gateway_bolt_uri"], neo4j.bearer_auth(token)),
            "http-neo4j": http_client(
                db["http_uri"] + query_api, httpx.BasicAuth(db["user"], db["password"]), {}
            ),
            "http-gateway": http_client(
                status["gateway_url"] + query_api, None, {"Authorization": f"Bearer {token}"}
            ),
        }
        for target in targets:  # Neo4j's JIT and the gateway's caches, before anything counts
            asyncio.run(unmeasured(clients[target], halves[0], 16))
        idle = idle_rates(processes)
        load_before = os.getloadavg()
        results: list[Result] = []
        rss: dict[int, float] = {}
        for n in args.concurrency:
            level = {target: Result(target, n) for target in targets}
            reset = reset_peak_rss(pid["gateway"])
            for i, target in enumerate([*targets, *reversed(targets)]):
                half = halves[0] if i < len(targets) else halves[1]
                asyncio.run(measure_half(clients[target], half, n, processes, level[target]))
            results.extend(level.values())
            # The peak at this number of clients (or, if it cannot be reset, the run's so far).
            rss[n] = peak_rss_mib(pid["gateway"]) if reset else float("nan")
        rss[0] = peak_rss_mib(pid["gateway"])
        caches = cache_hit_rates(httpx.get(status["gateway_url"] + "/metrics", timeout=10).text)
        print(f"load average (1, 5, 15 min): before {load_before}, after {os.getloadavg()}")
        report(results, idle, rss, caches)
        if args.profile is not None:
            n = 16 if 16 in args.concurrency else max(args.concurrency)
            profile_gateway(pid["gateway"], clients["bolt-gateway"], work * 2, n, args.profile)


def gateway_setting(text: str) -> tuple[list[str], Any]:
    """``server.admission.max_in_flight=16`` as its keys and its TOML value."""
    key, _, value = text.partition("=")
    return key.strip().split("."), tomllib.loads(f"v = {value}")["v"]


def report(
    results: list[Result],
    idle: dict[str, float],
    rss_mib: dict[int, float],
    caches: dict[str, tuple[float, float]],
) -> None:
    rates = ", ".join(f"{name} {rate:.1f}" for name, rate in idle.items())
    print(f"idle CPU, ms per second: {rates}")
    print("CPU columns: milliseconds of CPU (user + system) per statement, by process\n")
    print(
        f"{'target':<13}{'clients':>7}{'stmts':>7}{'st/s':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'errors':>7}{'503s':>6}"
        + "".join(f"{name:>{width}}" for name, width in COLUMNS)
        + f"{'total':>7}"
    )
    for r in results:
        print(
            f"{r.target:<13}{r.clients:>7}{r.statements:>7}{r.throughput:>7.0f}"
            f"{percentile(r.latencies_ms, 0.5):>8.2f}{percentile(r.latencies_ms, 0.99):>8.2f}"
            f"{len(r.failures):>7}{r.refused:>6}"
            + "".join(f"{r.cpu_ms(name):>{width}.3f}" for name, width in COLUMNS)
            + f"{r.total_cpu_ms():>7.3f}"
        )
    for r in results:
        if r.failures:
            first = r.failures[0]
            print(f"first failure of {r.target} x{r.clients}: {type(first).__name__}: {first}")
    by_key = {(r.target, r.clients): r for r in results}
    print("\nratios, gateway / direct (throughput; p50; CPU per statement: neo4j, all processes):")
    for (target, n), through in by_key.items():
        direct = by_key.get((target.replace("gateway", "neo4j"), n))
        if not target.endswith("gateway") or direct is None:
            continue
        p50 = percentile(through.latencies_ms, 0.5) / percentile(direct.latencies_ms, 0.5)
        print(
            f"  {target:<13} x{n:<3} throughput {through.throughput / direct.throughput:.2f}"
            f"  p50 {p50:.2f}  neo4j CPU {through.cpu_ms('neo4j') / direct.cpu_ms('neo4j'):.2f}"
            f"  total CPU {through.total_cpu_ms() / direct.total_cpu_ms():.2f}"
        )
    print("\nthe issue's targets:")
    for (target, n), r in by_key.items():
        if target == "bolt-gateway":
            met = "met" if r.cpu_ms("gateway") <= CPU_TARGET_MS else "NOT met"
            print(f"  gateway CPU per Bolt statement x{n}: {r.cpu_ms('gateway'):.3f} ms ({met})")
    if ("bolt-gateway", 16) in by_key and ("bolt-neo4j", 16) in by_key:
        ratio = by_key["bolt-gateway", 16].throughput / by_key["bolt-neo4j", 16].throughput
        met = "met" if ratio >= THROUGHPUT_TARGET else "NOT met"
        print(f"  Bolt throughput gateway / direct x16: {ratio:.2f} ({met})")
    print(f"  (targets: <= {CPU_TARGET_MS} ms per statement; >= {THROUGHPUT_TARGET} at x16)")
    peaks = ", ".join(f"x{n} {mib:.1f}" for n, mib in rss_mib.items() if n)
    print(f"\ngateway peak RSS, MiB, by clients: {peaks}; whole run {rss_mib[0]:.1f}")
    print("\nthroughput at each number of clients over that at 16 (statements that ran):")
    for (target, n), r in by_key.items():
        at_16 = by_key.get((target, 16))
        if at_16 is not None and n > 16:
            print(f"  {target:<13} x{n:<3} {r.throughput / at_16.throughput:.2f}")
    for cache, (hits, lookups) in caches.items():
        share = f"{hits / lookups:.1%}" if lookups else "-"
        print(f"gateway {cache} cache: {hits:.0f} hits of {lookups:.0f} lookups ({share})")


if __name__ == "__main__":
    main()
