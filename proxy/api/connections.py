"""The HTTP door's guards on connections, below the application: how many may be open, and how
long a client may take to send a request's headers.

uvicorn closes a keep-alive connection idle after an answer (``server.http.keep_alive_s``), but
nothing else: a connection that never sends a byte, or sends its headers one byte at a time,
stays open for ever, and nothing bounds how many there are but the open-file limit. This
protocol, uvicorn's own with a few additions, closes

* a connection beyond ``server.http.max_connections`` as soon as it is accepted, before a byte
  of it is read (it reached no application code, so there is nothing to record: as for a
  connection the kernel refused);
* a connection whose next request's headers are not complete within
  ``server.http.header_timeout_s`` of its opening or of its previous answer;
* a connection whose next request's headers take more than ``server.http.max_header_bytes``
  (a request's sent behind one still running included), answered 431 in Neo4j's error format
  first (httptools sets no bound of its own, and a header that grows without end cost the event
  loop more with every byte: one connection sending headers as fast as it could took 130 MB and
  held every other request back for seconds);
* a connection whose request the parser cannot frame (two Content-Lengths, say), answered 400 in
  Neo4j's error format, not uvicorn's text;
* a connection whose client takes none of its answer for ``server.http.header_timeout_s``: it
  is aborted, what was left unsent dropped. An answer is written whole at once (up to
  ``server.http.max_answer_bytes``), and the transport keeps what the client has not read;
  closing the connection (at the header deadline, or after a ``Connection: close`` request)
  waits for that to be sent, so a client that never read kept its answer in the gateway's
  memory, and its connection open, for ever (and a request it sent behind, the answer built
  for it, waiting to be written).

None reached the application, so none is recorded: as for a connection the kernel refused.

The body is the application's to read, with its own deadline (``server.http.body_timeout_s``,
:func:`proxy.api.query.read_body`), so that a late body is answered and recorded like any other
refusal. The limits come from the application's lifespan state, so this class is named in
uvicorn's configuration by its import path (``HTTP_PROTOCOL``) and holds no settings of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from proxy.api.state import STATE_KEY, Runtime
from proxy.settings import HTTPSettings

log = logging.getLogger(__name__)

# uvicorn's "auto" choice: httptools (a dependency), else h11; both keep the attributes used here
# (transport, cycle, connections, loop, on_response_complete). The header bound needs httptools'
# parser callbacks (h11 bounds what it holds of a head itself, at 16 KiB).
if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
else:
    from uvicorn.protocols.http.auto import AutoHTTPProtocol as _Base

HTTP_PROTOCOL = "proxy.api.connections:GuardedHTTPProtocol"


class GuardedHTTPProtocol(_Base):
    """uvicorn's HTTP protocol with a connection limit and a header deadline (see the module
    docstring); without the limits in the lifespan state (no lifespan ran) it is uvicorn's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _limits(kwargs.get("app_state"))
        # One timer per connection, moved lazily: each answer sets a new deadline (and the cycle
        # it awaits a successor of), and the timer, when it fires early, sleeps on until it.
        # Cancelling and scheduling a timer for every request cost the event loop about 0.1 ms.
        self._header_deadline: asyncio.TimerHandle | None = None
        self._unsent: int | None = None  # of the answer, when the deadline last passed
        self._deadline_at: float | None = None
        self._awaited: object = None
        self._header_bytes = 0  # of the head arriving, up to the blank line that ends it
        self._tail = b""  # the last bytes counted: the blank line may span two reads
        self._headers_in = False  # the blank line has come: the rest is the body's
        # Between a head and the end of its body: bytes that come then are a body's, even once
        # its answer is sent (one refused as too large, before it was all read).
        self._in_body = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._limits is None:
            return
        if len(self.connections) > self._limits.max_connections:
            log.warning("http: connection limit (%d) reached", self._limits.max_connections)
            transport.close()
            return
        self._await_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request may already have begun in uvicorn's handler: its headers are in.
        between = self.cycle is None or self.cycle.response_complete
        transport = self.transport
        untaken = transport.get_write_buffer_size() > 0  # closing waits for it: bounded too
        if self._limits is not None and between and (untaken or not transport.is_closing()):
            self._await_headers()

    def data_received(self, data: bytes) -> None:
        # Every request's head is counted, a pipelined one's too: sent behind a request still
        # running, it was not (its bytes came before any answer set a deadline), and a header
        # streamed behind a long statement held the event loop for as long as it ran.
        if self._limits is not None and not (self._headers_in or self._in_body):
            seen = self._tail + data if self._tail else data  # most requests: one read
            end = seen.find(b"\r\n\r\n")
            self._header_bytes += len(data) if end < 0 else end + 4 - len(self._tail)
            self._tail, self._headers_in = seen[-3:], end >= 0
            if self._header_bytes > self._limits.max_header_bytes:
                self._refuse_headers(self._limits.max_header_bytes)
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._in_body = True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_body = False
        # What comes next is the next request's head, counted from here (not from its
        # deadline, set only once this request is answered).
        self._header_bytes, self._tail, self._headers_in = 0, b"", False

    def _refuse_headers(self, limit: int) -> None:
        log.warning("http: connection closed: request headers over %d bytes", limit)
        message = f"Request headers too large: at most {limit} bytes."
        self._refuse(b"431 Request Header Fields Too Large", message)

    def send_400_response(self, msg: str) -> None:
        """A request uvicorn's parser cannot read (two Content-Lengths, Transfer-Encoding with
        Content-Length, a bad chunk size): 400 in Neo4j's error format, as every other error
        (uvicorn's own is text/plain), and the connection closes."""
        self._refuse(b"400 Bad Request", msg)

    def _refuse(self, status: bytes, message: str) -> None:
        error = {"code": "Neo.ClientError.Request.Invalid", "message": message}
        body = json.dumps({"errors": [error]}).encode()
        self.transport.write(
            b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d"
            b"\r\nconnection: close\r\n\r\n%s" % (status, len(body), body)
        )
        self._disarm()
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        """Close the connection unless a new request's headers arrive in time."""
        assert self._limits is not None  # noqa: S101 - callers checked
        self._awaited = self.cycle  # replaced by a new cycle once the next request's headers are in
        self._unsent = None
        self._deadline_at = self.loop.time() + self._limits.header_timeout_s
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_at(self._deadline_at, self._headers_late)

    def _headers_late(self) -> None:
        self._header_deadline = None
        deadline = self._deadline_at
        if deadline is None:
            return
        if self.loop.time() < deadline:  # moved on by an answer since: wait for the new one
            self._header_deadline = self.loop.call_at(deadline, self._headers_late)
            return
        self._deadline_at = None
        # An answer still unsent is checked whatever came since: a request sent behind it has
        # its own answer built, waiting for the client to take the first.
        if self._answer_being_taken() or self.cycle is not self._awaited:
            return
        if not self.transport.is_closing():
            log.info("http: connection closed: no request headers in time")
            self.transport.close()

    def _answer_being_taken(self) -> bool:
        """At the deadline: whether the client is still taking its answer (then it has as long
        again); one that took none of it since the last deadline is aborted (see the module
        docstring)."""
        unsent = self.transport.get_write_buffer_size()
        before, self._unsent = self._unsent, None
        if not unsent:
            return False
        assert self._limits is not None  # noqa: S101 - the deadline is set only with limits
        if before is None or unsent < before:
            self._unsent = unsent
            self._deadline_at = self.loop.time() + self._limits.header_timeout_s
            self._header_deadline = self.loop.call_at(self._deadline_at, self._headers_late)
            return True
        log.info("http: connection aborted: the client does not read its answer")
        self.transport.abort()
        return True

    def _disarm(self) -> None:
        self._deadline_at = None
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None


def _limits(app_state: object) -> HTTPSettings | None:
    if not isinstance(app_state, dict):
        return None
    found = app_state.get(STATE_KEY)
    return found.server.http if isinstance(found, Runtime) else None
