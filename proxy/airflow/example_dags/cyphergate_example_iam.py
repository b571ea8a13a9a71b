"""Example: a DAG that authenticates to CypherGate with its AWS IAM role.

Connection ``cyphergate_iam``: host = the gateway URL, extra = ``{"auth_method": "aws_iam",
"aws_server_id": ..., "aws_sts_url": ..., "aws_region": ..., "aws_role_arn": ...,
"aws_conn_id": ...}``. The proof is signed with the credentials of the Airflow AWS connection
``aws_conn_id`` (or, without it, the worker's own: instance profile, IRSA, environment), after
assuming ``aws_role_arn`` when it is set. The policy grants this DAG read only.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from proxy.airflow.operators import CypherGateOperator

with DAG(
    dag_id="cyphergate_example_iam",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["cyphergate", "example"],
) as dag:
    CypherGateOperator(
        task_id="count_people",
        cyphergate_conn_id="cyphergate_iam",
        statement="MATCH (p:ExamplePerson) RETURN count(p) AS people",
    )
