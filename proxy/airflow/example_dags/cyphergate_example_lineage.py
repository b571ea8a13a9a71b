"""Example: a DAG whose tasks report OpenLineage datasets, one per label or relationship type.

With ``apache-airflow-providers-openlineage`` installed and a transport configured (for example
``AIRFLOW__OPENLINEAGE__TRANSPORT='{"type": "console"}'``), ``cast_movie``'s COMPLETE event has
the input ``neo4j.Person`` and the output ``neo4j.Movie`` in the namespace of the gateway's Neo4j,
and the gateway's request id in its ``cyphergateRequests`` run facet. ``cast_a_person`` writes
``:Person``, which the policy does not grant: it fails, and its FAIL event names no dataset.

Connection ``cyphergate_lineage`` (type ``cyphergate``), as ``cyphergate_default`` in
``cyphergate_example_oidc``, with this DAG's own OAuth client.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from proxy.airflow.operators import CypherGateOperator

with DAG(
    dag_id="cyphergate_example_lineage",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["cyphergate", "example"],
) as dag:
    CypherGateOperator(
        task_id="cast_movie",
        cyphergate_conn_id="cyphergate_lineage",
        statement=(
            "MATCH (p:Person) WITH collect(p.name) AS cast "
            "CREATE (m:Movie {title: $title, cast: cast}) RETURN m.title AS title"
        ),
        parameters={"title": "{{ run_id }}"},
    )
    CypherGateOperator(
        task_id="cast_a_person",
        cyphergate_conn_id="cyphergate_lineage",
        statement="CREATE (:Person {name: $name})",
        parameters={"name": "{{ run_id }}"},
        result="none",
        retries=0,
    )
