"""CypherGate: an identity-aware Cypher proxy between Apache Airflow workers and Neo4j."""

__version__ = "0.1.0"
