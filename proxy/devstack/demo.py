"""The demo: the whole request path on real services, explained as it happens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import neo4j

from proxy.audit.checkpoint import load_public_key
from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.record import ChainProblem
from proxy.devstack.install import default_cache_dir
from proxy.devstack.stack import DevStack


def run_demo(run_dir: Path, policies: Path, *, keep: bool) -> int:
    """Start the stack, send an allowed and a denied request, show and verify the audit log."""
    stack = DevStack(run_dir, cache_dir=default_cache_dir(), policies_dir=policies)
    _say("1. Installing (first run only) and starting the real services on 127.0.0.1 ...")
    status = stack.up(with_gateway=True)
    print(
        f"   Neo4j {status['neo4j']['bolt_uri']} (HTTP {status['neo4j']['http_uri']}), "
        f"auth on; the gateway logs in as user '{status['neo4j']['gateway_user']}'"
    )
    print(f"   OPA {status['opa']['url']} serving {status['opa']['policies']} as a bundle")
    print(f"   OIDC provider {status['oidc']['issuer']} (client-credentials, JWT access tokens)")
    print(f"   CypherGate {status['gateway_url']} (config {status['gateway_config']})")
    try:
        return _walk_through(stack, status)
    finally:
        if keep:
            stack.start_service("gateway")  # the demo stopped it to sign a final checkpoint
            page = status["audit_page"]
            password = page["people"]["demo_reviewer"]["password"]
            print(
                f"\nThe stack keeps running. Reviewers' page: {page['url']} (sign in as"
                f" demo_reviewer, password {password}).\n"
                f"Stop it with: cyphergate devstack down --dir {run_dir}"
            )
        else:
            stack.down()
            print("\nStopped everything the demo started.")


def _walk_through(stack: DevStack, status: dict[str, Any]) -> int:
    url = status["gateway_url"] + "/db/neo4j/query/v2"
    with httpx.Client(timeout=30.0) as http:

        def send(dag: str, statement: str, method: str = "oidc") -> httpx.Response:
            authorization = stack.auth_header(dag, method=method)
            how = "an OIDC token" if method == "oidc" else "an AWS IAM proof (moto's STS)"
            print(f"\n   DAG {dag!r}, with {how}, sends: {statement}")
            response = http.post(
                url, json={"statement": statement}, headers={"Authorization": authorization}
            )
            print(f"   gateway answers {response.status_code}: {json.dumps(response.json())}")
            return response

        _say("\n2. demo_writer (granted read and write) creates two people:")
        written = send(
            "demo_writer", "MERGE (:Person {name: 'Ada'}) MERGE (:Person {name: 'Grace'})"
        )
        _say("\n3. demo_reader (granted read only) reads them: allowed")
        allowed = send("demo_reader", "MATCH (p:Person) RETURN p.name AS name ORDER BY name")
        _say("   ... and the same DAG proves itself with its AWS IAM role instead:")
        allowed_iam = send("demo_reader", "MATCH (p:Person) RETURN count(p) AS people", "iam")
        _say("\n4. demo_reader tries to write: denied by policy before anything runs")
        denied = send("demo_reader", "CREATE (:Person {name: 'Mallory'})")
        _say(
            "\n   demo_labels may read only :Person and :Movie and never scan the whole graph;"
            " Neo4j's\n   EXPLAIN plan says what a statement touches, OPA decides per label:"
        )
        labels_allowed = send("demo_labels", "MATCH (p:Person) RETURN count(p) AS people")
        labels_denied = send("demo_labels", "MATCH (n) WHERE n.name = 'Ada' RETURN n")
    _say(
        f"\n   The same gateway speaks Bolt at {status['gateway_bolt_uri']}: an unchanged Neo4j"
        " driver\n   only swaps its URI and credential (the DAG's token):"
    )
    bolt_allowed = _over_bolt(
        stack, status, "demo_reader", "MATCH (p:Person) RETURN p.name AS name"
    )
    bolt_denied = _over_bolt(stack, status, "demo_reader", "MATCH (p:Person) DETACH DELETE p")

    _say("\n5. The audit log, as a reviewer sees it (cyphergate audit query):")
    with AuditReader(stack.audit_path) as reader:
        for record in reader.query(RecordFilter()):
            principal = record.get("principal") or {}
            decision = record.get("decision") or {}
            print(
                f"   #{record['seq']} {record['time']} {record['event']:<8} "
                f"{principal.get('method')} dag={principal.get('dag')} "
                f"allow={decision.get('allow')} "
                f"reasons={decision.get('reasons')} status={record['status']} "
                f"rows={record['rows']}"
            )
    _say(
        "\n6. Stopping the gateway, which signs a final checkpoint of the chain's head, then"
        " verifying\n   the log with nothing but the public key (cyphergate audit verify):"
    )
    stack.stop_service("gateway")
    public_key = load_public_key(Path(status["audit_public_key"]))
    with AuditReader(stack.audit_path) as reader:
        steps = list(reader.verify(public_key))
        checkpoints = len(reader.checkpoints())
    problem = next((s for s in steps if isinstance(s, ChainProblem)), None)
    if problem is not None:
        print(f"   FAILED: {problem}")
    else:
        print(
            f"   OK: {len(steps)} records, chain intact,"
            f" {checkpoints} signed checkpoint(s) verified with {status['audit_public_key']}"
        )
    statuses = (written, allowed, allowed_iam, denied, labels_allowed, labels_denied)
    expected = tuple(r.status_code for r in statuses) == (202, 202, 202, 403, 202, 403)
    expected = expected and bolt_allowed and not bolt_denied
    print("\nDemo " + ("succeeded." if expected and problem is None else "FAILED."))
    return 0 if expected and problem is None else 1


def _over_bolt(stack: DevStack, status: dict[str, Any], dag: str, statement: str) -> bool:
    """Send ``statement`` as ``dag`` with the official driver over Bolt; whether it ran."""
    print(f"\n   DAG {dag!r}, over Bolt with an OIDC token, sends: {statement}")
    auth = neo4j.bearer_auth(stack.token(dag))
    with (
        neo4j.GraphDatabase.driver(status["gateway_bolt_uri"], auth=auth) as driver,
        driver.session(database="neo4j") as session,
    ):
        try:
            rows = session.run(statement).data()
        except neo4j.exceptions.Neo4jError as error:
            print(f"   gateway answers FAILURE {error.code}: {error.message}")
            return False
    print(f"   gateway answers {len(rows)} record(s): {json.dumps(rows)}")
    return True


def _say(text: str) -> None:
    print(text, flush=True)
