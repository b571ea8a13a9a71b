"""A small client for callers of CypherGate, with the three ways a worker proves who it is.

Used by the Airflow provider, and usable from any Python program::

    client = CypherGateClient("https://cyphergate.example.com", ClientCredentials(...))
    rows = client.run("MATCH (u:User) RETURN u.name AS name", dag="etl_users").rows

Credentials are callables returning a complete ``Authorization`` value; each caches what it can
(a token until shortly before it expires, an IAM proof for a fraction of its freshness window)
and never logs or echoes a secret.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from proxy.lineage import Lineage
from proxy.wire import GET_CALLER_IDENTITY_BODY, IAM_SCHEME, REQUEST_ID_HEADER, SERVER_ID_HEADER

DEFAULT_STS_URL = "https://sts.amazonaws.com/"
Credential = Callable[[], str]


def iam_authorization(
    session: boto3.Session,
    *,
    server_id: str,
    sts_url: str = DEFAULT_STS_URL,
    region: str = "us-east-1",
) -> str:
    """An ``Authorization`` header value proving who ``session`` is; valid for minutes."""
    credentials = session.get_credentials()
    if credentials is None:
        raise ValueError("the boto3 session has no credentials")
    request = AWSRequest(
        method="POST",
        url=sts_url,
        data=GET_CALLER_IDENTITY_BODY,
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            SERVER_ID_HEADER: server_id,
        },
    )
    SigV4Auth(credentials.get_frozen_credentials(), "sts", region).add_auth(request)
    proof = {
        "method": "POST",
        "url": sts_url,
        "body": base64.b64encode(GET_CALLER_IDENTITY_BODY.encode()).decode("ascii"),
        "headers": {name: str(value) for name, value in request.headers.items()},
    }
    return f"{IAM_SCHEME} " + base64.b64encode(json.dumps(proof).encode()).decode("ascii")


class TokenRequestFailed(Exception):
    """The token endpoint did not grant a token; the message has its ``error``, never a secret."""


@dataclass(frozen=True, slots=True)
class Token:
    """An access token and how many seconds it lives."""

    access_token: str = field(repr=False)
    expires_in: float


def client_credentials_token(
    token_url: str,
    client_id: str,
    client_secret: str,
    *,
    resource: str | None = None,
    scope: str | None = None,
    timeout_s: float = 30.0,
    http: httpx.Client | None = None,
) -> Token:
    """An access token by OAuth 2.0's client-credentials grant (RFC 6749 section 4.4), the
    client's secret in the request body (``client_secret_post``); ``resource`` is a resource
    indicator (RFC 8707). ``http``: the client to send it with (by default, a fresh one)."""
    form = {"grant_type": "client_credentials", "client_id": client_id}
    form |= {k: v for k, v in (("resource", resource), ("scope", scope)) if v}
    with contextlib.ExitStack() as owned:
        sender = http or owned.enter_context(httpx.Client())
        response = sender.post(
            token_url,
            data={**form, "client_secret": client_secret},
            headers={"Accept": "application/json"},
            timeout=timeout_s,
        )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or response.status_code != 200 or "access_token" not in answer:
        error = answer.get("error") if isinstance(answer, dict) else None
        raise TokenRequestFailed(
            f"{token_url} refused the client-credentials grant of {client_id}: "
            f"{error or f'HTTP {response.status_code}'}"
        )
    return Token(str(answer["access_token"]), float(answer.get("expires_in", 60)))


@dataclass
class ClientCredentials:
    """An OAuth 2.0 client-credentials token (JWT access token), refreshed before it expires."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    audience: str | None = None
    scope: str | None = None
    _token: str | None = field(default=None, init=False, repr=False)
    _expires_at: float = field(default=0.0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or time.time() > self._expires_at - 30:
                token = client_credentials_token(
                    self.token_url,
                    self.client_id,
                    self.client_secret,
                    resource=self.audience,
                    scope=self.scope,
                )
                self._token = token.access_token
                self._expires_at = time.time() + token.expires_in
            return f"Bearer {self._token}"


@dataclass
class TokenFile:
    """A bearer token read from a file (a Kubernetes projected service-account token).

    The file is re-read whenever it changes, since the kubelet rotates it in place.
    """

    path: Path
    _token: str | None = field(default=None, init=False, repr=False)
    _stamp: tuple[float, int] = field(default=(0.0, 0), init=False, repr=False)

    def __call__(self) -> str:
        stat = self.path.stat()
        stamp = (stat.st_mtime, stat.st_size)
        if self._token is None or stamp != self._stamp:
            self._token = self.path.read_text(encoding="utf-8").strip()
            self._stamp = stamp
        return f"Bearer {self._token}"


@dataclass
class IAMProof:
    """A signed ``GetCallerIdentity`` proof from a boto3 session, optionally after AssumeRole."""

    server_id: str
    sts_url: str = DEFAULT_STS_URL
    region: str = "us-east-1"
    role_arn: str | None = None
    session: boto3.Session = field(default_factory=boto3.Session, repr=False)
    reuse_s: float = 60.0
    _header: str | None = field(default=None, init=False, repr=False)
    _made_at: float = field(default=0.0, init=False, repr=False)

    def __call__(self) -> str:
        # Reusing a proof for a minute lets the gateway answer from its cache, sparing STS.
        if self._header is None or time.time() - self._made_at > self.reuse_s:
            self._header = iam_authorization(
                self._role_session(),
                server_id=self.server_id,
                sts_url=self.sts_url,
                region=self.region,
            )
            self._made_at = time.time()
        return self._header

    def _role_session(self) -> boto3.Session:
        if self.role_arn is None:
            return self.session
        sts = self.session.client("sts", endpoint_url=self.sts_url, region_name=self.region)
        assumed = sts.assume_role(RoleArn=self.role_arn, RoleSessionName="cyphergate-client")
        credentials = assumed["Credentials"]
        return boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=self.region,
        )


