"""A CSV file served on loopback for ``LOAD CSV``, and the paths Neo4j fetched from it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Recorder(BaseHTTPRequestHandler):
    body: bytes
    paths: list[str]

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        del format, args


@contextmanager
def csv_source(body: bytes) -> Iterator[tuple[str, list[str]]]:
    """A server on loopback answering every GET with ``body``: its URL, and the paths fetched
    from it, in order."""
    paths: list[str] = []
    handler = type("Recorder", (_Recorder,), {"body": body, "paths": paths})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()
