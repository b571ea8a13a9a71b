"""A decision whose constraints or reasons are nonsense, from the real OPA, through the gateway:
503, one audit record, nothing run. OPA serves a test policy (its own private server, as
``policy replay``'s) whose decision for each statement carries what the test names."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from proxy.app import create_app
from proxy.devstack.install import default_cache_dir, ensure_opa
from proxy.opa_server import proposed_policy
from proxy.policy import OPAPolicyEngine
from proxy.settings import Neo4jSettings, OPASettings, Settings
from tests.fakes import FakeAudit, FakeExecutor, fake_services

REPO = Path(__file__).resolve().parent.parent.parent
QUERY = "/db/neo4j/query/v2"
GOOD = {"Authorization": "Bearer good"}

# By statement: the constraints the test policy's decision carries for it.
CONSTRAINTS: dict[str, dict[str, Any]] = {
    "RETURN 'well formed'": {"access_mode": "READ", "timeout_ms": 900, "row_limit": 10},
    "RETURN 'string timeout'": {"access_mode": "READ", "timeout_ms": "900"},
    "RETURN 'boolean timeout'": {"access_mode": "READ", "timeout_ms": True},
    "RETURN 'float timeout'": {"access_mode": "READ", "timeout_ms": 900.5},
    "RETURN 'overflowing timeout'": {"access_mode": "READ", "timeout_ms": 2**63},
    "RETURN 'huge timeout'": {"access_mode": "READ", "timeout_ms": 1e300},
    "RETURN 'negative row limit'": {"access_mode": "READ", "row_limit": -1},
    "RETURN 'boolean row limit'": {"access_mode": "READ", "row_limit": True},
    "RETURN 'string row limit'": {"access_mode": "READ", "row_limit": "10"},
    "RETURN 'overflowing row limit'": {"access_mode": "READ", "row_limit": 2**63},
}
# By statement: the reasons of a decision whose constraints are well formed.
REASONS: dict[str, dict[str, Any]] = {
    "RETURN 'repeated reason'": {"allow": False, "reasons": ["write_not_granted"] * 2},
    "RETURN 'empty reason'": {"allow": False, "reasons": [""]},
    "RETURN 'allowed with reasons'": {"allow": True, "reasons": ["write_not_granted"]},
}
# Each statement is in one table, so only one definition of the decision holds for it.
POLICY = """package cyphergate.authz

preflight := {"allow": true, "reasons": [], "procedures": false, "functions": false}

decision := {
	"allow": true,
	"reasons": [],
	"constraints": constraints[input.request.statement],
}

decision := object.union(verdicts[input.request.statement], {"constraints": read})

read := {"access_mode": "READ"}

constraints := %s

verdicts := %s
"""


@pytest.fixture(scope="module")
def opa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OPASettings]:
    """A private OPA serving the test policy (JSON is Rego: the table is written as JSON)."""
    policies = tmp_path_factory.mktemp("policies")
    shutil.copytree(REPO / "policies" / "schemas", policies / "schemas")
    shutil.copy(REPO / "policies" / "data.json", policies / "data.json")
    (policies / "authz.rego").write_text(
        POLICY % (json.dumps(CONSTRAINTS), json.dumps(REASONS)), encoding="utf-8"
    )
    with proposed_policy(ensure_opa(default_cache_dir()), policies) as settings:
        yield settings


def answer(opa: OPASettings, statement: str) -> tuple[int, Any, FakeAudit, FakeExecutor]:
    """The gateway's status and body for ``statement``, deciding with the real OPA; its audit
    and Neo4j."""
    http = httpx.AsyncClient(base_url=opa.url, timeout=opa.timeout_s)
    services = dataclasses.replace(fake_services(), policy=OPAPolicyEngine(opa, http))
    assert isinstance(services.audit, FakeAudit)
    assert isinstance(services.executor, FakeExecutor)
    settings = Settings(neo4j=Neo4jSettings(password="a-long-password"), opa=opa)
    with TestClient(create_app(settings, services)) as client:
        response = client.post(QUERY, json={"statement": statement}, headers=GOOD)
        client.portal.call(http.aclose)  # type: ignore[union-attr]
    return response.status_code, response.json(), services.audit, services.executor


def test_a_well_formed_decision_runs_with_its_constraints(opa: OPASettings) -> None:
    status, body, audit, executor = answer(opa, "RETURN 'well formed'")
    assert status == 202, body
    (execution,) = executor.ran
    assert (execution.timeout_s, execution.row_limit) == (0.9, 10)
    assert [event.event for event in audit.events] == ["decision", "outcome"]


@pytest.mark.parametrize(
    "statement", [s for s in [*CONSTRAINTS, *REASONS] if s != "RETURN 'well formed'"]
)
def test_nonsense_constraints_or_reasons_are_a_503_recorded_once_and_nothing_runs(
    opa: OPASettings, statement: str
) -> None:
    status, body, audit, executor = answer(opa, statement)
    assert status == 503, body
    (error,) = body["errors"]
    assert error["code"] == "Neo.TransientError.General.PolicyUnavailable"
    assert executor.ran == []
    (record,) = audit.events
    assert (record.event, record.status) == ("decision", 503)
    assert record.error is not None and record.error["reason"] == "opa_malformed_decision"
