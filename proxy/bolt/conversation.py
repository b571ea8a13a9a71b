"""What every message of a Bolt connection shares: the connection's configuration, its states,
and how it answers a message it turns away (``FAILURE``, recorded as the request path records a
refusal). :class:`~proxy.bolt.session.Session` is the state machine built on it."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.bolt import messages as m
from proxy.bolt.messages import Malformed
from proxy.bolt.transactions import TransactionSlots
from proxy.errors import AuthenticationFailed, CypherGateError
from proxy.gateway.call import Call, Statement, database_name, new_request_id
from proxy.gateway.path import Gateway
from proxy.tracing import OFF, RequestTrace


class State(enum.Enum):
    AUTHENTICATION = "authentication"
    READY = "ready"
    STREAMING = "streaming"
    TX_READY = "tx_ready"
    TX_STREAMING = "tx_streaming"
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
    max_held_result_bytes: int  # of a result read ahead (results.py)
    # Shared by the door's connections: one identity's open transactions, and all of them
    # (transactions.py).
    transactions: TransactionSlots
    # A transaction that has run no statement ends after this (server.transaction_timeout_s).
    empty_transaction_timeout_s: float = 30.0


Send = Callable[[int, tuple[Any, ...]], Awaitable[None]]


class Conversation:
    """A connection's state, credential and ways to answer, shared by its message handlers."""

    def __init__(
        self, gateway: Gateway, *, options: Options, client: str | None, send: Send
    ) -> None:
        self._gateway = gateway
        self._options = options
        self._client = client
        self._send = send
        self.state: State | None = None  # None: before HELLO
        self._authorization: str | None = None
        self._headers: dict[str, str] = {}
        # The identity its LOGON verified: whose admission share its statements count against.
        self._owner: tuple[str, str, str] | None = None

    def _call(
        self,
        authorization: str | None,
        headers: Mapping[str, str],
        database: str | None = None,
        statement: Callable[[], Awaitable[Statement]] = m.no_statement,
        trace: RequestTrace = OFF,
    ) -> Call:
        return Call(
            request_id=new_request_id(),
            database=database_name(database) if database else self._options.home_database,
            authorization=authorization,
            client=self._client,
            headers=headers,
            statement=statement,
            trace=trace,
            owner=self._owner,
            context_names=m.PRINCIPAL_PARTS,
        )

    async def _refused(self, error: CypherGateError, call: Call | None = None) -> None:
        """Turn away a message that runs nothing, recorded as a front door's refusal."""
        call = call or self._call(self._authorization, self._headers)
        await self._gateway.refuse(call, error)
        await self._statement_failed(error, call)

    async def _statement_failed(self, error: CypherGateError, call: Call) -> None:
        """A statement refused or failed: ``FAILURE`` with its code, and the request id that
        finds its audit record (HTTP's ``X-CypherGate-Request-ID``); a credential that no longer
        verifies also closes the connection (the driver opens another with a fresh one)."""
        await self._failure(m.failure_code(error), f"{error.message} (request {call.request_id})")
        if isinstance(error, AuthenticationFailed):
            raise Defunct from error

    async def _failure(self, code: str, message: str) -> None:
        self.state = State.FAILED
        await self._send(m.FAILURE, ({"code": code, "message": message},))

    def _expect(self, name: str, *states: State | None) -> None:
        if self.state not in states:
            now = "new" if self.state is None else self.state.value
            raise Malformed(f"{name} is not allowed now (the connection is {now}).")
