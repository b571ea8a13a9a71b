"""The worker's side of identity: how it proves who it is, and which task it is running.

Shared by :class:`~proxy.airflow.hooks.CypherGateHook` (HTTP) and
:class:`~proxy.airflow.secrets.CypherGateSecretsBackend` (Bolt through the neo4j provider), so
that a ``cyphergate`` connection's ``auth_method`` means the same wherever it is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.exceptions import AirflowException

from proxy.client import CallContext, ClientCredentials, Credential, IAMProof, TokenFile


def credential(login: str | None, password: str | None, extra: dict[str, Any]) -> Credential:
    """How the worker proves who it is, from a ``cyphergate`` connection's fields: ``login`` and
    ``password`` are the OAuth client's id and secret, ``extra`` holds ``auth_method`` and what
    that method needs. Nothing is fetched or signed until the credential is called."""
    method = extra.get("auth_method", "oidc_client_credentials")
    if method == "oidc_client_credentials":
        if not (login and password and extra.get("token_url")):
            raise AirflowException(
                "oidc_client_credentials needs the client id and secret (login and password)"
                " and token_url"
            )
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


def task_context(*, lineage: bool = False) -> CallContext:
    """The running task's identity in Airflow terms, or nothing outside a task; with
    ``lineage``, its OpenLineage run too (for the gateway's run events: CypherGateHook)."""
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
        lineage_parent=_lineage_parent(ti) if lineage else None,
    )


def _lineage_parent(ti: Any) -> str | None:
    """The task try's OpenLineage run, as apache-airflow-providers-openlineage names it (its
    ``lineage_parent_id`` macro), when that provider is installed: the gateway's run events of
    the task's statements then name it as their parent. Without it, the gateway derives a
    parent of its own (see the README's Lineage section)."""
    if ti is None:
        return None
    try:
        from airflow.providers.openlineage.plugins.macros import lineage_parent_id
    except ImportError:
        return None
    try:
        return str(lineage_parent_id(ti))
    except Exception:  # lineage is never worth failing the task's statement for
        return None
