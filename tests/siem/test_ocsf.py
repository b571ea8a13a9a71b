"""Audit records as OCSF events: each kind of record maps to its class, and validates against
the OCSF schema (pydantic-ocsf's, version 1.7.0); a wrong field does not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.audit.record import AuditEvent, canonical, digest, seal
from proxy.siem.forms import Committed, render
from proxy.siem.ocsf import epoch_ms, ocsf_event
from tests.siem.ocsf_schema import problems

PRINCIPAL: dict[str, str | int | None] = {
    "method": "oidc",
    "issuer": "http://127.0.0.1:9000/",
    "subject": "airflow-worker",
    "dag": "demo_reader",
    "task": "load",
    "run": "manual__1",
    "try_number": 1,
}
ALLOWED = {"allow": True, "reasons": [], "decision_id": "d-1", "policy_revision": "rev-9"}
TIME = "2026-11-30T10:00:00.123456Z"


def records() -> dict[str, AuditEvent]:
    """One record of each shape the gateway writes."""
    return {
        "read decision": AuditEvent(
            event="decision",
            time=TIME,
            request_id="r-1",
            client="127.0.0.1:51234",
            principal=PRINCIPAL,
            database="neo4j",
            statement="MATCH (p:Person) RETURN p.name",
            statement_sha256="ab" * 32,
            query_type="r",
            decision=ALLOWED,
            parameters={"name": "hmac-sha256:00"},
        ),
        "read outcome": AuditEvent(
            event="outcome",
            time=TIME,
            request_id="r-1",
            client="127.0.0.1:51234",
            principal=PRINCIPAL,
            database="neo4j",
            statement_sha256="ab" * 32,
            query_type="r",
            decision=ALLOWED,
            status=202,
            rows=3,
            latency_us=2_500,
            counters={"nodes_created": 0, "contains_updates": False},
        ),
        "write refused by the policy": AuditEvent(
            event="decision",
            time=TIME,
            request_id="r-2",
            client="[::1]:40000",
            principal=PRINCIPAL,
            database="neo4j",
            statement="CREATE (:Movie)",
            query_type="w",
            decision={"allow": False, "reasons": ["write_not_granted"], "decision_id": "d-2"},
            status=403,
            error={"code": "Neo.ClientError.Security.Forbidden", "reason": "write_not_granted"},
        ),
        "refused credential": AuditEvent(
            event="decision",
            time=TIME,
            request_id="r-3",
            client="10.0.0.7:1234",
            status=401,
            error={"code": "Neo.ClientError.Security.Unauthorized", "reason": "token_expired"},
        ),
        "reviewer read": AuditEvent(
            event="access",
            time=TIME,
            request_id="r-4",
            client="127.0.0.1:1",
            principal={"method": "oidc", "issuer": "http://x/", "subject": "auditor", "dag": None},
            decision={"allow": True, "reasons": [], "decision_id": "d-4"},
            status=200,
        ),
        "transaction commit": AuditEvent(
            event="transaction",
            time=TIME,
            request_id="r-5",
            client="127.0.0.1:2",
            principal=PRINCIPAL,
            database="neo4j",
            status=200,
            transaction={"id": "tx-1", "action": "commit", "cause": "client", "statements": 2},
        ),
        "schema statement": AuditEvent(
            event="decision",
            time=TIME,
            request_id="r-6",
            client="testclient:50000",  # not an address: named, not put in ip
            principal=PRINCIPAL,
            database="neo4j",
            statement="CREATE INDEX i FOR (n:Person) ON (n.name)",
            query_type="s",
            decision=ALLOWED,
        ),
    }


def event_of(record: AuditEvent, seq: int = 7) -> dict[str, Any]:
    sealed = seal(record, seq=seq, prev_hash="0" * 64)
    committed = Committed(seq, record.time, record.event, record.verdict, sealed.body, sealed.hash)
    document: dict[str, Any] = json.loads(render(committed, chain="gateway", form="ocsf").line)
    return document


@pytest.mark.parametrize("kind", list(records()))
def test_every_kind_of_record_is_a_valid_ocsf_event(kind: str) -> None:
    event = event_of(records()[kind])
    assert problems(event) == []


def test_the_classes_and_activities_follow_the_record() -> None:
    got = {
        kind: (e["class_uid"], e["activity_name"], e["status"])
        for kind, e in ((k, event_of(r)) for k, r in records().items())
    }
    assert got == {
        "read decision": (6005, "Query", "Unknown"),
        "read outcome": (6005, "Query", "Success"),
        "write refused by the policy": (6005, "Write", "Failure"),
        "refused credential": (3002, "Logon", "Failure"),
        "reviewer read": (6003, "Read", "Success"),
        "transaction commit": (6005, "Commit", "Success"),
        "schema statement": (6005, "Schema", "Unknown"),
    }


def test_fields_carry_the_record() -> None:
    decision = event_of(records()["read decision"])
    assert decision["time"] == epoch_ms(TIME) == 1_796_032_800_123
    assert decision["actor"]["user"] == {
        "name": "demo_reader",
        "uid": "airflow-worker",
        "type_id": 4,
        "type": "Service",
    }
    assert decision["actor"]["authorizations"] == [
        {"decision": "allow", "policy": {"name": "cyphergate", "uid": "d-1", "version": "rev-9"}}
    ]
    assert decision["src_endpoint"] == {"ip": "127.0.0.1", "port": 51234}
    assert decision["database"] == {"type_id": 6, "type": "NoSQL", "name": "neo4j"}
    assert decision["query_info"]["query_string"] == "MATCH (p:Person) RETURN p.name"
    assert decision["metadata"]["uid"] == "gateway:7"
    assert decision["metadata"]["correlation_uid"] == "r-1"
    # raw_data is the record's canonical body: it hashes to the record's hash.
    cyphergate = decision["unmapped"]["cyphergate"]
    assert digest(decision["raw_data"]) == cyphergate["hash"]
    assert canonical(json.loads(decision["raw_data"])) == decision["raw_data"]
    refused = event_of(records()["write refused by the policy"])
    assert refused["status_detail"] == "write_not_granted"
    assert refused["src_endpoint"] == {"ip": "::1", "port": 40000}
    assert refused["severity"] == "Medium"
    credential = event_of(records()["refused credential"])
    assert credential["user"] == {"name": "unknown"}
    assert credential["status_detail"] == "token_expired"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda e: e.update(activty_id=4), "activty_id"),  # a misspelt attribute
        (lambda e: e["actor"]["user"].update(nme="x"), "nme"),  # misspelt, nested
        (lambda e: e.update(activity_id=7, type_uid=600507), "activity"),  # caption mismatch
        (lambda e: e.update(time="2026-11-30"), "time"),  # wrong type
        (lambda e: e.pop("actor"), "actor"),  # a required object missing
        (lambda e: e.update(severity_id=77), "severity_id"),  # outside the enum
        (lambda e: e.update(class_name="Datastore"), "class_name"),  # wrong caption
        (lambda e: e.update(src_endpoint={"port": 1}), "at least one"),  # constraint
        (lambda e: e.update(class_uid=3002), "category_uid"),  # another class
    ],
)
def test_a_wrong_field_fails_validation(change: Any, why: str) -> None:
    event = event_of(records()["read decision"])
    change(event)
    found = problems(event)
    assert found, "the wrong field was accepted"
    assert any(why in problem for problem in found), found


def test_ocsf_event_reads_only_the_record() -> None:
    # A record of a future format with fields we do not know still maps (they stay in raw_data).
    body = canonical({"v": 2, "seq": 1, "event": "decision", "time": TIME, "new": {"x": 1}})
    event = ocsf_event(chain="c", seq=1, hash_=digest(body), body=body, record=json.loads(body))
    assert problems(event) == []
