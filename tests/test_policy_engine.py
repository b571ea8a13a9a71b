"""The OPA client's side of the contract, with OPA's REST API answered in-process: the request
it sends, and fail-closed answers to every kind of trouble. The same against the real OPA is in
test_policy.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from proxy.errors import PolicyUnavailable
from proxy.policy import Decision, OPAPolicyEngine
from proxy.settings import OPASettings

DOCUMENT = {"version": 2, "principal": {"dag": "etl"}}
ALLOW = {"allow": True, "reasons": [], "constraints": {"access_mode": "READ", "timeout_ms": 900}}
Handler = Callable[[httpx.Request], Any]


def decide(handler: Handler, **settings: Any) -> Decision:
    async def go() -> Decision:
        transport = httpx.MockTransport(handler)
        config = OPASettings(url="http://opa.test", decision_cache_size=0, **settings)
        async with httpx.AsyncClient(base_url=config.url, transport=transport) as http:
            return await OPAPolicyEngine(config, http).decide(DOCUMENT)

    return asyncio.run(go())


def test_the_decision_is_asked_as_opas_rest_api_wants() -> None:
    asked: list[httpx.Request] = []

    def opa(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json={"result": ALLOW})

    decision = decide(opa)
    assert decision.allow and decision.access_mode == "READ" and decision.timeout_s == 0.9
    (request,) = asked
    assert (request.method, request.url.path) == ("POST", "/v1/data/cyphergate/authz/decision")
    assert json.loads(request.content) == {"input": DOCUMENT}


def test_an_undefined_decision_denies() -> None:
    decision = decide(lambda _: httpx.Response(200, json={}))
    assert not decision.allow and decision.reasons == ("policy_undefined",)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (httpx.Response(500, json={"code": "internal_error"}), "opa_error:HTTPStatusError"),
        (httpx.Response(200, text="not json"), "opa_error:JSONDecodeError"),
        (httpx.Response(200, json=["a", "list"]), "opa_malformed_decision"),
        (httpx.Response(200, json={"result": True}), "opa_malformed_decision"),
        (httpx.Response(200, json={"result": {**ALLOW, "extra": 1}}), "opa_malformed_decision"),
        (httpx.Response(200, json={"result": {**ALLOW, "allow": "yes"}}), "opa_malformed_decision"),
    ],
    ids=["5xx", "not-json", "not-an-object", "boolean", "unknown-field", "string-allow"],
)
def test_anything_but_a_well_formed_decision_fails_closed(
    answer: httpx.Response, reason: str
) -> None:
    with pytest.raises(PolicyUnavailable) as error:
        decide(lambda _: answer)
    assert error.value.reason == reason


def test_a_slow_answer_fails_closed_in_time() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={"result": ALLOW})

    with pytest.raises(PolicyUnavailable) as error:
        decide(slow, timeout_s=0.05)
    assert error.value.reason == "opa_timeout"


def test_readiness_is_opas_health() -> None:
    async def check(status: int) -> str:
        transport = httpx.MockTransport(lambda _: httpx.Response(status))
        config = OPASettings(url="http://opa.test")
        async with httpx.AsyncClient(base_url=config.url, transport=transport) as http:
            try:
                await OPAPolicyEngine(config, http).check_ready()
            except PolicyUnavailable as error:
                return error.reason
            return "ready"

    assert asyncio.run(check(200)) == "ready"
    assert asyncio.run(check(500)) == "opa_unhealthy"
