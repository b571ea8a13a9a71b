"""The Query API's explicit transactions, ``/db/{database}/query/v2/tx``, as Neo4j 5.26 serves them.

- ``POST /tx`` opens one (the body is optional: ``accessMode``, ``bookmarks`` and a first
  ``statement``): 202 with ``transaction`` (``id``, ``expires``), and the statement's ``data``
  and ``counters`` (when asked);
- ``POST /tx/{id}`` runs a statement in it (an empty body or statement keeps it alive): 202
  with ``data``, ``counters`` when asked, and ``transaction``;
- ``POST /tx/{id}/commit`` commits it, after a last statement if the body holds one: 202 with
  that statement's ``data`` and the ``bookmarks``;
- each answer to a statement carries its ``lineage`` when the request asks for it with
  ``X-CypherGate-Lineage: true``, as in :mod:`proxy.api.query`;
- ``DELETE /tx/{id}`` rolls it back: 200, no body.

Each request first verifies its caller (a refusal is a recorded 401), then finds the transaction
it names (:mod:`proxy.api.held`: one unknown, expired, of another database or of another
identity is a recorded 404), and only then reads its body. A statement then takes the request
path like any other, inside the transaction (:meth:`~proxy.gateway.path.Gateway.run`): it is
authenticated again, decided and recorded on its own. A request that runs no statement (a
keep-alive, a commit without one, a rollback) resolves its DAG and context headers as a
statement would (:meth:`~proxy.gateway.path.Gateway.admit`): naming a DAG its caller may not
act as, another DAG than the transaction's, or a bad ``X-CypherGate-Try`` is refused (403, 400)
and recorded. A statement or request refused, or a statement failed, rolls the transaction back,
as in Neo4j (a refused commit commits nothing), and later requests naming it get 404.

Where the gateway differs from Neo4j 5.26: ids are unguessable (Neo4j's are six hex digits);
an empty body is accepted wherever a body is optional (Neo4j answers some with 500); an
unknown transaction's 404 has the code ``Neo.ClientError.Transaction.TransactionNotFound``
(Neo4j's is ``Neo.ClientError.Request.Invalid``); a failed statement is answered with its
error's status (Neo4j answers one that fails while its rows stream with 202, the rows so far
and ``errors``). Neither has transaction metadata over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from proxy.api.errors import REQUEST_ID_HEADER
from proxy.api.held import Held
from proxy.api.query import Answer, Body, QueryBody, answer, call_of
from proxy.api.state import Runtime, runtime, start_request
from proxy.errors import CypherGateError, TooManyTransactions, TransactionNotFound
from proxy.gateway.call import Call
from proxy.principal import Identity

router = APIRouter()
_TX = "/db/{database}/query/v2/tx"


@router.post(_TX)
async def open_transaction(database: str, request: Request) -> JSONResponse:
    """Open a transaction (nothing opens on Neo4j before its first statement), and run the
    body's statement in it if it holds one."""
    state, call, body = _request(request, database)
    # An identity with no DAG, or a DAG without a grant for the database, opens nothing.
    principal = await state.gateway.opening(call)
    identity = principal.identity
    opening = await _read(state, call, body, identity)
    transaction = state.gateway.begin(
        database=call.database,
        access_mode=opening.accessMode,
        bookmarks=tuple(opening.bookmarks),
        metadata={},
        timeout_s=None,
    )
    transaction.opened_by(principal, call.client)
    try:
        held = state.transactions.add(transaction, identity)
    except TooManyTransactions as error:
        await state.gateway.refuse(call, error, identity=identity)
        raise
    try:
        return await _statement(state, request, call, body, held)
    finally:
        state.transactions.release(held)


@router.post(_TX + "/{transaction_id}")
async def run_in_transaction(database: str, transaction_id: str, request: Request) -> JSONResponse:
    """Run the body's statement in the transaction; without one, keep it alive."""
    state, call, body = _request(request, database)
    identity = await state.gateway.identify(call)
    async with _claimed(state, call, identity, transaction_id) as held:
        if not (await _read(state, call, body, identity, held)).statement:  # a keep-alive
            await state.gateway.admit(call, identity, held.transaction)
        return await _statement(state, request, call, body, held)


