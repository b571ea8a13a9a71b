"""The development policy folder, served to OPA as a bundle named by the folder's content.

OPA run over a plain folder gives its decisions no revision, so the gateway could only guess
which edit made one. Served as a bundle instead, every decision names the SHA-256 of the files
that made it (:func:`proxy.bundles.folder_revision`), reported by OPA with the decision itself.
The server answers OPA's long poll (``Prefer: wait=N`` with the ``ETag`` it has) as soon as the
folder changes, so an edit is active in well under a second. An edit that does not build
(invalid grants, Rego that does not compile) is logged and not served: OPA keeps the last
bundle, as it would with a bad bundle from S3.

Listens on loopback only; it serves policy, which is no secret, but nobody else needs it.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from proxy.bundles import (
    BundleError,
    build_bundle,
    folder_fingerprint,
    folder_revision,
    snapshot,
)

log = logging.getLogger(__name__)

RESOURCE = "/bundles/cyphergate.tar.gz"
# OPA takes an answer of this type as "the server supports long polling".
LONG_POLL_TYPE = "application/vnd.openpolicyagent.bundles"
CHECK_INTERVAL_S = 0.1


@dataclass(frozen=True, slots=True)
class Built:
    """A bundle of the folder, and the revision in its manifest."""

    revision: str
    content: bytes


class FolderBundles:
    """The folder's newest bundle that builds, rebuilt when a file changes."""

    def __init__(self, opa: Path, policies: Path, work: Path) -> None:
        self._opa, self._policies, self._work = opa, policies, work
        self._lock = threading.Lock()
        self._fingerprint: tuple[tuple[str, int, int], ...] | None = None
        self._built: Built | None = None

    def current(self, *, recheck: bool = False) -> Built | None:
        """The bundle of the folder as it is now, or the last that built, or None.

        The folder is re-read when a file's name, size or modification time changed, or with
        ``recheck`` (an edit within the file system's timestamp granularity keeps all three).
        The revision and the bundle come from one snapshot of the folder, so a bundle's
        revision always names exactly the bytes it holds.
        """
        with self._lock:
            fingerprint = folder_fingerprint(self._policies)
            if fingerprint == self._fingerprint and not recheck:
                return self._built
            self._fingerprint = fingerprint
            with tempfile.TemporaryDirectory(dir=self._work) as work:
                copy = Path(work) / "policies"
                try:
                    snapshot(self._policies, copy)
                except BundleError as error:
                    log.warning("policy folder not served: %s", error)
                    return self._built
                revision = folder_revision(copy)
                if self._built is not None and self._built.revision == revision:
                    return self._built
                output = Path(work) / "bundle.tar.gz"
                try:
                    build_bundle(self._opa, copy, output, revision=revision)
                except BundleError as error:
                    log.warning("policy revision %s not served: %s", revision, error)
                    return self._built
                self._built = Built(revision, output.read_bytes())
            log.info("serving policy revision %s", revision)
            return self._built


def _handler(bundles: FolderBundles) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != RESOURCE:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            wait_s = _wait_of(self.headers.get("Prefer"))
            known = self.headers.get("If-None-Match")
            deadline = time.monotonic() + wait_s
            built = bundles.current()
            while built is not None and _etag(built) == known and time.monotonic() < deadline:
                time.sleep(CHECK_INTERVAL_S)
                built = bundles.current()
            if built is not None and _etag(built) == known and wait_s:
                built = bundles.current(recheck=True)  # a long poll's end: read every byte
            if built is None:
                self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "the policy folder does not build")
                return
            self.send_response(HTTPStatus.NOT_MODIFIED if _etag(built) == known else HTTPStatus.OK)
            self.send_header("ETag", _etag(built))
            # Always this type: it tells OPA the server supports long polling.
            self.send_header("Content-Type", LONG_POLL_TYPE)
            if _etag(built) == known:
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_header("Content-Length", str(len(built.content)))
            self.end_headers()
            self.wfile.write(built.content)

        def log_message(self, format: str, *args: object) -> None:
            log.debug(format, *args)

    return Handler


def _etag(built: Built) -> str:
    return f'"{built.revision}"'


def _wait_of(prefer: str | None) -> float:
    """The ``wait=N`` of OPA's ``Prefer`` header (``modes=snapshot,delta;wait=10``), capped;
    0 without one."""
    for part in (prefer or "").replace(";", ",").split(","):
        name, _, value = part.strip().partition("=")
        if name == "wait" and value.isdigit():
            return float(min(int(value), 60))
    return 0.0


class FolderBundleServer:
    """:class:`FolderBundles` over HTTP on 127.0.0.1:``port``, in a thread of its own."""

    def __init__(self, opa: Path, policies: Path, port: int) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="cyphergate-bundles-")
        self.bundles = FolderBundles(opa, policies, Path(self._tmp.name))
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self.bundles))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The service URL for OPA's configuration; the resource is :data:`RESOURCE`."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self.bundles.current()  # build once now, so a broken folder is reported at start
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def serve_forever(self, ready: Callable[[], None] = lambda: None) -> None:
        """Serve in this thread until interrupted."""
        self.bundles.current()
        ready()
        try:
            self._server.serve_forever()
        finally:
            self.close()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()
        self._tmp.cleanup()
