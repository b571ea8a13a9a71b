"""A real Airflow 3 (in .venv-airflow) running the provider's example DAGs through the gateway.

Select with ``-m airflow``, skip with ``-m "not airflow"``. ``bash .ci/bootstrap`` installs the
Airflow virtualenv; without it these tests fail rather than pass silently.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from neo4j import Driver

from proxy.devstack.stack import DevStack
from proxy.devstack.state import AWS_REGION, LEASE_PREFIX, SERVER_ID, StackState, role_arn
from proxy.ports import free_ports
from tests.airflow.runner import PYTHON, REPO, Airflow, migrated_airflow, records

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

SENSOR_DAG = "cyphergate_example_sensor"


def connection_fields(stack: DevStack, status: dict[str, Any], client_id: str) -> dict[str, Any]:
    state = StackState.load(stack.state_file)
    return {
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


def connection(stack: DevStack, status: dict[str, Any], client_id: str) -> str:
    return json.dumps(connection_fields(stack, status, client_id))


def task_states(airflow: Airflow, dag: str) -> dict[str, str]:
    """Each task's state in ``dag``'s one run, from the Airflow home's own database."""
    database = Path(airflow.env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ?", (dag,))
        return dict(rows.fetchall())


def reschedules(airflow: Airflow, dag: str, task: str) -> int:
    database = Path(airflow.env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(database) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM task_reschedule AS r JOIN task_instance AS t ON r.ti_id = t.id"
            " WHERE t.dag_id = ? AND t.task_id = ?",
            (dag, task),
        ).fetchone()
    return int(count)


def audit_query(stack: DevStack, *args: str) -> list[dict[str, Any]]:
    """``cyphergate audit query`` on the stack's log, as an engineer runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "audit", "query", "--log", str(stack.audit_path), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


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
        "AIRFLOW_CONN_CYPHERGATE_SENSOR": connection(stack, status, "cyphergate_example_sensor"),
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
    # The refusal's text names the request; its id finds the audit record in one step.
    refusal = re.search(
        r"Denied by policy: write_not_granted\. \(request ([0-9a-f-]{36})\)", output
    )
    assert refusal, output[-4000:]
    intruders, _, _ = neo4j_admin.execute_query("MATCH (n:ExampleIntruder) RETURN count(n) AS n")
    assert intruders[0]["n"] == 0
    (decision,) = records(stack, "cyphergate_example_denied")
    assert decision["decision"]["reasons"] == ["write_not_granted"]
    assert decision["principal"]["task"] == "sneak_a_write"
    (found,) = audit_query(stack, "--request-id", refusal.group(1), "--format", "json")
    assert found["seq"] == decision["seq"] and found["reasons"] == ["write_not_granted"]


def test_sensor_dag_waits_then_succeeds_times_out_and_fails(
    airflow: Airflow, stack: DevStack
) -> None:
    """One run of the sensor example: every outcome, each poke a decided and audited request
    whose id is in the task log."""
    result = airflow.run("dags", "test", SENSOR_DAG)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]  # two tasks fail by design
    assert task_states(airflow, SENSOR_DAG) == {
        "wait_for_batch": "success",
        "wait_a_moment": "success",
        "finish_batch": "success",
        "wait_for_rejected_batch": "failed",
        "wait_in_vain": "failed",
    }, output[-4000:]
    assert "AirflowSensorTimeout" in output
    decisions = [r for r in records(stack, SENSOR_DAG) if r["event"] == "decision"]
    assert all(r["decision"]["allow"] for r in decisions)
    pokes = Counter(r["principal"]["task"] for r in decisions)
    # Poke mode held the slot and asked again until the clock said so; reschedule mode gave
    # the slot back (Airflow recorded a reschedule) and found the batch on a later try of the
    # same try number; the timed-out one asked until its 15 s ran out; the rejected one
    # stopped at its first answer.
    assert pokes["wait_a_moment"] >= 2 and pokes["wait_in_vain"] >= 2
    assert pokes["wait_for_batch"] >= 2 and reschedules(airflow, SENSOR_DAG, "wait_for_batch") >= 1
    assert {r["principal"]["try_number"] for r in decisions} == {1}
    assert pokes["wait_for_rejected_batch"] == pokes["finish_batch"] == 1
    rejected = next(r for r in decisions if r["principal"]["task"] == "wait_for_rejected_batch")
    assert (
        f"Failure criteria met: failure('failed') returned True (request {rejected['request_id']})"
        in output
    )
    for record in decisions:
        assert f"CypherGate request {record['request_id']}" in output


def test_the_connection_test_button(
    airflow: Airflow, stack: DevStack, status: dict[str, Any]
) -> None:
    """``POST /api/v2/connections/test``, as the UI's Test button sends it, to Airflow's own API
    server application: a working connection, then one failing at each step."""
    good = connection_fields(stack, status, "cyphergate_example_oidc")
    (closed_port,) = free_ports(1)
    cases = {
        "works": good,
        "wrong secret": {**good, "password": "not-the-secret-4711"},
        "refused by policy": connection_fields(stack, status, "demo_unlisted"),
        "no gateway there": {**good, "host": f"http://127.0.0.1:{closed_port}"},
        "incomplete": {**good, "extra": {}},
    }
    bodies = [
        {**fields, "connection_id": "cyphergate_button", "extra": json.dumps(fields["extra"])}
        for fields in cases.values()
    ]
    done = subprocess.run(
        [str(PYTHON), str(REPO / "tests" / "airflow" / "api_server.py"), json.dumps(bodies)],
        env={
            **airflow.env,
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    answers = dict(zip(cases, json.loads(done.stdout.splitlines()[-1]), strict=True))
    assert {answer["status"] for answer in answers.values()} == {200}
    told = {case: (a["body"]["status"], a["body"]["message"]) for case, a in answers.items()}

    ok, message = told["works"]
    assert ok is True, message
    ran = re.search(r"\(request ([0-9a-f-]{36})\)", message)
    assert ran, message
    (decision, outcome) = audit_query(stack, "--request-id", ran.group(1), "--format", "json")
    assert decision["statement"] == "RETURN 1 AS ok" and outcome["status"] == 202
    assert decision["dag"] == "cyphergate_example_oidc"

    assert told["wrong secret"] == (
        False,
        f"No credential by oidc_client_credentials: TokenRequestFailed: "
        f"{status['oidc']['token_endpoint']} refused the client-credentials grant of "
        f"cyphergate_example_oidc: invalid_client",
    )
    ok, message = told["refused by policy"]
    assert not ok and "RETURN 1 failed: CypherGate answered 403" in message, message
    refused = re.search(r"Denied by policy: dag_not_granted\. \(request ([0-9a-f-]{36})\)", message)
    assert refused, message
    (denial,) = audit_query(stack, "--request-id", refused.group(1), "--format", "json")
    assert denial["decision"] == "deny" and denial["dag"] == "demo_unlisted"
    ok, message = told["no gateway there"]
    assert not ok and message.startswith(f"CypherGate at http://127.0.0.1:{closed_port} did not")
    ok, message = told["incomplete"]
    assert not ok and "oidc_client_credentials needs the client id and secret" in message

    secrets = [good["password"], cases["refused by policy"]["password"], "not-the-secret-4711"]
    for _, message in told.values():
        assert not any(secret in message for secret in secrets)
        assert "Bearer" not in message and "eyJ" not in message  # no token either
