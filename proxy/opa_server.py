"""A private OPA server: the command line that serves a policy folder, and one started for a while.

``policy replay`` serves proposed policies from one on a free loopback port; the devstack runs
its long-lived OPA with the same command line. Production code may use this module: it starts
only the ``opa`` binary it is given, on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from proxy.ports import free_ports
from proxy.settings import OPASettings

OPA_START_TIMEOUT_S = 30.0


def opa_server_command(opa_binary: Path, port: int, policies: Path, *, watch: bool) -> list[str]:
    """The command line of an OPA server on 127.0.0.1:``port`` over a policy folder: the
    policies and their data, not the JSON schemas (``schemas/``) or the tests (``opa test``)."""
    return [
        str(opa_binary),
        "run",
        "--server",
        "--addr",
        f"127.0.0.1:{port}",
        "--ignore",
        "schemas",
        "--ignore",
        "*_test.rego",
        "--log-level",
        "error",
        *(["--watch"] if watch else []),
        str(policies),
    ]


@contextlib.contextmanager
def proposed_policy(
    opa_binary: Path, policies: Path, *, watch: bool = False
) -> Iterator[OPASettings]:
    """Serve ``policies`` from a private OPA on a free loopback port while the block runs
    (with ``watch``, OPA reloads the folder when a file in it changes)."""
    if not policies.is_dir():
        raise FileNotFoundError(f"no policy folder at {policies}")
    (port,) = free_ports(1)
    command = opa_server_command(opa_binary, port, policies, watch=watch)
    with tempfile.TemporaryFile() as output:
        # The binary and folder are the operator's own arguments; no shell is involved.
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            _wait_healthy(process, port, output)
            yield OPASettings(url=f"http://127.0.0.1:{port}", timeout_s=10.0)
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_healthy(process: subprocess.Popen[bytes], port: int, output: Any) -> None:
    deadline = time.monotonic() + OPA_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output.seek(0)
            raise RuntimeError(
                "OPA refused the proposed policies:\n" + output.read().decode(errors="replace")
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"OPA did not become healthy within {OPA_START_TIMEOUT_S:.0f} s")
