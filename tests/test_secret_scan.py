"""No secret ever appears in logs, audit records, error bodies, /metrics or exception text.

Runs after the suite's other tests (pytest takes files in name order; the directories come
first), over everything they left: every secret the stack generated or holds in Secrets Manager,
searched for in every log and audit file of the session's temporary folders.
"""

from __future__ import annotations

import base64
import json
import secrets as random_secrets
from pathlib import Path
from typing import Any

import httpx
import neo4j
import pytest

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from proxy.devstack.state import StackState, role_arn
from tests.test_rotation import secrets_manager

pytestmark = pytest.mark.integration


def every_secret(stack: DevStack) -> set[str]:
    state = StackState.load(stack.state_file)
    found = {state.neo4j_password, state.gateway_password, state.web_client_secret}
    found |= {client["secret"] for client in state.clients.values()}
    found |= set(state.people.values())
    for keys in (state.aws_user_keys, state.archiver_keys, state.gateway_aws_keys):
        found.add(keys["secret"])
    client = secrets_manager(stack)
    for listed in client.list_secrets()["SecretList"]:
        versions = client.list_secret_version_ids(SecretId=listed["ARN"], IncludeDeprecated=True)
        for version in versions["Versions"]:
            value = client.get_secret_value(SecretId=listed["ARN"], VersionId=version["VersionId"])
            found.add(json.loads(value["SecretString"])["password"])
    return {s for s in found if s and len(s) >= 8}