class CypherGateQueryError(Exception):
    """The gateway refused or failed a statement; the message carries its code, its reason and
    the request id, which is the id of the request's audit records (as the Bolt door words it:
    ``(request <id>)``)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None) -> None:
        self.status = status
        self.code = code
        self.request_id = request_id
        # An answer without the header came from something in front of the gateway (a proxy,
        # a load balancer): no audit record to point to, and the text says so.
        named = f"request {request_id}" if request_id else f"no {REQUEST_ID_HEADER} in the answer"
        super().__init__(f"CypherGate answered {status} {code}: {message} ({named})")


class GatewayUnreachable(Exception):
    """No connection to the gateway could be made (refused, a name that does not resolve, a TLS
    handshake refused, no free connection in time): nothing was sent, so nothing ran, and
    sending the statement again is safe."""


class AnswerLost(Exception):
    """The request was sent, and its answer never came (a timeout, a connection dropped): the
    statement may have run. Sending it again could run a write twice; its audit records (the
    DAG, task, run and try, the time) say whether it ran."""


class ContextNotSendable(ValueError):
    """A DAG, task or run id that no header can carry to the gateway (a letter outside ASCII,
    a line break): refused before anything is sent, since trying again cannot mend it."""


# Raised before any byte of the request leaves: the connection was never made. Any other
# transport error may come after the gateway had it all (a write error too, on a connection
# the peer had closed), so it is taken as sent.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


@dataclass(frozen=True, slots=True)
class Result:
    """A statement's answer, in Query API form."""

    fields: list[str]
    values: list[list[Any]]
    counters: dict[str, Any]
    # What the statement touched, when asked for (``run(..., lineage=True)``).
    lineage: Lineage | None = None
    # The gateway's id of the request: its audit records carry it.
    request_id: str | None = None

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The values as one dict per row."""
        return [dict(zip(self.fields, row, strict=True)) for row in self.values]


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who, in Airflow terms, is calling: sent as X-CypherGate-* headers (context only)."""

    dag: str | None = None
    task: str | None = None
    run: str | None = None
    try_number: int | None = None
    # The task's OpenLineage run as the openlineage provider names it (its lineage_parent_id
    # macro: ``<namespace>/<job>/<run id>``), for the gateway's run events' parent.
    lineage_parent: str | None = None

    def login(self) -> str | None:
        """The Bolt login naming this context: ``dag/task/try/run``, or the DAG alone when the
        rest is unknown (see proxy/bolt/messages.py)."""
        if self.dag and self.task and self.try_number is not None and self.run:
            return f"{self.dag}/{self.task}/{self.try_number}/{self.run}"
        return self.dag

    def headers(self) -> dict[str, str]:
        """The context as headers; :class:`ContextNotSendable` for an id no header carries."""
        names = {
            "X-CypherGate-DAG": ("DAG", self.dag),
            "X-CypherGate-Task": ("task", self.task),
            "X-CypherGate-Run": ("run", self.run),
            "X-CypherGate-Try": ("try", None if self.try_number is None else str(self.try_number)),
            "X-CypherGate-Lineage-Parent": ("OpenLineage parent", self.lineage_parent),
        }
        headers: dict[str, str] = {}
        for name, (what, value) in names.items():
            if value is None:
                continue
            # Airflow takes any Unicode letter in a dag_id or task_id; the gateway, ASCII only
            # (proxy.settings.access.DAG_ID), and HTTP carries no other text in a header.
            if not all(" " <= character <= "~" for character in value):
                raise ContextNotSendable(
                    f"the {what} id {value!r} cannot be sent in {name}: CypherGate takes Airflow"
                    " ids in printable ASCII only, so that no look-alike letter names another"
                    " DAG: rename it"
                )
            headers[name] = value
        return headers


