"""Reviewers' HTTP API on the real gateway: policy-gated, audited, and proofs that verify."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.audit.checkpoint import load_public_key, verify_proof
from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from tests.conftest import changed_policy_data

pytestmark = pytest.mark.integration


def bearer(stack: DevStack, client_id: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + stack.client_token(client_id)}


def test_reviewer_reads_and_others_are_refused(stack: DevStack, gateway: httpx.Client) -> None:
    denied_query = gateway.post(
        "/db/neo4j/query/v2",
        json={"statement": "RETURN 1"},
        headers={"Authorization": "Bearer " + stack.token("demo_unlisted")},
    )
    assert denied_query.status_code == 403
    auditor = bearer(stack, "demo_auditor")
    page = gateway.get(
        "/audit/records",
        params={"dag": "demo_unlisted", "decision": "deny", "limit": 5},
        headers=auditor,
    )
    assert page.status_code == 200, page.text
    records = page.json()["records"]
    assert records and all(r["principal"]["dag"] == "demo_unlisted" for r in records)
    assert all(r["decision"]["allow"] is False for r in records)

    as_dag = gateway.get(
        "/audit/records", headers={"Authorization": "Bearer " + stack.token("demo_reader")}
    )
    assert as_dag.status_code == 403
    assert "not_a_reviewer" in as_dag.json()["errors"][0]["message"]
    anonymous = gateway.get("/audit/records")
    assert anonymous.status_code == 401

    # Every attempt to read, allowed or not, is itself on the record.
    accesses = gateway.get(
        "/audit/records", params={"event": "access", "limit": 1000}, headers=auditor
    ).json()["records"]
    kinds = [
        (r["status"], (r["principal"] or {}).get("subject"))
        for r in accesses
        if r["event"] == "access"
    ]
    assert (200, "demo_auditor") in kinds and (403, "demo_reader") in kinds and (401, None) in kinds


def test_paging(stack: DevStack, gateway: httpx.Client) -> None:
    auditor = bearer(stack, "demo_auditor")
    first = gateway.get("/audit/records", params={"limit": 3}, headers=auditor).json()
    assert len(first["records"]) == 3 and first["next_after"] == first["records"][-1]["seq"]
    second = gateway.get(
        "/audit/records", params={"limit": 3, "after": first["next_after"]}, headers=auditor
    ).json()
    assert second["records"][0]["seq"] == first["next_after"] + 1


def test_proof_of_one_record_verifies_with_the_public_key(
    stack: DevStack, gateway: httpx.Client, status: dict[str, Any]
) -> None:
    reader = {"Authorization": "Bearer " + stack.token("demo_reader")}
    sent = gateway.post(
        "/db/neo4j/query/v2", json={"statement": "RETURN 'prove me' AS x"}, headers=reader
    )
    for _ in range(6):  # enough records for a checkpoint (every 5 in the test stack) to cover it
        gateway.post("/db/neo4j/query/v2", json={"statement": "RETURN 1"}, headers=reader)
    auditor = bearer(stack, "demo_auditor")
    (decision,) = [
        r
        for r in gateway.get("/audit/records", params={"text": "prove me"}, headers=auditor).json()[
            "records"
        ]
        if r["request_id"] == sent.headers["X-CypherGate-Request-ID"]
    ]
    proof = gateway.get(f"/audit/records/{decision['seq']}/proof", headers=auditor)
    assert proof.status_code == 200, proof.text
    public_key = load_public_key(Path(status["audit_public_key"]))
    assert verify_proof(proof.json(), public_key)
    assert json.loads(proof.json()["links"][0]["body"])["statement"] == "RETURN 'prove me' AS x"

    forged = copy.deepcopy(proof.json())
    forged["links"][0]["body"] = forged["links"][0]["body"].replace("prove me", "prove it")
    assert not verify_proof(forged, public_key)
    missing = gateway.get("/audit/records/999999999/proof", headers=auditor)
    assert missing.status_code == 404


def test_a_reviewer_removed_from_the_policy_is_refused_at_the_next_request(
    stack: DevStack, status: dict[str, Any], gateway: httpx.Client
) -> None:
    """The audit-access policy is asked on every read: no session or cache outlives a change
    a security team makes to the reviewers in the policy folder."""
    auditor = bearer(stack, "demo_auditor")
    assert gateway.get("/audit/records", params={"limit": 1}, headers=auditor).status_code == 200

    def remove_auditor(data: dict[str, Any]) -> None:
        reviewers = data["cyphergate"]["reviewers"]
        without = [r for r in reviewers if r.get("client_id") != "demo_auditor"]
        assert len(without) < len(reviewers)
        data["cyphergate"]["reviewers"] = without

    with changed_policy_data(stack, remove_auditor):
        refused = gateway.get("/audit/records", params={"limit": 1}, headers=auditor)
    assert refused.status_code == 403
    assert "not_a_reviewer" in refused.json()["errors"][0]["message"]
    assert gateway.get("/audit/records", params={"limit": 1}, headers=auditor).status_code == 200


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/audit/records", {"until": "notadate"}, "until: expected an ISO 8601 time"),
        ("/audit/records", {"since": "2026-11-30T04:30"}, None),  # readable: UTC
        ("/audit/records", {"after": "²"}, "after: expected a whole number"),
        ("/audit/records", {"after": "٣"}, "after: expected a whole number"),
        ("/audit/records", {"after": str(2**64)}, "after: expected a whole number"),
        ("/audit/records", {"after": str(2**63)}, "after: expected a number from 0"),
        ("/audit/records", {"limit": "0"}, "limit: expected a number from 1 to 1000"),
        ("/audit/records/99999999999999999999999/proof", {}, "seq: expected a whole number"),
        ("/audit/records/%C2%B2/proof", {}, "seq: expected a whole number"),
        ("/audit/records", {"event": "<bogus>"}, "event: expected one of decision, outcome"),
        ("/audit/records", {"decision": "maybe"}, "decision: expected one of allow, deny"),
        ("/audit/records", {"chain": "x" * 201}, "chain: expected at most 200 characters"),
        ("/audit/records/1/proof", {"chain": "x" * 201}, "chain: expected at most 200"),
    ],
)
def test_odd_filter_values_are_clear_400s(
    stack: DevStack, gateway: httpx.Client, path: str, params: dict[str, str], named: str | None
) -> None:
    answer = gateway.get(path, params=params, headers=bearer(stack, "demo_auditor"))
    if named is None:
        assert answer.status_code == 200, answer.text
        return
    assert answer.status_code == 400, answer.text
    (error,) = answer.json()["errors"]
    assert error["code"] == "Neo.ClientError.Request.Invalid"
    assert error["message"].startswith(named)
    assert answer.headers["X-CypherGate-Request-ID"]


def test_every_request_is_authorized_and_recorded_before_its_parameters_are_read(
    stack: DevStack, gateway: httpx.Client
) -> None:
    """Found by review: FastAPI refused a typed parameter (``event=<bogus>``, a long ``chain``)
    with a 422 echoing it before the route asked who was calling, so the request left no
    ``access`` record, with a credential or without one."""
    reader = {"Authorization": "Bearer " + stack.token("demo_reader")}
    expected = {401: "missing_credential", 403: "policy_denied", 400: "bad_filter"}
    for headers, status in ((None, 401), (reader, 403), (bearer(stack, "demo_auditor"), 400)):
        for params in ({"event": "<bogus>"}, {"chain": "x" * 201}):
            answer = gateway.get("/audit/records", params=params, headers=headers)
            assert answer.status_code == status, answer.text
            assert "<bogus>" not in answer.text and "xxx" not in answer.text
            request_id = answer.headers["X-CypherGate-Request-ID"]
            with AuditReader(stack.audit_path) as log:
                (access,) = log.query(RecordFilter(request_id=request_id))
            assert access["event"] == "access" and access["status"] == status
            assert access["error"]["reason"] == expected[status]


def test_two_authorization_headers_are_refused_and_recorded(
    stack: DevStack, gateway: httpx.Client
) -> None:
    """Found by review: the API read the first of two ``Authorization`` headers, so a reviewer's
    token followed by anything (what a proxy in front reading the last one checked) was a 200.
    The query door refuses the same request (several_credentials); so does the API now."""
    auditor = bearer(stack, "demo_auditor")["Authorization"]
    for first, second in ((auditor, "Bearer garbage"), ("Bearer garbage", auditor)):
        twice = [("Authorization", first), ("Authorization", second)]
        for path in ("/audit/records?limit=1", "/audit/records/1/proof"):
            answer = gateway.get(path, headers=twice)
            assert answer.status_code == 401, answer.text
            request_id = answer.headers["X-CypherGate-Request-ID"]
            with AuditReader(stack.audit_path) as log:
                (access,) = log.query(RecordFilter(request_id=request_id))
            assert access["event"] == "access" and access["status"] == 401
            assert access["error"]["reason"] == "several_credentials"
    assert gateway.get("/audit/records?limit=1", headers={"Authorization": auditor}).is_success


def test_an_unknown_chain_is_recorded_as_the_404_it_answers(
    stack: DevStack, gateway: httpx.Client
) -> None:
    """Found by review: the access record was written as a read that succeeded (status 200)
    before the chain was looked up, and the answer was then a 404; the log said the reviewer
    read what nobody was given. Only a reviewer learns that the chain does not exist."""
    auditor = bearer(stack, "demo_auditor")
    reader = {"Authorization": "Bearer " + stack.token("demo_reader")}
    for path in ("/audit/records", "/audit/records/1/proof"):
        for headers, status, reason in ((auditor, 404, "no_chain:nope"), (reader, 403, None)):
            answer = gateway.get(path, params={"chain": "nope"}, headers=headers)
            assert answer.status_code == status, answer.text
            with AuditReader(stack.audit_path) as log:
                (access,) = log.query(
                    RecordFilter(request_id=answer.headers["X-CypherGate-Request-ID"])
                )
            assert access["event"] == "access" and access["status"] == status
            assert reason is None or access["error"]["reason"] == reason
    named = gateway.get("/audit/records", params={"chain": "gateway", "limit": 1}, headers=auditor)
    assert named.status_code == 200 and named.json()["chain"] == "gateway"


def test_a_proof_of_no_record_is_recorded_as_the_404_it_answers(
    stack: DevStack, gateway: httpx.Client
) -> None:
    """Found by review: a proof of a record the log does not hold answered 404 after its
    access record said the reviewer read it (200)."""
    auditor = bearer(stack, "demo_auditor")
    reader = {"Authorization": "Bearer " + stack.token("demo_reader")}
    for headers, status in ((auditor, 404), (reader, 403)):
        answer = gateway.get("/audit/records/999999999/proof", headers=headers)
        assert answer.status_code == status, answer.text
        with AuditReader(stack.audit_path) as log:
            (access,) = log.query(
                RecordFilter(request_id=answer.headers["X-CypherGate-Request-ID"])
            )
        assert access["event"] == "access" and access["status"] == status
        if status == 404:
            assert access["error"]["reason"] == "record_not_provable"
