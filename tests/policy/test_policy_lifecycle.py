"""A policy's life: edited without restart, named in every record, shadowed, replayed, explained.

A second gateway runs here against a private OPA that watches a copy of ``policies/``, so the
test can edit grants the way a security team would, while the real Neo4j and OIDC provider of
the session's stack serve it.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.install import default_cache_dir, ensure_opa
from proxy.devstack.stack import DevStack
from proxy.opa_server import proposed_policy
from tests.command_line import cyphergate
from tests.conftest import until
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = "MATCH (a:Account) RETURN count(a) AS accounts"


class Lab:
    """The second gateway, its policy folder and audit log."""

    def __init__(self, gateway: SecondGateway, policies: Path) -> None:
        self.gateway, self.policies = gateway, policies
        self.url, self.audit = gateway.url, gateway.audit

    def edit_grant(self, dag: str, change: Callable[[dict[str, Any]], None]) -> None:
        data_file = self.policies / "data.json"
        data = json.loads(data_file.read_text(encoding="utf-8"))
        change(data["cyphergate"]["grants"]["dags"][dag])
        data_file.write_text(json.dumps(data, indent=2), encoding="utf-8")

    def record(self, request_id: str) -> dict[str, Any]:
        with AuditReader(self.audit) as reader:
            (record,) = reader.query(RecordFilter(request_id=request_id, event="decision"))
        return record


@pytest.fixture(scope="module")
def lab(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("policy-lab")
    policies = shutil.copytree(REPO / "policies", folder / "policies")
    with proposed_policy(ensure_opa(default_cache_dir()), policies, watch=True) as opa:
        # Every decision from OPA itself (no reuse within opa.decision_cache_ttl_s): these tests
        # edit the policy and poll until the edit shows; a write sent under the previous
        # decision in the meantime would run.
        gateway = SecondGateway(
            stack,
            folder,
            "policylab",
            lambda config: config["opa"].update(url=opa.url, decision_cache_ttl_s=0),
        )
        gateway.start()
        try:
            yield Lab(gateway, policies)
        finally:
            gateway.stop()


def query(stack: DevStack, lab: Lab, dag: str, statement: str) -> httpx.Response:
    return httpx.post(
        f"{lab.url}/db/neo4j/query/v2",
        json={"statement": statement},
        headers={"Authorization": stack.auth_header(dag)},
        timeout=30,
    )


def test_edit_shadow_grant_and_replay(stack: DevStack, lab: Lab) -> None:
    denied = query(stack, lab, "demo_labels", ACCOUNTS)
    assert denied.status_code == 403
    first = lab.record(denied.headers["X-CypherGate-Request-ID"])
    assert first["decision"]["reasons"] == ["label_not_granted:Account"]
    assert first["analysis"]["labels"]["read"] == ["Account"]
    revision = first["decision"]["policy_revision"]
    assert revision and len(revision) == 16

    # Shadow mode: the refusal is recorded, with the new revision, and the statement runs.
    lab.edit_grant("demo_labels", lambda grant: grant.update(mode="shadow"))
    edited = time.monotonic()
    shadowed = until(
        lambda: r if (r := query(stack, lab, "demo_labels", ACCOUNTS)).status_code == 202 else None
    )
    print(f"shadow mode took effect after {time.monotonic() - edited:.1f} s")
    record = lab.record(shadowed.headers["X-CypherGate-Request-ID"])
    assert record["decision"]["allow"] is True and record["decision"]["shadow_denied"] is True
    assert record["decision"]["reasons"] == ["label_not_granted:Account"]
    assert record["decision"]["policy_revision"] not in (None, revision)

    # A grant for the label: allowed outright, no shadow, another revision.
    def grant_accounts(grant: dict[str, Any]) -> None:
        grant.pop("mode")
        grant["databases"]["neo4j"]["read"]["labels"].append("Account")

    lab.edit_grant("demo_labels", grant_accounts)

    def allowed_outright() -> httpx.Response | None:
        response = query(stack, lab, "demo_labels", ACCOUNTS)
        shadow = lab.record(response.headers["X-CypherGate-Request-ID"])["decision"]
        return response if response.status_code == 202 and "shadow_denied" not in shadow else None

    granted = until(allowed_outright)
    third = lab.record(granted.headers["X-CypherGate-Request-ID"])
    assert third["decision"]["reasons"] == []
    revisions = {revision, record["decision"]["policy_revision"]}
    assert len(revisions | {third["decision"]["policy_revision"]}) == 3

    # Replaying this log against the repository's policies shows what they would change: the
    # decisions made under the edited grants would be refusals.
    replay = cyphergate(
        "policy", "replay", "--log", str(lab.audit),
        "--policies", str(REPO / "policies"), "--format", "json", "--fail-on-change",
    )  # fmt: skip
    assert replay.returncode == 1, replay.stderr
    report = json.loads(replay.stdout)
    assert report["summary"]["changed"] >= 1 and report["summary"]["skipped"] == 0
    changes = {c["seq"]: c for c in report["changes"]}
    assert changes[third["seq"]]["kind"] == "newly_denied"
    assert changes[third["seq"]]["now_reasons"] == ["label_not_granted:Account"]
    assert first["seq"] not in changes  # decided then as the repository decides now
    # The shadowed request ran, but the policy had refused it, as the repository's does now.
    assert record["seq"] not in changes


def test_row_limits(stack: DevStack, lab: Lab, neo4j_admin: Driver) -> None:
    def limit(action: str) -> Callable[[dict[str, Any]], None]:
        def change(grant: dict[str, Any]) -> None:
            grant["databases"]["neo4j"].update(row_limit=2, row_limit_action=action)

        return change

    lab.edit_grant("demo_writer", limit("truncate"))
    rows = "UNWIND range(1, 5) AS i RETURN i"

    def cut_short() -> httpx.Response | None:
        response = query(stack, lab, "demo_writer", rows)
        return response if "X-CypherGate-Truncated" in response.headers else None

    truncated = until(cut_short)
    assert truncated.status_code == 202
    body = truncated.json()
    assert body["data"]["values"] == [[1], [2]]
    assert truncated.headers["X-CypherGate-Truncated"] == "2"
    assert body["notifications"][0]["code"] == "CypherGate.RowLimit.Truncated"
    with AuditReader(lab.audit) as reader:
        (outcome,) = reader.query(
            RecordFilter(request_id=truncated.headers["X-CypherGate-Request-ID"], event="outcome")
        )
    assert outcome["truncated"] is True and outcome["rows"] == 2

    lab.edit_grant("demo_writer", limit("error"))
    # Polled with the read until the edit shows: a write sent under the previous grant
    # (truncate) would run and commit, only its answer cut short.
    until(lambda: r if (r := query(stack, lab, "demo_writer", rows)).status_code == 400 else None)
    write = "UNWIND range(1, 5) AS i CREATE (p:Person {row_limit_probe: i}) RETURN i"
    refused = query(stack, lab, "demo_writer", write)
    assert refused.status_code == 400, refused.text
    (error,) = refused.json()["errors"]
    assert error["code"] == "Neo.ClientError.Statement.RowLimitExceeded"
    # Nothing of the refused write was kept: it ran in a transaction that was rolled back.
    probes, _, _ = neo4j_admin.execute_query(
        "MATCH (p:Person) WHERE p.row_limit_probe IS NOT NULL RETURN count(p) AS n"
    )
    assert probes[0]["n"] == 0
    small = query(stack, lab, "demo_writer", "UNWIND range(1, 2) AS i RETURN i")
    assert small.status_code == 202 and small.json()["data"]["values"] == [[1], [2]]
    # collect() cannot fold the rows away: a list counts as many rows as it holds.
    folded = query(stack, lab, "demo_writer", "UNWIND range(1, 5) AS i RETURN collect(i) AS all")
    assert folded.status_code == 400, folded.text
    assert folded.json()["errors"][0]["code"] == "Neo.ClientError.Statement.RowLimitExceeded"
    nested = query(stack, lab, "demo_writer", "RETURN {xs: [[1], [2, 3]]} AS m")
    assert nested.status_code == 400, nested.text
    pair = query(stack, lab, "demo_writer", "RETURN [1, 2] AS two")
    assert pair.status_code == 202 and pair.json()["data"]["values"] == [[[1, 2]]]

    # The decision records carry the limits they ran under: replayed against the repository's
    # policies (no row limit), the same word with other limits is a change.
    truncated_record = lab.record(truncated.headers["X-CypherGate-Request-ID"])
    assert truncated_record["decision"]["constraints"] == {
        "row_limit": 2,
        "row_limit_action": "truncate",
        "timeout_ms": 30000,
    }
    replay = cyphergate(
        "policy", "replay", "--log", str(lab.audit),
        "--policies", str(REPO / "policies"), "--dag", "demo_writer", "--fail-on-change",
    )  # fmt: skip
    assert replay.returncode == 1, replay.stderr
    line = next(
        x for x in replay.stdout.splitlines() if x.startswith(f"#{truncated_record['seq']} ")
    )
    assert "allow [row_limit 2 (truncate), timeout 30000 ms] -> allow [no row limit" in line


def test_policy_explain_prints_analysis_input_and_decision(stack: DevStack) -> None:
    aws = stack.gateway_aws_env()  # it reads the gateway's Neo4j secret
    explain = cyphergate(
        "policy", "explain", "--config",
        str(stack.gateway_config_path), "--dag", "demo_labels", "--format", "json",
        "MATCH (p:Person)-[:OWNS]->(a:Account) RETURN a.number",
        env=aws, timeout=60,
    )  # fmt: skip
    assert explain.returncode == 0, explain.stderr
    shown = json.loads(explain.stdout)
    assert shown["input"]["version"] == 3 and shown["input"]["principal"]["dag"] == "demo_labels"
    assert shown["analysis"]["relationship_types"]["read"] == ["OWNS"]
    assert shown["decision"]["allow"] is False
    assert "relationship_type_not_granted:OWNS" in shown["decision"]["reasons"]
    text = cyphergate(
        "policy", "explain", "--config",
        str(stack.gateway_config_path), "--dag", "demo_labels", "MATCH (p:Person) RETURN p",
        env=aws, timeout=60,
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("ALLOW for DAG demo_labels on neo4j")


def test_policy_explain_sends_opa_the_statement_without_its_password(stack: DevStack) -> None:
    """``explain`` asks OPA with the statement as the gateway records it (password literals
    hidden by ``without_secrets``): OPA logs every input, so a literal sent raw reached its
    decision log. Neo4j still plans the statement as written."""
    secret = f"pw-{uuid.uuid4().hex}"
    opa_log = Path(stack.status()["processes"]["opa"]["log"])
    aws = stack.gateway_aws_env()
    explain = cyphergate(
        "policy", "explain", "--config",
        str(stack.gateway_config_path), "--dag", "demo_labels", "--format", "json",
        f"MATCH (p:Person) WHERE p.password = '{secret}' RETURN p.name",
        env=aws, timeout=60,
    )  # fmt: skip
    assert explain.returncode == 0, explain.stderr
    shown = json.loads(explain.stdout)
    assert shown["input"]["request"]["statement"] == (
        "MATCH (p:Person) WHERE p.password = '******' RETURN p.name"
    )
    assert shown["analysis"]["labels"]["read"] == ["Person"]  # planned as written
    assert secret not in explain.stdout
    deadline = time.monotonic() + 15
    while "WHERE p.password = '" not in (logged := opa_log.read_text(errors="replace")):
        assert time.monotonic() < deadline, "OPA logged no decision for the explained statement"
        time.sleep(0.2)
    assert secret not in logged
