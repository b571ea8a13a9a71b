"""Serving a replica: one process, or ``server.workers`` processes on the same ports.

With several workers, ``cyphergate serve`` becomes a supervisor. It reserves the HTTP port (and
the Bolt door's, if configured; a port 0 becomes a free one) and starts each worker as a fresh
interpreter (``cyphergate serve --worker K``, the same configuration and environment). Every
worker listens on those ports with ``SO_REUSEPORT``, so the kernel spreads new connections over
the workers by a hash of their addresses (one socket shared by all would let the first worker
to wake accept a whole burst), and a worker not yet listening takes none. Each worker gets the
settings of :func:`proxy.settings.worker_settings` (its own audit chain, leases record and
leased-user prefix), and all of them map one schema epoch (:mod:`proxy.epoch`), so a schema
statement on one empties the plan caches of all.

The supervisor restarts nothing: if a worker ends, it stops the others and exits with status 1,
so that the orchestrator (Kubernetes, systemd) restarts the replica as a whole, and a replica
never serves with fewer workers than configured without saying so. SIGTERM or SIGINT stop every
worker (each finishes its requests and closes its chain) and the supervisor exits with 0. A
worker whose supervisor disappears stops itself.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from proxy.chains import worker_settings
from proxy.epoch import SharedEpoch
from proxy.settings import Settings
from proxy.tls import check_pair, server_context

log = logging.getLogger(__name__)
# The cycle collector's youngest generation is collected after this many new objects (Python's
# default is 700); see _tune_interpreter.
GC_YOUNG_THRESHOLD = 20_000
# How long a thread holding Python's global lock keeps it while another waits (Python's default
# is 5 ms). SQLite lets the lock go while it writes and syncs the audit log; the writer's thread
# then waits for the event loop to hand it back, up to this long when the loop is busy, and
# every statement waiting on that commit waits too. Weighed both ways at 16 Bolt clients: 1.05
# and 1.08 times the throughput of 5 ms, 7 and 33 µs less CPU per statement, p99 4.6 and 7.1 ms
# lower.
SWITCH_INTERVAL_S = 0.0005

# How long a stopping worker may take to finish its requests and close its chain.
_STOP_GRACE_S = 30.0


@dataclass(frozen=True, slots=True)
class Listeners:
    """Where every worker listens: the HTTP address and, if configured, the Bolt door's."""

    http: tuple[str, int]
    bolt: tuple[str, int] | None

    def argument(self) -> str:
        bolt = "" if self.bolt is None else f"{self.bolt[1]}@{self.bolt[0]}"
        return f"{self.http[1]}@{self.http[0]},{bolt}"

    @classmethod
    def parse(cls, text: str) -> Listeners:
        http, _, bolt = text.partition(",")
        return cls(http=_address(http), bolt=_address(bolt) if bolt else None)


def _address(text: str) -> tuple[str, int]:
    port, _, host = text.partition("@")
    return host, int(port)


def serve(settings: Settings, *, host: str, port: int, command: Sequence[str]) -> int:
    """Serve ``settings`` on ``host:port``: in this process, or with several workers under a
    supervisor (this process), each started as ``command`` plus the worker's own arguments."""
    check_tls(settings)
    if settings.server.workers == 1:
        import uvicorn

        from proxy.app import create_app

        app = create_app(settings)
        _tune_interpreter()
        uvicorn.run(app, host=host, port=port, **_http_options(settings))
        return 0
    return _supervise(settings, host=host, port=port, command=command)


def serve_worker(settings: Settings, index: int, listeners: Listeners, epoch_file: Path) -> int:
    """Run worker ``index`` (``cyphergate serve --worker``), listening beside its siblings."""
    import uvicorn

    from proxy.app import create_app

    mine = worker_settings(settings, index)
    server = mine.server.model_copy(
        # The ports the supervisor reserved (a configured 0 is a free port by now).
        update={
            "bolt_port": None if listeners.bolt is None else listeners.bolt[1],
            "schema_epoch_file": epoch_file,
        }
    )
    mine = mine.model_copy(update={"server": server})
    http = _listen(*listeners.http)
    _stop_when_orphaned()
    uvicorn_server = uvicorn.Server(uvicorn.Config(create_app(mine), **_http_options(mine)))
    _tune_interpreter()
    uvicorn_server.run(sockets=[http])
    # A lifespan that failed to start (a chain in use, Neo4j away) ends the run early; say so
    # with uvicorn's own status for it, as a single process does.
    return 0 if uvicorn_server.started else 3


