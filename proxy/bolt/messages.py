"""Bolt messages' fields, read into the request path's words.

Nothing here trusts the client: a message whose fields are not the number and types Bolt
prescribes raises :class:`Malformed` (the connection is then closed); what a statement carries
(parameters, bookmarks, access mode, impersonation) is read only when the request path asks for
the statement, so that a bad one is refused *and recorded* like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.codec.packstream import DEFAULT_LIMITS, Limits, PackStreamError, Structure, unpack
from proxy.codec.values import from_wire
from proxy.errors import AuthenticationFailed, BadRequest, CypherGateError, ImpersonationRefused
from proxy.gateway.call import Statement, imitated_key
from proxy.principal import DAG_HEADER, RUN_HEADER, TASK_HEADER, TRY_HEADER
from proxy.statement import AccessMode

HELLO, GOODBYE, RESET = 0x01, 0x02, 0x0F
RUN, BEGIN, COMMIT, ROLLBACK = 0x10, 0x11, 0x12, 0x13
DISCARD, PULL, TELEMETRY, ROUTE, LOGON, LOGOFF = 0x2F, 0x3F, 0x54, 0x66, 0x6A, 0x6B
SUCCESS, RECORD, IGNORED, FAILURE = 0x70, 0x71, 0x7E, 0x7F
# What a TELEMETRY may name: a managed transaction, an explicit one, an auto-commit statement, or
# the driver's execute_query.
DRIVER_APIS = frozenset(range(4))

# A basic-auth principal that names no DAG: the identity's only DAG is meant.
_NO_DAG = frozenset({"", "cyphergate"})
# In a RUN's or BEGIN's tx_metadata, true: each result's SUCCESS carries its "lineage".
LINEAGE_KEY = "cyphergate.lineage"


_SEVERITIES = {"INFORMATION": 1, "WARNING": 2}  # OFF: none
_SEVERITY, _CATEGORIES = "notifications_minimum_severity", "notifications_disabled_categories"
# The categories Neo4j 5.26 knows; it refuses another, and reads them in any case.
CATEGORIES = frozenset(
    {"HINT", "UNRECOGNIZED", "UNSUPPORTED", "PERFORMANCE", "DEPRECATION"}
    | {"SECURITY", "TOPOLOGY", "GENERIC", "SCHEMA"}
)


@dataclass(frozen=True, slots=True)
class Notices:
    """Which of Neo4j's notifications a client asked for, as Neo4j filters them (Bolt 5.2+:
    ``notifications_minimum_severity`` and ``notifications_disabled_categories`` on ``HELLO``,
    and on ``BEGIN`` or ``RUN`` instead of the connection's)."""

    minimum: str | None = None  # WARNING, INFORMATION or OFF; None: all
    disabled: frozenset[str] = frozenset()

    def shown(self, notification: Mapping[str, Any]) -> bool:
        if self.minimum == "OFF":
            return False
        severity = _SEVERITIES.get(str(notification.get("severity")), 0)
        if severity < _SEVERITIES.get(self.minimum or "", 0):
            return False
        return notification.get("category") not in self.disabled


ALL_NOTICES = Notices()


def notices(extra: Mapping[str, Any], default: Notices = ALL_NOTICES) -> Notices:
    """The :class:`Notices` a ``HELLO``'s, ``BEGIN``'s or ``RUN``'s extra asks for; what it
    does not say is ``default``'s (the connection's). What Neo4j refuses (an unknown severity or
    category, null, a text for the list) is :class:`Malformed`: taken as "all", it showed a
    client what it had asked not to see."""
    if _SEVERITY not in extra and _CATEGORIES not in extra:
        return default  # most RUNs: nothing to read, nothing to make
    minimum, disabled = default.minimum, default.disabled
    if _SEVERITY in extra:
        minimum = extra[_SEVERITY].upper() if isinstance(extra[_SEVERITY], str) else None
        if minimum not in ("OFF", *_SEVERITIES):
            raise Malformed(f"{_SEVERITY} must be OFF, WARNING or INFORMATION.")
    if _CATEGORIES in extra:
        listed = extra[_CATEGORIES]
        if not isinstance(listed, list) or not all(isinstance(c, str) for c in listed):
            raise Malformed(f"{_CATEGORIES} must be a list of categories.")
        disabled = frozenset(c.upper() for c in listed)
        if not disabled <= CATEGORIES:
            raise Malformed(f"{_CATEGORIES} names no category Neo4j knows.")
    return Notices(minimum, disabled)


