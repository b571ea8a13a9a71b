"""Example: a DAG that authenticates with a token file, as a Kubernetes pod would.

Connection ``cyphergate_token_file``: host = the gateway URL, extra = ``{"auth_method":
"token_file", "token_file": "/var/run/secrets/tokens/cyphergate"}``: a projected
service-account token with the gateway's audience, which the kubelet rotates in place (the hook
re-reads it when it changes). The policy grants this DAG read only.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from proxy.airflow.operators import CypherGateOperator

with DAG(
    dag_id="cyphergate_example_token_file",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["cyphergate", "example"],
) as dag:
    CypherGateOperator(
        task_id="count_nodes",
        cyphergate_conn_id="cyphergate_token_file",
        statement="MATCH (n) RETURN count(n) AS nodes",
    )
