"""Benchmark: what a SIEM sink costs, beside the audit log it tails.

In one run, on a log of ``--records`` records written first:

* ``idle``: CPU a caught-up sink spends polling, per second (the cost while nothing happens);
* ``catch-up``: records per second and CPU microseconds per record for a sink delivering the
  whole log to a JSON Lines file, in our record form and as OCSF, and to an HEC collector on
  127.0.0.1 (a thread of this process, so its CPU counts too; stated per row);
* ``appends``: the audit log's append rate with no sink, then with a sink tailing it: a sink is
  not in the request path, so the difference is what it takes from the process beside it.

    .venv/bin/python -m benchmarks.siem_sinks [--records 5000]   (from the checkout: it uses the
    tests' HEC collector)
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

import httpx

from proxy.audit.record import AuditEvent, utc_timestamp
from proxy.audit.sqlite import SQLiteAuditLog
from proxy.metrics import Metrics
from proxy.siem.cursor import Cursor, cursor_path
from proxy.siem.destinations import Destination, JSONLines
from proxy.siem.forms import Format
from proxy.siem.hec import HEC
from proxy.siem.sink import Pace, Sink
from tests.siem.collectors import HECCollector


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def record(number: int) -> AuditEvent:
    return AuditEvent(
        event="decision",
        time=utc_timestamp(1_796_000_000 + number / 1000),
        request_id=f"r-{number}",
        client="127.0.0.1:5000",
        principal={"method": "oidc", "issuer": "http://i/", "subject": "s", "dag": "demo"},
        database="neo4j",
        statement="MATCH (p:Person)-[:ACTED_IN]->(m:Movie) RETURN p.name, m.title LIMIT 10",
        statement_sha256="ab" * 32,
        query_type="r",
        decision={"allow": True, "reasons": [], "decision_id": "d", "policy_revision": "r"},
        parameters={"name": "hmac-sha256:" + "0" * 64},
    )


async def append(log: SQLiteAuditLog, first: int, count: int, concurrency: int = 32) -> float:
    """Seconds to append ``count`` records from ``concurrency`` appenders."""
    numbers = iter(range(first, first + count))

    async def appender() -> None:
        for number in numbers:
            await log.append(record(number))

    started = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(concurrency)))
    return time.perf_counter() - started


def sink(log: Path, name: str, destination: Destination, form: Format) -> Sink:
    return Sink(
        name,
        audit_path=log,
        chain="gateway",
        cursor=Cursor(cursor_path(log, name), "gateway"),
        destination=destination,
        form=form,
        pace=Pace(batch=500),
        metrics=Metrics(),
    )


async def catch_up(log: Path, name: str, destination: Destination, form: Format, total: int) -> str:
    started, cpu_before = time.perf_counter(), cpu()
    async with sink(log, name, destination, form) as running:
        while running.position.seq < total:  # noqa: ASYNC110 - the sink has no event to wait on
            await asyncio.sleep(0.01)
        seconds, used = time.perf_counter() - started, cpu() - cpu_before
    return f"{total / seconds:9.0f} records/s  {used / total * 1e6:6.1f} µs CPU/record"


async def main(records: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit.sqlite3"
        async with SQLiteAuditLog(path) as log:
            alone = await append(log, 0, records)
            print(f"appends, no sink:          {records / alone:9.0f} records/s")
            for form in ("record", "ocsf"):
                out = Path(folder) / f"{form}.jsonl"
                line = await catch_up(path, f"file-{form}", JSONLines(out), form, records)
                print(f"catch-up, file, {form:6}:    {line}")
            collector = HECCollector("t")
            collector.start()
            try:
                async with httpx.AsyncClient(timeout=10) as http:
                    hec = HEC(http, collector.url, "t")
                    line = await catch_up(path, "hec", hec, "ocsf", records)
                    print(f"catch-up, HEC, ocsf:       {line}  (collector in-process)")
            finally:
                collector.stop()
            tail = sink(path, "file-record", JSONLines(Path(folder) / "record.jsonl"), "record")
            async with tail:
                await asyncio.sleep(1)  # caught up
                before = cpu()
                await asyncio.sleep(5)
                print(f"idle sink polling:         {(cpu() - before) / 5 * 1e3:9.2f} ms CPU/s")
                beside = await append(log, records, records)
                print(f"appends, a sink tailing:   {records / beside:9.0f} records/s")
            again = await append(log, 2 * records, records)
            print(f"appends, no sink (again):  {records / again:9.0f} records/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    asyncio.run(main(parser.parse_args().records))
