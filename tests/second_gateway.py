"""A second gateway process beside the session's, with a configuration a test adjusts.

It shares the session stack's Neo4j, OIDC provider and moto, and by default its OPA; it keeps its
own audit log, leases record and leased-user prefix, so it never touches the session gateway's
leases.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from proxy.devstack.stack import DevStack
from proxy.faults import CrashPoint
from proxy.ports import free_ports

REPO = Path(__file__).resolve().parent.parent


class SecondGateway:
    """Start, stop and query a gateway whose configuration a test chose."""

    def __init__(
        self,
        stack: DevStack,
        folder: Path,
        name: str,
        configure: Callable[[dict[str, Any]], None] | None = None,
        *,
        bolt: bool = False,
    ) -> None:
        self.stack = stack
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.audit = folder / "audit.sqlite3"
        self.log = folder / "gateway.log"
        self.config_file = folder / "gateway.toml"
        self.prefix = f"cg_{name}_"
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        # What httpx verifies an https door against (a test serving TLS sets the URL and this).
        self.verify: ssl.SSLContext | bool = True
        self.process: subprocess.Popen[bytes] | None = None
        config = tomllib.loads(stack.gateway_config_path.read_text(encoding="utf-8"))
        config["server"]["port"] = self.port
        config["server"].pop("bolt_port", None)  # the session gateway's: a test may set its own
        # With ``bolt``, a Bolt door of its own, at ``bolt_uri``.
        self.bolt_uri: str | None = None
        if bolt:
            (config["server"]["bolt_port"],) = free_ports(1)
            self.bolt_uri = f"bolt://127.0.0.1:{config['server']['bolt_port']}"
        config["audit"] = {"path": str(self.audit)}
        config["neo4j"].update(
            lease_user_prefix=self.prefix, leases_path=str(folder / "leases.sqlite3")
        )
        if configure is not None:
            configure(config)
        self.config = config

    def start(
        self,
        *,
        wait: bool = True,
        crash_at: CrashPoint | None = None,
        writer_bug_file: Path | None = None,
    ) -> None:
        """Serve the configuration; with ``crash_at``, die there; with ``writer_bug_file``, the
        audit writer raises whenever that file appears (tests/crashing_gateway.py)."""
        self.config_file.write_text(tomli_w.dumps(self.config), encoding="utf-8")
        config = ["--config", str(self.config_file)]
        if crash_at is None and writer_bug_file is None:
            command = [sys.executable, "-m", "proxy", "serve", *config]
        else:
            command = [sys.executable, "-m", "tests.crashing_gateway", *config]
            if crash_at is not None:
                command += ["--crash-at", crash_at]
            if writer_bug_file is not None:
                command += ["--writer-bug-file", str(writer_bug_file)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, **self.stack.gateway_aws_env()},
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise AssertionError("the second gateway exited:\n" + self.log_text()[-3000:])
            try:
                ready = httpx.get(self.url + "/readyz", timeout=2, verify=self.verify)
                if ready.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the second gateway did not become ready")

    def wait_exit(self, timeout: float = 60) -> int:
        if self.process is None:
            raise AssertionError("not started")
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def query(
        self, dag: str, statement: str, parameters: dict[str, Any] | None = None
    ) -> httpx.Response:
        return httpx.post(
            f"{self.url}/db/neo4j/query/v2",
            json={"statement": statement, "parameters": parameters or {}},
            headers={"Authorization": self.stack.auth_header(dag)},
            timeout=60,
            verify=self.verify,
        )
