"""One Bolt connection after its handshake: Bolt 5.1-5.4's server state machine over the
request path.

The caller logs on (``HELLO``, then ``LOGON`` with scheme ``bearer`` and its token or IAM proof,
or ``basic`` with the DAG to act as and the same credential), and its identity and DAG are
verified then, a refusal recorded like any other. Every statement is then a call on the request
path of its own: authenticated again (a token that expired since ``LOGON`` is refused with
``Neo.ClientError.Security.TokenExpired``), analysed, decided and recorded before it runs,
exactly as over HTTP. Its rows reach the client as Neo4j produces them, ``n`` at a time as the
client's ``PULL`` asks.

States (Neo4j's names): ``AUTHENTICATION`` until a ``LOGON`` succeeds, ``READY``,
``STREAMING`` while a result is open, ``FAILED`` after a ``FAILURE`` (every message but
``RESET`` and ``GOODBYE`` is then ``IGNORED``), ``DEFUNCT`` once the connection must close. A
message the state does not allow, or one that is not a Bolt message at all, gets a ``FAILURE``
and the connection is closed: a peer that breaks the protocol gets no second guess.
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from proxy.bolt.packstream import PackStreamError, Structure, unpack
from proxy.bolt.results import OpenResult, ResultSink
from proxy.bolt.values import from_wire
from proxy.errors import (
    AuthenticationFailed,
    BadRequest,
    CypherGateError,
    ImpersonationRefused,
)
from proxy.gateway.call import Call, Statement, new_request_id
from proxy.gateway.path import Gateway
from proxy.principal import DAG_HEADER

log = logging.getLogger(__name__)

HELLO, GOODBYE, RESET = 0x01, 0x02, 0x0F
RUN, BEGIN, COMMIT, ROLLBACK = 0x10, 0x11, 0x12, 0x13
DISCARD, PULL, TELEMETRY, ROUTE, LOGON, LOGOFF = 0x2F, 0x3F, 0x54, 0x66, 0x6A, 0x6B
SUCCESS, RECORD, IGNORED, FAILURE = 0x70, 0x71, 0x7E, 0x7F

_INVALID = "Neo.ClientError.Request.Invalid"
_TOKEN_EXPIRED = "Neo.ClientError.Security.TokenExpired"  # noqa: S105 - a code, not a secret
# A basic-auth principal that names no DAG: the identity's only DAG is meant.
_NO_DAG = frozenset({"", "cyphergate"})
_connection_ids = itertools.count(1)


class State(enum.Enum):
    AUTHENTICATION = "authentication"
    READY = "ready"
    STREAMING = "streaming"
    FAILED = "failed"
    DEFUNCT = "defunct"


class Defunct(Exception):
    """The connection must close (after its last answer has been sent)."""


@dataclass(frozen=True, slots=True)
class Options:
    """What a Bolt connection needs to know of its configuration."""

    home_database: str
    # host:port the gateway's Bolt door is reached at, for ROUTE; None: what the client dialled.
    advertised_address: str | None
    routing_ttl_s: int
    # Offered to drivers as connection.recv_timeout_seconds; the server closes idle ones too.
    idle_timeout_s: float
    max_message_bytes: int


Send = Callable[[int, tuple[Any, ...]], Awaitable[None]]


class Session:
    """The state machine of one Bolt connection (see the module docstring)."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        options: Options,
        server_agent: str,
        client: str | None,
        local_address: str,
        send: Send,
        flush: Callable[[], Awaitable[None]],
    ) -> None:
        self._gateway = gateway
        self._options = options
        self._server_agent = server_agent
        self._client = client
        self._local_address = local_address
        self._send = send
        self._flush = flush
        self.connection_id = f"bolt-{next(_connection_ids)}"
        self.state: State | None = None  # None: before HELLO
        self._authorization: str | None = None
        self._headers: dict[str, str] = {}
        self._routing: Mapping[str, Any] = {}
        self._result: OpenResult | None = None

    async def handle(self, message: bytes) -> None:
        """Answer one message; raises :class:`Defunct` when the connection must close."""
        try:
            decoded = unpack(message)
        except PackStreamError as exc:
            await self._violation(f"The message is not valid PackStream: {exc}")
        if not isinstance(decoded, Structure) or len(decoded.tag) != 1:
            await self._violation("A Bolt message must be a PackStream structure.")
        tag, fields = decoded.tag[0], decoded.fields
        if tag == GOODBYE:
            raise Defunct
        if tag == RESET:
            await self._reset()
            return
        if self.state is State.FAILED:
            await self._send(IGNORED, ())
            return
        handler = self._handlers().get(tag)
        if handler is None:
            await self._violation(f"Unknown or unsupported message 0x{tag:02X}.")
        try:
            await handler(fields)
        except _OutOfOrder as exc:
            await self._violation(str(exc))

    async def close(self) -> None:
        """The connection is going: whatever is open is ended (and recorded as ended)."""
        await self._end_result()

    # ------------------------------------------------------------------ messages

    def _handlers(self) -> dict[int, Callable[[tuple[Any, ...]], Awaitable[None]]]:
        return {
            HELLO: self._hello,
            LOGON: self._logon,
            LOGOFF: self._logoff,
            TELEMETRY: self._telemetry,
            ROUTE: self._route,
            RUN: self._run,
            PULL: self._pull,
            DISCARD: self._discard,
            BEGIN: self._begin,
            COMMIT: self._not_in_transaction,
            ROLLBACK: self._not_in_transaction,
        }

    async def _hello(self, fields: tuple[Any, ...]) -> None:
        self._expect(None, "HELLO")
        (extra,) = _shape(fields, dict)
        if not isinstance(extra.get("user_agent"), str):
            await self._violation("HELLO needs a user_agent.")
        routing = extra.get("routing")
        self._routing = routing if isinstance(routing, dict) else {}
        self.state = State.AUTHENTICATION
        hints = {"connection.recv_timeout_seconds": int(self._options.idle_timeout_s)}
        metadata = {
            "server": self._server_agent,
            "connection_id": self.connection_id,
            "hints": hints,
        }
        await self._send(SUCCESS, (metadata,))

    async def _logon(self, fields: tuple[Any, ...]) -> None:
        self._expect(State.AUTHENTICATION, "LOGON")
        (auth,) = _shape(fields, dict)
        authorization, headers = _credential(auth)
        call = self._call(authorization, headers, database=None)
        try:
            await self._gateway.admit(call)  # no credential at all is refused there too
        except CypherGateError as error:
            await self._statement_failed(error, call)
            raise Defunct from error  # Neo4j, too, closes a connection whose LOGON failed
        self._authorization, self._headers = authorization, headers
        self.state = State.READY
        await self._send(SUCCESS, ({},))

    async def _logoff(self, fields: tuple[Any, ...]) -> None:
        self._expect(State.READY, "LOGOFF")
        _shape(fields)
        self._authorization, self._headers = None, {}
        self.state = State.AUTHENTICATION
        await self._send(SUCCESS, ({},))

    async def _telemetry(self, fields: tuple[Any, ...]) -> None:
        self._expect(State.READY, "TELEMETRY")
        _shape(fields, int)
        await self._send(SUCCESS, ({},))

    async def _route(self, fields: tuple[Any, ...]) -> None:
        """The gateway is its own router, reader and writer: ``neo4j://`` URIs work."""
        self._expect(State.READY, "ROUTE")
        _context, _bookmarks, extra = _shape(fields, dict, list, (dict, type(None)))
        extra = extra or {}
        if extra.get("imp_user") is not None:
            await self._failure(ImpersonationRefused.code, ImpersonationRefused.default_message)
            return
        database = extra.get("db")
        address = self._options.advertised_address or self._routed_address()
        servers = [{"addresses": [address], "role": role} for role in ("ROUTE", "READ", "WRITE")]
        table = {
            "ttl": self._options.routing_ttl_s,
            "db": database if isinstance(database, str) else self._options.home_database,
            "servers": servers,
        }
        await self._send(SUCCESS, ({"rt": table},))

    async def _run(self, fields: tuple[Any, ...]) -> None:
        self._expect(State.READY, "RUN")
        text, parameters, extra = _shape(fields, str, dict, dict)
        database = extra.get("db")
        call = self._call(
            self._authorization,
            self._headers,
            database=database if isinstance(database, str) and database else None,
            statement=lambda: _statement(text, parameters, extra),
        )
        result = OpenResult(self._gateway, call)
        try:
            fields_out = await result.start()
        except CypherGateError as error:
            await self._statement_failed(error, call)
            return
        self._result = result
        self.state = State.STREAMING
        await self._send(SUCCESS, ({"fields": fields_out, "t_first": result.t_first_ms},))

    async def _pull(self, fields: tuple[Any, ...]) -> None:
        await self._stream(fields, discard=False)

    async def _discard(self, fields: tuple[Any, ...]) -> None:
        await self._stream(fields, discard=True)

    async def _stream(self, fields: tuple[Any, ...], *, discard: bool) -> None:
        self._expect(State.STREAMING, "DISCARD" if discard else "PULL")
        (extra,) = _shape(fields, dict)
        n = extra.get("n", -1)
        if not isinstance(n, int) or n == 0 or n < -1:
            await self._violation("PULL and DISCARD need n, a positive number or -1.")
        result = self._result
        if result is None:  # STREAMING means a result is open
            raise RuntimeError("streaming without a result")
        sink = _Sink(self._send, self._flush)
        try:
            metadata = await result.pull(n, sink, discard=discard)
        except CypherGateError as error:
            self._result = None
            await self._statement_failed(error, result.call)
            return
        if not metadata.get("has_more"):
            self._result = None
            self.state = State.READY
        await self._send(SUCCESS, (metadata,))

    async def _begin(self, fields: tuple[Any, ...]) -> None:
        self._expect(State.READY, "BEGIN")
        _shape(fields, dict)
        await self._failure(
            _INVALID, "Explicit transactions are not supported over Bolt by this gateway yet."
        )

    async def _not_in_transaction(self, fields: tuple[Any, ...]) -> None:
        del fields
        await self._violation("COMMIT and ROLLBACK need a transaction (BEGIN).")

    async def _reset(self) -> None:
        await self._end_result()
        if self.state is not None and self.state is not State.DEFUNCT:
            self.state = State.READY if self._authorization else State.AUTHENTICATION
        await self._send(SUCCESS, ({},))

    # ------------------------------------------------------------------ helpers

    def _call(
        self,
        authorization: str | None,
        headers: Mapping[str, str],
        *,
        database: str | None,
        statement: Callable[[], Awaitable[Statement]] | None = None,
    ) -> Call:
        return Call(
            request_id=new_request_id(),
            database=database or self._options.home_database,
            authorization=authorization,
            client=self._client,
            headers=headers,
            statement=statement or _no_statement,
        )

    async def _statement_failed(self, error: CypherGateError, call: Call) -> None:
        """A statement refused or failed: ``FAILURE`` with its code, and the request id that
        finds its audit record (HTTP's ``X-CypherGate-Request-ID``); a credential that no longer
        verifies also closes the connection (the driver opens another with a fresh one)."""
        code = _TOKEN_EXPIRED if _expired(error) else error.code
        await self._failure(code, f"{error.message} (request {call.request_id})")
        if isinstance(error, AuthenticationFailed):
            raise Defunct from error

    async def _failure(self, code: str, message: str) -> None:
        self.state = State.FAILED
        await self._send(FAILURE, ({"code": code, "message": message},))

    async def _violation(self, message: str) -> NoReturn:
        """The peer broke the protocol: it is told why, and the connection closes."""
        await self._end_result()
        await self._send(FAILURE, ({"code": _INVALID, "message": message},))
        self.state = State.DEFUNCT
        raise Defunct

    def _expect(self, state: State | None, name: str) -> None:
        if self.state is not state:
            raise _OutOfOrder(f"{name} is not allowed now (the connection is {self._state_name}).")

    @property
    def _state_name(self) -> str:
        return "new" if self.state is None else self.state.value

    async def _end_result(self) -> None:
        result, self._result = self._result, None
        if result is not None:
            await result.abandon()

    def _routed_address(self) -> str:
        address = self._routing.get("address")
        return address if isinstance(address, str) and address else self._local_address


