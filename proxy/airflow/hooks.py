"""``CypherGateHook``: an Airflow connection of type ``cyphergate``, turned into a client.

The connection holds the gateway URL (host), the database (schema) and how to authenticate
(``auth_method`` in extra): ``oidc_client_credentials`` with the client id and secret as login
and password, ``token_file`` for a projected service-account token, or ``aws_iam`` with the
worker's boto3 credentials. No Neo4j password is ever involved. Inside a task, the hook names
the DAG, task, run and try number in the request headers, and logs the gateway's request id of
every statement (the id of its audit records; a refusal's text carries it too).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from airflow.exceptions import AirflowException
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException

from proxy.airflow.identity import credential, task_context
from proxy.client import (
    AnswerLost,
    ContextNotSendable,
    CypherGateClient,
    CypherGateQueryError,
    GatewayUnreachable,
    Result,
)

# Which refusals a later try of the task can get past; every other one fails the task at once.
# A Neo.TransientError is the gateway's "try again" (its rate limit, 429, among them). Of the
# Neo.ClientError codes the gateway answers (proxy/errors.py, and Neo4j's own for a statement
# Neo4j refuses), only a credential's: the next try fetches a fresh one. The rest stand as they
# are, whatever the try: a policy's denial (Security.Forbidden, 403), a statement or request the
# caller got wrong (400: Request.Invalid, Statement.* such as SyntaxError or RowLimitExceeded,
# Transaction.ForbiddenDueToTransactionType, Schema.*, Procedure.*), an unknown database
# (Database.DatabaseNotFound, 404). By status, whatever the code (a proxy in front writes none):
# the body not there in time (408, nothing ran), a credential refused (401), a rate limit (429).
RETRIED_CODES = frozenset(
    {
        "Neo.ClientError.Security.Unauthorized",
        "Neo.ClientError.Security.TokenExpired",
        "Neo.ClientError.Security.AuthenticationRateLimit",
    }
)
RETRIED_STATUSES = frozenset({401, 408, 429})


def retry_helps(status: int, code: str) -> bool:
    """Whether Airflow should retry a statement refused with ``status`` and ``code``."""
    return (
        code.startswith("Neo.TransientError.")
        or code in RETRIED_CODES
        or status in RETRIED_STATUSES
    )


def _not_retried_because(code: str) -> str:
    if code.startswith("Neo.DatabaseError."):
        return (
            "a Neo.DatabaseError does not mend by trying again, and the statement may have"
            " written; its audit records say what ran"
        )
    if code == "Neo.ClientError.Security.Forbidden":
        return "a denial stands on every try until the policy or the DAG's grants change"
    if code == "Neo.ClientError.Database.DatabaseNotFound":
        return "the database does not exist on any try"
    return "the refusal is of the statement or request as sent, which a retry sends unchanged"


class CypherGateAnswerLost(AirflowFailException):
    """The statement was sent and its answer lost: it may have run, so the task fails without
    a retry (a write could run twice); the message says how to find out whether it ran."""


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
            if not conn.host:
                raise AirflowException("the connection has no host: set it to the gateway's URL")
            host = conn.host
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
        lineage: bool = True,
    ) -> Result:
        """Run one statement; a refusal becomes an AirflowException naming the gateway's reason
        and request id. ``lineage``: the result says what the statement touched
        (``Result.lineage``), for OpenLineage (``CypherGateOperator``) or the caller's records.

        Airflow retries (``retries``) only what cannot have run twice and may go otherwise next
        time: a request never sent, a refusal :func:`retry_helps` names (a transient one, a
        credential refused, a rate limit). Any other refusal (a policy's denial, a statement the
        caller got wrong, a ``Neo.DatabaseError``) and an answer lost after the request was sent
        fail the task at once (:class:`AirflowFailException`, :class:`CypherGateAnswerLost`), as
        does a DAG or task id no header can carry (a letter outside ASCII), which nothing mends.
        """
        context = task_context(lineage=True)
        sent_at = time.time()
        try:
            answer = self.get_conn().run(
                statement,
                parameters,
                database=database,
                context=context,
                include_counters=include_counters,
                lineage=lineage,
            )
        except CypherGateQueryError as error:
            if not retry_helps(error.status, error.code):
                reason = _not_retried_because(error.code)
                raise AirflowFailException(f"{error}. Not retried: {reason}") from error
            raise AirflowException(str(error)) from error
        except GatewayUnreachable as error:
            raise AirflowException(f"{error}; a retry is safe") from error
        except ContextNotSendable as error:  # nothing was sent; a retry would fail the same way
            raise AirflowFailException(str(error)) from error
        except AnswerLost as error:
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sent_at - 1))
            dag = f" --dag {context.dag}" if context.dag else ""
            raise CypherGateAnswerLost(
                f"{error}. Not retried, since a write could run twice: its audit records say"
                f" whether it ran (cyphergate audit query --since {since}{dag})"
            ) from error
        self.log.info("CypherGate request %s: %d rows", answer.request_id, len(answer.values))
        return answer

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test" button: a credential fetched, then ``RETURN 1`` through the gateway.

        The message says which step failed and why. It never holds a secret: the errors it
        quotes name none (the gateway's leak nothing, the token endpoint's give its ``error``
        only), and the connection's password and the credential are masked in it regardless.
        """
        secrets: list[str] = []
        try:
            conn = self.get_connection(self.cyphergate_conn_id)
            secrets += [conn.password or ""]
            client = self.get_conn()
        except Exception as error:
            return False, _masked(f"The connection cannot be used: {error}", secrets)
        method = conn.extra_dejson.get("auth_method", "oidc_client_credentials")
        try:
            authorization = client.credential()
        except Exception as error:
            reason = f"No credential by {method}: {type(error).__name__}: {error}"
            return False, _masked(reason, secrets)
        secrets += [authorization, authorization.partition(" ")[2]]
        try:
            answer = client.run("RETURN 1 AS ok")
        except CypherGateQueryError as error:
            reason = f"Got a credential by {method}, but RETURN 1 failed: {error}"
            return False, _masked(reason, secrets)
        except (GatewayUnreachable, AnswerLost, httpx.HTTPError) as error:
            # A 5xx from a proxy in front is an AnswerLost of no transport error: itself, then.
            wrapped = isinstance(error, GatewayUnreachable | AnswerLost)
            cause = (error.__cause__ or error) if wrapped else error
            reason = f"CypherGate at {client.url} did not answer: {type(cause).__name__}: {cause}"
            return False, _masked(reason, secrets)
        except Exception as error:
            # Airflow would show an escaped exception's text as it is: masked here instead.
            reason = f"RETURN 1 through CypherGate at {client.url} failed: {type(error).__name__}"
            return False, _masked(f"{reason}: {error}", secrets)
        return True, (
            f"Authenticated by {method} and ran RETURN 1 through CypherGate at {client.url}"
            f" (request {answer.request_id})."
        )


def _masked(message: str, secrets: list[str]) -> str:
    """``message`` with every secret in it replaced by ``***`` (Airflow's own mask)."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message
