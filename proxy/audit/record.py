"""The audit record and its hash chain.

Invariant, stated once and checked by :func:`verify_chain`:

* every record is a JSON object with ``v`` (format version, now 1), ``seq`` (1, 2, 3, ... with
  no gap) and ``prev_hash`` (the ``hash`` of record ``seq - 1``; for ``seq`` 1 the genesis value
  of 64 zeros), plus the fields of :class:`AuditEvent`;
* its canonical form is UTF-8 JSON with keys sorted, no insignificant white space, no floats and
  no NaN (so any implementation can reproduce it byte for byte);
* its ``hash`` is the lowercase hex SHA-256 of that canonical form.

A record of another ``v`` is a problem, not a pass: this verifier does not know what it means.

Altering, removing or reordering any record therefore breaks the chain at that record.
Hashes are compared with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

RECORD_VERSION = 1
GENESIS_HASH = "0" * 64

EventKind = Literal["decision", "outcome", "access", "transaction"]
EVENT_KINDS: tuple[EventKind, ...] = ("decision", "outcome", "access", "transaction")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What happened to one request, at one step. The log adds ``v``, ``seq`` and ``prev_hash``.

    A request leaves one ``decision`` event, written before anything runs. If it was allowed,
    its ``status`` is ``None`` (pending) and an ``outcome`` event follows once Neo4j answered.
    A refused request (authentication, bad input, policy) has its final ``status`` on the
    decision event and no outcome event. A read of the log through the reviewers' API leaves
    one ``access`` event.

    A statement run in an explicit transaction leaves the same records, each with
    ``transaction`` naming it (``id``, and on decision records the caller's ``metadata`` as
    context). The transaction's end leaves one ``transaction`` event of its own, written after
    Neo4j answered, like an outcome: ``transaction.action`` (``commit``, ``rollback``),
    ``transaction.cause`` (``client``, ``failure``, ``expired``, ``closed``) and
    ``transaction.statements``; its ``status`` is that of the commit or rollback. It carries no
    policy decision, and its verdict is ``none``.
    """

    event: EventKind
    time: str
    request_id: str
    client: str | None = None
    principal: dict[str, str | int | None] | None = None
    database: str | None = None
    statement: str | None = None
    statement_sha256: str | None = None
    query_type: str | None = None
    decision: dict[str, Any] | None = None
    access_mode: str | None = None
    status: int | None = None
    error: dict[str, str] | None = None
    rows: int | None = None
    latency_us: int | None = None
    # Parameter names with keyed digests of their values (see proxy.audit.checkpoint).
    parameters: dict[str, str | None] | None = None
    # The Neo4j credential the statement ran with: its user name, never its secret.
    credential: dict[str, str] | None = None
    # Neo4j's update counters, on outcome records.
    counters: dict[str, int | bool] | None = None
    # What the statement touches, from its plan (proxy.analysis), on decision records.
    analysis: dict[str, Any] | None = None
    # The accessMode the caller asked for (the policy input's request.access_mode).
    requested_access_mode: str | None = None
    # True on an outcome whose rows were cut at the policy's row limit.
    truncated: bool | None = None
    # The explicit transaction the statement ran in, or that this record ends.
    transaction: dict[str, Any] | None = None
    # True on an after-the-fact record (an outcome, a transaction's end) that the log could not
    # take when it happened and wrote later, once it could (see proxy.audit.sqlite). ``time`` is
    # still when it happened. Absent from the body when not set, so timely records keep the form
    # they always had.
    late: bool | None = None
    # True on an outcome whose status is a failure though its statement committed: it ran in a
    # transaction of its own that Neo4j had finished (its last row sent) before the answer
    # failed (a value with no JSON form, an answer too large); its counters say what it wrote.
    # "partial": a statement that commits in batches (CALL { ... } IN TRANSACTIONS) failed or
    # was left once sent, and the batches before stayed committed. Absent from the body when
    # not set (see ``late``).
    committed: bool | Literal["partial"] | None = None

    @property
    def dag(self) -> str | None:
        dag = self.principal.get("dag") if self.principal else None
        return dag if isinstance(dag, str) else None

    @property
    def verdict(self) -> str:
        """See :func:`verdict_of`."""
        return verdict_of(self.decision, event=self.event)


