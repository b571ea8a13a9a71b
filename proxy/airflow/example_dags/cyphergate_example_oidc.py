"""Example: a DAG that authenticates to CypherGate with OIDC client credentials.

Connection ``cyphergate_default`` (type ``cyphergate``): host = the gateway URL, schema = the
database, login/password = the OAuth client id and secret, extra = ``{"auth_method":
"oidc_client_credentials", "token_url": ..., "audience": ...}``. The policy grants this DAG
read and write on ``neo4j``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from proxy.airflow.operators import CypherGateOperator

with DAG(
    dag_id="cyphergate_example_oidc",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["cyphergate", "example"],
) as dag:
    load = CypherGateOperator(
        task_id="load_people",
        statement="UNWIND $names AS name MERGE (:ExamplePerson {name: name})",
        parameters={"names": ["Ada", "Grace", "Edsger"]},
        result="counters",
    )
    crunch = CypherGateOperator(
        task_id="crunch_numbers",
        # Runs a few seconds, long enough to be seen in SHOW TRANSACTIONS.
        statement=(
            "WITH 'cyphergate_example_slow' AS tag UNWIND range(1, 60000000) AS x "
            "WITH x WHERE x % 7 = 0 RETURN count(x) AS n"
        ),
    )
    report = CypherGateOperator(
        task_id="list_people",
        statement="MATCH (p:ExamplePerson) RETURN p.name AS name ORDER BY name",
    )
    load >> crunch >> report