class _OutOfOrder(Exception):
    """A message the connection's state does not allow (see :meth:`Session.handle`)."""


class _Sink(ResultSink):
    def __init__(self, send: Send, flush: Callable[[], Awaitable[None]]) -> None:
        self._send = send
        self._flush = flush

    async def record(self, values: list[Any]) -> None:
        await self._send(RECORD, (values,))

    async def flush(self) -> None:
        await self._flush()


async def _no_statement() -> Statement:
    raise BadRequest("No statement was sent.", reason="no_statement")


async def _statement(text: str, parameters: dict[str, Any], extra: dict[str, Any]) -> Statement:
    """The statement of a RUN, read only once its caller is identified (see the request path)."""
    if extra.get("imp_user") is not None:
        raise ImpersonationRefused(reason="impersonation_refused")
    try:
        values = {key: from_wire(value) for key, value in parameters.items()}
    except PackStreamError as exc:
        raise BadRequest(
            f"A parameter is not a value Neo4j accepts: {exc}", reason="parameter_invalid"
        ) from exc
    bookmarks = extra.get("bookmarks") or []
    if not isinstance(bookmarks, list) or not all(isinstance(b, str) for b in bookmarks):
        raise BadRequest("bookmarks must be a list of strings.", reason="bookmarks_invalid")
    mode = extra.get("mode", "w")
    if mode not in ("r", "w"):
        raise BadRequest("mode must be r or w.", reason="mode_invalid")
    return Statement(
        text=text,
        parameters=values,
        access_mode="READ" if mode == "r" else None,
        bookmarks=tuple(bookmarks),
    )