_EVENT_FIELDS = tuple(field.name for field in fields(AuditEvent))
# Fields added after records were first written: a body names them only when they are set, so
# records without them keep the form they always had.
_ABSENT_UNLESS_SET = ("late", "committed")


def verdict_of(decision: Mapping[str, Any] | None, *, event: object = "decision") -> str:
    """``allow`` when the policy allowed the request, otherwise ``deny``: a shadow-mode
    refusal (``shadow_denied``) is a ``deny``, though the statement ran, so reviewers find it.
    A ``transaction`` record (a commit or rollback) was no policy's to decide: ``none``."""
    if event == "transaction":
        return "none"
    if decision and decision.get("allow") is True and not decision.get("shadow_denied"):
        return "allow"
    return "deny"


def section(value: object) -> Mapping[str, Any]:
    """A record's section (``principal``, ``decision``...) as read back: an edited record's may
    be anything, and what shows or checks it must still say so rather than fail."""
    return value if isinstance(value, dict) else {}


def flat_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record with the reviewer's most asked fields lifted to the top level."""
    principal = section(record.get("principal"))
    decision = section(record.get("decision"))
    error = section(record.get("error"))
    return {
        **record,
        "dag": principal.get("dag"),
        "decision": verdict_of(decision, event=record.get("event")),
        "reasons": decision.get("reasons") or ([error["reason"]] if error.get("reason") else []),
        "decision_id": decision.get("decision_id"),
    }


def visible(text: str, keep: str = " ") -> str:
    """``text`` with every control and format character not in ``keep`` written as an escape
    (``\\x1b``, ``\\u202e``).

    Records hold what callers sent, and any identity can send a statement. What shows them to a
    reviewer (``audit query``, the reviewers' page) must show them as sent: an escape sequence
    could rewrite a terminal's screen, hide a line or set its title, and a bidirectional
    override or isolate (``\\u202e``, ``\\u2066``) reorders what is shown, so that a statement
    reads as another.
    """
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or char in keep else char.encode("unicode_escape").decode()
        for char in text
    )


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that a record is durable: its place and hash in the chain."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """A record as stored: its canonical body and the hash of that body."""

    seq: int
    body: str
    hash: str


def utc_timestamp(seconds: float) -> str:
    """RFC 3339 UTC with microseconds, as the audit log writes times."""
    t = datetime.fromtimestamp(seconds, UTC)
    # What strftime("%Y-%m-%dT%H:%M:%S.%fZ") writes, in half its time (every record has two).
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.microsecond,
    )


def elapsed_us(started: float, now: float) -> int:
    """Microseconds from ``started`` to ``now`` (clock seconds), as records' ``latency_us``."""
    return max(0, round((now - started) * 1_000_000))


def concluded(
    event: AuditEvent,
    *,
    started: float,
    now: float,
    status: int,
    error: dict[str, str] | None = None,
) -> AuditEvent:
    """``event`` as it ends: stamped ``now``, with its status, error and latency."""
    return replace(
        event,
        time=utc_timestamp(now),
        status=status,
        error=error,
        latency_us=elapsed_us(started, now),
    )


def statement_digest(statement: str) -> str:
    """SHA-256 of a statement's UTF-8 text."""
    return hashlib.sha256(statement.encode("utf-8")).hexdigest()


# One encoder for every record (json.dumps with options builds a new one per call).
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical(document: dict[str, Any]) -> str:
    """The canonical JSON form; see the module docstring."""
    return canonical_bytes(document).decode("utf-8")


def canonical_bytes(value: Any) -> bytes:
    """The canonical JSON form of any JSON value, as UTF-8 (a parameter's, say)."""
    return _canonical_bytes(value, floats=_holds_float(value))