def test_no_secret_in_logs_audit_files_error_bodies_or_metrics(
    stack: DevStack, gateway: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    secrets = every_secret(stack)
    assert len(secrets) > 20  # the stack's own, plus every rotated password of the suite
    passwords = hidden_password_literals(stack, gateway)
    secrets |= passwords
    secrets |= what_callers_sent(stack, gateway)
    bodies: list[str] = []
    for headers, body in (
        ({"Authorization": "Bearer not-a-token"}, {"statement": "RETURN 1"}),
        ({"Authorization": stack.auth_header("demo_reader")}, {"statement": "CREATE (:X)"}),
        ({"Authorization": stack.auth_header("demo_reader")}, {"statement": "RETURN $p"}),
        ({"Authorization": stack.auth_header("demo_reader")}, {"statement": "MATC (n)"}),
        ({}, {"statement": "RETURN 1"}),
    ):
        response = gateway.post("/db/neo4j/query/v2", json=body, headers=headers)
        assert response.status_code >= 400
        bodies.append(response.text)
    bodies.append(gateway.get("/metrics").text)
    root = tmp_path_factory.getbasetemp()
    files: list[Path] = [
        path
        for pattern in ("**/*.log", "**/*.sqlite3", "**/*.sqlite3-wal", "**/*.jsonl")
        for path in root.glob(pattern)
        if path.is_file()  # not a test's folder named like a log (tests/test_cli.py)
    ]
    assert any(p.name == "gateway.log" for p in files) and any(
        p.name == "audit.sqlite3" for p in files
    )
    leaks: list[Any] = []
    for path in files:
        content = path.read_bytes()
        leaks += [(str(path), s[:4] + "...") for s in secrets if s.encode() in content]
    leaks += [("answer", s[:4] + "...") for s in secrets for b in bodies if s in b]
    print(f"searched {len(files)} files and {len(bodies)} answers for {len(secrets)} secrets")
    assert leaks == []


def hidden_password_literals(stack: DevStack, gateway: httpx.Client) -> set[str]:
    """Statements that carry passwords as literals (refused: the DAGs have no grant on
    ``system``) are recorded with each literal as ``'******'``; returns the passwords sent, for
    the scan to look for in every file."""
    sent = {random_secrets.token_urlsafe(12) for _ in range(3)}
    old, new, created = sorted(sent)
    statements = [
        f"ALTER CURRENT USER SET PASSWORD FROM '{old}' TO \"{new}\"",
        f"CREATE USER eve SET PASS\\u0057ORD '{created}' CHANGE NOT REQUIRED",
        f"CREATE USER eve SET PASSWORD '{created}",  # unterminated: cut after the word
    ]
    for statement in statements:
        response = gateway.post(
            "/db/system/query/v2",
            json={"statement": statement},
            headers={"Authorization": stack.auth_header("demo_writer")},
        )
        assert response.status_code == 403, response.text
        request_id = response.headers["x-cyphergate-request-id"]
        with AuditReader(stack.audit_path) as reader:
            (record,) = reader.query(RecordFilter(request_id=request_id))
        assert "'******'" in record["statement"], record["statement"]
        assert not any(password in record["statement"] for password in sent)
    return sent


def what_callers_sent(stack: DevStack, gateway: httpx.Client) -> set[str]:
    """Credentials and values callers send through both doors, allowed and refused: access
    tokens (valid, forged, and as Bolt basic credentials), an IAM proof's signature, parameter
    values, a query string's token, and a LOAD CSV source's user and password. The gateway
    records parameters as keyed digests and credentials not at all; returns them all, for the
    scan to look for in every file."""
    value, forged, in_url, url_password = (random_secrets.token_urlsafe(16) for _ in range(4))
    reader, writer = stack.token("demo_reader"), stack.token("demo_labels")
    proof = stack.iam_header(role_arn("demo_reader"))
    encoded = proof.split(" ", 1)[1]
    signed = json.loads(base64.b64decode(encoded))["headers"]
    signature = signed["Authorization"].rsplit("Signature=", 1)[1]
    session_token = signed["X-Amz-Security-Token"]
    source = f"https://etl:{url_password}@files.invalid/x.csv"
    answers: list[httpx.Response] = []
    for headers, body, path in (
        (
            {"Authorization": "Bearer " + reader},
            {"statement": "RETURN $v AS v", "parameters": {"v": value}},
            "",
        ),
        (
            {"Authorization": "Bearer " + writer},
            {"statement": "CREATE (:Secret {v: $v})", "parameters": {"v": value}},
            "",
        ),
        (
            {"Authorization": "Bearer " + forged},
            {"statement": "RETURN $v", "parameters": {"v": value}},
            "",
        ),
        ({"Authorization": proof}, {"statement": "RETURN 1"}, ""),
        (
            {"Authorization": "Bearer " + writer},
            {"statement": f"LOAD CSV FROM '{source}' AS r RETURN r"},
            "",
        ),
        ({"Authorization": "Bearer " + reader}, {"statement": "RETURN 1"}, f"?token={in_url}"),
    ):
        answers.append(gateway.post("/db/neo4j/query/v2" + path, json=body, headers=headers))
    # Each reached the step it was meant to: the scan is of what a real answer left behind.
    assert [a.status_code for a in answers] == [202, 403, 401, 202, 403, 202], [
        a.text[:200] for a in answers
    ]
    uri = stack.status()["gateway_bolt_uri"]
    outcomes: list[str] = []
    for auth, statement in (
        (neo4j.bearer_auth(reader), "RETURN $v AS v"),
        (neo4j.bearer_auth(writer), "CREATE (:Secret {v: $v})"),
        (neo4j.basic_auth("demo_reader", reader), "RETURN $v AS v"),
        (neo4j.basic_auth("demo_reader", forged), "RETURN $v AS v"),
    ):
        with neo4j.GraphDatabase.driver(uri, auth=auth) as driver:
            try:
                driver.execute_query(statement, {"v": value})
                outcomes.append("ran")
            except neo4j.exceptions.Neo4jError as refused:  # what the refusal left counts
                outcomes.append(str(refused.code))
    assert outcomes == [
        "ran",
        "Neo.ClientError.Security.Forbidden",
        "ran",
        "Neo.ClientError.Security.Unauthorized",
    ], outcomes
    return {value, forged, in_url, url_password, reader, writer, encoded, signature, session_token}
