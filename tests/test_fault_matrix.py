"""The fault matrix: under a steady load of writers and a reader, each fault in turn, then the
invariants (``pytest -m faults``; part of the suite, about a minute on a running stack).

Faults: OPA killed and restarted, OPA paused (SIGSTOP), Neo4j paused, the secret store (moto)
paused while the gateway's cached secret is due for a refresh, and an unexpected exception in the
audit writer. Each lasts :data:`FAULT_S`; the gateway must recover by itself (no restart) within
:data:`RECOVERY_BOUND_S`, measured from the fault's end to the first answered write and read
sent after it, and printed. Then, over the whole run:

- every 2xx answer has its decision and outcome records;
- every statement that ran (a node in Neo4j) has its decision record;
- no allowed decision is left without an outcome (outcomes refused meanwhile were written late);
- the chain and its checkpoints verify with the public key.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from neo4j import Driver

from proxy.audit.checkpoint import load_public_key
from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.record import ChainProblem, utc_timestamp
from proxy.devstack.stack import DevStack
from proxy.devstack.state import StackState
from tests.second_gateway import SecondGateway

pytestmark = [pytest.mark.integration, pytest.mark.faults]

FAULT_S = 3.0
RECOVERY_BOUND_S = 20.0
Kind = Literal["write", "read"]


@dataclass(frozen=True, slots=True)
class Answer:
    kind: Kind
    started: float
    finished: float
    status: int | None  # None: no answer (the connection failed or timed out)
    request_id: str | None
    node_id: str | None  # the id a write puts on its node


class Load:
    """Two writers and a reader, each sending one request after another until stopped."""

    def __init__(self, url: str, headers: dict[str, str], label: str) -> None:
        self.url = url + "/db/neo4j/query/v2"
        self.headers = headers
        self.label = label
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(kind,), daemon=True)
            for kind in ("write", "write", "read")
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, kind: Kind) -> None:
        with httpx.Client(timeout=15) as http:
            while not self._stop.is_set():
                node_id = uuid.uuid4().hex if kind == "write" else None
                statement = (
                    f"CREATE (:`{self.label}` {{id: '{node_id}'}})"
                    if node_id
                    else f"MATCH (n:`{self.label}`) RETURN count(n) AS c"
                )
                started = time.monotonic()
                try:
                    response = http.post(
                        self.url, json={"statement": statement}, headers=self.headers
                    )
                    status: int | None = response.status_code
                    request_id = response.headers.get("X-CypherGate-Request-ID")
                except httpx.HTTPError:
                    status, request_id = None, None
                answer = Answer(kind, started, time.monotonic(), status, request_id, node_id)
                with self._lock:
                    self.answers.append(answer)
                if status != 202:
                    time.sleep(0.05)  # a refused client backs off a little, as a real one would

    def recovered_after(self, since: float, bound: float) -> float:
        """Seconds from ``since`` until a write and a read sent after it were both answered."""
        deadline = since + bound
        while time.monotonic() < deadline:
            with self._lock:
                done = [a for a in self.answers if a.started >= since and a.status == 202]
            firsts = {
                kind: min((a.finished for a in done if a.kind == kind), default=None)
                for kind in ("write", "read")
            }
            if all(first is not None for first in firsts.values()):
                return max(f for f in firsts.values() if f is not None) - since
            time.sleep(0.05)
        raise AssertionError(f"the gateway did not recover within {bound} s")


def _signal(stack: DevStack, name: str, sig: signal.Signals) -> None:
    process = StackState.load(stack.state_file).processes[name]
    os.killpg(process.pid, sig)


@contextmanager
def paused(stack: DevStack, name: str) -> Iterator[None]:
    _signal(stack, name, signal.SIGSTOP)
    try:
        yield
    finally:
        _signal(stack, name, signal.SIGCONT)


@contextmanager
def killed(stack: DevStack, name: str) -> Iterator[None]:
    assert stack.stop_service(name, kill=True)
    try:
        yield
    finally:
        stack.start_service(name)


def test_the_fault_matrix(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver, tmp_path: Path
) -> None:
    bug = tmp_path / "writer-bug"

    session = tomllib.loads(stack.gateway_config_path.read_text(encoding="utf-8"))

    def configure(config: dict[str, Any]) -> None:
        # The session gateway's key signs this log's checkpoints too: one public key checks both.
        config["audit"].update(
            signing_key_file=session["audit"]["signing_key_file"], checkpoint_every=50
        )
        # The cached secret is due for a refresh during the secret store's pause.
        config["neo4j"]["secret"].update(refresh_interval_s=0.5, timeout_s=1.0)
        config["opa"].update(decision_cache_ttl_s=0.5)

    second = SecondGateway(stack, tmp_path / "gateway", "faults", configure=configure)
    second.start(writer_bug_file=bug)

    def writer_bug() -> Iterator[None]:
        bug.touch()
        yield

    faults: list[tuple[str, Callable[[], Any]]] = [
        ("OPA killed", lambda: killed(stack, "opa")),
        ("OPA paused", lambda: paused(stack, "opa")),
        ("Neo4j paused", lambda: paused(stack, "neo4j")),
        ("secret store paused", lambda: paused(stack, "moto")),
        ("audit writer exception", lambda: contextmanager(writer_bug)()),
    ]
    label = "FaultMatrix" + uuid.uuid4().hex[:12]
    headers = {"Authorization": f"Bearer {stack.token('demo_writer')}"}
    recoveries: dict[str, float] = {}
    try:
        with Load(second.url, headers, label) as load:
            load.recovered_after(time.monotonic(), RECOVERY_BOUND_S)  # steady before any fault
            for name, fault in faults:
                with fault():
                    time.sleep(FAULT_S)
                ended = time.monotonic()
                recoveries[name] = load.recovered_after(ended, RECOVERY_BOUND_S)
            time.sleep(0.5)
        answers = load.answers
        health = httpx.get(second.url + "/healthz", timeout=10)
    finally:
        second.stop()  # a graceful stop: what is queued or kept is written

    print("\nfault matrix: recovery after each fault (s), measured from the fault's end")
    for name, seconds in recoveries.items():
        print(f"  {name:24} {seconds:6.2f}")
    statuses: dict[int | None, int] = {}
    for answer in answers:
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
    print(f"  answers by status: {dict(sorted(statuses.items(), key=str))}")

    assert health.status_code == 200
    assert bug.exists() is False, "the audit writer's fault was never reached"
    assert statuses.get(503, 0) > 0, "no fault was ever seen by a client"
    assert not {s for s in statuses if s is not None and s >= 500} - {502, 503}

    public_key = load_public_key(Path(status["audit_public_key"]))
    with AuditReader(second.audit) as reader:
        steps = list(reader.verify(public_key))
        records = list(reader.query(RecordFilter()))
        unanswered, examples = reader.unanswered(utc_timestamp(time.time() + 60))
        checkpoints = reader.checkpoints()
    assert not [s for s in steps if isinstance(s, ChainProblem)], steps[-1]
    assert checkpoints, "no signed checkpoint: the public key checked nothing"
    events: dict[str, set[str]] = {}
    decided: set[str] = set()
    for record in records:
        events.setdefault(record["request_id"], set()).add(record["event"])
        if record["event"] == "decision" and record.get("statement"):
            decided.add(record["statement"])
    answered = [a for a in answers if a.status is not None and 200 <= a.status < 300]
    missing = [
        a.request_id
        for a in answered
        if events.get(a.request_id or "")
        != {
            "decision",
            "outcome",
        }
    ]
    assert not missing, f"{len(missing)} answered requests lack a record"
    rows, _, _ = neo4j_admin.execute_query(f"MATCH (n:`{label}`) RETURN n.id AS id")
    ran = [row["id"] for row in rows]
    assert len(ran) >= len([a for a in answered if a.kind == "write"])
    unrecorded = [i for i in ran if f"CREATE (:`{label}` {{id: '{i}'}})" not in decided]
    assert not unrecorded, f"{len(unrecorded)} statements ran without a decision record"
    assert unanswered == 0, f"decisions without an outcome: {examples}"
    for name, seconds in recoveries.items():
        assert seconds <= RECOVERY_BOUND_S, name
