"""The Protocols the use cases take their collaborators through, each as narrow as its use.

``proxy/app/`` hands in the real ones (``SchemeRouter``, ``Analyzer``, ``OPAPolicyEngine``,
the Neo4j wing's broker and executor, ``SQLiteAuditLog``, ``AuditLogReading``); tests hand in
the fakes of ``tests/fakes.py``, which mypy checks against these.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proxy.analysis import Analysis
from proxy.audit.checkpoint import Checkpoint
from proxy.audit.reader import RecordFilter
from proxy.audit.record import AuditEvent, ChainProblem, Receipt
from proxy.neo4j.logins import Login
from proxy.policy import AccessDecision, Decision, Preflight
from proxy.principal import Identity
from proxy.statement import Execution, Opening, RowStream
from proxy.tracing import OFF, Step


class CallerAuthenticator(Protocol):
    """Verifies a call's ``Authorization`` value.

    Contract: return an :class:`Identity` only for a credential that verified completely;
    raise :class:`~proxy.errors.AuthenticationFailed` (with a reason for the audit log) for
    anything else, a missing credential included. Never log or echo the credential.
    """

    async def authenticate(self, authorization: str | None) -> Identity: ...


class StatementAnalyzer(Protocol):
    """What a statement does, as Neo4j plans it (see :mod:`proxy.analysis`).

    Contract: never runs the statement; raises the gateway's errors as running it would.
    """

    async def analyse(self, database: str, statement: str, step: Step = OFF) -> Analysis:
        """``step``: the request's analysis span, told whether the analysis was cached."""
        ...

    def schema_changed(self) -> None:
        """A schema statement has ended (or its transaction has): no analysis made before now
        may be used after it."""
        ...


class PolicyDecider(Protocol):
    """Decides on a policy input document.

    Contract: return a :class:`Decision` (or :class:`Preflight`) for a well-formed answer (allow
    or deny); raise :class:`~proxy.errors.PolicyUnavailable` for anything else. Never allow by
    default.
    """

    async def preflight(self, document: dict[str, Any]) -> Preflight:
        """May the DAG use the database at all, before anything is planned?"""
        ...

    async def decide(self, document: dict[str, Any]) -> Decision: ...


class CredentialBroker(Protocol):
    """Hands out the Neo4j credential a DAG's statements run as.

    Contract: ``hold(dag)`` yields the login, held (never dropped or rotated away) until the
    block ends; a credential that cannot be had raises the gateway's error and runs nothing.
    """

    def hold(self, dag: str) -> AbstractAsyncContextManager[Login]: ...


class StatementExecutor(Protocol):
    """Runs a decided statement on Neo4j as the login it is handed.

    Contract: runs it at most once, in a transaction of the execution's access mode, with its
    timeout, metadata and row limit; its rows stream inside the block. Errors are the gateway's
    own (4xx for the caller's mistakes, 5xx for Neo4j trouble).
    """

    def run(self, execution: Execution, login: Login) -> AbstractAsyncContextManager[RowStream]: ...


class UpstreamTransaction(Protocol):
    """An explicit transaction open on Neo4j, as one DAG's login (see :mod:`.transactions`).

    Contract: statements run one at a time, each inside its block, with the transaction's
    metadata and timeout; after a failed statement Neo4j has rolled it back. ``commit`` gives
    the bookmarks of what it committed; ``rollback`` has nothing to do once Neo4j has rolled
    back; ``close`` gives back what it holds, rolling back if still open, and never raises.
    """

    def run(self, execution: Execution) -> AbstractAsyncContextManager[RowStream]: ...

    async def commit(self) -> list[str]: ...

    async def rollback(self) -> None: ...

    async def close(self) -> None: ...


class TransactionStarter(Protocol):
    """Begins explicit transactions on Neo4j.

    Contract: ``begin`` has Neo4j begin the transaction as ``login`` with the opening's access
    mode, timeout, metadata and bookmarks, and runs nothing; a refusal is the gateway's error.
    """

    async def begin(self, opening: Opening, login: Login) -> UpstreamTransaction: ...


class GraphExecutor(StatementExecutor, TransactionStarter, Protocol):
    """What the request path runs statements with: auto-commit, or in explicit transactions."""


class AuditLog(Protocol):
    """Where audit events go.

    Contract: ``append`` returns only once the event is durable and chained; if it cannot be
    written it raises :class:`~proxy.errors.AuditUnavailable`, and the caller must not run the
    statement. ``append_after`` takes an event about what already happened (an outcome, a
    transaction's end): it never raises, and an event it cannot write now it keeps and writes,
    marked ``late``, once it can (``None`` then, instead of the receipt).
    """

    async def append(self, event: AuditEvent) -> Receipt: ...

    async def append_after(self, event: AuditEvent) -> Receipt | None: ...


class LineageSink(Protocol):
    """Where the request path reports each statement it ended, for lineage (see
    :mod:`proxy.lineage_events`).

    Contract: ``ended`` takes the statement's last audit record, once written, and the call's
    context headers; it never blocks and never raises (what it cannot take, it drops and
    counts): lineage never holds up or fails a request.
    """

    def ended(self, record: AuditEvent, headers: Mapping[str, str]) -> None: ...


class AuditAccessPolicy(Protocol):
    """May an identity read the audit log? Deny unless the policy says so; raise
    :class:`~proxy.errors.PolicyUnavailable` when it cannot be asked."""

    async def authorize_audit_read(self, identity: Identity) -> AccessDecision: ...


class AuditReading(Protocol):
    """The audit log's reads a reviewer needs, from the event loop, chain by chain.

    Contract: read-only; each call sees the log as it is when the call runs. A replica keeps a
    chain per worker: ``chain`` names one of :meth:`chains` (``None``: the first); an unknown
    one raises :class:`~proxy.errors.AuditChainNotFound`.
    """

    async def chains(self) -> list[str]: ...

    async def query(self, flt: RecordFilter, chain: str | None = None) -> list[dict[str, Any]]: ...

    async def proof(self, seq: int, chain: str | None = None) -> dict[str, Any] | None: ...

    async def record(self, seq: int, chain: str | None = None) -> dict[str, Any] | None:
        """Record ``seq`` with the other records of its request (``related``) and whether a
        checkpoint seals it (``sealed``); ``None`` if there is no such record."""
        ...

    async def head(
        self, chain: str | None = None
    ) -> tuple[tuple[int, str] | None, list[Checkpoint]]:
        """``(seq, hash)`` of the newest record (``None`` for an empty log), and every
        checkpoint, oldest first."""
        ...

    async def verify(
        self,
        public_key: Ed25519PublicKey | None,
        chain: str | None = None,
        *,
        sealed_before: str | None = None,
    ) -> tuple[int, ChainProblem | None]:
        """How many records verified, and the first problem if any (the checks of
        :meth:`~proxy.audit.reader.AuditReader.verify`, the chain's own id included)."""
        ...

    async def denials_by_dag(
        self, since: str, chain: str | None = None
    ) -> dict[str | None, dict[str, int]]: ...
