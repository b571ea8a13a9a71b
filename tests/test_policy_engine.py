"""The OPA client's side of the contract, with OPA's REST API answered in-process: the request
it sends, and fail-closed answers to every kind of trouble. The same against the real OPA is in
test_policy.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import proxy.policy
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


class FakeRevisionSource:
    """OPA's /v1/policies and /v1/data answers, editable, counting the revisions computed."""

    def __init__(self) -> None:
        self.modules: Any = {"result": [{"id": "a.rego", "raw": "package a", "ast": {}}]}
        self.data: Any = {"result": {"grants": {"etl": ["READ"]}}}
        self.separators = (",", ":")

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = self.modules if request.url.path == "/v1/policies" else self.data
        return httpx.Response(200, content=json.dumps(body, separators=self.separators).encode())


def revisions(source: FakeRevisionSource, edits: list[Callable[[], None]]) -> list[str]:
    async def go() -> list[str]:
        transport = httpx.MockTransport(source.handler)
        config = OPASettings(url="http://opa.test")
        async with httpx.AsyncClient(base_url=config.url, transport=transport) as http:
            engine = OPAPolicyEngine(config, http)
            seen = []
            for edit in edits:
                edit()
                seen.append(await engine.fetch_revision())
            return seen

    return asyncio.run(go())


def test_the_revision_follows_the_policy_not_opas_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    source = FakeRevisionSource()
    computed = 0
    real = proxy.policy._revision

    def counting(modules: dict[str, Any], data: dict[str, Any]) -> str:
        nonlocal computed
        computed += 1
        return real(modules, data)

    monkeypatch.setattr(proxy.policy, "_revision", counting)

    def nothing() -> None:
        pass

    def grant() -> None:
        source.data = {"result": {"grants": {"etl": ["READ", "WRITE"]}}}

    def respace() -> None:  # the same policy, other bytes
        source.separators = (", ", ": ")

    def edit_module() -> None:
        source.modules = {"result": [{"id": "a.rego", "raw": "package a\n", "ast": {}}]}

    seen = revisions(source, [nothing, nothing, nothing, grant, respace, edit_module])
    assert seen[0] == seen[1] == seen[2]
    assert seen[3] != seen[0]
    assert seen[4] == seen[3]
    assert seen[5] not in (seen[0], seen[3])
    assert computed == 4  # unchanged answers are not parsed and hashed again


@pytest.mark.parametrize("answer", [[], "null", {"result": 3}])
def test_a_malformed_revision_answer_is_unavailable(answer: Any) -> None:
    source = FakeRevisionSource()
    source.modules = answer
    with pytest.raises(PolicyUnavailable):
        revisions(source, [lambda: None])


def test_a_hung_opa_keeps_no_cached_decision_past_the_revision_interval() -> None:
    """A refusing OPA empties the cache at once; a hung one (its revision read waiting out its
    timeout) must not keep cached decisions alive longer than opa.revision_interval_s."""
    hung = asyncio.Event()
    asked = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal asked
        if request.url.path.startswith("/v1/data/cyphergate/authz"):
            asked += 1
            return httpx.Response(200, json={"result": ALLOW})
        if hung.is_set():
            await asyncio.sleep(30)  # a paused OPA: the connection stays open, no answer
        body: Any = {"result": []} if request.url.path == "/v1/policies" else {"result": {}}
        return httpx.Response(200, json=body)

    async def go() -> tuple[int, int, float]:
        transport = httpx.MockTransport(handler)
        config = OPASettings(url="http://opa.test", revision_interval_s=0.3, timeout_s=2.0)
        async with httpx.AsyncClient(base_url=config.url, transport=transport) as http:
            engine = OPAPolicyEngine(config, http)
            await engine.open()
            try:
                await engine.decide(DOCUMENT)
                for _ in range(5):  # a healthy OPA: every later decision is a cache hit
                    await asyncio.sleep(0.1)
                    await engine.decide(DOCUMENT)
                healthy = asked
                hung.set()
                started = time.monotonic()
                while asked == healthy and time.monotonic() - started < 5:
                    await engine.decide(DOCUMENT)
                    await asyncio.sleep(0.02)
                return healthy, asked, time.monotonic() - started
            finally:
                await engine.close()

    healthy, after, lapsed = asyncio.run(go())
    assert healthy == 1
    assert after == healthy + 1, "the cache outlived a hung OPA"
    assert lapsed <= 0.3 + 0.5  # the interval, and slack for a busy machine (a hang: 10 s)
