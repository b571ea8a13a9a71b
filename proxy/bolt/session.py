"""One Bolt connection after its handshake: Bolt 5.1-5.4's server state machine.

The caller logs on (``HELLO``, then ``LOGON``: ``bearer`` with its token or IAM proof, or
``basic`` with the DAG to act as and the same credential), verified then, a refusal recorded.
Every statement is then a call on the request path of its own, exactly as over HTTP:
authenticated again (``TokenExpired`` once expired), analysed, decided and recorded before it
runs. Its rows reach the client as Neo4j produces them, ``n`` at a time as ``PULL`` asks;
``cyphergate.lineage: true`` in ``tx_metadata`` adds what it touched to its last ``SUCCESS``,
and the notifications a client asked for (Bolt 5.2+) are the ones it gets (:mod:`.results`).

Explicit transactions (``BEGIN`` ... ``COMMIT`` or ``ROLLBACK``) are the request path's own
(:mod:`proxy.gateway.transactions`, :mod:`.transactions`): ``BEGIN`` and ``COMMIT`` verify the
caller again, each statement is decided and recorded on its own, and a refused or failed one
rolls the whole transaction back, as Neo4j does. Statements run one at a time on Neo4j; one sent
while a result is open has that result's rows read ahead (bounded by the row limit) first. A
transaction whose time-out passes while its client is silent ends at its deadline (``Expiry``
in :mod:`.transactions`), and the client's next message to it is told as Neo4j would tell it.

States (Neo4j's names): ``AUTHENTICATION`` until a ``LOGON`` succeeds, ``READY``,
``STREAMING`` while an auto-commit result is open, ``TX_READY`` and ``TX_STREAMING`` inside a
transaction, ``FAILED`` after a ``FAILURE`` (every message but ``RESET`` and ``GOODBYE`` is then
``IGNORED``), ``DEFUNCT`` once the connection must close. A message the state does not allow, or
one that is not a Bolt message at all, gets a ``FAILURE`` and the connection is closed: a peer
that breaks the protocol gets no second guess. ``RESET`` and a closed connection end what was
open as Neo4j does: a transaction, and an auto-commit statement whose result Neo4j still holds
open, are rolled back (and recorded so).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, NoReturn

from proxy.bolt import messages as m
from proxy.bolt.conversation import Conversation, Defunct, Options, Send, State
from proxy.bolt.messages import Malformed, shape
from proxy.bolt.results import OpenResult, Sink
from proxy.bolt.transactions import Expiry, begun, nothing_held
from proxy.errors import (
    BadRequest,
    CypherGateError,
    ImpersonationRefused,
    TransactionTimedOut,
)
from proxy.gateway.call import Statement
from proxy.gateway.path import Gateway
from proxy.gateway.transactions import EndCause, Transaction
from proxy.principal import LINEAGE_PARENT_HEADER

_INVALID = "Neo.ClientError.Request.Invalid"
# What a client sends to its transaction: told, once, that it ended at its deadline.
_OF_A_TRANSACTION = frozenset({m.RUN, m.PULL, m.DISCARD, m.COMMIT, m.ROLLBACK})
_connection_ids = itertools.count(1)
# How a transaction ends, by what ended what the connection had open (else "closed").
_ENDS: dict[str, EndCause] = {"client": "client", "expired": "expired"}


class Session(Conversation):
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
        send_packed: Callable[[bytes], Awaitable[None]],
        flush: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(gateway, options=options, client=client, send=send)
        self._server_agent = server_agent
        self._local_address = local_address
        self._sink = Sink(send_packed, flush)
        self.connection_id = f"bolt-{next(_connection_ids)}"
        self._routing: Mapping[str, Any] = {}
        # Open results by qid (auto-commit: one, qid 0), and the transaction, if any.
        self._results: dict[int, OpenResult] = {}
        self._transaction: Transaction | None = None
        self._give_back = nothing_held  # the transaction's slot (transactions.py)
        # Its deadline (transactions.py).
        self._expiry = Expiry(self._expire, options.empty_transaction_timeout_s)
        # The caller's trace context given at BEGIN (tx_metadata), for the transaction's spans.
        self._transaction_trace: Mapping[str, str] | None = None
        self._transaction_lineage = False  # its BEGIN's tx_metadata asked for lineage
        self._transaction_metadata: Mapping[str, Any] = {}  # the BEGIN's tx_metadata
        self._notices = self._transaction_notices = m.ALL_NOTICES  # by the HELLO, the BEGIN
        self._qids = itertools.count()
        self._handlers = self._handlers_by_tag()  # built once, not per message
        self._anonymous_messages = 0  # received with no credential accepted (since the last LOGON)

    @property
    def results_due(self) -> float | None:
        """The earliest time-out (event-loop time) of the statements whose results are open."""
        if not self._results:
            return None
        return min((r.due for r in self._results.values() if r.due is not None), default=None)

    @property
    def logged_on(self) -> bool:
        """Whether a credential was accepted (``LOGON``) and not given up since."""
        return self._authorization is not None

    async def handle(self, message: bytes) -> None:
        """Answer one message; raises :class:`Defunct` when the connection must close."""
        expiry = self._expiry
        if expiry.ending is not None:
            await expiry.settled()
        expiry.busy = True
        try:
            await self._answer(message)
        finally:
            expiry.busy = False
            if (transaction := self._transaction) is not None:
                if transaction.open:
                    expiry.arm(transaction)
                else:  # failed: nothing held but its slot, given back now, not at the RESET
                    self._release()

    async def _answer(self, message: bytes) -> None:
        anonymous = self._authorization is None
        if anonymous:
            self._anonymous_messages += 1
        try:
            if self._anonymous_messages > m.MAX_ANONYMOUS_MESSAGES:
                raise Malformed(f"More than {m.MAX_ANONYMOUS_MESSAGES} messages before a LOGON.")
            tag, fields = m.decode(message, anonymous=anonymous)
        except Malformed as exc:
            await self._violation(str(exc))
        if tag == m.GOODBYE:
            raise Defunct
        if tag == m.RESET:
            await self._reset()
            return
        if self.state is State.FAILED:
            await self._send(m.IGNORED, ())
            return
        if self._expiry.expired and tag in _OF_A_TRANSACTION:
            await self._timed_out(tag)
            return
        handler = self._handlers.get(tag)
        if handler is None:
            await self._violation(f"Unknown or unsupported message 0x{tag:02X}.")
        try:
            await handler(fields)
        except Malformed as exc:
            await self._violation(str(exc))
        except CypherGateError as error:
            # A failure outside a statement's own handling (the audit log refusing to record a
            # refused message, say): the client is told, and RESET ends what is open.
            await self._failure(error.code, error.message)

    async def close(self) -> None:
        """The connection is going: what is open ends (and is recorded as ended)."""
        await self._expiry.settled()
        await self._end_open(cause="closed")

    async def _expire(self, transaction: Transaction) -> None:
        """The transaction passed its deadline while its client was silent: it ends now, as
        Neo4j ended it (a result left open first), recorded ``expired``, and the client's next
        message is told (:meth:`_timed_out`)."""
        if transaction is self._transaction and transaction.open:
            self._expiry.expired = True
            await self._end_open(cause="expired")

    async def _timed_out(self, tag: int) -> None:
        """The first message to a transaction ended at its deadline: a ``ROLLBACK`` succeeds, as
        Neo4j's does; anything else is refused (recorded) with Neo4j's code for it."""
        self._expiry.expired = False
        if tag == m.ROLLBACK:
            self.state = State.READY
            await self._send(m.SUCCESS, ({},))
            return
        await self._refused(TransactionTimedOut(reason="transaction_timed_out"))

    # ------------------------------------------------------------------ messages

    def _handlers_by_tag(self) -> dict[int, Callable[[tuple[Any, ...]], Awaitable[None]]]:
        return {
            m.HELLO: self._hello,
            m.LOGON: self._logon,
            m.LOGOFF: self._logoff,
            m.TELEMETRY: self._telemetry,
            m.ROUTE: self._route,
            m.RUN: self._run,
            m.PULL: partial(self._stream, discard=False),
            m.DISCARD: partial(self._stream, discard=True),
            m.BEGIN: self._begin,
            m.COMMIT: self._commit,
            m.ROLLBACK: self._rollback,
        }

    async def _hello(self, fields: tuple[Any, ...]) -> None:
        self._expect("HELLO", None)
        (extra,) = shape(fields, dict)
        if not isinstance(extra.get("user_agent"), str):
            raise Malformed("HELLO needs a user_agent.")
        routing = extra.get("routing")
        self._routing = routing if isinstance(routing, dict) else {}
        self._notices = m.notices(extra)
        self.state = State.AUTHENTICATION
        metadata = {
            "server": self._server_agent,
            "connection_id": self.connection_id,
            "hints": {"connection.recv_timeout_seconds": int(self._options.idle_timeout_s)},
        }
        await self._send(m.SUCCESS, (metadata,))

    async def _logon(self, fields: tuple[Any, ...]) -> None:
        self._expect("LOGON", State.AUTHENTICATION)
        (auth,) = shape(fields, dict)
        authorization, headers = m.credential(auth)
        call = self._call(authorization, headers)
        if (malformed := m.principal_refusal(auth)) is not None:
            await self._refused(malformed, call)  # an AuthenticationFailed: Defunct
        try:
            identity = (await self._gateway.admit(call)).identity  # none at all is refused too
        except CypherGateError as error:
            await self._statement_failed(error, call)
            raise Defunct from error  # Neo4j, too, closes a connection whose LOGON failed
        self._authorization, self._headers = authorization, headers
        self._owner = (identity.method, identity.issuer, identity.subject)
        self._anonymous_messages = 0  # a driver renewing its token may LOGOFF and LOGON for ever
        self.state = State.READY
        await self._send(m.SUCCESS, ({},))

    async def _logoff(self, fields: tuple[Any, ...]) -> None:
        self._expect("LOGOFF", State.READY)
        shape(fields)
        self._authorization, self._headers, self._owner = None, {}, None
        self.state = State.AUTHENTICATION
        await self._send(m.SUCCESS, ({},))

    async def _telemetry(self, fields: tuple[Any, ...]) -> None:
        self._expect("TELEMETRY", State.READY)
        (api,) = shape(fields, int)
        if api not in m.DRIVER_APIS:  # refused, as Neo4j refuses it
            await self._refused(
                BadRequest("TELEMETRY names no driver API.", reason="telemetry_invalid")
            )
            return
        await self._send(m.SUCCESS, ({},))

    async def _route(self, fields: tuple[Any, ...]) -> None:
        """The gateway is its own router, reader and writer: ``neo4j://`` URIs work."""
        self._expect("ROUTE", State.READY)
        _context, bookmarks, extra = shape(fields, dict, list, (dict, type(None)))
        routed = self._routing.get("address")
        address = self._options.advertised_address or (
            routed if isinstance(routed, str) and routed else self._local_address
        )
        try:
            if (extra or {}).get("imp_user") is not None:
                raise ImpersonationRefused(reason="impersonation_refused")
            table = m.routing_table(bookmarks, extra or {}, address, self._options)
        except CypherGateError as error:
            await self._refused(error)
            return
        await self._send(m.SUCCESS, ({"rt": table},))

    async def _begin(self, fields: tuple[Any, ...]) -> None:
        self._expect("BEGIN", State.READY)
        (extra,) = shape(fields, dict)
        try:
            begin = m.begin(extra)
        except CypherGateError as error:
            await self._refused(error)
            return
        call = self._call(self._authorization, self._headers, begin.database)
        tracing = self._gateway.tracing
        carrier = m.trace_context(begin.metadata) if tracing.enabled else None
        with tracing.request("bolt BEGIN", carrier) as trace:
            try:
                slots = self._options.transactions
                self._transaction, self._give_back = await begun(self._gateway, call, begin, slots)
            except CypherGateError as error:
                trace.fail(error.reason)
                await self._statement_failed(error, call)
                return
            trace.set("db.namespace", self._transaction.database)
            trace.set("cyphergate.transaction_id", self._transaction.id)
        self._transaction_trace = carrier
        self._transaction_lineage = begin.lineage
        self._transaction_metadata = begin.metadata
        self._transaction_notices = m.notices(extra, self._notices)
        self._qids = itertools.count()
        self.state = State.TX_READY
        await self._send(m.SUCCESS, ({},))

    async def _run(self, fields: tuple[Any, ...]) -> None:
        self._expect("RUN", State.READY, State.TX_READY, State.TX_STREAMING)
        text, parameters, extra = shape(fields, str, dict, dict)
        transaction = self._transaction
        database: str | None = None
        tracing = self._gateway.tracing
        carrier: Mapping[str, str] | None = None
        if transaction is not None:
            carrier = self._transaction_trace
            database = transaction.database
            for qid, earlier in list(self._results.items()):
                held = sum(r.held_bytes for r in self._results.values())  # by all, together
                try:
                    await earlier.buffer(self._options.max_held_result_bytes, others=held)
                except CypherGateError as error:  # recorded as that statement's failure
                    del self._results[qid]
                    await self._statement_failed(error, earlier.call)
                    return
        elif isinstance(named := extra.get("db"), str) and named:
            database = named
        # A bad flag is refused, and recorded, when the request path reads the statement.
        lineage = self._transaction_lineage if transaction is not None else m.asks_lineage(extra)
        notices = (
            self._transaction_notices if transaction else m.asked_notices(extra, self._notices)
        )

        async def statement() -> Statement:
            return await m.statement(text, parameters, extra)

        if tracing.enabled and transaction is None:
            carrier = m.trace_context(extra.get("tx_metadata"))
        trace = tracing.request("bolt RUN", carrier)
        call = self._call(self._authorization, self._context(extra), database, statement, trace)
        result = OpenResult(self._gateway, call, transaction, lineage=lineage, notices=notices)
        try:
            fields_out = await result.start()
        except CypherGateError as error:
            await self._statement_failed(error, call)
            return
        metadata: dict[str, Any] = {"fields": fields_out, "t_first": result.t_first_ms}
        if transaction is None:
            self._results = {0: result}
            self.state = State.STREAMING
        else:
            qid = next(self._qids)
            self._results[qid] = result
            metadata["qid"] = qid
            self.state = State.TX_STREAMING
        await self._send(m.SUCCESS, (metadata,))

    async def _stream(self, fields: tuple[Any, ...], *, discard: bool) -> None:
        self._expect("PULL or DISCARD", State.STREAMING, State.TX_STREAMING)
        (extra,) = shape(fields, dict)
        n, qid = m.pull_size(extra)
        qid = max(self._results) if qid == -1 else qid
        result = self._results.get(qid)
        if result is None:
            raise Malformed(f"No open result has qid {qid}.")
        try:
            metadata = await result.pull(n, self._sink, discard=discard)
        except CypherGateError as error:
            self._results.pop(qid, None)
            await self._statement_failed(error, result.call)
            return
        if not metadata.get("has_more"):
            del self._results[qid]
            if not self._results:
                self.state = State.READY if self._transaction is None else State.TX_READY
        await self._send(m.SUCCESS, (metadata,))

    async def _commit(self, fields: tuple[Any, ...]) -> None:
        self._expect("COMMIT", State.TX_READY)
        shape(fields)
        transaction = self._transaction
        if transaction is None:
            raise Malformed("COMMIT without a transaction.")
        call = self._call(self._authorization, self._headers, transaction.database)
        with self._gateway.tracing.request("bolt COMMIT", self._transaction_trace) as trace:
            trace.set("cyphergate.request_id", call.request_id)
            trace.set("cyphergate.transaction_id", transaction.id)
            try:  # by its caller, verified again, as over HTTP
                await self._gateway.admit(call, transaction=transaction)
                bookmarks = await transaction.commit(request_id=call.request_id)
            except CypherGateError as error:  # RESET or the close rolls back what is open
                trace.fail(error.reason)
                await self._statement_failed(error, call)
                return
        self._transaction = None
        self._release()
        self.state = State.READY
        await self._send(m.SUCCESS, ({"bookmark": bookmarks[-1]} if bookmarks else {},))

    async def _rollback(self, fields: tuple[Any, ...]) -> None:
        self._expect("ROLLBACK", State.TX_READY, State.TX_STREAMING)
        shape(fields)
        await self._end_open(cause="client")
        self.state = State.READY
        await self._send(m.SUCCESS, ({},))

    async def _reset(self) -> None:
        self._expiry.expired = False
        await self._end_open(cause="client")
        if self.state is not None and self.state is not State.DEFUNCT:
            self.state = State.READY if self._authorization else State.AUTHENTICATION
        await self._send(m.SUCCESS, ({},))

    # ------------------------------------------------------------------ helpers

    def _context(self, extra: Mapping[str, Any]) -> Mapping[str, str]:
        """The LOGON's context, and the lineage parent in the RUN's (or BEGIN's) metadata."""
        in_transaction = self._transaction is not None
        metadata = self._transaction_metadata if in_transaction else extra.get("tx_metadata")
        parent = m.lineage_parent(metadata)
        return self._headers if parent is None else {**self._headers, LINEAGE_PARENT_HEADER: parent}

    async def _violation(self, message: str) -> NoReturn:
        """The peer broke the protocol: it is told why, and the connection closes."""
        await self._end_open(cause="violation")
        await self._send(m.FAILURE, ({"code": _INVALID, "message": message},))
        self.state = State.DEFUNCT
        raise Defunct

    async def _end_open(self, *, cause: str) -> None:
        """End open results, roll back the transaction (``cause``: client, closed, violation, or
        expired: at its deadline)."""
        results, self._results = list(self._results.values()), {}
        for result in results:
            await result.abandon(cause=cause)
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            self._release()
            await transaction.rollback(cause=_ENDS.get(cause, "closed"))

    def _release(self) -> None:
        self._expiry.disarm()
        give_back, self._give_back = self._give_back, nothing_held
        give_back()
