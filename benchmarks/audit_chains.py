"""Benchmark: the audit log of several workers, one file each against one writer they share.

Two ways to give ``server.workers = 2`` an audit log, measured in one run with the same records:

* ``own``: each worker appends to a chain of its own (what the gateway does);
* ``shared``: each worker hands every record to one writer process, over a Unix socket, and
  waits for its receipt before going on (the record must be durable before the statement runs);
  the writer appends to one chain.

Each worker runs ``--concurrency`` appenders at once (the statements in flight). Printed per
design: records per second, and CPU microseconds per record (user plus system, from
``getrusage`` of every process involved), in total and in the workers alone (what competes with
the request path); one worker alone appending to its own chain is the baseline.

    .venv/bin/python benchmarks/audit_chains.py [--records 20000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import struct
import tempfile
import time
import uuid
from dataclasses import asdict
from multiprocessing.connection import Connection
from pathlib import Path

from proxy.audit.record import AuditEvent, utc_timestamp
from proxy.audit.sqlite import SQLiteAuditLog

_LENGTH = struct.Struct("<I")


def event(n: int) -> AuditEvent:
    """A decision record of the size the gateway writes for a small read."""
    dag = f"dag_{n % 50}"
    return AuditEvent(
        event="decision",
        time=utc_timestamp(1_790_000_000 + n * 0.01),
        request_id=str(uuid.uuid4()),
        client="127.0.0.1:1",
        principal={"method": "oidc", "issuer": "i", "subject": dag, "dag": dag},
        database="neo4j",
        statement=f"MATCH (n:Item {{id: {n}}}) RETURN n",
        query_type="r",
        decision={"allow": True, "reasons": [], "decision_id": str(uuid.uuid4())},
        access_mode="READ",
    )


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _own(path: Path, first: int, count: int, concurrency: int) -> None:
    log = SQLiteAuditLog(path)
    await log.open()
    pending = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with pending:
            await log.append(event(n))

    await asyncio.gather(*(one(n) for n in range(first, first + count)))
    await log.close()


async def _hand_off(socket_path: Path, first: int, count: int, concurrency: int) -> None:
    """``concurrency`` connections to the writer, each sending one record at a time."""
    numbers = iter(range(first, first + count))

    async def connection() -> None:
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        for n in numbers:
            body = json.dumps(asdict(event(n))).encode()
            writer.write(_LENGTH.pack(len(body)) + body)
            await writer.drain()
            (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
            json.loads(await reader.readexactly(size))  # the receipt
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(connection() for _ in range(concurrency)))


def _worker(
    kind: str, where: Path, first: int, count: int, concurrency: int, out: Connection
) -> None:
    before = _cpu_s()
    if kind == "own":
        asyncio.run(_own(where, first, count, concurrency))
    else:
        asyncio.run(_hand_off(where, first, count, concurrency))
    out.send(_cpu_s() - before)


def _writer(path: Path, socket_path: Path, ready: Connection, out: Connection) -> None:
    """The shared writer: appends what the workers hand it, answers each with its receipt."""

    async def serve() -> None:
        log = SQLiteAuditLog(path)
        await log.open()
        stop = asyncio.Event()

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                except asyncio.IncompleteReadError:
                    break
                record = AuditEvent(**json.loads(await reader.readexactly(size)))
                receipt = await log.append(record)
                answer = json.dumps({"seq": receipt.seq, "hash": receipt.hash}).encode()
                writer.write(_LENGTH.pack(len(answer)) + answer)
                await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(client, str(socket_path))
        ready.send(True)
        await asyncio.get_running_loop().run_in_executor(None, ready.recv)  # told to stop
        stop.set()
        server.close()
        await server.wait_closed()
        await log.close()

    before = _cpu_s()
    asyncio.run(serve())
    out.send(_cpu_s() - before)


def _run(
    kind: str, workers: int, folder: Path, records: int, concurrency: int
) -> tuple[float, float, float]:
    """Records per second, CPU µs per record in total, and in the workers alone."""
    context = multiprocessing.get_context("spawn")
    share = records // workers
    writer = None
    control = None
    writer_cpu = None
    target = folder / "shared.sock"
    if kind == "shared":
        control, remote = context.Pipe()
        writer_cpu, writer_out = context.Pipe()
        writer = context.Process(
            target=_writer, args=(folder / "shared.sqlite3", target, remote, writer_out)
        )
        writer.start()
        control.recv()  # listening
    pipes = []
    processes = []
    for i in range(workers):
        receive, send = context.Pipe(duplex=False)
        where = folder / f"own-w{i + 1}.sqlite3" if kind == "own" else target
        args = (kind, where, i * share, share, concurrency, send)
        processes.append(context.Process(target=_worker, args=args))
        pipes.append(receive)
    started = time.perf_counter()
    for process in processes:
        process.start()
    worker_cpu = sum(pipe.recv() for pipe in pipes)
    seconds = time.perf_counter() - started
    for process in processes:
        process.join()
    total = worker_cpu
    if writer is not None and control is not None and writer_cpu is not None:
        control.send(True)
        total += writer_cpu.recv()
        writer.join()
    done = share * workers
    return done / seconds, 1e6 * total / done, 1e6 * worker_cpu / done


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64, help="appenders per worker")
    args = parser.parse_args()
    print(f"{'design':<28}{'records/s':>10}{'CPU us/record':>15}{'in workers':>12}")
    for label, kind, workers in (
        ("1 worker, own chain", "own", 1),
        ("2 workers, own chains", "own", 2),
        ("2 workers, one shared writer", "shared", 2),
        ("2 workers, own chains", "own", 2),  # mirrored: drift falls on both alike
        ("1 worker, own chain", "own", 1),
    ):
        with tempfile.TemporaryDirectory(prefix="cyphergate-chains-") as folder:
            rate, cpu, in_workers = _run(
                kind, workers, Path(folder), args.records, args.concurrency
            )
        print(f"{label:<28}{rate:>10.0f}{cpu:>15.1f}{in_workers:>12.1f}")


if __name__ == "__main__":
    main()
