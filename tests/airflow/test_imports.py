"""A worker with the provider installed imports none of the server: importing every module of
``proxy.airflow`` (and what ``get_provider_info`` lists) in a fresh Airflow interpreter leaves
the web framework, the audit log, the doors, the gateway and the devstack out of ``sys.modules``.

The provider's side of the wire is :mod:`proxy.client` and :mod:`proxy.wire`; a module shared
with the server belongs in a module that imports nothing of it (as :mod:`proxy.wire` does).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.airflow.runner import PYTHON, REPO

pytestmark = [pytest.mark.airflow]

SERVER_ONLY = (
    "fastapi",
    "uvicorn",
    "starlette",
    "proxy.audit",
    "proxy.devstack",
    "proxy.app",
    "proxy.api",
    "proxy.bolt",
    "proxy.gateway",
)
# Deny by default: the proxy modules a worker may import. Add one only if it imports nothing
# of the server, and say so in its docstring (proxy.lineage: the shared dataset naming).
WORKER_SIDE = ("proxy.airflow", "proxy.client", "proxy.wire", "proxy.lineage")


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_provider_imports_nothing_of_the_server() -> None:
    assert PYTHON.exists(), "no .venv-airflow: run bash .ci/bootstrap"
    # -I: isolated, so neither the environment nor the working folder adds to sys.path.
    done = subprocess.run(
        [str(PYTHON), "-I", str(REPO / "tests" / "airflow" / "provider_imports.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.splitlines()[-1])
    # The walk found what it judges: the hook, the operator, the sensor, the example DAGs.
    assert {
        "proxy.airflow.hooks",
        "proxy.airflow.operators",
        "proxy.airflow.sensors",
        "proxy.airflow.secrets",
        "proxy.airflow.example_dags.cyphergate_example_sensor",
    } <= set(report["imported"])
    modules = set(report["modules"])
    assert set(report["imported"]) <= modules
    assert not [m for m in modules if within(m, SERVER_ONLY)]
    ours = {m for m in modules if within(m, ("proxy",)) and m != "proxy"}
    assert not [m for m in ours if not within(m, WORKER_SIDE)]
