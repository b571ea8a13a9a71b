"""``CypherGateHook``: an Airflow connection of type ``cyphergate``, turned into a client.

The connection holds the gateway URL (host), the database (schema) and how to authenticate
(``auth_method`` in extra): ``oidc_client_credentials`` with the client id and secret as login
and password, ``token_file`` for a projected service-account token, or ``aws_iam`` with the
worker's boto3 credentials. No Neo4j password is ever involved. Inside a task, the hook names
the DAG, task, run and try number in the request headers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.exceptions import AirflowException
from airflow.sdk import BaseHook

from proxy.client import (
    CallContext,
    ClientCredentials,
    Credential,
    CypherGateClient,
    CypherGateQueryError,
    IAMProof,
    Result,
    TokenFile,
)


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
                _credential(conn.login, conn.password, extra),
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
                context=_task_context(),
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


def _credential(login: str | None, password: str | None, extra: dict[str, Any]) -> Credential:
    method = extra.get("auth_method", "oidc_client_credentials")
    if method == "oidc_client_credentials":
        if not (login and password and extra.get("token_url")):
            raise AirflowException("oidc_client_credentials needs login, password and token_url")
        return ClientCredentials(
            token_url=extra["token_url"],
            client_id=login,
            client_secret=password,
            audience=extra.get("audience"),
            scope=extra.get("scope"),
        )
    if method == "token_file":
        return TokenFile(Path(extra["token_file"]))
    if method == "aws_iam":
        if not extra.get("aws_server_id"):
            raise AirflowException("aws_iam needs aws_server_id (the gateway's server id)")
        proof = IAMProof(
            server_id=extra["aws_server_id"],
            sts_url=extra.get("aws_sts_url") or "https://sts.amazonaws.com/",
            region=extra.get("aws_region") or "us-east-1",
            role_arn=extra.get("aws_role_arn"),
        )
        if extra.get("aws_conn_id"):
            proof.session = _aws_connection_session(extra["aws_conn_id"])
        return proof
    raise AirflowException(f"unknown auth_method {method!r}")


def _aws_connection_session(aws_conn_id: str) -> Any:
    """The boto3 session of an Airflow AWS connection (needs apache-airflow-providers-amazon)."""
    try:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    except ImportError as exc:
        raise AirflowException(
            "aws_conn_id needs apache-airflow-providers-amazon; without it, leave aws_conn_id"
            " out and the worker's own AWS credentials are used"
        ) from exc
    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type="sts").get_session()


def _task_context() -> CallContext:
    """The running task's identity in Airflow terms, or nothing outside a task."""
    try:
        from airflow.sdk import get_current_context

        context = get_current_context()
    except Exception:
        return CallContext()
    ti = context.get("ti")
    return CallContext(
        dag=getattr(ti, "dag_id", None),
        task=getattr(ti, "task_id", None),
        run=getattr(ti, "run_id", None),
        try_number=getattr(ti, "try_number", None),
    )
