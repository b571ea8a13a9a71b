"""Identity to DAG, end to end: IAM through moto's STS, bindings, context headers, key rotation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.client import iam_authorization
from proxy.devstack.stack import DevStack
from proxy.devstack.state import AWS_REGION, SERVER_ID, StackState, role_arn
from tests.conftest import IAM_MAX_AGE_S, JWKS_TTL_S, MULTI_DAG, SERVICE_ACCOUNT

pytestmark = pytest.mark.integration

QUERY = "/db/neo4j/query/v2"


def send(
    gateway: httpx.Client, authorization: str, statement: str = "RETURN 1 AS x", **headers: str
) -> httpx.Response:
    return gateway.post(
        QUERY, json={"statement": statement}, headers={"Authorization": authorization, **headers}
    )


def record(stack: DevStack, response: httpx.Response, event: str = "decision") -> dict[str, Any]:
    request_id = response.headers["X-CypherGate-Request-ID"]
    with AuditReader(stack.audit_path) as reader:
        records = list(reader.query(RecordFilter(request_id=request_id)))
    return next(r for r in records if r["event"] == event)


def sts_calls(stack: DevStack) -> int:
    """Calls moto has answered on POST / (STS and Secrets Manager alike, by its access log).

    Read from the state file, not ``status()``: that reads Secrets Manager, which would count.
    """
    log = Path(StackState.load(stack.state_file).processes["moto"].log).read_text()
    return sum(1 for line in log.splitlines() if '"POST / HTTP' in line)


def test_iam_role_acts_as_its_dag_and_the_session_name_is_ignored(
    stack: DevStack, gateway: httpx.Client
) -> None:
    header = stack.auth_header("demo_writer", method="iam")
    response = send(gateway, header, "CREATE (:IamWrite) RETURN 1 AS x")
    assert response.status_code == 202, response.text
    principal = record(stack, response)["principal"]
    assert principal["method"] == "aws_iam"
    assert principal["subject"] == role_arn("demo_writer")  # no session name in it
    assert principal["issuer"] == "aws:123456789012"
    assert principal["dag"] == "demo_writer"


def test_iam_proof_is_cached_within_its_window_and_refused_after(
    stack: DevStack, gateway: httpx.Client
) -> None:
    header = stack.auth_header("demo_reader", method="iam")
    # The gateway refreshes its Neo4j secret from moto's Secrets Manager every 5 s when used, and
    # moto's log cannot tell that from STS: a statement first (a token, not IAM) leaves a fresh
    # secret for the few requests counted below.
    assert send(gateway, stack.auth_header("demo_reader")).status_code == 202
    time.sleep(0.5)  # a refresh it started in the background has reached moto by now
    before = sts_calls(stack)
    assert send(gateway, header).status_code == 202
    after_first = sts_calls(stack)
    for _ in range(5):
        assert send(gateway, header).status_code == 202
    assert after_first == before + 1  # only the first use went to STS
    assert sts_calls(stack) == after_first
    time.sleep(IAM_MAX_AGE_S + 1.5)
    # Counted again after the wait: a secret refresh the requests above started in the
    # background may reach moto late on a loaded machine (a full suite beside others: 118
    # against 117), and moto's log cannot tell it from STS. The replay itself uses no secret.
    before_replay = sts_calls(stack)
    replay = send(gateway, header)
    assert replay.status_code == 401
    assert record(stack, replay)["error"]["reason"] == "iam_request_stale"
    assert sts_calls(stack) == before_replay


def test_iam_identity_without_a_binding_is_refused(stack: DevStack, gateway: httpx.Client) -> None:
    # The worker user itself, not one of the DAG roles: verified by STS, but mapped to no DAG.
    keys = StackState.load(stack.state_file).aws_user_keys
    session = boto3.Session(
        aws_access_key_id=keys["id"], aws_secret_access_key=keys["secret"], region_name=AWS_REGION
    )
    header = iam_authorization(session, server_id=SERVER_ID, sts_url=stack.sts_url())
    response = send(gateway, header)
    assert response.status_code == 403
    rec = record(stack, response)
    assert rec["error"]["reason"] == "identity_not_mapped"
    assert rec["principal"]["subject"] == "arn:aws:iam::123456789012:user/airflow-worker"


def test_named_dag_must_be_one_of_the_identitys(stack: DevStack, gateway: httpx.Client) -> None:
    for method in ("oidc", "iam"):
        header = stack.auth_header("demo_reader", method=method)
        response = send(gateway, header, **{"X-CypherGate-DAG": "demo_writer"})
        assert response.status_code == 403, method
        assert record(stack, response)["error"]["reason"] == "dag_not_permitted"
        named_own = send(gateway, header, **{"X-CypherGate-DAG": "demo_reader"})
        assert named_own.status_code == 202, method


def test_identity_with_several_dags_must_name_one(stack: DevStack, gateway: httpx.Client) -> None:
    token = "Bearer " + stack.client_token(MULTI_DAG.client_id)
    ambiguous = send(gateway, token)
    assert ambiguous.status_code == 400
    assert "X-CypherGate-DAG" in ambiguous.json()["errors"][0]["message"]
    as_writer = send(gateway, token, "CREATE (:MultiDag)", **{"X-CypherGate-DAG": "demo_writer"})
    assert as_writer.status_code == 202
    as_reader = send(gateway, token, "CREATE (:MultiDag)", **{"X-CypherGate-DAG": "demo_reader"})
    assert as_reader.status_code == 403
    assert "write_not_granted" in as_reader.json()["errors"][0]["message"]


def test_kubernetes_service_account_is_bound_to_its_dag(
    stack: DevStack, gateway: httpx.Client
) -> None:
    token = "Bearer " + stack.client_token(SERVICE_ACCOUNT.client_id)
    response = send(gateway, token)
    assert response.status_code == 202, response.text
    principal = record(stack, response)["principal"]
    assert principal["subject"] == "system:serviceaccount:airflow:etl-worker"
    assert principal["dag"] == "demo_reader"


def test_context_headers_are_recorded_but_never_trusted(
    stack: DevStack, gateway: httpx.Client
) -> None:
    context = {
        "X-CypherGate-Task": "load_users",
        "X-CypherGate-Run": "scheduled__2026-11-24T00:00:00+00:00",
        "X-CypherGate-Try": "3",
    }
    response = send(gateway, stack.auth_header("demo_reader"), **context)
    assert response.status_code == 202
    principal = record(stack, response)["principal"]
    assert (principal["task"], principal["run"], principal["try_number"]) == (
        "load_users",
        "scheduled__2026-11-24T00:00:00+00:00",
        3,
    )
    bad = send(gateway, stack.auth_header("demo_reader"), **{"X-CypherGate-Try": "three"})
    assert bad.status_code == 400


def test_rotated_issuer_keys_are_picked_up_without_restart(
    stack: DevStack, gateway: httpx.Client
) -> None:
    old_token = "Bearer " + stack.token("demo_reader")
    assert send(gateway, old_token).status_code == 202
    new_kid = stack.rotate_oidc_keys(keep_previous=True)
    new_token = "Bearer " + stack.token("demo_reader")
    assert new_kid in _kid_of(new_token)
    assert send(gateway, new_token).status_code == 202  # unknown kid: one refresh, accepted
    assert send(gateway, old_token).status_code == 202  # old key still published

    # The issuer goes down: keys already cached keep working.
    stack.stop_service("oidc")
    try:
        time.sleep(JWKS_TTL_S + 0.5)
        assert send(gateway, new_token).status_code == 202
    finally:
        stack.start_service("oidc")

    stack.rotate_oidc_keys(keep_previous=False)
    time.sleep(JWKS_TTL_S + 0.5)
    retired = send(gateway, old_token)
    assert retired.status_code == 401
    assert record(stack, retired)["error"]["reason"] == "unknown_key"
    assert send(gateway, "Bearer " + stack.token("demo_reader")).status_code == 202


def _kid_of(authorization: str) -> str:
    import base64
    import json

    head = authorization.split(" ", 1)[1].split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])
