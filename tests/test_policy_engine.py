"""The OPA client's side of the contract, with OPA's REST API answered in-process: the request
it sends, and fail-closed answers to every kind of trouble. The same against the real OPA is in
test_policy.py."""

from __future__ import annotations

import asyncio
import json
import uuid
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
        # Provenance off unless a test asks: most answers here are about the decision alone.
        config = OPASettings(url="http://opa.test", **{"provenance": False, **settings})
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


def test_the_revision_and_id_are_opas_for_this_very_decision() -> None:
    answers = iter(
        [
            {"decision_id": "opa-1", "provenance": {"bundles": {"cyphergate": {"revision": "c1"}}}},
            {"decision_id": "opa-2", "provenance": {"bundles": {"cyphergate": {"revision": "c2"}}}},
        ]
    )

    def opa(request: httpx.Request) -> httpx.Response:
        assert request.url.params.get("provenance") == ""  # asked for, with no value
        return httpx.Response(200, json={**next(answers), "result": ALLOW})

    async def go() -> list[Decision]:
        transport = httpx.MockTransport(opa)
        config = OPASettings(url="http://opa.test")
        async with httpx.AsyncClient(base_url=config.url, transport=transport) as http:
            engine = OPAPolicyEngine(config, http)
            return [await engine.decide(DOCUMENT), await engine.decide(DOCUMENT)]

    first, second = asyncio.run(go())
    assert (first.decision_id, first.revision) == ("opa-1", "c1")
    assert (second.decision_id, second.revision) == ("opa-2", "c2")


def test_without_provenance_or_decision_logs_nothing_is_made_up() -> None:
    asked: list[httpx.Request] = []

    def opa(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json={"result": ALLOW})

    decision = decide(opa, provenance=False)
    assert "provenance" not in asked[0].url.params
    assert decision.revision is None
    assert uuid.UUID(decision.decision_id)  # the gateway's own id when OPA logs none


@pytest.mark.parametrize(
    ("bundles", "revision"),
    [
        ({}, None),  # a plain folder: OPA names no bundle
        ({"cyphergate": {"revision": ""}}, None),
        ({"b": {"revision": "2"}, "a": {"revision": "1"}}, "a=1,b=2"),
        ({"b": {"revision": "2"}, "a": {}}, "a=,b=2"),
    ],
)
def test_the_revision_names_every_bundle(bundles: dict[str, Any], revision: str | None) -> None:
    answer = {"provenance": {"version": "1.22.2", "bundles": bundles}, "result": ALLOW}
    decision = decide(lambda _: httpx.Response(200, json=answer), provenance=True)
    assert decision.revision == revision


@pytest.mark.parametrize(
    "provenance",
    [None, "text", {"bundles": []}, {"bundles": {"cyphergate": {"revision": 3}}}],
    ids=["missing", "text", "list", "number"],
)
def test_a_malformed_provenance_fails_closed(provenance: Any) -> None:
    answer = {"provenance": provenance, "result": ALLOW}
    with pytest.raises(PolicyUnavailable) as error:
        decide(lambda _: httpx.Response(200, json=answer), provenance=True)
    assert error.value.reason == "opa_malformed_provenance"
