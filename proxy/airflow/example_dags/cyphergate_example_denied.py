"""Example: a DAG whose grant is read-only tries to write; its task fails with the reason.

Uses the ``cyphergate_default``-style connection ``cyphergate_denied`` (its own OAuth client).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from proxy.airflow.operators import CypherGateOperator

with DAG(
    dag_id="cyphergate_example_denied",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["cyphergate", "example"],
) as dag:
    CypherGateOperator(
        task_id="sneak_a_write",
        cyphergate_conn_id="cyphergate_denied",
        statement="CREATE (:ExampleIntruder {at: datetime()})",
        retries=0,
    )
