"""The one error hierarchy of CypherGate.

Every error a client can see is a :class:`CypherGateError`. The HTTP status and the
Neo4j-style error code live on the class; the message is what the client reads, and it must
never contain a token, a secret, the policy input or Neo4j internals. ``reason`` is a short,
stable word for the audit log and the server's own logs; it is not sent to the client.

Third-party exceptions are translated into these once, in the module that calls the library.
"""

from __future__ import annotations

from typing import Literal


class CypherGateError(Exception):
    """Base class: an error with an HTTP status and a Neo4j-style code."""

    status: int = 500
    code: str = "Neo.DatabaseError.General.UnknownError"
    default_message: str = "The gateway failed to handle the request."
    # Seconds a client should wait before trying again (HTTP ``Retry-After``); None: no advice.
    retry_after_s: int | None = None

    def __init__(self, message: str | None = None, *, reason: str | None = None) -> None:
        self.message = message or self.default_message
        self.reason = reason or type(self).__name__
        super().__init__(self.message)

    def as_document(self) -> dict[str, str]:
        """The error as the audit record shows it: its code and the internal reason."""
        return {"code": self.code, "reason": self.reason}


class BadRequest(CypherGateError):
    """The request body is not a valid Query API request."""

    status = 400
    code = "Neo.ClientError.Request.Invalid"
    default_message = "The request is not a valid Query API request."


class AnswerNotWritable(CypherGateError):
    """A value of the statement's result has no form in the Query API's JSON (a date-time in a
    named zone outside the years 1 to 9999, which the zone rules cannot place)."""

    status = 500
    code = "Neo.DatabaseError.Statement.ExecutionFailed"
    default_message = (
        "A value in the statement's result cannot be written as Query API JSON (a zoned"
        " date-time outside the years 1 to 9999): return it as a string, or read it over Bolt."
    )


class RowLimitExceeded(CypherGateError):
    """The statement returned more rows than the decision's row limit (and nothing committed)."""

    status = 400
    code = "Neo.ClientError.Statement.RowLimitExceeded"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The statement returned more than {limit} rows, the limit the policy sets for this "
            "DAG (a list in a row counts as many rows as it holds); nothing it wrote was kept.",
            reason=f"row_limit_exceeded:{limit}",
        )


class PayloadTooLarge(CypherGateError):
    """The request body is larger than the configured limit."""

    status = 413
    code = "Neo.ClientError.Request.Invalid"
    default_message = "The request body is too large."


class UnsupportedMediaType(CypherGateError):
    """The request or the accepted response is in a format the gateway does not speak."""

    status = 415
    code = "Neo.ClientError.Request.Invalid"
    default_message = (
        "Request and response bodies must be application/json or application/vnd.neo4j.query."
    )


class ClientDisconnected(CypherGateError):
    """The client hung up before its request's body arrived: nothing ran, and nobody reads the
    answer. Not the gateway's failure: 499, as proxies count a request the client closed."""

    status = 499
    code = "Neo.ClientError.Request.Invalid"
    default_message = "The client closed the connection before its request arrived."


class ClientEnded(ClientDisconnected):
    """A Bolt client ended a statement before reading its result (``RESET``, ``ROLLBACK``,
    ``GOODBYE``, a closed connection, a protocol violation): the statement ends there, and its
    transaction with it, ended as ``cause`` says ("client": the client's own rollback, "closed":
    the connection went)."""

    def __init__(self, message: str, *, reason: str, cause: Literal["client", "closed"]) -> None:
        super().__init__(message, reason=reason)
        self.cause = cause


class RequestCancelled(CypherGateError):
    """The gateway stopped a statement before it ended (it is shutting down, say): its
    transaction was rolled back, unless its outcome record says it had committed."""

    status = 503
    code = "Neo.TransientError.Transaction.Terminated"
    default_message = "The gateway stopped the statement before it ended."


class NotSupported(CypherGateError):
    """A feature the gateway does not offer (writing a secret to a store that cannot be written)."""

    status = 501
    code = "Neo.ClientError.Request.Invalid"
    default_message = "The gateway does not support this."


class TransactionNotFound(CypherGateError):
    """No such open transaction: never opened, committed, rolled back (a failed statement rolls
    its transaction back), expired, or opened by another identity, which is told no more than
    that it does not exist."""

    status = 404
    code = "Neo.ClientError.Transaction.TransactionNotFound"
    default_message = (
        "The transaction was not found: it was committed, rolled back (a failed or refused"
        " statement rolls its transaction back) or has expired."
    )


class TransactionTimedOut(CypherGateError):
    """An explicit transaction outlived its time-out (Neo4j's, counted from its begin): the
    gateway rolled it back at its deadline, and the client's next message to it is told so
    with the code Neo4j gives a transaction whose client-set time-out passed."""

    status = 400
    code = "Neo.ClientError.Transaction.TransactionTimedOutClientConfiguration"
    default_message = (
        "The transaction has not completed within its time-out and was rolled back: retry in a"
        " new transaction, or with a longer time-out."
    )


