"""Kill -9 of the gateway under load: every answered request has its records; the chain verifies."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.audit.checkpoint import load_public_key
from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.record import ChainProblem
from proxy.devstack.stack import DevStack

pytestmark = pytest.mark.integration


def test_kill_9_under_load_loses_no_acknowledged_record(
    stack: DevStack, status: dict[str, Any]
) -> None:
    url = status["gateway_url"] + "/db/neo4j/query/v2"
    headers = {"Authorization": f"Bearer {stack.token('demo_writer')}"}
    answered: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def client(worker: int) -> None:
        with httpx.Client(timeout=10) as http:
            for n in range(2000):  # bounded; the kill ends it much sooner
                if stop.is_set():
                    return
                try:
                    response = http.post(
                        url,
                        json={
                            "statement": "CREATE (:CrashLoad {w: $w, n: $n})",
                            "parameters": {"w": worker, "n": n},
                        },
                        headers=headers,
                    )
                except httpx.HTTPError as exc:
                    failures.append(type(exc).__name__)
                    return
                if response.status_code == 202:
                    answered.append(response.headers["X-CypherGate-Request-ID"])

    workers = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30
    while len(answered) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stack.stop_service("gateway", kill=True)
    stop.set()
    for worker in workers:
        worker.join(timeout=30)
    stack.start_service("gateway")

    assert len(answered) >= 200, "the load never got going"
    assert failures, "the clients should have seen the gateway die"
    with AuditReader(stack.audit_path) as reader:
        records = list(reader.query(RecordFilter()))
        steps = list(reader.verify(load_public_key(status_key(stack))))
    assert not [s for s in steps if isinstance(s, ChainProblem)], steps[-1]
    events: dict[str, set[str]] = {}
    for record in records:
        events.setdefault(record["request_id"], set()).add(record["event"])
    missing = [rid for rid in answered if events.get(rid) != {"decision", "outcome"}]
    assert not missing, f"{len(missing)} answered requests lack their records"
    # After the restart the gateway writes on, continuing the same chain.
    after = httpx.post(url, json={"statement": "RETURN 1"}, headers=headers, timeout=10)
    assert after.status_code == 202


def status_key(stack: DevStack) -> Path:
    return Path(stack.status()["audit_public_key"])
