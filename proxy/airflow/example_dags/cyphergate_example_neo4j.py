"""Example: an unmodified neo4j-provider DAG, run through CypherGate's Bolt door.

Nothing here knows about CypherGate: the connection ``neo4j_default`` comes from
:class:`~proxy.airflow.secrets.CypherGateSecretsBackend`, which answers it with the gateway's
Bolt address, this DAG's id as login and a fresh short-lived credential as password. The policy
grants this DAG reads only, so ``count_nodes`` runs and ``sneak_a_write`` fails with Neo4j's
``Neo.ClientError.Security.Forbidden``; the gateway's audit log has both.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.neo4j.operators.neo4j import Neo4jOperator
from airflow.sdk import DAG

with DAG(
    dag_id="cyphergate_example_neo4j",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["cyphergate", "example", "neo4j"],
) as dag:
    Neo4jOperator(task_id="count_nodes", cypher="MATCH (n) RETURN count(n) AS nodes")
    Neo4jOperator(
        task_id="sneak_a_write",
        cypher="CREATE (:ExampleNeo4jIntruder {at: datetime()})",
        retries=0,
    )
