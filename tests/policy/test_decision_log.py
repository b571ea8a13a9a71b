"""The audit log joins OPA's decision log: the same decision id, the revision OPA served.

The session's OPA serves a copy of ``policies/`` through the folder server, logging every
decision to its output; a request through the gateway must leave one audit decision whose id is
OPA's, found in that output with the same verdict, and whose revision is the content hash of
the folder.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.bundles import BUNDLE_NAME, folder_revision
from proxy.devstack.stack import DevStack
from tests.conftest import until


def opa_decisions(stack: DevStack) -> dict[str, dict[str, Any]]:
    """OPA's decision log so far, by decision id."""
    log = Path(stack.status()["processes"]["opa"]["log"])
    found = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{") and '"Decision Log"' in line:
            event = json.loads(line)
            found[event["decision_id"]] = event
    return found


def test_the_audit_decision_is_found_in_opas_decision_log(
    stack: DevStack, gateway: httpx.Client
) -> None:
    statement = f"RETURN '{uuid.uuid4().hex}' AS fresh"
    response = gateway.post(
        "/db/neo4j/query/v2",
        json={"statement": statement},
        headers={"Authorization": stack.auth_header("demo_reader")},
    )
    assert response.status_code == 202
    with AuditReader(stack.audit_path) as reader:
        (record,) = reader.query(
            RecordFilter(request_id=response.headers["X-CypherGate-Request-ID"], event="decision")
        )
    decision_id = record["decision"]["decision_id"]

    def logged() -> httpx.Response | None:  # OPA writes its log line just after answering
        return response if decision_id in opa_decisions(stack) else None

    until(logged, seconds=5)
    event = opa_decisions(stack)[decision_id]
    assert event["path"] == "cyphergate/authz/decision"
    assert event["result"]["allow"] is True
    assert event["input"]["request"]["statement"] == statement
    revision = folder_revision(stack.policies_dir)
    assert event["bundles"] == {BUNDLE_NAME: {"revision": revision}}
    assert record["decision"]["policy_revision"] == revision
