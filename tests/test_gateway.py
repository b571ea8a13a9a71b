"""The request path with fakes at its Protocol seams: the fail-closed rules, one by one.

These prove the ordering guarantees (nothing runs unless authenticated, decided and recorded);
the same paths are exercised against the real services in test_request_path.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from proxy.analysis import Analysis, Analyzer
from proxy.audit.record import AuditEvent
from proxy.audit.sqlite import Receipt
from proxy.auth import SchemeRouter
from proxy.errors import (
    AuditUnavailable,
    AuthenticationFailed,
    CypherGateError,
    PolicyDenied,
    PolicyUnavailable,
)
from proxy.gateway import Call, Gateway
from proxy.graph import Checkout, Execution, QueryResult
from proxy.metrics import Metrics
from proxy.plan import PlanFacts
from proxy.policy import Decision
from proxy.principal import DagResolver, Identity

READER = Identity(method="oidc", issuer="https://issuer.test", subject="s", asserted_dag="etl")


class FakeAuth:
    async def authenticate(self, credentials: str) -> Identity:
        if credentials != "good":
            raise AuthenticationFailed(reason="bad_token")
        return READER

    async def check_ready(self) -> None:
        return None


@dataclass
class FakeGraph:
    explained: list[str] = field(default_factory=list)
    ran: list[Execution] = field(default_factory=list)

    user: str = "cyphergate"

    async def explain(self, database: str, statement: str) -> Analysis:
        self.explained.append(f"{database}: {statement}")
        if "CREATE" in statement:
            return Analysis(query_type="w", facts=PlanFacts(labels_written=frozenset({"N"})))
        return Analysis(query_type="r", facts=PlanFacts())

    async def run(self, execution: Execution) -> QueryResult:
        self.ran.append(execution)
        return QueryResult(fields=["x"], values=[[1]])

    @contextlib.asynccontextmanager
    async def checkout(self, dag: str) -> AsyncIterator[Checkout]:
        del dag
        yield Checkout(user=self.user, run=self.run)

    async def check_ready(self) -> None:
        return None


@dataclass
class FakePolicy:
    allow: bool = True
    fail: bool = False
    shadow: bool = False
    row_limit: int | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)

    async def decide(self, document: dict[str, Any]) -> Decision:
        self.inputs.append(document)
        if self.fail:
            raise PolicyUnavailable(reason="opa_error:test")
        return Decision(
            allow=self.allow,
            reasons=() if self.allow else ("write_not_granted",),
            decision_id="d-1",
            access_mode="WRITE",
            timeout_s=5.0,
            shadow=self.shadow,
            row_limit=self.row_limit,
            revision="rev-1" if self.shadow else None,
        )

    async def check_ready(self) -> None:
        return None


@dataclass
class FakeAudit:
    events: list[AuditEvent] = field(default_factory=list)
    broken: bool = False

    async def append(self, event: AuditEvent) -> Receipt:
        if self.broken:
            raise AuditUnavailable(reason="disk_full")
        self.events.append(event)
        return Receipt(seq=len(self.events), hash="0" * 64)

    async def check_ready(self) -> None:
        return None


def make(
    policy: FakePolicy | None = None,
    audit: FakeAudit | None = None,
    metrics: Metrics | None = None,
) -> tuple[Gateway, FakeGraph, FakePolicy, FakeAudit]:
    graph, policy, audit = FakeGraph(), policy or FakePolicy(), audit or FakeAudit()
    gateway = Gateway(
        authenticator=SchemeRouter({"Bearer": FakeAuth()}),
        resolver=DagResolver([]),
        analyzer=Analyzer(graph, max_entries=8),
        policy=policy,
        graph=graph,
        audit=audit,
        clock=lambda: 1_700_000_000.0,
        default_timeout_s=30.0,
        metrics=metrics,
    )
    return gateway, graph, policy, audit


def call(statement: str, authorization: str | None = "Bearer good") -> Call:
    body = json.dumps({"statement": statement, "parameters": {"secret": "hunter2"}}).encode()

    async def read_body() -> bytes:
        return body

    return Call(
        request_id="r-1",
        database="neo4j",
        authorization=authorization,
        client=None,
        headers={"x-cyphergate-task": "load", "x-cyphergate-try": "2"},
        read_body=read_body,
    )


def run(gateway: Gateway, c: Call) -> Any:
    return asyncio.run(gateway.query(c))


def test_allowed_request_is_recorded_before_it_runs_and_after() -> None:
    gateway, graph, _, audit = make()
    run(gateway, call("RETURN 1"))
    assert [e.event for e in audit.events] == ["decision", "outcome"]
    assert audit.events[0].status is None and audit.events[1].status == 202
    (execution,) = graph.ran
    assert execution.access_mode == "READ"  # read-only statement, whatever the policy allows
    assert execution.metadata == {
        "dag_id": "etl",
        "task_id": "load",
        "try_number": 2,
        "request_id": "r-1",
        "decision_id": "d-1",
    }
    assert "hunter2" not in repr(audit.events)


def test_unauthenticated_request_touches_nothing() -> None:
    gateway, graph, policy, audit = make()
    with pytest.raises(AuthenticationFailed):
        run(gateway, call("RETURN 1", authorization="Bearer forged"))
    assert graph.explained == [] and graph.ran == [] and policy.inputs == []
    (event,) = audit.events
    assert event.status == 401 and event.error == {
        "code": "Neo.ClientError.Security.Unauthorized",
        "reason": "bad_token",
    }


def test_denied_request_does_not_run() -> None:
    gateway, graph, _, audit = make(policy=FakePolicy(allow=False))
    with pytest.raises(PolicyDenied) as denied:
        run(gateway, call("CREATE (:X)"))
    assert denied.value.reasons == ["write_not_granted"]
    assert graph.ran == []
    (event,) = audit.events
    assert event.status == 403 and event.decision == {
        "allow": False,
        "reasons": ["write_not_granted"],
        "decision_id": "d-1",
        "policy_revision": None,
    }


def test_policy_failure_fails_closed() -> None:
    gateway, graph, _, audit = make(policy=FakePolicy(fail=True))
    with pytest.raises(PolicyUnavailable):
        run(gateway, call("CREATE (:X)"))
    assert graph.ran == []
    assert audit.events[0].status == 503


def test_unwritable_audit_log_means_nothing_runs() -> None:
    gateway, graph, _, _ = make(audit=FakeAudit(broken=True))
    with pytest.raises(AuditUnavailable) as error:
        run(gateway, call("CREATE (:X)"))
    assert error.value.status == 503
    assert graph.ran == []


def test_policy_input_matches_the_documented_schema() -> None:
    from pathlib import Path

    import jsonschema

    schema = json.loads(
        (Path(__file__).resolve().parent.parent / "policies/schemas/input.json").read_text()
    )
    gateway, _, policy, _ = make()
    run(gateway, call("RETURN 1"))
    (document,) = policy.inputs
    jsonschema.validate(document, schema)  # additionalProperties: false at every level
    assert "hunter2" not in json.dumps(document)


def test_internal_errors_are_audited_and_hidden() -> None:
    gateway, graph, _, audit = make()

    async def explode(execution: Execution) -> QueryResult:
        raise RuntimeError(f"{execution.database}: connection string with password=hunter2")

    graph.run = explode  # type: ignore[method-assign]
    with pytest.raises(CypherGateError) as error:
        run(gateway, call("RETURN 1"))
    assert "hunter2" not in error.value.message
    assert audit.events[-1].event == "outcome" and audit.events[-1].status == 500


def test_shadow_mode_records_the_refusal_and_runs() -> None:
    gateway, graph, _, audit = make(policy=FakePolicy(allow=False, shadow=True, row_limit=7))
    run(gateway, call("CREATE (:X)"))
    (execution,) = graph.ran
    assert execution.row_limit == 7 and execution.row_limit_action == "error"
    decision, outcome = audit.events
    assert decision.decision == {
        "allow": True,
        "reasons": ["write_not_granted"],
        "decision_id": "d-1",
        "policy_revision": "rev-1",
        "shadow_denied": True,
    }
    # It ran, but the policy refused it: reviewers find it among the denials.
    assert decision.verdict == "deny" and outcome.status == 202
    assert decision.analysis is not None and decision.analysis["labels"]["write"] == ["N"]


def test_every_request_is_counted_once_for_metrics() -> None:
    """Allowed, refused, unauthenticated, failed-closed and unrecorded requests: one count each,
    by verdict and status, and refusal reasons by kind."""
    metrics = Metrics()
    cases: list[tuple[FakePolicy, FakeAudit, str, str | None]] = [
        (FakePolicy(), FakeAudit(), "RETURN 1", "Bearer good"),
        (FakePolicy(allow=False), FakeAudit(), "CREATE (:X)", "Bearer good"),
        (FakePolicy(), FakeAudit(), "RETURN 1", "Bearer forged"),
        (FakePolicy(fail=True), FakeAudit(), "RETURN 1", "Bearer good"),
        (FakePolicy(shadow=True, allow=False), FakeAudit(), "CREATE (:X)", "Bearer good"),
        (FakePolicy(), FakeAudit(broken=True), "RETURN 1", "Bearer good"),
    ]
    for policy, audit, statement, authorization in cases:
        gateway, _, _, _ = make(policy=policy, audit=audit, metrics=metrics)
        with contextlib.suppress(CypherGateError):
            run(gateway, call(statement, authorization=authorization))

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    counted = [
        s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "cyphergate_requests_total"
    ]
    assert sum(counted) == len(cases)
    assert sample("cyphergate_requests_total", verdict="allow", status="202") == 1
    assert sample("cyphergate_requests_total", verdict="deny", status="403") == 1
    assert sample("cyphergate_requests_total", verdict="deny", status="401") == 1
    # Shadow mode: ran (202) but counted as a refusal, as the audit log shows it.
    assert sample("cyphergate_requests_total", verdict="deny", status="202") == 1
    assert sample("cyphergate_requests_total", verdict="deny", status="503") == 1  # no OPA
    # Allowed, but the audit log could not take the record ahead of running: refused.
    assert sample("cyphergate_requests_total", verdict="allow", status="503") == 1
    assert sample("cyphergate_denials_total", reason="write_not_granted") == 2
    assert sample("cyphergate_denials_total", reason="bad_token") == 1
    assert sample("cyphergate_denials_total", reason="opa_error") == 1
    assert sample("cyphergate_audit_write_failures_total", event="decision") == 1
    assert sample("cyphergate_request_duration_seconds_count", verdict="deny") == 4
    assert b"hunter2" not in metrics.render() and b"etl" not in metrics.render()
