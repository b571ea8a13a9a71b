"""Session fixtures: the real local stack (Neo4j, OPA, OIDC provider, gateway), started once."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from neo4j import Driver, GraphDatabase

from proxy.bundles import folder_revision
from proxy.devstack.install import default_cache_dir
from proxy.devstack.stack import DevStack
from proxy.devstack.state import DemoClient
from proxy.settings import OPASettings

REPO = Path(__file__).resolve().parent.parent
SHORT_LIVED = DemoClient("short_lived_reader", "demo_reader", token_ttl_s=1)
# A Kubernetes-style workload: its token asserts no DAG; a service-account binding maps it.
SERVICE_ACCOUNT = DemoClient("system:serviceaccount:airflow:etl-worker", None)
# One client allowed to act as two DAGs, by a client-id binding.
MULTI_DAG = DemoClient("multi_dag_worker", None)
# Airflow's workers, one identity for the DAGs they run: each connection names its DAG.
AIRFLOW_WORKER = DemoClient("airflow_worker", None)
AIRFLOW_WORKER_DAGS = ["cyphergate_example_neo4j", "demo_reader"]
IAM_MAX_AGE_S = 10
JWKS_TTL_S = 2

# Property tests judge what the code does, never how fast: the suite shares two cores with Neo4j,
# OPA and the provider, where hypothesis's 200 ms deadline per example and its data-generation
# health check fail a correct test now and then.
settings.register_profile("cyphergate", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cyphergate")


def until(check: Callable[[], httpx.Response | None], seconds: float = 15.0) -> httpx.Response:
    """The first response ``check`` accepts, polling: a policy change takes a moment to apply."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = check()
        if response is not None:
            return response
        time.sleep(0.2)
    raise AssertionError(f"the policy change did not take effect within {seconds} s")


def served_revision(stack: DevStack) -> str | None:
    """The policy revision the stack's OPA serves now, as it reports it with a decision."""
    answer = httpx.post(
        stack.status()["opa"]["url"] + "/v1/data/cyphergate/authz/preflight?provenance",
        json={"input": {}},
        timeout=10,
    ).json()
    revision: str | None = answer["provenance"]["bundles"]["cyphergate"]["revision"]
    return revision


def wait_for_revision(stack: DevStack, revision: str, seconds: float = 15.0) -> None:
    """Until the stack's OPA serves ``revision``, and the gateway's reused decisions of the
    previous one have expired (``opa.decision_cache_ttl_s``: the documented bound)."""
    deadline = time.monotonic() + seconds
    while served_revision(stack) != revision:
        assert time.monotonic() < deadline, f"OPA did not serve revision {revision} in {seconds} s"
        time.sleep(0.05)
    time.sleep(OPASettings().decision_cache_ttl_s + 0.05)


def request_id_in(message: str | None) -> str:
    """The request id a gateway's error message ends with, ``(request <id>)``: the last one,
    a wrapped message may carry an earlier one."""
    found = re.findall(r"\(request ([0-9a-f-]+)\)", message or "")
    assert found, f"no request id in {message!r}"
    return str(found[-1])


@contextmanager
def changed_policy_data(
    stack: DevStack, change: Callable[[dict[str, Any]], None]
) -> Iterator[None]:
    """The stack's ``data.json`` changed by ``change`` while the block runs, served by OPA when
    the block starts; the original is served again when it ends."""
    data_file = stack.policies_dir / "data.json"
    original = data_file.read_bytes()
    data = json.loads(original)
    change(data)
    data_file.write_text(json.dumps(data, indent=2), encoding="utf-8")
    try:
        wait_for_revision(stack, folder_revision(stack.policies_dir))
        yield
    finally:
        data_file.write_bytes(original)
        wait_for_revision(stack, folder_revision(stack.policies_dir))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-examples",
        type=int,
        default=2500,
        help="examples of each -m fuzz test: statements the canary fuzzer generates"
        " (tests/plan/test_canary_fuzz.py), message sequences sent to the Bolt door"
        " (tests/bolt/test_server.py)",
    )


def configure_test_gateway(config: dict[str, Any]) -> None:
    auth = config["auth"]
    # No clock-skew allowance, so a token that has expired is refused at once; short windows so
    # that replays and key rotations can be watched within a test.
    auth["leeway_s"] = 0
    config["audit"]["checkpoint_every"] = 5
    auth["aws_iam"]["max_age_s"] = IAM_MAX_AGE_S
    (issuer,) = auth["oidc"]
    issuer.update(jwks_ttl_s=JWKS_TTL_S, jwks_min_refresh_interval_s=0)
    auth["bindings"] += [
        {
            "oidc_issuer": issuer["issuer"],
            "service_account": "airflow:etl-worker",
            "dags": ["demo_reader"],
        },
        {
            "oidc_issuer": issuer["issuer"],
            "client_id": "multi_dag_worker",
            "dags": ["demo_reader", "demo_writer"],
        },
        {
            "oidc_issuer": issuer["issuer"],
            "client_id": AIRFLOW_WORKER.client_id,
            "dags": AIRFLOW_WORKER_DAGS,
        },
    ]


@pytest.fixture(autouse=True)
def _data_frame_libraries_back() -> Iterator[None]:
    """`cyphergate serve` run in-process (its refusals are tested so) hides the data-frame
    libraries from its process with ``None`` in ``sys.modules``; the tests' process gets them
    back, or every later test whose libraries import numpy fails (hypothesis seeds numpy's
    random generator whenever "numpy" is in ``sys.modules``)."""
    yield
    for name in ("pyarrow", "pandas", "numpy"):
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """The devstack with the gateway, in a private run folder, stopped at the end."""
    # A copy of policies/: tests change grants as a security team does, by editing the folder.
    policies = shutil.copytree(REPO / "policies", tmp_path_factory.mktemp("policies") / "p")
    devstack = DevStack(
        tmp_path_factory.mktemp("devstack"),
        cache_dir=default_cache_dir(),
        policies_dir=policies,
        extra_clients=[SHORT_LIVED, SERVICE_ACCOUNT, MULTI_DAG, AIRFLOW_WORKER],
        configure_gateway=configure_test_gateway,
    )
    try:
        devstack.up(with_gateway=True)
        yield devstack
    finally:
        devstack.down()


@pytest.fixture(scope="session")
def status(stack: DevStack) -> dict[str, Any]:
    return stack.status()


@pytest.fixture(scope="session")
def neo4j_admin(status: dict[str, Any]) -> Iterator[Driver]:
    """A direct, administrative connection to Neo4j, bypassing the gateway."""
    neo4j = status["neo4j"]
    with GraphDatabase.driver(neo4j["bolt_uri"], auth=(neo4j["user"], neo4j["password"])) as d:
        yield d


@pytest.fixture
def gateway(status: dict[str, Any]) -> Iterator[httpx.Client]:
    """A fresh client per test: some tests restart the gateway, which breaks pooled connections."""
    with httpx.Client(base_url=status["gateway_url"], timeout=60.0) as client:
        yield client


@pytest.fixture(scope="session")
def neo4j_http(status: dict[str, Any]) -> Iterator[httpx.Client]:
    """Neo4j's own Query API, for comparing answers with the gateway's."""
    neo4j = status["neo4j"]
    with httpx.Client(
        base_url=neo4j["http_uri"], auth=(neo4j["user"], neo4j["password"]), timeout=60.0
    ) as client:
        yield client