def asked_notices(extra: Mapping[str, Any], default: Notices) -> Notices:
    """:func:`notices` of a ``RUN``; a wrong filter is not refused here but by
    :func:`statement`, when the request path reads it (so that the refusal is recorded)."""
    try:
        return notices(extra, default)
    except Malformed:
        return default


class Malformed(Exception):
    """A message that is not what Bolt prescribes, or not allowed in the connection's state."""


@dataclass(frozen=True, slots=True)
class Begin:
    """What a ``BEGIN`` asks for."""

    database: str | None
    access_mode: AccessMode | None
    bookmarks: tuple[str, ...]
    metadata: Mapping[str, Any]
    timeout_s: float | None
    lineage: bool  # its tx_metadata asks for lineage


# Before a LOGON, what a client sends costs the gateway without its being known: the messages a
# driver sends then (HELLO, LOGON, a RESET or two) are few and small, so their decoding is held
# to what they need, and their number too. A 64 KiB message of empty lists, decoded whole, cost
# about 65 ms of CPU, and a stream of them held every other client back (found by review).
ANONYMOUS_LIMITS = Limits(max_depth=4, max_items=64, max_containers=64)
MAX_ANONYMOUS_MESSAGES = 32
_FIELDLESS = frozenset({GOODBYE, RESET, COMMIT, ROLLBACK, LOGOFF})


def decode(message: bytes, *, anonymous: bool) -> tuple[int, tuple[Any, ...]]:
    """A message's tag and fields, or :class:`Malformed`; ``anonymous``: no credential is
    accepted yet (see :data:`ANONYMOUS_LIMITS`). A message that carries no field is checked
    before it is decoded: one with fields is not that message."""
    if len(message) > 2 and message[1] in _FIELDLESS and 0xB0 <= message[0] <= 0xBF:
        raise Malformed(f"Message 0x{message[1]:02X} carries no fields.")
    try:
        decoded = unpack(message, ANONYMOUS_LIMITS if anonymous else DEFAULT_LIMITS)
    except PackStreamError as exc:
        raise Malformed(f"The message is not valid PackStream: {exc}") from exc
    if not isinstance(decoded, Structure) or len(decoded.tag) != 1:
        raise Malformed("A Bolt message must be a PackStream structure.")
    return decoded.tag[0], decoded.fields


def shape(fields: tuple[Any, ...], *types: Any) -> tuple[Any, ...]:
    """``fields`` if they are as many as ``types`` and each of its type, else :class:`Malformed`."""
    if len(fields) != len(types) or not all(
        isinstance(value, kind) for value, kind in zip(fields, types, strict=True)
    ):
        raise Malformed("A message's fields are not what Bolt prescribes for it.")
    return fields


def pull_size(extra: Mapping[str, Any]) -> tuple[int, int]:
    """``n`` (-1: all) and ``qid`` (-1: the last result) of a ``PULL`` or ``DISCARD``."""
    n, qid = extra.get("n", -1), extra.get("qid", -1)
    if not isinstance(n, int) or isinstance(n, bool) or n == 0 or n < -1:
        raise Malformed("PULL and DISCARD need n, a positive number or -1.")
    if not isinstance(qid, int) or isinstance(qid, bool) or qid < -1:
        raise Malformed("qid must be a statement's id or -1.")
    return n, qid


def begin(extra: Mapping[str, Any]) -> Begin:
    """A ``BEGIN``'s extra map, checked: a wrong one is refused (``begin_extra_invalid``, a
    :class:`~proxy.errors.BadRequest` the session records), as a ``RUN``'s is, and so is
    impersonation and a lineage flag that is not a boolean."""
    if extra.get("imp_user") is not None:
        raise ImpersonationRefused(reason="impersonation_refused")
    try:
        metadata, mode, bookmarks = tx_metadata(extra), _mode(extra), _bookmarks(extra)
        timeout_s, database = _timeout_s(extra), _database(extra)
        notices(extra)
    except Malformed as exc:
        raise BadRequest(str(exc), reason="begin_extra_invalid") from exc
    return Begin(
        database=database,
        access_mode=mode,
        bookmarks=bookmarks,
        metadata=metadata,
        timeout_s=timeout_s,
        lineage=lineage_asked(metadata),
    )


