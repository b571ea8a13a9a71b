"""``CypherGateHook``: an Airflow connection of type ``cyphergate``, turned into a client.

The connection holds the gateway URL (host), the database (schema) and how to authenticate
(``auth_method`` in extra): ``oidc_client_credentials`` with the client id and secret as login
and password, ``token_file`` for a projected service-account token, or ``aws_iam`` with the
worker's boto3 credentials. No Neo4j password is ever involved. Inside a task, the hook names
the DAG, task, run and try number in the request headers.
"""

from __future__ import annotations

from typing import Any

from airflow.exceptions import AirflowException
from airflow.sdk import BaseHook

from proxy.airflow.identity import credential, task_context
from proxy.client import CypherGateClient, CypherGateQueryError, Result


class CypherGateHook(BaseHook):
    """Runs Cypher through CypherGate with the connection's workload identity."""

    conn_name_attr = "cyphergate_conn_id"
    default_conn_name = "cyphergate_default"
    conn_type = "cyphergate"
    hook_name = "CypherGate"

    def __init__(
        self, cyphergate_conn_id: str = default_conn_name, database: str | None = None
    ) -> None:
        super().__init__()
        self.cyphergate_conn_id = cyphergate_conn_id
        self.database = database
        self._client: CypherGateClient | None = None

    def get_conn(self) -> CypherGateClient:
        """The client for this connection (made once per hook)."""
        if self._client is None:
            conn = self.get_connection(self.cyphergate_conn_id)
            extra: dict[str, Any] = conn.extra_dejson
            host = conn.host or ""
            url = host if "://" in host else f"https://{host}"
            if conn.port and "://" not in host:
                url = f"{url}:{conn.port}"
            self._client = CypherGateClient(
                url,
                credential(conn.login, conn.password, extra),
                database=self.database or conn.schema or "neo4j",
                timeout_s=float(extra.get("timeout", 300)),
            )
        return self._client

    def run(
        self,
        statement: str,
        parameters: dict[str, Any] | None = None,
        *,
        database: str | None = None,
        include_counters: bool = False,
    ) -> Result:
        """Run one statement; a refusal becomes an AirflowException naming the gateway's reason."""
        try:
            return self.get_conn().run(
                statement,
                parameters,
                database=database,
                context=task_context(lineage=True),
                include_counters=include_counters,
            )
        except CypherGateQueryError as error:
            raise AirflowException(str(error)) from error

    def test_connection(self) -> tuple[bool, str]:
        """Used by Airflow's "Test" button: authenticate and run ``RETURN 1``."""
        try:
            self.get_conn().run("RETURN 1 AS ok")
        except Exception as error:
            return False, str(error)
        return True, "Authenticated and ran RETURN 1 through CypherGate."
