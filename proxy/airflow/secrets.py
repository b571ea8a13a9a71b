"""``CypherGateSecretsBackend``: the neo4j provider's connections, each fetch a fresh credential.

A DAG written for ``airflow.providers.neo4j`` (``Neo4jOperator``, ``Neo4jHook``) runs through the
gateway's Bolt door unchanged: the connection it names is answered here, as type ``neo4j`` with
the door's host and port; as login, the running task's DAG, task, try and run
(``dag/task/try/run``: the gateway checks that the worker's identity may act as the DAG, and
records the rest); and, as password, a credential made on the spot by the same means as a
``cyphergate`` connection's (``auth_method``: an OIDC access token, a token file's token, or an
IAM proof). Airflow stores no secret for it, and the password is valid for minutes.

Configured in ``airflow.cfg`` (or ``AIRFLOW__SECRETS__BACKEND`` and ``..._BACKEND_KWARGS``)::

    [secrets]
    backend = proxy.airflow.secrets.CypherGateSecretsBackend
    backend_kwargs = {"conn_ids": ["neo4j_default"], "uri": "bolt://cyphergate:7687",
                      "auth_method": "token_file", "token_file": "/var/run/secrets/cyphergate"}

The password is a live credential: it must never be logged (Airflow masks a connection's
password in task logs; the neo4j hook logs only the URI), and Airflow's secrets cache
(``[secrets] use_cache``) would hand it out after it expired.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from airflow.exceptions import AirflowException
from airflow.sdk.bases.secrets_backend import BaseSecretsBackend
from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied

from proxy.airflow import get_provider_info
from proxy.airflow.identity import credential, task_context

# The Bolt door's basic-auth principal that names no DAG: the identity's only one is meant.
NO_DAG = "cyphergate"
DEFAULT_BOLT_PORT = 7687
# What a URI's scheme says, in the neo4j provider's connection extras.
_BASES = {"bolt": {}, "neo4j": {"neo4j_scheme": True}}
_TLS = {"": {}, "s": {"certs_trusted_ca": True}, "ssc": {"certs_self_signed": True}}


class CypherGateSecretsBackend(BaseSecretsBackend):
    """Answers ``conn_ids`` with a ``neo4j`` connection to the gateway's Bolt door.

    :param uri: the door, as ``devstack status`` reports it (``bolt://host:port``; ``neo4j``,
        ``+s`` and ``+ssc`` schemes too).
    :param conn_ids: the connections to answer (a list, or names joined by commas); any other
        is left to the next backend.
    :param database: the connection's schema (the neo4j hook's database); the server's default
        if not given.
    :param client_id: the OAuth client's id, for ``oidc_client_credentials``.
    :param client_secret: its secret.
    :param identity: ``auth_method`` and what it needs, as in a ``cyphergate`` connection's extra
        (``token_url``, ``audience``, ``scope``, ``token_file``, ``aws_server_id``, ...).
    """

    def __init__(
        self,
        *,
        uri: str,
        conn_ids: str | Sequence[str] = "neo4j_default",
        database: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        **identity: Any,
    ) -> None:
        super().__init__()
        known = get_provider_info()["connection-types"][0]["conn-fields"]
        if unknown := sorted(set(identity) - set(known)):
            raise AirflowException(f"CypherGateSecretsBackend has no setting {', '.join(unknown)}")
        names = conn_ids.split(",") if isinstance(conn_ids, str) else conn_ids
        self.conn_ids = frozenset(name.strip() for name in names if name.strip())
        self._connection = {"conn_type": "neo4j", **_address(uri), "schema": database}
        self._client = (client_id, client_secret)
        self._identity = identity

    def get_conn_value(
        self,
        conn_id: str,
        team_name: str | None = None,  # noqa: ARG002 - Airflow's signature; no teams here
    ) -> str | None:
        """The connection as JSON, with a credential made now; ``None`` for other conn ids.

        A conn id listed here never falls through to another backend, which might still hold a
        direct Neo4j password: if no credential can be had, the lookup is refused."""
        if conn_id not in self.conn_ids:
            return None
        try:
            password = credential(*self._client, self._identity)()
        except Exception as error:
            raise AirflowSecretsBackendAccessDenied(
                f"CypherGate could not make a credential for {conn_id}: {error}"
            ) from error
        login = task_context().login() or NO_DAG
        return json.dumps({**self._connection, "login": login, "password": password})

    def get_variable(
        self,
        key: str,  # noqa: ARG002 - Airflow's signature
        team_name: str | None = None,  # noqa: ARG002
    ) -> str | None:
        """No variables live here."""
        return None


def _address(uri: str) -> dict[str, Any]:
    """Host, port and the neo4j provider's scheme extras for a Bolt URI."""
    parts = urlsplit(uri)
    base, _, tls = parts.scheme.partition("+")
    if base not in _BASES or tls not in _TLS or not parts.hostname:
        # The URI itself is not echoed: one written with a password in it would leak it.
        raise AirflowException(
            f"uri must be bolt:// or neo4j:// (+s, +ssc) with a host, not {parts.scheme}://..."
        )
    extra = {**_BASES[base], **_TLS[tls]}
    return {"host": parts.hostname, "port": parts.port or DEFAULT_BOLT_PORT, "extra": extra}