# Dataclasses and datetimes, which orjson would write and the standard library refuses, are
# refused (passed to a default there is none of, then to the standard library).
_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def _canonical_bytes(document: Any, *, floats: bool) -> bytes:
    """The canonical form as UTF-8. orjson writes the standard library's bytes for everything it
    takes, in a twelfth of the time (0.9 against 11.9 µs for a record; tests/audit/test_record.py
    holds it to them on generated documents): two records per statement. What it writes
    otherwise (a float: its own text form, and NaN as null) or refuses (an integer beyond 64
    bits) goes to the standard library, whose errors (NaN, a lone surrogate) are the ones raised.
    """
    if not floats:
        try:
            return orjson.dumps(document, option=_ORJSON)
        except TypeError:
            pass  # the standard library has the last word: it writes, or raises, below
    return _CANONICAL.encode(document).encode("utf-8")


def digest(body: str) -> str:
    """Hex SHA-256 of a canonical body."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def seal(event: AuditEvent, *, seq: int, prev_hash: str) -> SealedRecord:
    """Give ``event`` its place in the chain."""
    # A shallow copy: the event's values are JSON documents already, which json.dumps reads
    # as they are, so the body is the one dataclasses.asdict's deep copy gave, at a twentieth
    # of the cost (that copy was most of the writer thread's CPU besides the commit).
    document = {name: getattr(event, name) for name in _EVENT_FIELDS}
    for name in _ABSENT_UNLESS_SET:
        if document[name] is None:
            del document[name]
    if _holds_float(document):
        raise ValueError("audit records hold no floats: their text form is not canonical")
    document.update(v=RECORD_VERSION, seq=seq, prev_hash=prev_hash)
    body = _canonical_bytes(document, floats=False)
    return SealedRecord(seq=seq, body=body.decode("utf-8"), hash=hashlib.sha256(body).hexdigest())


def _holds_float(value: object) -> bool:
    """Whether a float hides anywhere in ``value``, at any depth (a float's text form differs
    between implementations, so the body would not be canonical). A loop that passes over
    plain scalars first: it runs on every record, and a recursive walk cost as much as the
    encoding."""
    pending: list[object] = [value]
    while pending:
        item = pending.pop()
        if type(item) in _SCALARS:
            continue
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


_SCALARS = frozenset({str, int, bool, type(None)})


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first record at which a chain stops verifying, and why."""

    seq: int
    why: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.why}"


def verify_chain(records: Iterable[SealedRecord]) -> Iterator[int | ChainProblem]:
    """Check records in storage order; yields each good ``seq``, then a problem if one is found.

    Stops at the first problem, since everything after it is unverifiable.
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    for record in records:
        problem = check_link(record, expected_seq, prev_hash)
        if problem is not None:
            yield problem
            return
        yield record.seq
        expected_seq = record.seq + 1
        prev_hash = record.hash


def check_link(record: SealedRecord, expected_seq: int, prev_hash: str) -> ChainProblem | None:
    """What is wrong with ``record`` as link ``expected_seq`` after ``prev_hash``, if anything."""
    if record.seq != expected_seq:
        why = "missing" if record.seq > expected_seq else "out of order"
        return ChainProblem(expected_seq, f"{why} (found record {record.seq} in its place)")
    if not hmac.compare_digest(digest(record.body), record.hash):
        return ChainProblem(record.seq, "content does not match its hash (record altered)")
    try:
        document = json.loads(record.body)
    except ValueError:
        return ChainProblem(record.seq, "body is not JSON")
    if not isinstance(document, dict) or document.get("seq") != record.seq:
        return ChainProblem(record.seq, "sequence number in the body differs (records swapped)")
    version = document.get("v")
    if type(version) is not int or version != RECORD_VERSION:
        # A later format's fields may carry more than these checks cover: never an OK.
        return ChainProblem(
            record.seq,
            f"format version {version!r} is not one this verifier knows ({RECORD_VERSION}):"
            " not checked",
        )
    if not hmac.compare_digest(str(document.get("prev_hash", "")), prev_hash):
        return ChainProblem(
            record.seq, "does not link to the previous record (removed or reordered)"
        )
    return None
