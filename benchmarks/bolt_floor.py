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
the records each recording relay wrote against two for every statement sent through it (a
count short of that, or beyond it, ends the run with status 1).

    .venv/bin/python benchmarks/bolt_floor.py [--requests 4000] [--concurrency 16 [64 ...]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
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
    bench_work,
    bolt_client,
    local_stack,
    peak_rss_mib,
    percentile,
    seed_bench_items,
)
from request_path import (
    CPU_TARGET_MS,
    Processes,
    Result,
    gateway_processes,
    measure_half,
    mirrored,
    unmeasured,
    warm_neo4j,
    warm_up,
)

from proxy.ports import free_ports

HERE = Path(__file__).resolve().parent
COLUMNS = ("relay", "neo4j", "client")
# The relays, by target: the audit file each holds statements for (none: a byte relay), and its
# store (see floor_relay.py).
RELAYS: dict[str, tuple[str | None, str]] = {
    "bolt-relay": (None, "sqlite"),
    "bolt-relay-recorded": ("floor-audit.db", "sqlite"),
    "bolt-relay-journal": ("floor-audit.jsonl", "journal"),
}
# How long the recording relays may take to write the last outcomes (after their results end).
RECORDS_LAND_S = 10.0


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
    work = bench_work(args.requests)  # request_path.py's statements, in its order
    halves = (work[: len(work) // 2], work[len(work) // 2 :])

    with local_stack(extra_clients=[BENCH_READER]) as stack, contextlib.ExitStack() as relays:
        status = stack.up(with_gateway=True)
        db = status["neo4j"]
        seed_bench_items(db)
        token = stack.client_token(BENCH_READER.client_id)
        pid = {name: process["pid"] for name, process in status["processes"].items()}
        bolt_port = int(db["bolt_uri"].rsplit(":", 1)[1])
        basic = neo4j.basic_auth(db["user"], db["password"])
        common: Processes = {"neo4j": [(pid["neo4j"], None)], "client": [(os.getpid(), None)]}
        plan: dict[str, tuple[Client, Processes]] = {
            "bolt-neo4j": (bolt_client(db["bolt_uri"], basic), {"relay": [], **common}),
        }
        files: dict[str, tuple[Path, str]] = {}  # each recording relay's file and store
        for name, (file, store) in RELAYS.items():
            recorded = None if file is None else stack.run_dir / file
            port, relay_pid = relays.enter_context(relay(bolt_port, recorded, store))
            client = bolt_client(f"bolt://127.0.0.1:{port}", basic)
            plan[name] = client, {"relay": [(relay_pid, None)], **common}
            if recorded is not None:
                files[name] = recorded, store
        gateway = gateway_processes(pid["gateway"])["gateway"]
        plan["bolt-gateway"] = (
            bolt_client(status["gateway_bolt_uri"], neo4j.bearer_auth(token)),
            {"relay": gateway, **common},
        )
        warm_neo4j(bolt_client(db["bolt_uri"], basic), work, pid["neo4j"])
        for client, _ in plan.values():
            asyncio.run(unmeasured(client, halves[0], 16))
        results: list[Result] = []
        for clients in args.concurrency:
            level = {name: Result(name, clients) for name in plan}
            for name, half in mirrored(list(plan), halves):
                client, processes = plan[name]
                asyncio.run(measure_half(client, half, clients, processes, level[name]))
            results.extend(level.values())
        # Each recording relay's own check: two records for every statement sent through it
        # (its unmeasured pass, and each half with the warm-up that opens its connections).
        sent = len(halves[0]) + sum(
            len(half) + len(warm_up(half, clients))
            for clients in args.concurrency
            for half in halves
        )
        written = records_written(files, 2 * sent)
        peaks = {  # the largest process in the path, over the whole run
            name: max(peak_rss_mib(p) for p, _ in processes["relay"])
            for name, (_, processes) in plan.items()
            if processes["relay"]
        }
    report(results, peaks)
    print(f"\nrecords written, for {sent} statements sent through each (two records each):")
    for name, count in written.items():
        print(f"  {name:<21} {count} of {2 * sent}{'' if count == 2 * sent else ' (WRONG)'}")
    if any(count != 2 * sent for count in written.values()):
        sys.exit(1)


def records_written(files: dict[str, tuple[Path, str]], expected: int) -> dict[str, int]:
    """The records in each recording relay's file, once all ``expected`` are there or
    :data:`RECORDS_LAND_S` has passed (the last outcomes are written after their results end)."""
    deadline = time.monotonic() + RECORDS_LAND_S
    while True:  # bounded by the deadline
        counts = {name: count_records(*file) for name, file in files.items()}
        if all(count >= expected for count in counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def count_records(path: Path, store: str) -> int:
    """Records in a relay's audit file: rows of its SQLite table, or lines of its journal."""
    if store == "journal":
        return path.read_bytes().count(b"\n")
    with contextlib.closing(sqlite3.connect(path)) as db:
        (count,) = db.execute("SELECT count(*) FROM records").fetchone()
    return int(count)


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
