"""Receivers a test opens on 127.0.0.1: an HEC-shaped HTTP collector and syslog sockets.

Real sockets in threads of the test process, so a sink in the same process or a gateway in
another reaches them alike. Each keeps what it received, in arrival order.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from proxy.ports import free_ports


class HECCollector:
    """``POST /services/collector/event`` with ``Authorization: Splunk <token>``; 200 and
    ``{"text": "Success", "code": 0}`` for a batch it takes. :meth:`stop` takes it down (the
    port refuses connections), :meth:`start` brings it back on the same port."""

    def __init__(self, token: str) -> None:
        self.token = token
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.refusals = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with collector._lock:
                    collector.requests.append((self.path, dict(self.headers.items())))
                if (
                    self.path != "/services/collector/event"
                    or self.headers.get("Authorization") != f"Splunk {collector.token}"
                ):
                    collector.refusals += 1
                    self._answer(401, {"text": "Invalid token", "code": 4})
                    return
                decoder = json.JSONDecoder()
                text, position, batch = body.decode("utf-8"), 0, []
                while position < len(text):
                    envelope, position = decoder.raw_decode(text, position)
                    batch.append(envelope)
                with collector._lock:
                    collector.events.extend(batch)
                self._answer(200, {"text": "Success", "code": 0})

            def _answer(self, status: int, document: dict[str, Any]) -> None:
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def seqs(self) -> list[int]:
        """The ``seq`` of every event received, in arrival order (our form or OCSF)."""
        with self._lock:
            return [seq_of(envelope["event"]) for envelope in self.events]


def seq_of(document: dict[str, Any]) -> int:
    """The record's seq in our form or in an OCSF event."""
    if "seq" in document:
        return int(document["seq"])
    return int(document["metadata"]["sequence"])


class SyslogTCPCollector:
    """Accepts connections and reads octet-counted RFC 5424 messages from each."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.messages: list[bytes] = []
        self.connections = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(connection)
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        buffer = b""
        with connection:
            while True:
                try:
                    data = connection.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while (space := buffer.find(b" ")) > 0 and len(buffer) >= space + 1 + int(
                    buffer[:space]
                ):
                    length = int(buffer[:space])
                    frame = buffer[space + 1 : space + 1 + length]
                    buffer = buffer[space + 1 + length :]
                    with self._lock:
                        self.messages.append(frame)

    def drop(self) -> None:
        """Close every connection from this side (a collector restarting)."""
        with self._lock:
            for connection in self._open:
                with contextlib.suppress(OSError):  # its reader may have closed it already
                    connection.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def close(self) -> None:
        self._stopping = True
        self.drop()
        self._socket.close()


class SyslogUDPCollector:
    """One datagram, one message."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self.messages: list[bytes] = []
        self._stopping = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self._stopping:
            try:
                data, _ = self._socket.recvfrom(70000)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append(data)

    def close(self) -> None:
        self._stopping = True
        self._socket.close()


RFC5424 = re.compile(
    rb"<(?P<pri>\d{1,3})>1 (?P<time>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+)"
    rb" (?P<msgid>\S+) \[cyphergate@32473 chain=\"(?P<chain>[^\"]*)\" seq=\"(?P<seq>\d+)\""
    rb" hash=\"(?P<hash>[0-9a-f]{64})\"\] \xef\xbb\xbf(?P<msg>.*)",
    re.DOTALL,
)


def parsed(message: bytes) -> tuple[dict[str, bytes], dict[str, Any]]:
    """An RFC 5424 message's header fields and its JSON body; fails the test if malformed."""
    match = RFC5424.fullmatch(message)
    assert match is not None, message[:200]
    return match.groupdict(), json.loads(match["msg"])


def wait_for(condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)
