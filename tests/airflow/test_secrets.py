"""Zero code: an unmodified neo4j-provider DAG through the Bolt door, its connection made by
``CypherGateSecretsBackend`` with a fresh credential and the running task's DAG.

The workers' identity (``airflow_worker``, an OAuth client) may act as two DAGs, so a login
that did not name the DAG would be refused as ambiguous: the DAG comes from the task.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from neo4j import Driver

from proxy.devstack.stack import DevStack
from proxy.devstack.state import StackState
from proxy.gateway.call import SUCCESS_STATUS
from tests.airflow.runner import PYTHON, Airflow, migrated_airflow, records
from tests.conftest import AIRFLOW_WORKER

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG = "cyphergate_example_neo4j"
BACKEND = "proxy.airflow.secrets.CypherGateSecretsBackend"


@pytest.fixture(scope="module")
def worker_secret(stack: DevStack) -> str:
    return str(StackState.load(stack.state_file).clients[AIRFLOW_WORKER.client_id]["secret"])


@pytest.fixture(scope="module")
def airflow(
    status: dict[str, Any], worker_secret: str, tmp_path_factory: pytest.TempPathFactory
) -> Airflow:
    kwargs = {
        "conn_ids": ["neo4j_default"],
        "uri": status["gateway_bolt_uri"],
        "database": "neo4j",
        "auth_method": "oidc_client_credentials",
        "client_id": AIRFLOW_WORKER.client_id,
        "token_url": status["oidc"]["token_endpoint"],
        "audience": status["oidc"]["audience"],
    }
    settings = {
        "AIRFLOW__SECRETS__BACKEND": BACKEND,
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(kwargs),
        # The client secret apart, in a variable of its own (Airflow's per-key override).
        "AIRFLOW__SECRETS__BACKEND_KWARG__CLIENT_SECRET": worker_secret,
    }
    return migrated_airflow(tmp_path_factory, settings)


def test_neo4j_operator_reads_and_is_refused_a_write(
    airflow: Airflow, stack: DevStack, neo4j_admin: Driver, worker_secret: str
) -> None:
    result = airflow.run("dags", "test", DAG)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]  # the refused write fails the run
    assert "Neo.ClientError.Security.Forbidden" in output, output[-4000:]
    assert "Denied by policy: write_not_granted" in output
    assert worker_secret not in output
    assert "Bearer " not in output  # the fresh token is never logged
    intruders, _, _ = neo4j_admin.execute_query(
        "MATCH (n:ExampleNeo4jIntruder) RETURN count(n) AS n"
    )
    assert intruders[0]["n"] == 0

    trail = records(stack, DAG)
    decisions = {r["statement"]: r for r in trail if r["event"] == "decision"}
    read = decisions["MATCH (n) RETURN count(n) AS nodes"]
    write = decisions["CREATE (:ExampleNeo4jIntruder {at: datetime()})"]
    for record, task in ((read, "count_nodes"), (write, "sneak_a_write")):
        assert record["principal"]["dag"] == DAG
        # The login carried the task, its try and its run too (dag/task/try/run).
        assert record["principal"]["task"] == task
        assert record["principal"]["try_number"] == 1
        assert record["principal"]["run"]
        assert record["principal"]["method"] == "oidc"
        assert record["principal"]["subject"] == AIRFLOW_WORKER.client_id
    assert read["decision"]["allow"] is True
    assert write["decision"]["allow"] is False
    assert write["decision"]["reasons"] == ["write_not_granted"]
    assert write["status"] == 403
    (outcome,) = [
        r for r in trail if r["event"] == "outcome" and r["request_id"] == read["request_id"]
    ]
    assert (outcome["status"], outcome["rows"]) == (SUCCESS_STATUS, 1)


# Run in Airflow's interpreter, outside any task: each line of output is one finding.
_OUTSIDE_A_TASK = """
import json, sys
from airflow.sdk.definitions.connection import Connection
from proxy.airflow.secrets import CypherGateSecretsBackend

def backend(uri, **settings):
    made = CypherGateSecretsBackend(uri=uri, conn_ids="a, b", **settings)
    made._set_connection_class(Connection)
    return made

token_file = {"auth_method": "token_file", "token_file": sys.argv[1]}
tls = backend("neo4j+s://gateway.example:7777", database="graphs", **token_file)
conn = tls.get_connection("b")
print(json.dumps([conn.conn_type, conn.host, conn.port, conn.schema, conn.login, conn.password,
                  conn.extra_dejson]))
print(json.dumps([backend("bolt://gw", **token_file).get_conn_value("c"),
                  json.loads(backend("bolt://gw", **token_file).get_conn_value("a"))["port"]]))
for uri, settings in [("http://gw:7687", token_file), ("bolt://gw", {"no_such": "x"})]:
    try:
        backend(uri, **settings)
    except Exception as error:
        print(type(error).__name__, error)
missing = {"auth_method": "token_file", "token_file": sys.argv[1] + ".gone"}
try:
    backend("bolt://gw", **missing).get_connection("a")
except Exception as error:
    print(type(error).__name__, error)
"""


def test_the_backend_outside_a_task(tmp_path: Any) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    env = {"AIRFLOW_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    found = subprocess.run(
        [str(PYTHON), "-c", _OUTSIDE_A_TASK, str(token)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert found.returncode == 0, found.stderr[-4000:]
    connection, others, bad_uri, unknown, refused = found.stdout.splitlines()
    assert json.loads(connection) == [
        "neo4j",
        "gateway.example",
        7777,
        "graphs",
        "cyphergate",  # no task, so no DAG: the identity's only one
        "Bearer t0ken",
        {"neo4j_scheme": True, "certs_trusted_ca": True},
    ]
    assert json.loads(others) == [None, 7687]
    assert bad_uri.startswith("AirflowException uri must be bolt:// or neo4j://")
    assert unknown == "AirflowException CypherGateSecretsBackend has no setting no_such"
    # A conn id of ours never falls through to a backend that may hold a real password.
    assert refused.startswith("AirflowSecretsBackendAccessDenied CypherGate could not make a")
