"""A real Airflow 3 (in .venv-airflow) running the provider's example DAGs through the gateway.

Select with ``-m airflow``, skip with ``-m "not airflow"``. ``bash .ci/bootstrap`` installs the
Airflow virtualenv; without it these tests fail rather than pass silently.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from neo4j import Driver

from proxy.devstack.stack import DevStack
from proxy.devstack.state import AWS_REGION, LEASE_PREFIX, SERVER_ID, StackState, role_arn
from tests.airflow.runner import Airflow, migrated_airflow, records

pytestmark = [pytest.mark.integration, pytest.mark.airflow]


def connection(stack: DevStack, status: dict[str, Any], client_id: str) -> str:
    state = StackState.load(stack.state_file)
    return json.dumps(
        {
            "conn_type": "cyphergate",
            "host": status["gateway_url"],
            "schema": "neo4j",
            "login": client_id,
            "password": state.clients[client_id]["secret"],
            "extra": {
                "auth_method": "oidc_client_credentials",
                "token_url": status["oidc"]["token_endpoint"],
                "audience": status["oidc"]["audience"],
            },
        }
    )


@pytest.fixture(scope="module")
def airflow(
    stack: DevStack, status: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Airflow]:
    keys = StackState.load(stack.state_file).aws_user_keys
    token_file = tmp_path_factory.mktemp("tokens") / "cyphergate"
    token_file.write_text(stack.token("cyphergate_example_token_file"))
    settings = {
        "AIRFLOW_CONN_CYPHERGATE_DEFAULT": connection(stack, status, "cyphergate_example_oidc"),
        "AIRFLOW_CONN_CYPHERGATE_DENIED": connection(stack, status, "cyphergate_example_denied"),
        "AIRFLOW_CONN_CYPHERGATE_IAM": json.dumps(
            {
                "conn_type": "cyphergate",
                "host": status["gateway_url"],
                "extra": {
                    "auth_method": "aws_iam",
                    "aws_server_id": SERVER_ID,
                    "aws_sts_url": stack.sts_url(),
                    "aws_region": AWS_REGION,
                    "aws_role_arn": role_arn("cyphergate_example_iam"),
                    "aws_conn_id": "aws_worker",
                },
            }
        ),
        # The worker's AWS identity, as an Airflow AWS connection (and nowhere in the
        # environment); the hook assumes the DAG's role with it.
        "AIRFLOW_CONN_AWS_WORKER": json.dumps(
            {
                "conn_type": "aws",
                "login": keys["id"],
                "password": keys["secret"],
                "extra": {"region_name": AWS_REGION},
            }
        ),
        "AIRFLOW_CONN_CYPHERGATE_TOKEN_FILE": json.dumps(
            {
                "conn_type": "cyphergate",
                "host": status["gateway_url"],
                "extra": {"auth_method": "token_file", "token_file": str(token_file)},
            }
        ),
    }
    yield migrated_airflow(tmp_path_factory, settings)


def test_provider_is_registered(airflow: Airflow) -> None:
    providers = airflow.run("providers", "list", "--output", "json")
    assert providers.returncode == 0, providers.stderr
    assert any(p["package_name"] == "cyphergate" for p in json.loads(providers.stdout))
    hooks = airflow.run("providers", "hooks", "--output", "json")
    assert hooks.returncode == 0, hooks.stderr
    (hook,) = [h for h in json.loads(hooks.stdout) if h["connection_type"] == "cyphergate"]
    assert hook["class"] == "proxy.airflow.hooks.CypherGateHook"


def test_oidc_dag_runs_through_the_gateway_with_its_context(
    airflow: Airflow, stack: DevStack, neo4j_admin: Driver
) -> None:
    run = airflow.start("dags", "test", "cyphergate_example_oidc")
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 300
    while run.poll() is None and time.monotonic() < deadline:
        if not seen:
            rows, _, _ = neo4j_admin.execute_query(
                "SHOW TRANSACTIONS YIELD currentQuery, metaData, username "
                "WHERE currentQuery CONTAINS 'cyphergate_example_slow' RETURN metaData, username"
            )
            seen = [dict(r) for r in rows if r["metaData"]]
        time.sleep(0.1)
    output = run.communicate(timeout=60)[0]
    assert run.returncode == 0, output[-4000:]
    assert seen, "the slow task's query was never seen running in SHOW TRANSACTIONS"
    metadata = seen[0]["metaData"]
    assert metadata["dag_id"] == "cyphergate_example_oidc"
    assert metadata["task_id"] == "crunch_numbers"
    assert metadata["run_id"].startswith("manual__")
    assert metadata["try_number"] == 1
    # The DAG's leased Neo4j user (never a password of the DAG's own): Neo4j names the DAG.
    assert seen[0]["username"].startswith(LEASE_PREFIX + "cyphergate_example_oidc_")

    trail = [r for r in records(stack, "cyphergate_example_oidc") if r["event"] == "decision"]
    tasks = {r["principal"]["task"] for r in trail}
    assert {"load_people", "crunch_numbers", "list_people"} <= tasks
    for record in trail:
        principal = record["principal"]
        assert principal["run"] and principal["try_number"] == 1
        assert record["decision"]["allow"] is True
    people, _, _ = neo4j_admin.execute_query("MATCH (p:ExamplePerson) RETURN count(p) AS n")
    assert people[0]["n"] == 3


def test_iam_dag_runs_with_its_role(airflow: Airflow, stack: DevStack) -> None:
    result = airflow.run("dags", "test", "cyphergate_example_iam")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (decision,) = [r for r in records(stack, "cyphergate_example_iam") if r["event"] == "decision"]
    principal = decision["principal"]
    assert principal["method"] == "aws_iam"
    assert principal["subject"] == role_arn("cyphergate_example_iam")
    assert principal["task"] == "count_people" and principal["try_number"] == 1


def test_token_file_dag_runs(airflow: Airflow, stack: DevStack) -> None:
    result = airflow.run("dags", "test", "cyphergate_example_token_file")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (decision,) = [
        r for r in records(stack, "cyphergate_example_token_file") if r["event"] == "decision"
    ]
    assert decision["principal"]["task"] == "count_nodes"
    assert decision["decision"]["allow"] is True


def test_denied_dag_fails_with_the_gateways_reason(
    airflow: Airflow, stack: DevStack, neo4j_admin: Driver
) -> None:
    result = airflow.run("dags", "test", "cyphergate_example_denied")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Denied by policy: write_not_granted" in output
    intruders, _, _ = neo4j_admin.execute_query("MATCH (n:ExampleIntruder) RETURN count(n) AS n")
    assert intruders[0]["n"] == 0
    (decision,) = records(stack, "cyphergate_example_denied")
    assert decision["decision"]["reasons"] == ["write_not_granted"]
    assert decision["principal"]["task"] == "sneak_a_write"