async def statement(text: str, parameters: dict[str, Any], extra: dict[str, Any]) -> Statement:
    """The statement of a ``RUN``, read only once its caller is identified (see the request
    path): a refusal here is recorded."""
    if extra.get("imp_user") is not None:
        raise ImpersonationRefused(reason="impersonation_refused")
    try:
        values = {key: from_wire(value) for key, value in parameters.items()}
    except PackStreamError as exc:
        raise BadRequest(
            f"A parameter is not a value Neo4j accepts: {exc}", reason="parameter_invalid"
        ) from exc
    try:
        mode, bookmarks, metadata = _mode(extra), _bookmarks(extra), tx_metadata(extra)
        timeout_s = _timeout_s(extra)
        # The session reads these (a wrong one as none); refused here, they are recorded.
        _database(extra)
        notices(extra)
    except Malformed as exc:
        raise BadRequest(str(exc), reason="run_extra_invalid") from exc
    lineage_asked(metadata)
    return Statement(
        text=text,
        parameters=values,
        access_mode=mode,
        bookmarks=bookmarks,
        metadata=metadata,
        timeout_s=timeout_s,
    )


class RoutingOptions(Protocol):
    @property
    def routing_ttl_s(self) -> int: ...

    @property
    def home_database(self) -> str: ...


def routing_table(
    bookmarks: list[Any], extra: Mapping[str, Any], address: str, on: RoutingOptions
) -> dict[str, Any]:
    """A ``ROUTE``'s table: the gateway (at ``address``) is its own router, reader and writer,
    so ``neo4j://`` URIs work. A ``db`` or a bookmark that is not text (a null one Neo4j
    skips) is refused (``route_invalid``), as Neo4j refuses it."""
    try:
        database = _database(extra)
    except Malformed as exc:
        raise BadRequest(str(exc), reason="route_invalid") from exc
    if not all(b is None or isinstance(b, str) for b in bookmarks):
        raise BadRequest("bookmarks must be a list of strings.", reason="route_invalid")
    return {
        "ttl": on.routing_ttl_s,
        "db": database or on.home_database,
        "servers": [{"addresses": [address], "role": r} for r in ("ROUTE", "READ", "WRITE")],
    }


