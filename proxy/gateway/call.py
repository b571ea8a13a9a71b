"""What a front door hands the request path: one call, and the statement it carries."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.errors import BadRequest
from proxy.ids import time_ordered_uuid
from proxy.logs import bind_request_id
from proxy.statement import JSON, AccessMode
from proxy.tracing import OFF, RequestTrace

# Neo4j's Query API answers a successful statement with 202 Accepted; the audit record of a
# statement that ran says so too, whichever front door it came through.
SUCCESS_STATUS = 202
# The parameters one statement may carry, at most. The decision record keeps a keyed digest of
# each (about 80 bytes) and OPA's input (and decision log) each name, so parameters of a few
# bytes apiece made records 20 times the size of the request: a Bolt RUN of 16 MiB made a
# record of hundreds of megabytes. A statement with more is refused (400, too_many_parameters).
MAX_PARAMETERS = 1000
# The characters of one statement's text, at most. The gateway reads the text itself before it
# is decided (its password literals hidden, EXPLAIN and LOAD CSV sources found), about 3 s and
# 80 MB of the event loop's time and memory per MiB of tokens, and Bolt takes messages of
# 16 MiB (for parameters): one such statement held every other request back for a minute.
# Values belong in parameters; a longer text is refused (400, statement_too_long).
MAX_STATEMENT_CHARACTERS = 128 * 1024


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement as the caller sent it."""

    text: str
    parameters: Mapping[str, Any]
    # The access mode the caller asked for (the policy input's request.access_mode).
    access_mode: AccessMode | None = None
    bookmarks: tuple[str, ...] = ()
    # The caller's transaction metadata (a Bolt RUN's tx_metadata): passed on to Neo4j under
    # the gateway's own keys (:func:`passed_on`) and recorded as context (:func:`recorded_context`).
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # The caller's own time-out (a Bolt RUN's tx_timeout), if any: the shorter of it and the
    # decision's holds.
    timeout_s: float | None = None


def check_size(statement: Statement) -> None:
    """Refuse a statement larger than the request path reads: :data:`MAX_STATEMENT_CHARACTERS`,
    :data:`MAX_PARAMETERS`."""
    if len(statement.text) > MAX_STATEMENT_CHARACTERS:
        raise BadRequest(
            f"A statement's text takes at most {MAX_STATEMENT_CHARACTERS} characters: pass"
            " values as parameters.",
            reason="statement_too_long",
        )
    if len(statement.parameters) > MAX_PARAMETERS:
        raise BadRequest(
            f"A statement takes at most {MAX_PARAMETERS} parameters: pass many values as one"
            " list or map.",
            reason="too_many_parameters",
        )


@dataclass(frozen=True, slots=True)
class Call:
    """One call on the request path, as a front door translates it.

    ``headers`` are the request's context headers (``X-CypherGate-DAG``, ``-Task``, ``-Run``,
    ``-Try``, lower-case names). ``statement`` gives the statement: the request path asks for it
    only once the caller is identified, so a front door may read and parse its body then (and
    refuse it with a :class:`~proxy.errors.CypherGateError`, recorded like any refusal).
    ``trace`` is the span of the request the call belongs to (:mod:`proxy.tracing`; the shared
    no-op one when tracing is off): the request path adds its steps and verdict to it.
    """

    request_id: str
    database: str
    authorization: str | None = field(repr=False)  # a credential: never in a repr or a log
    client: str | None
    headers: Mapping[str, str]
    statement: Callable[[], Awaitable[Statement]]
    trace: RequestTrace = OFF
    # Whose admission share it counts against (proxy/gateway/admission.py), if the front door
    # knows its caller before verifying it again: a Bolt connection's identity, from its LOGON
    # (method, issuer, subject). None over HTTP: the slot counts against the caller's share
    # once verified (proxy/gateway/slot.py).
    owner: tuple[str, str, str] | None = None
    # How the door names where each context value came from, in a refusal of it (a header's
    # name when absent): Bolt's come from the login principal (proxy.bolt.messages).
    context_names: Mapping[str, str] = field(default_factory=dict)


def database_name(name: str) -> str:
    """A database as Neo4j names it: case-insensitive, so in lower case (Neo4j lower-cases a
    name with ``toLowerCase(Locale.ROOT)``, as ``str.lower`` does). A front door reads a call's
    database through this, once, so that the policy, the audit record and Neo4j see one name:
    ``NEO4J`` is decided as ``neo4j``, never as a database the policy does not know."""
    return name.lower()


def new_request_id() -> str:
    """A fresh request id, bound to the current context: log lines from here on name it."""
    request_id = time_ordered_uuid()
    bind_request_id(request_id)
    return request_id


# The keys of Neo4j's transaction metadata that only the gateway sets (traceparent: its span
# of the request, when tracing is on).
GATEWAY_METADATA_KEYS = frozenset(
    {
        "dag_id",
        "task_id",
        "run_id",
        "try_number",
        "request_id",
        "decision_id",
        "transaction_id",
        "traceparent",
    }
)
_FOLDED_GATEWAY_KEYS = {key.casefold(): key for key in GATEWAY_METADATA_KEYS}


def imitated_key(key: str) -> str | None:
    """The gateway's metadata key that the caller's ``key`` reads as, though not it exactly
    (``DAG_ID``, ``dag_id`` with a zero-width space, in full-width letters), or None.

    Compared after NFKC normalisation, case folding and with format characters (category Cf:
    zero-width, soft hyphen, bidi marks) removed: a reader of Neo4j's SHOW TRANSACTIONS cannot
    tell such a key from the gateway's own, so the caller's is refused rather than passed on
    beside it. The gateway's keys exactly are not imitations: :func:`passed_on` drops them."""
    if key in GATEWAY_METADATA_KEYS:
        return None
    if key.isascii():  # no format character, and NFKC leaves it as it is
        return _FOLDED_GATEWAY_KEYS.get(key.lower())
    kept = "".join(c for c in unicodedata.normalize("NFKC", key) if unicodedata.category(c) != "Cf")
    return _FOLDED_GATEWAY_KEYS.get(unicodedata.normalize("NFKC", kept.casefold()))


# How much of the caller's metadata an audit record keeps: entries, and characters of each.
CONTEXT_ENTRIES = 32
CONTEXT_CHARACTERS = 256


def passed_on(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's transaction metadata as Neo4j gets it: all but the gateway's own keys, which
    the gateway sets after it (a caller never names the DAG, request or decision)."""
    return {key: value for key, value in metadata.items() if key not in GATEWAY_METADATA_KEYS}


def recorded_context(metadata: Mapping[str, Any]) -> dict[str, JSON]:
    """The caller's metadata as an audit record keeps it: context only, bounded (the first
    :data:`CONTEXT_ENTRIES` entries, texts cut at :data:`CONTEXT_CHARACTERS` characters), and in
    the record's canonical form (no floats: anything but text, whole numbers, booleans and null
    is kept as its JSON text)."""
    kept: dict[str, JSON] = {}
    for key, value in list(metadata.items())[:CONTEXT_ENTRIES]:
        if value is None or isinstance(value, bool | int):
            kept[str(key)[:CONTEXT_CHARACTERS]] = value
        else:
            text = (
                value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
            )
            kept[str(key)[:CONTEXT_CHARACTERS]] = text[:CONTEXT_CHARACTERS]
    return kept
