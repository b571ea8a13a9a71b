"""Example: ``CypherGateSensor`` waiting on a batch's status, every poke decided and audited.

Connection ``cyphergate_sensor`` (type ``cyphergate``, its own OAuth client). The policy lets
this DAG read and write ``:ExampleBatch`` (``run`` and ``status``) on ``neo4j``, nothing else.

- ``wait_for_batch`` (reschedule mode: the worker slot is free between pokes) waits until this
  run's batch is ``complete``; no batch yet is "not yet", a ``failed`` one fails it at once;
- ``wait_a_moment`` (poke mode) waits a few seconds on the clock, then ``finish_batch`` marks
  the batch complete and a second, rejected one failed;
- ``wait_for_rejected_batch`` fails at its first poke: its ``failure`` criterion is met;
- ``wait_in_vain`` times out: no batch is ever archived.

So the run fails by design, with two tasks failed and the rest successful.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from proxy.airflow.operators import CypherGateOperator
from proxy.airflow.sensors import CypherGateSensor

STATUS = "MATCH (b:ExampleBatch {run: $run}) RETURN b.status AS status"
THIS_RUN = {"run": "{{ run_id }}"}
REJECTED = {"run": "{{ run_id }}/rejected"}


def complete(status: str | None) -> bool:
    return status == "complete"


def failed(status: str | None) -> bool:
    return status == "failed"


with DAG(
    dag_id="cyphergate_example_sensor",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"cyphergate_conn_id": "cyphergate_sensor", "retries": 0},
    tags=["cyphergate", "example"],
) as dag:
    CypherGateSensor(
        task_id="wait_for_batch",
        statement=STATUS,
        parameters=THIS_RUN,
        success=complete,
        failure=failed,
        mode="reschedule",
        poke_interval=1,
        timeout=120,
    )
    moment = CypherGateSensor(
        task_id="wait_a_moment",
        statement="RETURN datetime() >= datetime($started) + duration('PT15S') AS ready",
        parameters={"started": "{{ ti.start_date.isoformat() }}"},
        poke_interval=1,
        timeout=60,
    )
    finish = CypherGateOperator(
        task_id="finish_batch",
        statement=(
            "MERGE (done:ExampleBatch {run: $run}) SET done.status = 'complete' "
            "MERGE (bad:ExampleBatch {run: $run + '/rejected'}) SET bad.status = 'failed'"
        ),
        parameters=THIS_RUN,
        result="counters",
    )
    rejected = CypherGateSensor(
        task_id="wait_for_rejected_batch",
        statement=STATUS,
        parameters=REJECTED,
        success=complete,
        failure=failed,
        poke_interval=1,
        timeout=60,
    )
    moment >> finish >> rejected
    CypherGateSensor(
        task_id="wait_in_vain",
        statement="MATCH (b:ExampleBatch {run: $run}) RETURN b.status = 'archived' AS archived",
        parameters=THIS_RUN,
        poke_interval=1,
        timeout=15,
    )
