"""OpenLineage from a real Airflow 3.3.2 run, with apache-airflow-providers-openlineage and its
file transport: ``cyphergate_example_lineage`` reads ``:Person`` and writes ``:Movie`` in one
task, and is refused a write of ``:Person`` in another, in one ``airflow dags test``.

Every event is validated against the OpenLineage JSON schema (spec 2-0-2). The client library
(openlineage-python) ships no schema of its own, only classes generated from it, so the spec's
schema is kept, pinned (tests/openlineage/README.md), and the test fails if the events name
another version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from neo4j import Driver

from proxy.devstack.stack import DevStack
from proxy.devstack.state import StackState
from proxy.lineage import namespace_of
from tests.airflow.runner import REPO, migrated_airflow, records
from tests.openlineage_events import CORE, ERROR_FACET, schema, validate

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG = "cyphergate_example_lineage"
# The operator's run facet (proxy.airflow.lineage.FACET, which imports Airflow: not here).
FACET = "cyphergateRequests"
FACET_SCHEMA = REPO / "proxy" / "airflow" / "facets" / "CypherGateRequestsRunFacet.json"
OUR_FACET = schema(FACET_SCHEMA)


@pytest.fixture(scope="module")
def events(
    stack: DevStack,
    status: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    neo4j_admin: Driver,
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """The exit code of one ``dags test`` of the DAG, and the events it emitted."""
    secret = StackState.load(stack.state_file).clients[DAG]["secret"]
    emitted = tmp_path_factory.mktemp("openlineage") / "events.jsonl"
    airflow = migrated_airflow(
        tmp_path_factory,
        {
            "AIRFLOW_CONN_CYPHERGATE_LINEAGE": json.dumps(
                {
                    "conn_type": "cyphergate",
                    "host": status["gateway_url"],
                    "schema": "neo4j",
                    "login": DAG,
                    "password": secret,
                    "extra": {
                        "auth_method": "oidc_client_credentials",
                        "token_url": status["oidc"]["token_endpoint"],
                        "audience": status["oidc"]["audience"],
                    },
                }
            ),
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(emitted), "append": True}
            ),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "cyphergate-tests",
        },
    )
    try:
        run = airflow.run("dags", "test", DAG)
        output = (run.stdout + run.stderr)[-6000:]
        assert emitted.exists(), output
        lines = emitted.read_text(encoding="utf-8").splitlines()
        yield run.returncode, [json.loads(line) for line in lines if line.strip()]
    finally:
        neo4j_admin.execute_query(
            "MATCH (m:Movie) WHERE m.title STARTS WITH 'manual__' DETACH DELETE m"
        )


def of_task(events: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    return [e for e in events if e["job"]["name"] == f"{DAG}.{task}"]


def datasets(event: dict[str, Any], side: str) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in event.get(side) or []]


def test_every_event_is_an_openlineage_run_event(
    events: tuple[int, list[dict[str, Any]]],
) -> None:
    _, emitted = events
    assert emitted
    for event in emitted:
        # The kept schema is the one the events name: a new spec version fails here, loudly.
        assert event["schemaURL"] == CORE["$id"] + "#/$defs/RunEvent"
        validate(event, CORE, "#/$defs/RunEvent", OUR_FACET)
        facets = event["run"].get("facets", {})
        if "errorMessage" in facets:
            assert facets["errorMessage"]["_schemaURL"].startswith(ERROR_FACET["$id"])
            validate(facets["errorMessage"], ERROR_FACET, "#/$defs/ErrorMessageRunFacet")
        if FACET in facets:
            assert facets[FACET]["_schemaURL"] == OUR_FACET["$id"]
            validate(facets[FACET], OUR_FACET, "#/$defs/CypherGateRequestsRunFacet", OUR_FACET)


def test_the_allowed_task_names_its_datasets_and_request_id(
    events: tuple[int, list[dict[str, Any]]], stack: DevStack, status: dict[str, Any]
) -> None:
    _, emitted = events
    (complete,) = [e for e in of_task(emitted, "cast_movie") if e["eventType"] == "COMPLETE"]
    space = namespace_of(status["neo4j"]["bolt_uri"])
    assert datasets(complete, "inputs") == [(space, "neo4j.Person")]
    assert datasets(complete, "outputs") == [(space, "neo4j.Movie")]
    (request_id,) = complete["run"]["facets"][FACET]["requestIds"]
    # The request id leads to the audit records of the statement, for this DAG and task.
    trail = [r for r in records(stack, DAG) if r["request_id"] == request_id]
    assert [r["event"] for r in trail] == ["decision", "outcome"]
    assert trail[0]["principal"]["task"] == "cast_movie"
    assert trail[0]["analysis"]["labels"] == {"read": ["Person"], "write": ["Movie"]}
    assert trail[1]["status"] == 202


def test_the_refused_task_fails_with_no_dataset_and_no_request_facet(
    events: tuple[int, list[dict[str, Any]]], stack: DevStack
) -> None:
    code, emitted = events
    assert code != 0  # a task failed
    refused = of_task(emitted, "cast_a_person")
    assert [e["eventType"] for e in refused] == ["START", "FAIL"]
    for event in refused:
        assert datasets(event, "inputs") == [] and datasets(event, "outputs") == []
        assert FACET not in event["run"].get("facets", {})
    reasons = ["label_write_not_granted:Person", "property_write_not_granted:name"]
    failure = refused[1]["run"]["facets"]["errorMessage"]
    assert all(reason in failure["message"] for reason in reasons)
    denied = [r for r in records(stack, DAG) if r["principal"].get("task") == "cast_a_person"]
    assert [r["decision"]["reasons"] for r in denied] == [reasons]
