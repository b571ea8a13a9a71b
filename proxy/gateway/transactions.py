"""An explicit transaction on the request path, whichever front door holds it open.

A front door begins one with :meth:`Gateway.begin <proxy.gateway.path.Gateway.begin>` (nothing
opens on Neo4j yet), runs each statement in it with ``Gateway.run(call, transaction=...)``, and
ends it with :meth:`Transaction.commit` or :meth:`Transaction.rollback`. Every statement in it
is authenticated, resolved to its DAG, analysed, decided and recorded on its own, in order,
before it runs, exactly as an auto-commit statement is; what the transaction adds:

- **The first statement opens it.** Once the first statement is decided, the transaction holds
  its DAG's Neo4j credential (``CredentialBroker.hold``: a leased user is neither dropped nor
  replaced meanwhile) and begins the Neo4j transaction as that login. Both are held until the
  transaction ends.
- **One caller, one DAG.** A later statement whose caller is another identity, or resolves to
  another DAG, is refused (403); so is a request to it that runs no statement (a keep-alive, a
  commit, a rollback: ``Gateway.admit(call, identity, transaction)``), and either refusal
  ends it, as a refused statement does.
- **Access mode.** The Neo4j transaction is begun READ if the caller asked for READ, or if no
  statement of the DAG may write on the database (the policy's preflight says ``writes``:
  false); otherwise WRITE, even when the first statement only reads, because a caller that did
  not ask for READ may write next and Neo4j cannot change a transaction's mode. A later
  statement that writes in a READ transaction is refused (``Neo.ClientError.Statement.AccessMode``)
  before it runs, as is one whose decision says READ (its ``access_mode`` constraint, which an
  auto-commit statement runs under); a DAG's read-only grant is still the policy's to enforce,
  statement by statement. ``CALL { ... } IN TRANSACTIONS``, which Neo4j runs only auto-commit,
  is refused before it runs too (400, the caller's error, not Neo4j's database error).
- **A failure ends it.** A statement refused or failed (by the policy, by Neo4j, by a row limit,
  by a lost audit log) marks the transaction failed and rolls it back on Neo4j, as Neo4j itself
  does; what follows gets :class:`~proxy.errors.TransactionNotFound`, and ``rollback`` has
  nothing left to do. A statement refused as not this transaction's (a transaction already
  ended, another database) changes nothing.
- **Metadata.** Neo4j keeps one metadata map per transaction, set when it begins, so the
  gateway's keys (:data:`~proxy.gateway.call.GATEWAY_METADATA_KEYS`) name the DAG, task, run
  and try number, the request and decision ids *of the first statement*, and
  ``transaction_id``, the id every audit record of the transaction carries: ``SHOW
  TRANSACTIONS`` joins the transaction, and through its records each statement, to the audit
  log. The caller's metadata rides along but can never set one of those keys; the audit records
  keep it (bounded) as context.
- **Timeout.** Neo4j's transaction timeout runs from the begin, over every statement: the
  smaller of the caller's and the first decision's (or the gateway's default).
- **Records.** Each statement leaves its decision and outcome records, with ``transaction``
  naming the transaction. The end (commit; rollback by the caller, after a failure, on expiry,
  or at shutdown) leaves one ``transaction`` record of its own, written once Neo4j answered,
  like an outcome: a commit was preceded by the durable decisions of everything it commits, and
  a lost record is logged rather than turned into a failure that would invite a second commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from proxy.analysis import Analysis
from proxy.audit.record import AuditEvent, elapsed_us, utc_timestamp
from proxy.clock import Clock
from proxy.errors import (
    BatchesInTransaction,
    ClientEnded,
    CypherGateError,
    DagNotPermitted,
    TransactionAccessMode,
    TransactionNotFound,
    TransactionTimedOut,
)
from proxy.gateway.call import (
    SUCCESS_STATUS,
    Call,
    new_request_id,
    passed_on,
    recorded_context,
)
from proxy.gateway.seams import AuditLog, CredentialBroker, TransactionStarter, UpstreamTransaction
from proxy.metrics import Metrics
from proxy.principal import Principal
from proxy.statement import AccessMode, Opening

log = logging.getLogger(__name__)

EndAction = Literal["commit", "rollback"]
# Who ended it: the caller, a failed or refused statement, its time-out (the front door's idle
# one, or Neo4j's, at its deadline), or the gateway shutting down.
EndCause = Literal["client", "failure", "expired", "closed"]
_State = Literal["open", "committed", "rolled_back", "failed"]


def neo4j_metadata(
    principal: Principal, request_id: str, decision_id: str, traceparent: str | None = None
) -> dict[str, str | int]:
    """Transaction metadata: joins Neo4j's SHOW TRANSACTIONS (and query.log) to the audit log,
    and, when tracing is on, to the trace (``traceparent``: the gateway's span of the request)."""
    metadata: dict[str, str | int | None] = {
        "dag_id": principal.dag,
        "task_id": principal.task,
        "run_id": principal.run,
        "try_number": principal.try_number,
        "request_id": request_id,
        "decision_id": decision_id,
        "traceparent": traceparent,
    }
    return {key: value for key, value in metadata.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a decided statement of the transaction runs: the Neo4j transaction, its user and
    access mode."""

    upstream: UpstreamTransaction
    user: str
    access_mode: AccessMode


class Transaction:
    """An explicit transaction (see the module docstring); made by ``Gateway.begin``."""

    def __init__(
        self,
        *,
        database: str,
        access_mode: AccessMode | None,
        bookmarks: tuple[str, ...],
        metadata: Mapping[str, Any],
        timeout_s: float | None,
        credentials: CredentialBroker,
        starter: TransactionStarter,
        audit: AuditLog,
        clock: Clock,
        metrics: Metrics,
        schema_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.id = str(uuid.uuid4())
        self.database = database
        self._requested: AccessMode | None = access_mode
        self._bookmarks = tuple(bookmarks)
        self._metadata = passed_on(metadata)
        self._context = recorded_context(metadata)
        self._timeout_s = timeout_s
        self._credentials = credentials
        self._starter = starter
        self._audit = audit
        self._clock = clock
        self._metrics = metrics
        self._turn = asyncio.Lock()  # statements, commit and rollback one at a time
        self._state: _State = "open"
        self._principal: Principal | None = None
        self._client: str | None = None
        self._held = contextlib.AsyncExitStack()  # the credential and the Neo4j transaction
        self._placement: Placement | None = None
        self._statements = 0
        self._deadline: float | None = None  # when Neo4j's timeout for it runs out
        # Told when it ends if a schema statement ran in it (see Analyzer.schema_changed).
        self._schema_changed = schema_changed
        self._ran_schema = False

    @property
    def open(self) -> bool:
        """Statements may run in it and it may be committed."""
        return self._state == "open"

    @property
    def failed(self) -> bool:
        """A statement failed or was refused, and the transaction was rolled back."""
        return self._state == "failed"

    @property
    def deadline(self) -> float | None:
        """When Neo4j's timeout for it runs out (its clock's time), once begun there: Neo4j ends
        it then, so a front door that holds it between requests lets it go by then too."""
        return self._deadline

    def remaining_s(self) -> float | None:
        """Seconds left until :attr:`deadline` (none once it passed), if begun on Neo4j."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock())

    @property
    def requested_access_mode(self) -> AccessMode | None:
        """The access mode the caller asked for when it began the transaction."""
        return self._requested

    def context(self) -> dict[str, Any]:
        """The transaction as a statement's records name it."""
        document: dict[str, Any] = {"id": self.id}
        if self._context:
            document["metadata"] = self._context
        return document

    # ------------------------------------------------------------------ for the request path

    @contextlib.asynccontextmanager
    async def statement(self, request_id: str) -> AsyncIterator[None]:
        """One statement's turn (statements, commit and rollback take turns in arrival order).
        A failure inside, already recorded by the statement's trail, ends the transaction: it
        is rolled back and the rollback recorded under the statement's request id."""
        async with self._turn:
            try:
                yield
            except TransactionNotFound:
                raise  # not this transaction's statement: nothing changes
            except BaseException as exc:
                if self._state == "open":  # by the client (a Bolt RESET, say), or a failure
                    await self._end("rollback", _cause(exc), request_id)
                raise

    def admit(self, principal: Principal, call: Call) -> None:
        """May this caller's statement (or request without one) run here? The first
        statement's caller and DAG are the transaction's; raise unless this one's are the same."""
        if self._state != "open":
            raise TransactionNotFound(reason=f"transaction_{self._state}")
        if call.database != self.database:
            raise TransactionNotFound(reason="transaction_of_another_database")
        first = self._principal
        if first is None:
            self._principal, self._client = principal, call.client
            return
        if _caller(first) != _caller(principal):
            raise DagNotPermitted(
                "A transaction runs for the identity that began it.",
                reason="transaction_identity_changed",
            )
        if principal.dag != first.dag:
            raise DagNotPermitted(
                f"This transaction acts as DAG {first.dag}: every statement of a transaction "
                "acts as the DAG of its first.",
                reason="transaction_dag_changed",
            )

    async def place(
        self,
        principal: Principal,
        analysis: Analysis,
        *,
        read_only: bool,
        may_write: bool,
        metadata: Mapping[str, str | int],
        timeout_s: float,
    ) -> Placement:
        """Where the decided statement (of ``analysis``) runs. For the first, the transaction
        holds the DAG's credential and begins on Neo4j (access mode and timeout as the module
        docstring says, ``metadata`` the gateway's for this statement); a statement that writes
        in a READ transaction is refused, and so is one whose decision said it runs READ
        (``read_only``: auto-commit, it would run in a READ transaction, where Neo4j refuses a
        write); so is one that commits in batches of its own (``CALL { ... } IN
        TRANSACTIONS``), which Neo4j runs only auto-commit. ``may_write``: whether any statement
        of the DAG may write (the policy's preflight), or the transaction begins READ. A schema
        statement's effect comes with the commit (the analyses are told when the transaction
        ends)."""
        if analysis.commits_in_batches:
            raise BatchesInTransaction(reason="batches_in_transaction")
        writes = not analysis.is_read_only
        placement = self._placement
        mode = placement.access_mode if placement else self._opening_mode(may_write)
        if writes and mode == "READ":
            raise TransactionAccessMode(reason="transaction_read_only")
        if writes and read_only:
            raise TransactionAccessMode(
                "The policy allows this statement in READ mode only, and it writes.",
                reason="decision_read_only",
            )
        if placement is None:
            opening = Opening(
                database=self.database,
                access_mode=mode,
                timeout_s=min(t for t in (self._timeout_s, timeout_s) if t is not None and t > 0),
                metadata={**self._metadata, **metadata, "transaction_id": self.id},
                bookmarks=self._bookmarks,
            )
            # The credential's block sees a failed BEGIN (a leased user Neo4j refused is
            # retired at once, as for an auto-commit statement); once begun, the transaction
            # holds it until it ends.
            async with contextlib.AsyncExitStack() as beginning:
                login = await beginning.enter_async_context(self._credentials.hold(principal.dag))
                upstream = await self._starter.begin(opening, login)
                beginning.push_async_callback(upstream.close)
                self._held.push_async_exit(beginning.pop_all())
            self._deadline = self._clock() + opening.timeout_s
            placement = self._placement = Placement(upstream, login.user, mode)
        self._statements += 1
        self._ran_schema = self._ran_schema or analysis.query_type == "s"
        return placement

    def _opening_mode(self, may_write: bool) -> AccessMode:
        """Not the first statement's own mode: a transaction that reads first may write next,
        and Neo4j cannot change its mode."""
        return "WRITE" if may_write and self._requested != "READ" else "READ"

    # ------------------------------------------------------------------ the end

    async def commit(self, *, request_id: str | None = None) -> list[str]:
        """Commit what ran in it; the bookmarks of the commit (none if nothing ran).

        Raises :class:`TransactionNotFound` if it is not open, and the gateway's error if Neo4j
        refused the commit (then it is rolled back). ``request_id``: the front door's request
        that asked, named by the record (a fresh id by default).
        """
        async with self._turn:
            if self._state != "open":
                raise TransactionNotFound(reason=f"transaction_{self._state}")
            return await self._end("commit", "client", request_id)

    async def rollback(self, *, request_id: str | None = None, cause: EndCause = "client") -> bool:
        """Roll back; whether it did (nothing to do if it has already ended, committed say, by
        a request before this one's turn). Neo4j trouble while rolling back is recorded, not
        raised: the transaction is gone either way."""
        async with self._turn:
            if self._state != "open":
                return False
            await self._end("rollback", cause, request_id)
            return True

    def opened_by(self, principal: Principal, client: str | None) -> None:
        """The caller that began it, known before any statement (the Query API resolves it when
        the transaction opens): its statements must be that caller's, and its end record names
        it even if none ran."""
        if self._principal is None:
            self._principal, self._client = principal, client

    async def _end(self, action: EndAction, cause: EndCause, request_id: str | None) -> list[str]:
        """End it on Neo4j, give back what it holds, and record how it ended."""
        started = self._clock()
        error: CypherGateError | None = None
        bookmarks: list[str] = []
        try:
            if self._placement is not None:
                upstream = self._placement.upstream
                if action == "commit":
                    bookmarks = await upstream.commit()
                else:
                    await upstream.rollback()
        except CypherGateError as caught:
            error = caught
        except Exception as exc:
            log.exception("transaction %s failed to %s", self.id, action)
            error = CypherGateError(reason=f"internal:{type(exc).__name__}")
        if action == "commit" and error is None:
            self._state = "committed"
        elif cause == "failure" or action == "commit":
            self._state = "failed"
        else:
            self._state = "rolled_back"
        if self._ran_schema:
            self._schema_changed()
        try:
            await self._held.aclose()
        except Exception:
            log.exception("transaction %s could not give back what it held", self.id)
        await self._record(action, cause, request_id, started, error)
        if error is not None and action == "commit":
            raise error
        return bookmarks

    async def _record(
        self,
        action: EndAction,
        cause: EndCause,
        request_id: str | None,
        started: float,
        error: CypherGateError | None,
    ) -> None:
        now = self._clock()
        placement = self._placement
        ended: dict[str, Any] = {
            "id": self.id,
            "action": action,
            "cause": cause,
            "statements": self._statements,
        }
        if self._context:
            ended["metadata"] = self._context
        event = AuditEvent(
            event="transaction",
            time=utc_timestamp(now),
            request_id=request_id or new_request_id(),
            client=self._client,
            principal=None if self._principal is None else self._principal.as_document(),
            database=self.database,
            access_mode=None if placement is None else placement.access_mode,
            status=SUCCESS_STATUS if error is None else error.status,
            error=None if error is None else error.as_document(),
            latency_us=elapsed_us(started, now),
            credential=None if placement is None else {"user": placement.user},
            requested_access_mode=self._requested,
            transaction=ended,
        )
        self._metrics.transactions.labels(action, cause).inc()
        if await self._audit.append_after(event) is None:  # kept, to be written late
            self._metrics.audit_failures.labels("transaction").inc()
            log.error("the %s record of transaction %s not written in time", action, self.id)


def _cause(exc: BaseException) -> EndCause:
    """Who ended a transaction whose statement ended in ``exc``."""
    if isinstance(exc, ClientEnded):
        return exc.cause
    return "expired" if isinstance(exc, TransactionTimedOut) else "failure"


def _caller(principal: Principal) -> tuple[str, str, str]:
    identity = principal.identity
    return identity.method, identity.issuer, identity.subject
