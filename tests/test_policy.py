"""The OPA client against the real OPA server running ``policies/``: fail-closed answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.analysis import Analysis
from proxy.app import open_policy
from proxy.errors import PolicyUnavailable
from proxy.plan import PlanFacts
from proxy.policy import Decision, policy_input
from proxy.principal import Identity, Principal
from proxy.settings import OPASettings

pytestmark = pytest.mark.integration


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