def _shape(fields: tuple[Any, ...], *types: Any) -> tuple[Any, ...]:
    """``fields`` if they are as many as ``types`` and each of its type, else a violation."""
    if len(fields) != len(types) or not all(
        isinstance(value, kind) for value, kind in zip(fields, types, strict=True)
    ):
        raise _OutOfOrder("A message's fields are not what Bolt prescribes for it.")
    return fields


def _credential(auth: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
    """The ``Authorization`` value and context headers a LOGON's auth map stands for.

    ``bearer``: the credentials are a token (or an IAM proof with its scheme word). ``basic``:
    the same credentials, and the principal names the DAG to act as (empty, or ``cyphergate``,
    when the identity has exactly one), so that a ``(login, password)`` pair carries them.
    Anything else (``none``, Kerberos, custom schemes) stands for no credential at all."""
    scheme, credentials = auth.get("scheme"), auth.get("credentials")
    if scheme not in ("bearer", "basic") or not isinstance(credentials, str):
        return None, {}
    credentials = credentials.strip()
    # "Scheme value" (an IAM proof as proxy.client writes it) is used as it is; a bare value is
    # a token.
    authorization = credentials if " " in credentials else f"Bearer {credentials}"
    headers: dict[str, str] = {}
    principal = auth.get("principal")
    if scheme == "basic" and isinstance(principal, str) and principal.lower() not in _NO_DAG:
        headers[DAG_HEADER] = principal
    return authorization, headers


def _expired(error: CypherGateError) -> bool:
    return isinstance(error, AuthenticationFailed) and error.reason == "token_expired"
