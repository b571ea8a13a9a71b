"""The OPA client against the real OPA server running ``policies/``: fail-closed answers."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.analysis import Analysis
from proxy.app import open_policy
from proxy.bundle_server import FolderBundleServer
from proxy.devstack.install import default_cache_dir, ensure_opa
from proxy.errors import PolicyUnavailable
from proxy.opa_server import folder_bundle_config, opa_bundle_command
from proxy.plan import PlanFacts
from proxy.policy import Decision, policy_input
from proxy.ports import free_ports
from proxy.principal import Identity, Principal
from proxy.settings import OPASettings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent


def document(dag: str, query_type: str) -> dict[str, Any]:
    identity = Identity(method="oidc", issuer="https://issuer.test", subject=dag)
    principal = Principal(identity=identity, dag=dag, task="t", run=None, try_number=1)
    return policy_input(
        principal,
        database="neo4j",
        statement="RETURN 1",
        parameter_names=["b", "a"],
        requested_access_mode=None,
        analysis=Analysis(query_type=query_type, facts=PlanFacts()),  # type: ignore[arg-type]
    )


def decide(settings: OPASettings, doc: dict[str, Any]) -> Decision:
    async def go() -> Decision:
        async with open_policy(settings) as engine:
            return await engine.decide(doc)

    return asyncio.run(go())


def test_real_decisions(status: dict[str, Any]) -> None:
    settings = OPASettings(url=status["opa"]["url"])
    allowed = decide(settings, document("demo_reader", "r"))
    assert allowed.allow and allowed.access_mode == "READ" and allowed.timeout_s == 30.0
    denied = decide(settings, document("demo_reader", "w"))
    assert not denied.allow and denied.reasons == ("write_not_granted",)
    assert allowed.decision_id != denied.decision_id


def test_undefined_decision_denies(status: dict[str, Any]) -> None:
    settings = OPASettings(url=status["opa"]["url"], package="cyphergate.no_such_package")
    decision = decide(settings, document("demo_writer", "r"))
    assert not decision.allow and decision.reasons == ("policy_undefined",)


def test_malformed_decision_is_unavailable(status: dict[str, Any]) -> None:
    # "allow" is a boolean, not a decision object: nonsense for the gateway.
    settings = OPASettings(url=status["opa"]["url"], rule="allow")
    with pytest.raises(PolicyUnavailable) as error:
        decide(settings, document("demo_writer", "r"))
    assert error.value.reason == "opa_malformed_decision"


def test_unreachable_opa_is_unavailable() -> None:
    settings = OPASettings(url="http://127.0.0.1:9", timeout_s=0.5)
    with pytest.raises(PolicyUnavailable):
        decide(settings, document("demo_writer", "r"))


def ready(url: str) -> str:
    """What the engine's readiness check says of the OPA at ``url``."""

    async def check() -> str:
        async with open_policy(OPASettings(url=url, timeout_s=2.0)) as engine:
            try:
                await engine.check_ready()
            except PolicyUnavailable as error:
                return error.reason or "unavailable"
            return "ready"

    return asyncio.run(check())


def test_opa_is_not_ready_until_its_bundle_is_active(tmp_path: Path) -> None:
    """OPA answers a plain ``/health`` as soon as it listens, before it has any policy: a
    gateway ready then would answer every request ``policy_undefined``. Ready only once the
    bundle is active (``/health?bundles``)."""
    opa = ensure_opa(default_cache_dir())
    opa_port, bundle_port = free_ports(2)
    config = tmp_path / "opa.json"
    config.write_text(json.dumps(folder_bundle_config(f"http://127.0.0.1:{bundle_port}")))
    url = f"http://127.0.0.1:{opa_port}"
    with (tmp_path / "opa.log").open("w+b") as output:
        process = subprocess.Popen(
            opa_bundle_command(opa, opa_port, config), stdout=output, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while not _answers(url + "/health"):  # up, and still without its bundle
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
            assert ready(url) == "opa_unhealthy"
            policies = shutil.copytree(REPO / "policies", tmp_path / "policies")
            server = FolderBundleServer(opa, policies, bundle_port)
            server.start()
            try:
                deadline = time.monotonic() + 15
                while (readiness := ready(url)) != "ready":
                    assert time.monotonic() < deadline, readiness
                    time.sleep(0.1)
            finally:
                server.close()
        finally:
            process.terminate()
            process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
