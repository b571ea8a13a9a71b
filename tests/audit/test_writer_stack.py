"""An unexpected exception in the audit writer, on the real stack: the batch it was writing is
refused (503 in Neo4j's error format, nothing ran), the writer goes on without a restart, and
/metrics counts it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.record import ChainProblem
from proxy.devstack.stack import DevStack
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration


def test_a_writer_bug_refuses_its_batch_and_the_writer_goes_on(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path
) -> None:
    bug = tmp_path / "writer-bug"
    second = SecondGateway(stack, tmp_path / "gateway", "writerbug")
    second.start(writer_bug_file=bug)
    label = "WriterBug" + uuid.uuid4().hex[:12]
    try:
        assert second.query("demo_writer", f"CREATE (:`{label}` {{n: 1}})").status_code == 202
        bug.touch()  # the writer's next write raises
        refused = second.query("demo_writer", f"CREATE (:`{label}` {{n: 2}})")
        assert not bug.exists(), "the writer never reached the injected bug"
        after = second.query("demo_writer", f"CREATE (:`{label}` {{n: 3}})")
        health = httpx.get(second.url + "/healthz", timeout=10)
        ready = httpx.get(second.url + "/readyz", timeout=10)
        metrics = httpx.get(second.url + "/metrics", timeout=10).text
    finally:
        second.stop()

    assert refused.status_code == 503
    assert refused.json() == {
        "errors": [
            {
                "code": "Neo.TransientError.General.AuditUnavailable",
                "message": "The audit log is unavailable; nothing was executed.",
            }
        ]
    }
    assert refused.headers["X-CypherGate-Request-ID"]
    assert after.status_code == 202, after.text  # no restart needed
    assert health.status_code == 200
    assert ready.json()["checks"]["audit"] == "ok"
    assert 'cyphergate_audit_writer_errors_total{cause="WriterBug"} 1.0' in metrics
    assert "Traceback" in second.log_text()  # the bug is in the gateway's log, not the answer

    rows, _, _ = neo4j_admin.execute_query(f"MATCH (n:`{label}`) RETURN n.n AS n ORDER BY n")
    assert [row["n"] for row in rows] == [1, 3], "the refused statement never ran"
    with AuditReader(second.audit) as reader:
        steps = list(reader.verify())
        records: list[dict[str, Any]] = list(reader.query(RecordFilter(text=label)))
    assert not [s for s in steps if isinstance(s, ChainProblem)]
    refused_id = refused.headers["X-CypherGate-Request-ID"]
    assert refused_id not in {r["request_id"] for r in records}
    assert len([r for r in records if r["event"] == "decision"]) == 2
