"""Benchmark: the CPU one statement's OpenLineage run event costs the gateway ([lineage]).

Three figures, in CPU microseconds per statement (``time.thread_time`` around each loop, so
other processes on a busy machine do not count):

1. ``ended``: what the request path itself pays (the event loop's thread): the call into the
   lineage sink, which takes the parent header and puts the record in the bounded queue. With
   ``transport = "none"`` there is no sink and the request path pays nothing;
2. ``build``: the sending thread building the event with the OpenLineage client's classes
   (``RunEvents.build``);
3. ``send``: the sending thread serialising it and appending it to a JSON Lines file (the
   ``file`` transport; ``http`` adds a POST per event).

The sending thread's figures are CPU of the same process (and, in CPython, time the event loop
cannot hold the GIL), but off the request's latency. For the whole request path under load,
run benchmarks/request_path.py twice, with and without
``--gateway-setting lineage.transport='"file"' --gateway-setting lineage.path='"/tmp/e.jsonl"'``.

    .venv/bin/python benchmarks/lineage.py [--statements 20000]
"""

from __future__ import annotations

import argparse
import queue
import tempfile
import time
from pathlib import Path

from openlineage.client.transport.file import FileConfig, FileTransport

from proxy.audit.record import AuditEvent
from proxy.lineage_events import Emitter, RunEvents
from proxy.metrics import Metrics

ANALYSIS = {
    "query_type": "rw",
    "labels": {"read": ["Person"], "write": ["Movie"]},
    "relationship_types": {"read": ["ACTED_IN"], "write": []},
}


def record(n: int) -> AuditEvent:
    return AuditEvent(
        event="outcome",
        time="2026-11-30T10:00:01.000000Z",
        request_id=f"req-{n}",
        principal={"dag": "movies", "task": "load", "run": "manual__r", "try_number": 1},
        database="neo4j",
        decision={"allow": True, "reasons": [], "decision_id": f"d-{n}", "policy_revision": "r"},
        status=202,
        analysis=ANALYSIS,
    )


def per_statement(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:8.1f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statements", type=int, default=20_000)
    n = parser.parse_args().statements
    records = [record(i) for i in range(n)]
    headers = {
        "x-cyphergate-lineage-parent": "default/movies.load/0193c5a2-5b4e-7c3d-8e9f-0a1b2c3d4e5f"
    }
    events = RunEvents(
        namespace="cyphergate", parent_namespace="default", dataset_namespace="neo4j://db:7687"
    )
    with tempfile.TemporaryDirectory() as folder:
        transport = FileTransport(
            FileConfig(log_file_path=str(Path(folder) / "e.jsonl"), append=True)
        )
        # The request path's part: an emitter whose thread is not started, so that only the
        # put is measured (its queue is as large as the run).
        emitter = Emitter(events, transport, metrics=Metrics(), queue_size=n, close_timeout_s=0)
        started = time.thread_time()
        for one in records:
            emitter.ended(one, headers)
        ended = time.thread_time() - started
        queued: queue.Queue[object] = emitter._queue  # type: ignore[assignment]
        assert queued.qsize() == n

        started = time.thread_time()
        built = [events.build(one, headers[next(iter(headers))]) for one in records]
        build = time.thread_time() - started

        started = time.thread_time()
        for event in built:
            transport.emit(event)  # type: ignore[arg-type]
        send = time.thread_time() - started
    print(f"{n} statements, CPU per statement:")
    print(f"  ended (request path)   {per_statement(ended, n)}")
    print(f"  build (lineage thread) {per_statement(build, n)}")
    print(f"  send, file transport   {per_statement(send, n)}")
    print(f"  total                  {per_statement(ended + build + send, n)}")


if __name__ == "__main__":
    main()
