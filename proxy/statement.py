"""What a statement is and what running it gives back: the words the wings share.

The policy constrains a statement (access mode, row limit), the request path asks for it to run,
and the Neo4j wing plans and runs it. Each of them imports these types from here, and this module
imports none of them, so none has to import another sideways or upwards.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

JSON = Any
AccessMode = Literal["READ", "WRITE"]
RowLimitAction = Literal["error", "truncate"]
# Neo4j's classification of a planned statement: read only, read and write, write, schema.
QueryType = Literal["r", "rw", "w", "s"]


@dataclass(frozen=True, slots=True)
class Plan:
    """Neo4j's ``EXPLAIN`` of one statement: its query type and its plan tree (nothing ran)."""

    query_type: QueryType
    # The driver's ``summary.plan``: operators with their ``args`` and ``children``.
    operators: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Execution:
    """One statement to run, with everything the decision constrained."""

    database: str
    statement: str
    parameters: Mapping[str, JSON]
    access_mode: AccessMode
    timeout_s: float
    # The gateway's keys (DAG, request, decision) over an auto-commit caller's own.
    metadata: Mapping[str, JSON]
    bookmarks: tuple[str, ...] = ()
    # At most this many rows come back; beyond it, fail (and roll back) or truncate.
    row_limit: int | None = None
    row_limit_action: RowLimitAction = "error"
    # ``CALL { ... } IN TRANSACTIONS``: its batches commit on their own, and Neo4j runs it only
    # in an auto-commit transaction.
    commits_in_batches: bool = False

    @property
    def rolled_back_past_limit(self) -> bool:
        """Whether it runs in an explicit transaction, rolled back if its rows go past the
        limit: a write under a limit that must fail, unless it commits in batches (nothing
        rolls those back whole, and Neo4j refuses to start one in an explicit transaction)."""
        return (
            self.row_limit is not None
            and self.row_limit_action == "error"
            and self.access_mode == "WRITE"
            and not self.commits_in_batches
        )


@dataclass(frozen=True, slots=True)
class Opening:
    """An explicit transaction to begin: what its first statement's decision constrained.

    ``metadata`` is the transaction's (Neo4j keeps one map per transaction, shown by
    ``SHOW TRANSACTIONS``); the statements run in it later carry none of their own.
    """

    database: str
    access_mode: AccessMode
    timeout_s: float
    metadata: Mapping[str, JSON]
    bookmarks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Summary:
    """What is known once a statement's rows have all been read."""

    rows: int
    counters: Mapping[str, int | bool]
    bookmarks: list[str]
    # Rows were cut at the decision's row limit (row_limit_action "truncate").
    truncated: bool = False
    # What Neo4j says the statement did (None where it did not say).
    query_type: QueryType | None = None
    # The plan Neo4j answered a caller's own EXPLAIN with (operators, args, children).
    plan: Mapping[str, Any] | None = None
    # Neo4j's notifications (deprecations, performance hints), as Neo4j gives them.
    notifications: tuple[Mapping[str, Any], ...] = ()


class RowStream(Protocol):
    """A running statement's answer: its field names, its rows as Neo4j produces them, then its
    summary.

    Contract: iterate once; rows stop at the row limit (``truncate``) or raise
    :class:`~proxy.errors.RowLimitExceeded` one row past it (``error``), so never more than the
    limit is held. ``summary()`` reads whatever rows are left, finishes the statement (commits
    what ran in a transaction of its own) and is then answered again without more work. Errors
    are the gateway's own.
    """

    @property
    def fields(self) -> list[str]: ...

    def __aiter__(self) -> AsyncIterator[list[JSON]]: ...

    async def summary(self) -> Summary: ...

    def committed(self) -> Summary | None:
        """Asked once the block ended in an error: the summary if the statement committed all
        the same (it ran in a transaction of its own and Neo4j had already sent its last row),
        so that the record tells what ran; None if it rolled back or cannot be told."""
        ...


@runtime_checkable
class RecordStream(RowStream, Protocol):
    """A :class:`RowStream` that also hands its records out as the Bolt ``RECORD`` messages
    Neo4j sent (packed, unframed), for a front door that forwards them without decoding.
    Iterate either the rows or the records, once."""

    def records(self) -> AsyncIterator[bytes]: ...


# SHOW CONSTRAINTS' ``type`` of those that compare an entity with others
# (:mod:`proxy.plan.constraints` says what a write reads through them).
COMPARING_CONSTRAINTS = ("UNIQUENESS", "NODE_KEY", "RELATIONSHIP_UNIQUENESS", "RELATIONSHIP_KEY")


@dataclass(frozen=True, slots=True)
class Constraint:
    """One constraint that compares: on nodes of ``name`` (a label) or relationships of ``name``
    (a type), over ``properties``."""

    entity: Literal["NODE", "RELATIONSHIP"]
    name: str
    properties: frozenset[str]


def reason_shown(reason: str) -> str:
    """A refusal reason as it may leave the audit log, in a span, a lineage event or a log line.

    The policy names what it refused, a ``LOAD CSV`` source among them
    (``load_csv_not_granted:<source>``), and a source's URL may hold a credential: a user and
    password, or a pre-signed URL's signature and token in its query. Such a URL keeps its
    scheme, host, port and path; its user, password, query and fragment are cut. The source is
    the caller's text, not a URL that parses: all before its last ``@`` is taken for a user and
    password (one may hold a ``/``, ``?`` or ``#``), all from its first ``?`` or ``#`` after
    that for a query. The caller's own answer and the audit record keep the reason as the policy
    gave it (a URL's password hidden before the policy sees it:
    ``proxy.plan.text.without_url_passwords``)."""
    kind, _, detail = reason.partition(":")
    if kind != "load_csv_not_granted" or not any(mark in detail for mark in "@?#"):
        return reason  # a label, type or procedure with an "@" in its name is named whole
    scheme = _SCHEME.match(detail)
    prefix = scheme.group() if scheme else ""
    rest = detail[len(prefix) :].rpartition("@")[2]
    return f"{kind}:{prefix}{_QUERY.split(rest, maxsplit=1)[0]}"


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_QUERY = re.compile(r"[?#]")