@router.post(_TX + "/{transaction_id}/commit")
async def commit_transaction(database: str, transaction_id: str, request: Request) -> JSONResponse:
    """Run the body's statement in the transaction if it holds one, then commit."""
    state, call, body = _request(request, database)
    identity = await state.gateway.identify(call)
    async with _claimed(state, call, identity, transaction_id) as held:
        last = await _read(state, call, body, identity, held)
        result: Answer | None = None
        if last.statement:
            lineage = body.lineage_sink()
            run = state.gateway.run(call, transaction=held.transaction, on_lineage=lineage)
            async with run as rows:
                result = await Answer.read(rows, request, state.server.http.max_answer_bytes)
        else:  # resolved as the statement would have been: a refusal commits nothing
            await state.gateway.admit(call, identity, held.transaction)
        async with _recorded(state, call, identity):
            with call.trace.step("commit"):
                bookmarks = await held.transaction.commit(request_id=call.request_id)
    if result is None:
        return answer(request, call.request_id, {"bookmarks": bookmarks})
    rendered = result.render(body.include_counters, bookmarks=False, lineage=body.lineage)
    return result.response(request, call.request_id, {**rendered, "bookmarks": bookmarks})


@router.delete(_TX + "/{transaction_id}")
async def roll_back_transaction(database: str, transaction_id: str, request: Request) -> Response:
    """Roll the transaction back; 200 with no body, as Neo4j answers."""
    state, call, _ = _request(request, database)
    identity = await state.gateway.identify(call)
    async with _claimed(state, call, identity, transaction_id) as held:
        await state.gateway.admit(call, identity, held.transaction)
        async with _recorded(state, call, identity):
            # A commit or rollback that took its turn first ended it: nothing was rolled back.
            if not await held.transaction.rollback(request_id=call.request_id):
                raise TransactionNotFound(reason="transaction_ended")
    return Response(status_code=200, headers={REQUEST_ID_HEADER: call.request_id})


def _request(request: Request, database: str) -> tuple[Runtime, Call, Body]:
    state = runtime(request)
    body = Body(request, state.server, optional=True)
    return state, call_of(request, start_request(request), database, body), body


async def _read(
    state: Runtime, call: Call, body: Body, identity: Identity, held: Held | None = None
) -> QueryBody:
    """The request's body; one the gateway cannot take is refused and recorded, and the
    transaction the request was to (``held``) rolled back."""
    try:
        return await body.read()
    except CypherGateError as error:
        transaction = None if held is None else held.transaction
        await state.gateway.refuse(call, error, identity=identity, transaction=transaction)
        raise


@asynccontextmanager
async def _recorded(state: Runtime, call: Call, identity: Identity) -> AsyncIterator[None]:
    """A request refused because it names no open transaction of its caller (none by that id,
    or one another request ended while this one waited its turn) is recorded, as any refusal."""
    try:
        yield
    except TransactionNotFound as error:
        await state.gateway.refuse(call, error, identity=identity)
        raise


@asynccontextmanager
async def _claimed(
    state: Runtime, call: Call, identity: Identity, transaction_id: str
) -> AsyncIterator[Held]:
    """The caller's transaction ``transaction_id``, in use for the block; a 404, recorded, if
    the caller has none by that id."""
    async with _recorded(state, call, identity):
        held = await state.transactions.claim(transaction_id, identity, call.database)
    try:
        yield held
    finally:
        state.transactions.release(held)


async def _statement(
    state: Runtime, request: Request, call: Call, body: Body, held: Held
) -> JSONResponse:
    """The body's statement, if any, run in ``held``'s transaction; the answer names the
    transaction and when it expires."""
    statement = await body.read()
    if not statement.statement:
        return answer(request, call.request_id, {"transaction": _named(held)})
    async with state.gateway.run(
        call, transaction=held.transaction, on_lineage=body.lineage_sink()
    ) as rows:
        result = await Answer.read(rows, request, state.server.http.max_answer_bytes)
    rendered = result.render(body.include_counters, bookmarks=False, lineage=body.lineage)
    return result.response(request, call.request_id, {**rendered, "transaction": _named(held)})


def _named(held: Held) -> dict[str, str]:
    """The transaction as an answer names it: its id, and when it expires (known once its
    statement ran: the first begins it on Neo4j, whose timeout it cannot outlive)."""
    return {"id": held.id, "expires": held.expires}
