"""Benchmark: the audit log on its own: appends, verify and queries.

1. Records per second the SQLite log sustains with group commit and fsync, from 256 concurrent
   appenders, with p50/p99 append latency; the same with checkpoints signed every 1,000 records.
2. ``verify`` speed, in records per second, over the same log.
3. Query latency on a log of ``--records`` records (default 1,000,000): by DAG and decision,
   by request id, by time range.

The gateway with the durable log against the same gateway with the log in memory only is the
request path benchmark's variant: ``benchmarks/request_path.py --variant 'audit.path=":memory:"'``
(both gateways in one run, in mirrored order, with their CPU per statement).

    .venv/bin/python benchmarks/audit.py [--records 1000000] [--appends 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from measure import percentile  # benchmarks/measure.py

from proxy.audit.chainfile import ChainFile
from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.record import AuditEvent, utc_timestamp
from proxy.audit.sqlite import SQLiteAuditLog


def event(n: int) -> AuditEvent:
    dag = f"dag_{n % 50}"
    return AuditEvent(
        event="decision",
        time=utc_timestamp(1_790_000_000 + n * 0.01),
        request_id=str(uuid.uuid4()),
        client="127.0.0.1:1",
        principal={"method": "oidc", "issuer": "i", "subject": dag, "dag": dag},
        database="neo4j",
        statement=f"MATCH (n:Item {{id: {n}}}) RETURN n",
        statement_sha256=None,
        query_type="r",
        decision={
            "allow": n % 10 != 0,
            "reasons": [] if n % 10 else ["x"],
            "decision_id": str(uuid.uuid4()),
        },
        access_mode="READ",
        status=None if n % 10 else 403,
        error=None,
        rows=None,
        latency_us=None,
    )


async def appends(
    path: Path, count: int, key: Ed25519PrivateKey | None
) -> tuple[float, list[float]]:
    log = SQLiteAuditLog(path, signing_key=key, checkpoint_every=1000)
    await log.open()
    latencies: list[float] = []
    pending = asyncio.Semaphore(256)

    async def one(n: int) -> None:
        async with pending:
            started = time.perf_counter()
            await log.append(event(n))
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    seconds = time.perf_counter() - started
    await log.close()
    return count / seconds, latencies


def bulk_log(path: Path, count: int) -> None:
    """A large, valid log written straight through the sealing code, in big transactions."""
    chain = ChainFile(path)
    chain.open()
    batch = 20_000
    for start in range(0, count, batch):
        chain.write([event(n) for n in range(start, min(count, start + batch))])
    chain.close()


def timed_queries(path: Path) -> dict[str, tuple[float, float]]:
    with AuditReader(path) as reader:
        middle = reader.count() // 2
        (record,) = reader.query(RecordFilter(after_seq=middle - 1, limit=1))
        request_id = record["request_id"]
        cases = {
            "dag + deny, first 100": RecordFilter(dag="dag_10", verdict="deny", limit=100),
            "request id": RecordFilter(request_id=request_id),
            "a time range, first 1000": RecordFilter(
                since=utc_timestamp(1_790_000_000 + reader.count() * 0.005), limit=1000
            ),
        }
        results = {}
        for name, flt in cases.items():
            samples = []
            for _ in range(30):
                started = time.perf_counter()
                rows = list(reader.query(flt))
                samples.append((time.perf_counter() - started) * 1000)
            assert rows, name
            results[name] = (percentile(samples, 0.5), percentile(samples, 0.99))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cyphergate-bench-audit-") as tmp:
        base = Path(tmp)
        for label, key in (
            ("no checkpoints", None),
            ("checkpoints (Ed25519, every 1000)", Ed25519PrivateKey.generate()),
        ):
            rate, latencies = asyncio.run(appends(base / f"{label[:2]}.sqlite3", args.appends, key))
            print(
                f"appends, {label}: {rate:,.0f} records/s, p50 {percentile(latencies, 0.5):.2f} ms,"
                f" p99 {percentile(latencies, 0.99):.2f} ms"
                f" ({args.appends:,} records, 256 appenders)"
            )
        big = base / "big.sqlite3"
        started = time.perf_counter()
        bulk_log(big, args.records)
        print(f"built a {args.records:,}-record log in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        with AuditReader(big) as reader:
            verified = sum(1 for step in reader.verify() if isinstance(step, int))
        seconds = time.perf_counter() - started
        print(
            f"verify: {verified:,} records in {seconds:.1f} s = {verified / seconds:,.0f} records/s"
        )
        for name, (p50, p99) in timed_queries(big).items():
            print(f"query on {args.records:,} records, {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    main()