def tx_metadata(extra: Mapping[str, Any]) -> dict[str, Any]:
    """A ``BEGIN``'s or ``RUN``'s ``tx_metadata``: a map, or none (``0``, ``""`` or ``[]`` is
    not "none": it is refused like any other value that is not a map), its values read as a
    parameter's are (a date is one, as Neo4j takes it; a node is refused, as Neo4j refuses it,
    before the statement is decided rather than when it is sent). A key that reads as one of
    the gateway's own but is not it (:func:`~proxy.gateway.call.imitated_key`) is refused: SHOW
    TRANSACTIONS would show it beside the gateway's."""
    metadata = extra.get("tx_metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise Malformed("tx_metadata must be a map.")
    try:
        values = {key: from_wire(value) for key, value in metadata.items()}
    except PackStreamError as exc:
        raise Malformed(f"tx_metadata holds a value Neo4j does not accept: {exc}") from exc
    for key in values:
        if (imitated := imitated_key(key)) is not None:
            raise Malformed(f"tx_metadata holds a key that reads as the gateway's {imitated}.")
    return values


def lineage_asked(metadata: object) -> bool:
    """Whether a ``tx_metadata`` asks for lineage (``cyphergate.lineage: true``, a key any driver
    can send unchanged); a value that is not a boolean is refused."""
    if not isinstance(metadata, Mapping) or LINEAGE_KEY not in metadata:
        return False
    value = metadata[LINEAGE_KEY]
    if not isinstance(value, bool):
        raise BadRequest(
            f"tx_metadata {LINEAGE_KEY} must be true or false.", reason="bad_lineage_flag"
        )
    return value


def asks_lineage(extra: Mapping[str, Any]) -> bool:
    """Whether an auto-commit ``RUN``'s extra asks for lineage; a bad flag is not refused here but
    by :func:`statement`, when the request path reads it (so that the refusal is recorded)."""
    try:
        return lineage_asked(extra.get("tx_metadata"))
    except BadRequest:
        return False


async def no_statement() -> Statement:
    """What a call that carries no statement (a ``LOGON``) gives if asked."""
    raise BadRequest("No statement was sent.", reason="no_statement")


def credential(auth: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
    """The ``Authorization`` value and context headers a ``LOGON``'s auth map stands for.

    ``bearer``: the credentials are a token (or an IAM proof with its scheme word). ``basic``:
    the same credentials, and the principal names the DAG to act as (empty, or ``cyphergate``,
    when the identity has exactly one), optionally followed by ``/task/try/run``, so that a
    ``(login, password)`` pair carries them.
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
        # "dag" or "dag/task/try/run" (a run id may hold "/"; DAG and task ids cannot): the
        # task, try and run are context for the records, as X-CypherGate-* are over HTTP.
        dag, *context = principal.split("/", 3)
        headers[DAG_HEADER] = dag
        headers.update(zip((TASK_HEADER, TRY_HEADER, RUN_HEADER), context, strict=False))
    return authorization, headers


# How a refusal names each part of a basic LOGON's principal (never its value, which a client
# may have filled with something secret): Bolt has no headers to name.
_PRINCIPAL = "of the login principal dag/task/try/run"
PRINCIPAL_PARTS: Mapping[str, str] = {
    DAG_HEADER: "the login principal (dag, or dag/task/try/run)",
    TASK_HEADER: f"The task (second part) {_PRINCIPAL}",
    TRY_HEADER: f"The try number (third part) {_PRINCIPAL}",
    RUN_HEADER: f"The run id (fourth part) {_PRINCIPAL}",
}


def principal_refusal(auth: Mapping[str, Any]) -> AuthenticationFailed | None:
    """The refusal of a ``basic`` LOGON whose principal is there but not text (as Neo4j refuses
    it): read as naming no DAG, the connection would act as the identity's only DAG where the
    client named another."""
    principal = auth.get("principal")  # null is absent: a driver's login left unset
    malformed = principal is not None and not isinstance(principal, str)
    if auth.get("scheme") == "basic" and malformed:
        return AuthenticationFailed(reason="malformed_principal")
    return None


def lineage_parent(metadata: object) -> str | None:
    """The OpenLineage parent run a caller put in its transaction metadata (``lineage_parent``,
    as HTTP's ``X-CypherGate-Lineage-Parent``), if any."""
    parent = metadata.get("lineage_parent") if isinstance(metadata, Mapping) else None
    return parent if isinstance(parent, str) else None


def trace_context(metadata: object) -> dict[str, str] | None:
    """The W3C trace context a caller put in its transaction metadata, if any (Bolt has no
    headers: ``traceparent`` and ``tracestate`` ride in ``tx_metadata``)."""
    if not isinstance(metadata, Mapping):
        return None
    found = {
        key: value
        for key in ("traceparent", "tracestate")
        if isinstance(value := metadata.get(key), str)
    }
    return found or None


def _mode(extra: Mapping[str, Any]) -> AccessMode | None:
    mode = extra.get("mode")  # null is absent, as Neo4j reads it
    if mode not in ("r", "w", None):
        raise Malformed("mode must be r or w.")
    return "READ" if mode == "r" else None


def _database(extra: Mapping[str, Any]) -> str | None:
    """The ``db`` a ``BEGIN``, ``RUN`` or ``ROUTE`` names; none (or ``""``): the home database.
    One that is not text is refused, as Neo4j refuses it, not read as none. As the caller wrote
    it: a call reads it in lower case (``Conversation._call``), a ``ROUTE`` answers with it as
    Neo4j does."""
    database = extra.get("db")
    if database is not None and not isinstance(database, str):
        raise Malformed("db must be a database name.")
    return database or None


def _timeout_s(extra: Mapping[str, Any]) -> float | None:
    """A ``BEGIN``'s or ``RUN``'s ``tx_timeout`` (milliseconds) in seconds; none, or 0, is
    none asked (the policy's time-out holds; a longer one asked never outlasts it)."""
    timeout = extra.get("tx_timeout")
    if timeout is not None and (
        not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0
    ):
        raise Malformed("tx_timeout must be a number of milliseconds.")
    return timeout / 1000 if timeout else None


def _bookmarks(extra: Mapping[str, Any]) -> tuple[str, ...]:
    bookmarks = extra.get("bookmarks") or []
    if not isinstance(bookmarks, list) or not all(isinstance(b, str) for b in bookmarks):
        raise Malformed("bookmarks must be a list of strings.")
    return tuple(bookmarks)


TOKEN_EXPIRED = "Neo.ClientError.Security.TokenExpired"  # noqa: S105 - a code, not a secret
# Refusals of a credential that verified once and has aged out since: an OIDC token past its
# expiry, an IAM proof signed longer ago than the proof's age limit. Both are TokenExpired, so a
# driver's auth manager fetches a fresh one instead of giving up.
_EXPIRED_REASONS = frozenset({"token_expired", "iam_request_stale"})


def failure_code(error: CypherGateError) -> str:
    """The code a ``FAILURE`` gives for ``error``."""
    if isinstance(error, AuthenticationFailed) and error.reason in _EXPIRED_REASONS:
        return TOKEN_EXPIRED
    return error.code