class TooManyTransactions(CypherGateError):
    """The gateway already holds as many open transactions as it may."""

    status = 503
    code = "Neo.TransientError.Transaction.MaximumTransactionLimitReached"
    default_message = (
        "The gateway holds as many open transactions as it is configured to; try again later."
    )


class Overloaded(CypherGateError):
    """The gateway is working on as many statements as it is configured to, and as many wait:
    refused at once, before anything was done for it (proxy/gateway/admission.py). Transient,
    so that drivers retry; HTTP clients get ``Retry-After``."""

    status = 503
    code = "Neo.TransientError.Request.ResourceExhaustion"
    default_message = "The gateway is at its limit of statements in flight; try again shortly."

    def __init__(self, *, retry_after_s: int, reason: str) -> None:
        super().__init__(reason=reason)
        self.retry_after_s = retry_after_s


class RateLimited(CypherGateError):
    """The caller's address, identity or DAG has used its rate limit (proxy/gateway/rates.py).

    429 with ``Retry-After`` over HTTP. The code is in the transient family on purpose: the
    condition clears by itself within the window, and Neo4j's drivers retry a transient error
    with back-off (what ``Retry-After`` asks of an HTTP client), where a client error would fail
    an Airflow task at once. ``reason`` is ``rate_limited:client``, ``:identity`` or ``:dag``."""

    status = 429
    code = "Neo.TransientError.Request.TooManyRequests"
    default_message = "Rate limit reached; try again after the time in Retry-After."

    def __init__(self, *, retry_after_s: int, reason: str) -> None:
        super().__init__(reason=reason)
        self.retry_after_s = retry_after_s


class RequestTimeout(CypherGateError):
    """The client did not send its whole request body within the configured deadline."""

    status = 408
    code = "Neo.ClientError.Request.Invalid"
    default_message = "The request body did not arrive in time."


class TransactionAccessMode(CypherGateError):
    """A statement that writes, in a transaction begun in READ mode (Neo4j's own code)."""

    status = 400
    code = "Neo.ClientError.Statement.AccessMode"
    default_message = (
        "This transaction was begun in READ mode: a statement that writes cannot run in it."
    )


class BatchesInTransaction(CypherGateError):
    """``CALL { ... } IN TRANSACTIONS`` in an explicit transaction: its batches commit on their
    own, so Neo4j runs it only auto-commit, and refuses it in a transaction as a database error
    that would reach the caller as the gateway's failure (502). It is the caller's statement's
    error, refused before it runs, with the code Neo4j gives a statement of the wrong kind for
    its transaction."""

    status = 400
    code = "Neo.ClientError.Transaction.ForbiddenDueToTransactionType"
    default_message = (
        "A query with 'CALL { ... } IN TRANSACTIONS' can only be executed in an implicit"
        " (auto-commit) transaction, not in an explicit one."
    )


class AuthenticationFailed(CypherGateError):
    """No credential, or one that did not verify. The client learns nothing more."""

    status = 401
    code = "Neo.ClientError.Security.Unauthorized"
    default_message = "Authentication failed."


class PolicyDenied(CypherGateError):
    """The policy refused the request; ``reasons`` are the policy's own words."""

    status = 403
    code = "Neo.ClientError.Security.Forbidden"
    default_message = "The policy does not allow this request."

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        detail = ", ".join(reasons) if reasons else "no grant matched"
        super().__init__(f"Denied by policy: {detail}.", reason="policy_denied")


class ImpersonationRefused(CypherGateError):
    """The caller asked to run as another Neo4j user (Bolt's ``imp_user``): who a statement runs
    as is the gateway's decision alone."""

    status = 403
    code = "Neo.ClientError.Security.Forbidden"
    default_message = "Impersonation is not allowed through the gateway."


class DagNotPermitted(CypherGateError):
    """The caller's verified identity may not act as the DAG it names (or as any DAG)."""

    status = 403
    code = "Neo.ClientError.Security.Forbidden"
    default_message = "This identity may not act as that DAG."


class PolicyUnavailable(CypherGateError):
    """OPA could not be asked, did not answer in time, or answered nonsense. Fails closed."""

    status = 503
    code = "Neo.TransientError.General.PolicyUnavailable"
    default_message = "The policy engine is unavailable; nothing was executed."


class AuditUnavailable(CypherGateError):
    """The audit log could not be written, so nothing may run."""

    status = 503
    code = "Neo.TransientError.General.AuditUnavailable"
    default_message = "The audit log is unavailable; nothing was executed."


class AuditChainTaken(AuditUnavailable):
    """Another process appends to this audit chain already: a second writer would fork it."""

    def __init__(self, path: str, holder: int | None) -> None:
        by = f"gateway process {holder}" if holder is not None else "another gateway process"
        super().__init__(
            f"The audit log {path} is being written by {by}; one chain has one writer. Give"
            " each replica its own audit.path and audit.chain_id, and run several processes"
            " of one replica with server.workers (each worker gets a chain of its own).",
            reason="audit_chain_taken",
        )


