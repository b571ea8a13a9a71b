"""Benchmark: the floor under the gateway's Bolt door. What does any Python process between a
Bolt client and Neo4j cost per statement on this machine, and what does recording every
statement durably before it runs add? Set beside the gateway, in one run on one stack.

The targets, given the same statements in the same order as benchmarks/request_path.py's:

* ``bolt-neo4j``            straight to Neo4j's Bolt port (the baseline);
* ``bolt-relay``            through benchmarks/floor_relay.py copying bytes both ways: the least
  a relay on the gateway's event loop (uvloop, asyncio protocols) can spend;
* ``bolt-relay-recorded``   the same relay holding each ``RUN`` until a record of it is durable
  (SQLite, WAL, ``synchronous=FULL``, group commit on one thread), and writing a second record
  when its result ends: the two records a statement leaves through the gateway, with nothing
  else the gateway does (no authentication, policy, analysis, credentials, metrics);
* ``bolt-relay-journal``    the same, the records appended to a flat file (``write`` and
  ``fdatasync`` per group commit) instead of SQLite: what the store itself costs;
* ``bolt-gateway``          the gateway's Bolt door, a bearer token.

At each number of clients the targets run in mirrored order (a b c d e e d c b a), each on half of
its statements, after Neo4j's JIT warm-up and one unmeasured pass each. Printed: throughput,
p50/p99 latency, errors and the CPU time per statement (from /proc) of the relay or gateway,
Neo4j and this client; then each relay's and the gateway's CPU per statement against the
issue's target of 0.6 ms and its throughput against straight Bolt's, the peak RSS of each, and
the records each recording relay wrote against two for every statement sent through it.

    .venv/bin/python benchmarks/bolt_floor.py [--requests 4000] [--concurrency 16 [64 ...]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import neo4j
from measure import (
    BENCH_READER,
    Client,
    bolt_client,
    local_stack,
    peak_rss_mib,
    percentile,
    seed_bench_items,
)
from request_path import (
    CPU_TARGET_MS,
    STATEMENTS,
    Processes,
    Result,
    gateway_processes,
    measure_half,
    unmeasured,
    warm_neo4j,
    warm_up,
)

from proxy.ports import free_ports

HERE = Path(__file__).resolve().parent
COLUMNS = ("relay", "neo4j", "client")


@contextlib.contextmanager
def relay(
    upstream_port: int, recorded: Path | None, store: str = "sqlite"
) -> Iterator[tuple[int, int]]:
    """benchmarks/floor_relay.py in a process of its own: its port and pid."""
    (port,) = free_ports(1)
    command = [sys.executable, str(HERE / "floor_relay.py"), str(port), str(upstream_port)]
    if recorded is not None:
        command += ["--recorded", str(recorded), "--store", store]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the relay did not start: {command}")
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000, help="per target and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16])
    args = parser.parse_args()
    rng = random.Random(7)  # request_path.py's statements, in its order
    work = [(rng.choice(STATEMENTS), {"id": rng.randrange(1, 1000)}) for _ in range(args.requests)]
    halves = (work[: len(work) // 2], work[len(work) // 2 :])

    with local_stack(extra_clients=[BENCH_READER]) as stack, contextlib.ExitStack() as relays:
        status = stack.up(with_gateway=True)
        db = status["neo4j"]
        seed_bench_items(db)
        token = stack.client_token(BENCH_READER.client_id)
        pid = {name: process["pid"] for name, process in status["processes"].items()}
        bolt_port = int(db["bolt_uri"].rsplit(":", 1)[1])
        plain_port, plain_pid = relays.enter_context(relay(bolt_port, None))
        audit = stack.run_dir / "floor-audit.db"
        recorded_port, recorded_pid = relays.enter_context(relay(bolt_port, audit))
        journal = stack.run_dir / "floor-audit.jsonl"
        journal_port, journal_pid = relays.enter_context(relay(bolt_port, journal, "journal"))
        basic = neo4j.basic_auth(db["user"], db["password"])
        common: Processes = {"neo4j": [(pid["neo4j"], None)], "client": [(os.getpid(), None)]}
        gateway = gateway_processes(pid["gateway"])["gateway"]
        plan: dict[str, tuple[Client, Processes]] = {
            "bolt-neo4j": (bolt_client(db["bolt_uri"], basic), {"relay": [], **common}),
            "bolt-relay": (
                bolt_client(f"bolt://127.0.0.1:{plain_port}", basic),
                {"relay": [(plain_pid, None)], **common},
            ),
            "bolt-relay-recorded": (
                bolt_client(f"bolt://127.0.0.1:{recorded_port}", basic),
                {"relay": [(recorded_pid, None)], **common},
            ),
            "bolt-relay-journal": (
                bolt_client(f"bolt://127.0.0.1:{journal_port}", basic),
                {"relay": [(journal_pid, None)], **common},
            ),
            "bolt-gateway": (
                bolt_client(status["gateway_bolt_uri"], neo4j.bearer_auth(token)),
                {"relay": gateway, **common},
            ),
        }
        warm_neo4j(bolt_client(db["bolt_uri"], basic), work, pid["neo4j"])
        for client, _ in plan.values():
            asyncio.run(unmeasured(client, halves[0], 16))
        results: list[Result] = []
        for clients in args.concurrency:
            level = {name: Result(name, clients) for name in plan}
            for i, name in enumerate([*plan, *reversed(plan)]):
                client, processes = plan[name]
                half = halves[0] if i < len(plan) else halves[1]
                asyncio.run(measure_half(client, half, clients, processes, level[name]))
            results.extend(level.values())
        # Each recording relay's own check: two records for every statement sent through it
        # (its unmeasured pass, and each half with the warm-up that opens its connections).
        sent = len(halves[0]) + sum(
            len(half) + len(warm_up(half, clients))
            for clients in args.concurrency
            for half in halves
        )
        time.sleep(1)  # the last outcomes are written after their results end: let them land
        with contextlib.closing(sqlite3.connect(audit)) as db:
            (in_sqlite,) = db.execute("SELECT count(*) FROM records").fetchone()
        in_journal = journal.read_bytes().count(b"\n")
        peaks = {  # the largest process in the path, over the whole run
            name: max(peak_rss_mib(p) for p, _ in processes["relay"])
            for name, (_, processes) in plan.items()
            if processes["relay"]
        }
    report(results, peaks)
    print(
        f"\nrecords written: {in_sqlite} (SQLite), {in_journal} (journal), for {sent} statements"
        f" sent through each (two records each: {2 * sent})"
    )


def report(results: list[Result], peaks: dict[str, float]) -> None:
    print("CPU columns: milliseconds of CPU (user + system) per statement; 'relay' is the relay's")
    print("process, or the gateway's for bolt-gateway\n")
    print(
        f"{'target':<21} {'clients':>7} {'stmts':>6} {'st/s':>6} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'errors':>6}" + "".join(f" {c:>7}" for c in COLUMNS)
    )
    for r in results:
        print(
            f"{r.target:<21} {r.clients:>7} {r.statements:>6} {r.throughput:>6.0f}"
            f" {percentile(r.latencies_ms, 0.5):>7.2f} {percentile(r.latencies_ms, 0.99):>7.2f}"
            f" {len(r.failures):>6}" + "".join(f" {r.cpu_ms(c):>7.3f}" for c in COLUMNS)
        )
    print(
        f"\nCPU per statement in the path against the Bolt door's target ({CPU_TARGET_MS} ms),"
        " throughput against straight Bolt's at the same number of clients:"
    )
    direct = {r.clients: r for r in results if r.target == "bolt-neo4j"}
    for r in results:
        if r.target != "bolt-neo4j":
            ms = r.cpu_ms("relay")
            print(
                f"  {r.target:<21} x{r.clients:<3} {ms:.3f} ms ({ms / CPU_TARGET_MS:.2f}x);"
                f" throughput {r.throughput / direct[r.clients].throughput:.2f}x"
            )
    print("\npeak RSS of the process in the path, MiB (the largest, if several):")
    for name, mib in peaks.items():
        print(f"  {name:<21} {mib:.1f}")


if __name__ == "__main__":
    main()
