"""A real Airflow 3 with apache-airflow-providers-openlineage runs a DAG through a gateway whose
``[lineage]`` writes a file: the gateway's run event of the task's statement names, as its
parent, the very run the provider reports for the task (CypherGateHook hands it over)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.devstack.stack import DevStack
from tests.airflow.runner import Airflow, migrated_airflow
from tests.openlineage_events import read_events
from tests.second_gateway import SecondGateway

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

DAG = "cyphergate_example_token_file"
TASK = "count_nodes"
NAMESPACE = "airflow_lineage_test"


@pytest.fixture(scope="module")
def gateway(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondGateway]:
    folder = tmp_path_factory.mktemp("lineage-airflow")

    def configure(config: dict[str, Any]) -> None:
        config["lineage"] = {"transport": "file", "path": str(folder / "gateway-events.jsonl")}

    second = SecondGateway(stack, folder, "lineageaf", configure)
    second.start()
    try:
        yield second
    finally:
        second.stop()


def test_the_gateways_event_has_the_providers_task_run_as_parent(
    gateway: SecondGateway, stack: DevStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("openlineage")
    token_file = folder / "token"
    token_file.write_text(stack.token(DAG))
    provider_events = folder / "provider-events.jsonl"
    airflow: Airflow = migrated_airflow(
        tmp_path_factory,
        {
            "AIRFLOW_CONN_CYPHERGATE_TOKEN_FILE": json.dumps(
                {
                    "conn_type": "cyphergate",
                    "host": gateway.url,
                    "extra": {"auth_method": "token_file", "token_file": str(token_file)},
                }
            ),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": NAMESPACE,
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(provider_events), "append": True}
            ),
        },
    )
    result = airflow.run("dags", "test", DAG)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    job = f"{DAG}.{TASK}"
    gateway_events = Path(gateway.config["lineage"]["path"])
    deadline = time.monotonic() + 15
    ours = [e for e in read_events(gateway_events) if e["job"]["name"] == job]
    while not ours and time.monotonic() < deadline:
        time.sleep(0.2)
        ours = [e for e in read_events(gateway_events) if e["job"]["name"] == job]
    (event,) = ours
    assert event["eventType"] == "COMPLETE"
    parent = event["run"]["facets"]["parent"]
    assert (parent["job"]["namespace"], parent["job"]["name"]) == (NAMESPACE, job)
    theirs = {
        e["run"]["runId"]
        for line in provider_events.read_text(encoding="utf-8").splitlines()
        if (e := json.loads(line))["job"]["name"] == job
    }
    assert theirs == {parent["run"]["runId"]}, theirs