class AuditChainNotFound(CypherGateError):
    """A reviewer named a chain this replica does not keep."""

    status = 404
    code = "Neo.ClientError.Request.Invalid"

    def __init__(self, chain: str) -> None:
        super().__init__(
            "This gateway keeps no audit chain of that name.", reason=f"no_chain:{chain[:64]}"
        )


class StaleForm(CypherGateError):
    """A form posted to the reviewers' page without its session's anti-forgery token."""

    status = 403
    code = "Neo.ClientError.Security.Forbidden"
    default_message = "The form did not come from this signed-in page."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, reason="stale_form")


class DatabaseNotFound(CypherGateError):
    """The database named in the URL, or by a statement's ``USE``, does not exist; ``database``
    is its name where Neo4j said it."""

    status = 404
    code = "Neo.ClientError.Database.DatabaseNotFound"
    default_message = "The database does not exist."

    def __init__(self, *, database: str | None = None) -> None:
        super().__init__()
        self.database = database


class RecordNotProvable(CypherGateError):
    """No such audit record, or no signed checkpoint covers it yet."""

    status = 404
    code = "Neo.ClientError.Request.Invalid"
    default_message = "No such record, or no signed checkpoint covers it yet."


class Neo4jClientError(CypherGateError):
    """Neo4j refused the statement (syntax, unknown procedure, access mode, constraint...).

    The code is Neo4j's own; the message is Neo4j's, which describes the caller's own statement.
    """

    status = 400

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message, reason=code)


class GraphUnavailable(CypherGateError):
    """Neo4j could not be reached or is restarting."""

    status = 503
    code = "Neo.TransientError.General.DatabaseUnavailable"
    default_message = "Neo4j is unavailable."


class PlanTimedOut(GraphUnavailable):
    """Neo4j did not plan the statement (``EXPLAIN``) within ``neo4j.plan_timeout_s``: some
    statements it never answers (a list literal nested a few hundred deep overflows its parser's
    stack, and the connection stays silent). Fails closed: the statement never runs, and the
    connection that waited is closed, never pooled again."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"Neo4j did not plan the statement within {timeout_s:g} s; nothing was executed.",
            reason="neo4j_plan_timeout",
        )


class NothingSent(GraphUnavailable):
    """A connection to Neo4j was found lost as a message was about to leave on it (Neo4j, or a
    firewall between, reset or closed it while it sat in the pool): nothing of the message was
    sent, so nothing of it ran. A statement's first message is sent again on a fresh connection
    (:mod:`proxy.neo4j.relay`); anything else is transient."""

    def __init__(self) -> None:
        super().__init__(reason="neo4j_connection_lost_before_send")


class LeasesTaken(GraphUnavailable):
    """Another process keeps this leases record: sharing it, each would drop the other's users."""

    def __init__(self, path: str, holder: int | None) -> None:
        by = f"gateway process {holder}" if holder is not None else "another gateway process"
        super().__init__(
            f"The leases record {path} is kept by {by}. Give each replica its own"
            " neo4j.leases_path and neo4j.lease_user_prefix (server.workers does so per worker).",
            reason="leases_taken",
        )


class SecretStoreUnavailable(CypherGateError):
    """The store of the gateway's Neo4j credential (a file, Secrets Manager) could not be read or
    written; ``reason`` names the store and the failure (``secret_store:file:OSError``)."""

    status = 503
    code = "Neo.TransientError.General.SecretStoreUnavailable"
    default_message = (
        "The secret store of the gateway's Neo4j credential is unavailable; nothing was executed."
    )


class GraphFailed(CypherGateError):
    """Neo4j failed in a way that is not the caller's fault."""

    status = 502
    code = "Neo.DatabaseError.General.UnknownError"
    default_message = "Neo4j failed to run the statement."


class CommitOutcomeUnknown(GraphFailed):
    """The connection to Neo4j was lost after a ``COMMIT`` was sent, before its answer came:
    the transaction may have committed. Not transient on purpose (the driver's
    ``IncompleteCommit`` is not retried either): a driver's managed transaction runs its work
    again after a transient failure, and would write twice."""

    default_message = (
        "The connection to Neo4j was lost while the transaction committed: it may have"
        " committed. Check before running it again."
    )

    def __init__(self) -> None:
        super().__init__(reason="commit_outcome_unknown")


class WriteOutcomeUnknown(GraphFailed):
    """The connection to Neo4j was lost after an auto-commit statement that may write was sent,
    before its end was heard: its transaction commits when it ends, so it may have written. Not
    transient, like :class:`CommitOutcomeUnknown`: an HTTP client retrying a 503, or a caller
    retrying a transient error, would write twice (a read stays transient: it wrote nothing)."""

    default_message = (
        "The connection to Neo4j was lost while the statement ran: it may have written."
        " Check before running it again."
    )

    def __init__(self) -> None:
        super().__init__(reason="write_outcome_unknown")


class IdentityProviderUnavailable(CypherGateError):
    """The token issuer's keys could not be fetched and none are cached."""

    status = 503
    code = "Neo.TransientError.General.IdentityProviderUnavailable"
    default_message = "The identity provider is unavailable; try again later."
