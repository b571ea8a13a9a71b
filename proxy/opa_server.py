"""A private OPA server: the command lines that serve a policy folder or bundle, and one started
for a while.

``policy replay`` serves proposed policies from one on a free loopback port; the devstack runs
its long-lived OPA with the same command lines. Production code may use this module: it starts
only the ``opa`` binary it is given, on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from proxy.bundle_server import RESOURCE, FolderBundleServer
from proxy.bundles import IGNORED, LONG_POLL_S, opa_bundle_config, snapshot, validate_grants
from proxy.ports import free_ports
from proxy.settings import OPASettings

OPA_START_TIMEOUT_S = 30.0


def opa_server_command(opa_binary: Path, port: int, policies: Path) -> list[str]:
    """The command line of an OPA server on 127.0.0.1:``port`` over a policy folder: the
    policies and their data, not the JSON schemas (``schemas/``) or the tests (``opa test``).
    A folder that changes is served as a bundle instead (:func:`proposed_policy`)."""
    ignores = [argument for pattern in IGNORED for argument in ("--ignore", pattern)]
    return _opa_run(opa_binary, port, *ignores, str(policies))


def opa_bundle_command(opa_binary: Path, port: int, config_file: Path) -> list[str]:
    """The command line of an OPA server on 127.0.0.1:``port`` that takes its policy from the
    bundle its configuration names (:func:`proxy.bundles.opa_bundle_config`). Decision logs go
    to standard output whatever the log level; errors (a refused bundle) are logged."""
    return _opa_run(opa_binary, port, "--config-file", str(config_file))


def _opa_run(opa_binary: Path, port: int, *arguments: str) -> list[str]:
    """``opa run --server`` on 127.0.0.1:``port``, logging errors only, with ``arguments``."""
    return [
        str(opa_binary),
        "run",
        "--server",
        "--addr",
        f"127.0.0.1:{port}",
        "--log-level",
        "error",
        *arguments,
    ]


def folder_bundle_config(server_url: str) -> dict[str, Any]:
    """OPA's configuration for the folder server at ``server_url`` (long polling, no signing:
    the folder is the developer's own)."""
    return opa_bundle_config(
        service_url=server_url, resource=RESOURCE.lstrip("/"), long_poll_s=LONG_POLL_S
    )


@contextlib.contextmanager
def proposed_policy(
    opa_binary: Path, policies: Path, *, watch: bool = False
) -> Iterator[OPASettings]:
    """Serve ``policies`` from a private OPA on a free loopback port while the block runs: the
    files a bundle of it would hold, its grants checked as ``policy build`` checks them.

    With ``watch`` the folder is served to OPA as a bundle (:mod:`proxy.bundle_server`), so
    an edit applies without a restart and every decision names the revision that made it.
    """
    if not policies.is_dir():
        raise FileNotFoundError(f"no policy folder at {policies}")
    if not watch:
        # What a bundle of the folder would hold, and only grants that would build: OPA over
        # the folder itself would load hidden files too (BundleError if the grants are wrong).
        with tempfile.TemporaryDirectory() as work, tempfile.TemporaryFile() as output:
            copy = Path(work) / "policies"
            snapshot(policies, copy)
            validate_grants(copy)
            (port,) = free_ports(1)
            command = opa_server_command(opa_binary, port, copy)
            yield from _serving(command, port, output)
        return
    with contextlib.ExitStack() as stack:
        (bundle_port,) = free_ports(1)
        server = FolderBundleServer(opa_binary, policies, bundle_port)
        server.start()
        stack.callback(server.close)
        with configured_opa(opa_binary, folder_bundle_config(server.url)) as settings:
            yield settings


@contextlib.contextmanager
def configured_opa(
    opa_binary: Path,
    config: dict[str, Any],
    *,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[OPASettings]:
    """A private OPA with ``config`` (:func:`proxy.bundles.opa_bundle_config`) on a free
    loopback port while the block runs, healthy once its bundles are active; its output (the
    decision log, refused bundles) goes to ``log`` if given. ``env`` is added to this process's
    environment (the AWS credentials of an S3 service)."""
    (port,) = free_ports(1)
    with tempfile.TemporaryDirectory() as work:
        config_file = Path(work) / "opa.json"
        config_file.write_text(json.dumps(config), encoding="utf-8")
        command = opa_bundle_command(opa_binary, port, config_file)
        with (log or Path(work) / "opa.log").open("w+b") as output:
            yield from _serving(command, port, output, env=env)


def _serving(
    command: list[str], port: int, output: Any, *, env: dict[str, str] | None = None
) -> Iterator[OPASettings]:
    environment = {**os.environ, **env} if env else None
    # The binary and folder are the operator's own arguments; no shell is involved.
    process = subprocess.Popen(  # noqa: S603
        command, stdout=output, stderr=subprocess.STDOUT, env=environment
    )
    try:
        wait_healthy(process, port, output)
        yield OPASettings(url=f"http://127.0.0.1:{port}", timeout_s=10.0)
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_healthy(process: subprocess.Popen[bytes], port: int, output: Any) -> None:
    """Until the OPA of ``process`` on ``port`` answers healthy with its bundles active;
    RuntimeError with its output if it exits first."""
    deadline = time.monotonic() + OPA_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output.seek(0)
            raise RuntimeError(
                "OPA refused the proposed policies:\n" + output.read().decode(errors="replace")
            )
        with contextlib.suppress(httpx.HTTPError):
            # With ?bundles, healthy only once every configured bundle is active.
            url = f"http://127.0.0.1:{port}/health?bundles"
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"OPA did not become healthy within {OPA_START_TIMEOUT_S:.0f} s")