class CypherGateClient:
    """Sends statements to a gateway's Query API endpoint."""

    def __init__(
        self,
        url: str,
        credential: Credential,
        *,
        database: str = "neo4j",
        timeout_s: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._credential = credential
        self._database = database
        self._http = httpx.Client(timeout=timeout_s, transport=transport)

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return self._url

    @property
    def credential(self) -> Credential:
        """How this client proves who it is (called for every request; it caches what it can)."""
        return self._credential

    def close(self) -> None:
        self._http.close()

    def run(
        self,
        statement: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        database: str | None = None,
        context: CallContext | None = None,
        include_counters: bool = False,
        lineage: bool = False,
    ) -> Result:
        """Run one statement; raises :class:`CypherGateQueryError` on any refusal,
        :class:`GatewayUnreachable` when nothing was sent, :class:`AnswerLost` when the answer
        to what was sent never came. ``lineage``: the answer says what the statement touched
        (``X-CypherGate-Lineage``)."""
        body = {
            "statement": statement,
            "parameters": dict(parameters or {}),
            "includeCounters": include_counters,
        }
        headers = {"Authorization": self._credential(), **(context or CallContext()).headers()}
        if lineage:
            headers["X-CypherGate-Lineage"] = "true"
        try:
            response = self._http.post(
                f"{self._url}/db/{database or self._database}/query/v2", json=body, headers=headers
            )
        except _NOT_SENT as exc:
            raise GatewayUnreachable(
                f"CypherGate at {self._url} could not be reached ({type(exc).__name__}: {exc}):"
                " nothing was sent, so nothing ran"
            ) from exc
        except httpx.TransportError as exc:
            raise AnswerLost(
                f"the statement was sent to CypherGate at {self._url}, but its answer was lost"
                f" ({type(exc).__name__}: {exc}): it may have run"
            ) from exc
        try:
            document = response.json()
        except ValueError:
            document = {}
        errors = document.get("errors") if isinstance(document, dict) else None
        request_id = response.headers.get(REQUEST_ID_HEADER)
        if response.status_code >= 500 and request_id is None:
            # Not the gateway's answer (each of its answers names the request): a proxy in
            # front failed. Whether it had sent the request on (a 502 for an answer cut short,
            # a 504 for one too slow) or not (a 502 or 503 for no gateway to send it to), its
            # answer does not say: taken as sent, so that no write runs twice.
            raise AnswerLost(
                f"the statement was sent to CypherGate at {self._url}, but its answer was lost"
                f" (HTTP {response.status_code} {response.reason_phrase}, from something in"
                " front of the gateway): it may have run"
            )
        if response.status_code >= 300 or errors:
            first = errors[0] if errors else {}
            raise CypherGateQueryError(
                response.status_code,
                str(first.get("code", "unknown")),
                str(first.get("message", response.reason_phrase)),
                request_id,
            )
        data = document.get("data", {})
        touched = document.get("lineage") if lineage else None
        return Result(
            fields=list(data.get("fields", [])),
            values=list(data.get("values", [])),
            counters=dict(document.get("counters", {})),
            lineage=None if touched is None else Lineage.from_document(touched),
            request_id=request_id,
        )