def _tune_interpreter() -> None:
    """Before serving: what is loaded by now (modules, the application) lives as long as the
    process, so the cycle collector stops tracing it, and collects the young generation a
    little less often (each statement makes a few thousand objects, nearly all freed at once
    by reference counting). And the event loop hands Python's global lock to the audit
    writer's thread sooner (see :data:`SWITCH_INTERVAL_S`)."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def _supervise(settings: Settings, *, host: str, port: int, command: Sequence[str]) -> int:
    count = settings.server.workers
    # Bound, never listening: it holds the port (and names a free one for port 0) while the
    # workers come and go; the kernel routes connections to listening sockets only.
    reserved = [_reserve(host, port)]
    bolt_port = settings.server.bolt_port
    if bolt_port is not None:
        reserved.append(_reserve(settings.server.bolt_host or settings.server.host, bolt_port))
    http, *bolt = (sock.getsockname()[:2] for sock in reserved)
    listeners = Listeners(http=http, bolt=bolt[0] if bolt else None)
    log.info(
        "supervisor %d: %d workers on http %s:%d%s",
        os.getpid(),
        count,
        *listeners.http,
        "" if listeners.bolt is None else " and bolt {}:{}".format(*listeners.bolt),
    )
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with tempfile.TemporaryDirectory(prefix="cyphergate-workers-") as shared:
        epoch_file = Path(shared) / "schema-epoch"
        SharedEpoch.create(epoch_file)
        workers: dict[int, subprocess.Popen[bytes]] = {}
        for index in range(1, count + 1):
            arguments = ["--worker", str(index), "--listeners", listeners.argument()]
            arguments += ["--schema-epoch", str(epoch_file)]
            # Our own interpreter and arguments, never input from a client.
            workers[index] = subprocess.Popen([*command, *arguments])  # noqa: S603
            log.info("worker %d started (pid %d)", index, workers[index].pid)
        status = 0
        while not stopping.wait(0.5):
            ended = {i: p.returncode for i, p in workers.items() if p.poll() is not None}
            if ended:
                index, code = next(iter(ended.items()))
                log.error(
                    "worker %d (pid %d) exited with status %s; stopping the others",
                    index,
                    workers[index].pid,
                    code,
                )
                status = 1
                break
        _stop_all(list(workers.values()))
    for sock in reserved:
        sock.close()
    return status


def _stop_all(workers: list[subprocess.Popen[bytes]]) -> None:
    for process in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_S
    for process in workers:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker pid %d did not stop in %.0f s; killed", process.pid, _STOP_GRACE_S)
            process.kill()
            process.wait()


def _reserve(host: str, port: int) -> socket.socket:
    """Hold ``host:port`` for the workers (a free port for 0), refusing one in use already:
    without the first, exclusive bind, a second replica of the same user on the same port
    would silently share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, port))  # OSError (address in use) if anyone holds it
        port = probe.getsockname()[1]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _listen(host: str, port: int) -> socket.socket:
    """A worker's socket on the shared port, bound but not listening: uvicorn listens once the
    worker's lifespan has started, so no connection waits on a worker still starting."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _stop_when_orphaned() -> None:
    """SIGTERM this worker when its supervisor is gone (then the ports must be freed)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command that starts a worker: this interpreter, ``-m proxy``, the same arguments."""
    return [sys.executable, "-m", "proxy", *argv]


def check_tls(settings: Settings) -> None:
    """Refuse, before anything starts, a ``server.tls_certificate`` and ``tls_key`` that do not
    load as a matching PEM pair (a :class:`ConfigurationError`: a line, not a traceback)."""
    server = settings.server
    check_pair(server.tls_certificate, server.tls_key, setting="server.tls_certificate and tls_key")


def _http_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for the HTTP door: its connection limit and header deadline
    (``server.http``, enforced by :mod:`proxy.api.connections`) and its keep-alive; its log lines
    through the gateway's handler (``log_config=None``: with their request ids); and its own
    proxy headers off (by default it believes X-Forwarded-For from any loopback peer: the
    gateway reads it only from ``server.forwarded_allow_ips``)."""
    from proxy.api.connections import HTTP_PROTOCOL

    options: dict[str, Any] = {
        "log_level": "info",
        "log_config": None,
        "proxy_headers": False,
        "http": HTTP_PROTOCOL,
        "timeout_keep_alive": settings.server.http.keep_alive_s,
    }
    certificate, key = settings.server.tls_certificate, settings.server.tls_key
    if certificate is not None:
        # uvicorn wraps every socket it serves in this context, its own or the pre-bound socket
        # of a worker (Server.startup: create_server(sock=..., ssl=config.ssl)). Our context,
        # not uvicorn's: TLS 1.2 at least, as on the Bolt door.
        options["ssl_context_factory"] = lambda _config, _default: server_context(certificate, key)
    return options
