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
from hypothesis import given
from hypothesis import strategies as st

from proxy.errors import PolicyUnavailable
from proxy.opa_answers import MAX_ROW_LIMIT, MAX_TIMEOUT_MS
from proxy.policy import (
    AccessDecision,
    Decision,
    OPAPolicyEngine,
    Preflight,
    _cache_key,
)
from proxy.settings import OPASettings
from tests.fakes import READER

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


def _constrained(**constraints: Any) -> dict[str, Any]:
    return {"result": {**ALLOW, "constraints": {"access_mode": "READ", **constraints}}}


@pytest.mark.parametrize(
    "constraints",
    [
        {"timeout_ms": "900"},
        {"timeout_ms": True},
        {"timeout_ms": 900.0},
        {"timeout_ms": 0},
        {"timeout_ms": -1},
        {"timeout_ms": 2**63},
        {"timeout_ms": 1e300},
        {"timeout_ms": MAX_TIMEOUT_MS + 1},
        {"row_limit": "10"},
        {"row_limit": True},
        {"row_limit": False},
        {"row_limit": 10.0},
        {"row_limit": -1},
        {"row_limit": 2**63},
        {"row_limit": MAX_ROW_LIMIT + 1},
    ],
    ids=repr,
)
def test_a_constraint_of_the_wrong_type_or_out_of_range_fails_closed(
    constraints: dict[str, Any],
) -> None:
    """A number Neo4j or the row budget would be handed must be a JSON integer within the
    documented bounds: ``"900"``, ``true`` (an int to Python) or ``900.0`` is a policy bug, and
    ``2**63`` ms overflows Neo4j's transaction timeout. None of them may run with a limit the
    policy did not mean."""
    with pytest.raises(PolicyUnavailable) as error:
        decide(lambda _: httpx.Response(200, json=_constrained(**constraints)))
    assert error.value.reason == "opa_malformed_decision"


def test_constraints_at_their_bounds_are_kept() -> None:
    answer = _constrained(timeout_ms=MAX_TIMEOUT_MS, row_limit=MAX_ROW_LIMIT)
    decision = decide(lambda _: httpx.Response(200, json=answer))
    assert (decision.timeout_s, decision.row_limit) == (MAX_TIMEOUT_MS / 1000, MAX_ROW_LIMIT)
    smallest = decide(lambda _: httpx.Response(200, json=_constrained(timeout_ms=1, row_limit=0)))
    assert (smallest.timeout_s, smallest.row_limit) == (0.001, 0)


def ask(handler: Handler, question: str) -> object:
    """The engine's answer to ``question`` (decide, preflight or audit_read), provenance off."""

    async def go() -> object:
        transport = httpx.MockTransport(handler)
        config = OPASettings(url="http://opa.test", provenance=False)
        async with httpx.AsyncClient(base_url=config.url, transport=transport) as http:
            engine = OPAPolicyEngine(config, http)
            if question == "preflight":
                return await engine.preflight(DOCUMENT)
            if question == "audit_read":
                return await engine.authorize_audit_read(READER)
            return await engine.decide(DOCUMENT)

    return asyncio.run(go())


VERDICTS = {
    "decide": ALLOW,
    "preflight": {"allow": True, "reasons": [], "procedures": False, "functions": False},
    "audit_read": {"allow": True, "reasons": []},
}


@pytest.mark.parametrize("question", list(VERDICTS))
@pytest.mark.parametrize(
    "verdict",
    [
        {"allow": False, "reasons": ["write_not_granted", "write_not_granted"]},
        {"allow": False, "reasons": [""]},
        {"allow": False, "reasons": ["write_not_granted", 7]},
        {"allow": True, "reasons": ["write_not_granted"]},
    ],
    ids=["repeated", "empty", "not-a-string", "allowed-with-reasons"],
)
def test_reasons_that_are_repeated_empty_or_contradict_the_verdict_fail_closed(
    question: str, verdict: dict[str, Any]
) -> None:
    """A reason names why a request was refused, once: a repeated or empty one, or an allowing
    answer that names reasons to refuse, is a policy bug the gateway must not act on."""
    answer = {"result": {**VERDICTS[question], **verdict}}
    with pytest.raises(PolicyUnavailable) as error:
        ask(lambda _: httpx.Response(200, json=answer), question)
    assert error.value.reason == "opa_malformed_decision"


@pytest.mark.parametrize("question", list(VERDICTS))
def test_a_refusal_with_its_reasons_is_kept(question: str) -> None:
    refusal = {"allow": False, "reasons": ["a_reason", "another"]}
    answer = {"result": {**VERDICTS[question], **refusal}}
    verdict = ask(lambda _: httpx.Response(200, json=answer), question)
    verdict = verdict.decision if isinstance(verdict, Preflight) else verdict
    assert isinstance(verdict, Decision | AccessDecision)
    assert (verdict.allow, verdict.reasons) == (False, ("a_reason", "another"))


@pytest.mark.parametrize("decision_id", [7, "", "x" * 129, "opa-1\nforged", ["opa-1"]], ids=repr)
def test_a_decision_id_opa_gives_that_is_no_id_fails_closed(decision_id: Any) -> None:
    """OPA's decision id joins the audit record to OPA's decision log, and goes into Neo4j's
    transaction metadata: one that is not a short printable string is nonsense, not a reason to
    name the decision anew (which would leave the record joining nothing, silently)."""
    answer = {"result": ALLOW, "decision_id": decision_id}
    with pytest.raises(PolicyUnavailable) as error:
        decide(lambda _: httpx.Response(200, json=answer))
    assert error.value.reason == "opa_malformed_decision"


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
        config = OPASettings(url="http://opa.test", decision_cache_ttl_s=0)  # both from OPA
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


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _answering(revisions: list[str]) -> tuple[Handler, list[str]]:
    """OPA answering ALLOW under the revision at the head of ``revisions`` (the last one stays);
    the decision ids it gave, in order."""
    given: list[str] = []

    def opa(request: httpx.Request) -> httpx.Response:
        given.append(f"opa-{len(given)}")
        revision = revisions[0] if len(revisions) == 1 else revisions.pop(0)
        return httpx.Response(
            200,
            json={
                "result": ALLOW,
                "decision_id": given[-1],
                "provenance": {"bundles": {"policies": {"revision": revision}}},
            },
        )

    return opa, given


def _decisions(handler: Handler, steps: list[float], **settings: Any) -> list[Decision]:
    """Decisions on the same input, the clock moved by each step before each."""

    async def go() -> list[Decision]:
        clock = Clock()
        transport = httpx.MockTransport(handler)
        config = OPASettings(url="http://opa.test", **settings)
        async with httpx.AsyncClient(base_url=config.url, transport=transport) as http:
            engine = OPAPolicyEngine(config, http, clock=clock)
            decisions = []
            for step in steps:
                clock.now += step
                task = {**DOCUMENT, "principal": {"dag": "etl", "task": f"t{step}"}}
                decisions.append(await engine.decide(task))
            return decisions

    return asyncio.run(go())


def test_a_decision_is_reused_within_its_ttl_naming_the_decision_opa_logged() -> None:
    opa, given = _answering(["r1"])
    first, again, later = _decisions(opa, [0, 0.5, 1.0])
    assert given == ["opa-0", "opa-1"]  # asked again once the TTL (1 s) had passed
    assert (first.cached, again.cached, later.cached) == (False, True, False)
    assert again.decision_id == first.decision_id == "opa-0"  # joins OPA's decision log
    assert again.revision == "r1"
    assert again.as_document()["cached"] is True
    assert "cached" not in first.as_document()


def test_a_new_revision_in_any_answer_empties_the_cache() -> None:
    async def go() -> list[Decision]:
        revisions = ["r1", "r1", "r2"]
        opa, _ = _answering(revisions)
        config = OPASettings(url="http://opa.test", decision_cache_ttl_s=60)
        async with httpx.AsyncClient(
            base_url=config.url, transport=httpx.MockTransport(opa)
        ) as http:
            engine = OPAPolicyEngine(config, http, clock=Clock())
            other = {**DOCUMENT, "principal": {"dag": "other"}}
            decided = [await engine.decide(DOCUMENT), await engine.decide(other)]
            decided.append(await engine.decide(DOCUMENT))  # cached, under r1
            await engine.decide({**DOCUMENT, "principal": {"dag": "third"}})  # OPA says r2
            decided.append(await engine.decide(DOCUMENT))  # r1's decision is gone
            return decided

    _, _, cached, fresh = asyncio.run(go())
    assert cached.cached and cached.revision == "r1"
    assert not fresh.cached and fresh.revision == "r2"


def test_an_answer_of_the_revision_before_a_change_is_not_kept_after_it() -> None:
    """A question asked before OPA activated a new revision, answered after another answer
    named it: that late answer of the old revision set the cache's revision back and was kept,
    so the same input was answered from the old policy for a TTL more (here a minute), beyond
    the bound the module docstring gives."""

    async def go() -> Decision:
        release = asyncio.Event()
        slow_asked = 0

        async def opa(request: httpx.Request) -> httpx.Response:
            nonlocal slow_asked
            revision = "r2"
            if json.loads(request.content)["input"]["principal"]["dag"] == "slow":
                slow_asked += 1
                if slow_asked == 1:  # asked under r1, answered late
                    await release.wait()
                    revision = "r1"
            return httpx.Response(
                200,
                json={
                    "result": ALLOW,
                    "decision_id": str(uuid.uuid4()),
                    "provenance": {"bundles": {"policies": {"revision": revision}}},
                },
            )

        config = OPASettings(url="http://opa.test", decision_cache_ttl_s=60)
        transport = httpx.MockTransport(opa)
        async with httpx.AsyncClient(base_url=config.url, transport=transport) as http:
            engine = OPAPolicyEngine(config, http, clock=Clock())
            slow = {**DOCUMENT, "principal": {"dag": "slow"}}
            late = asyncio.ensure_future(engine.decide(slow))
            for _ in range(20):  # bounded: let it reach OPA
                await asyncio.sleep(0)
            assert (await engine.decide(DOCUMENT)).revision == "r2"  # OPA activated r2
            release.set()
            assert (await late).revision == "r1"  # decided before the change: its caller's
            return await engine.decide(slow)

    again = asyncio.run(go())
    assert again.revision == "r2" and not again.cached


@pytest.mark.parametrize("settings", [{"decision_cache_ttl_s": 0}, {"decision_cache_size": 0}])
def test_no_cache_asks_opa_every_time(settings: dict[str, Any]) -> None:
    opa, given = _answering(["r1"])
    decisions = _decisions(opa, [0, 0, 0], **settings)
    assert len(given) == 3 and not any(d.cached for d in decisions)


def _concurrent(answer: httpx.Response, requests: int) -> tuple[list[Any], int]:
    """``requests`` decisions on the same input asked at once, OPA answering ``answer`` once
    all of them wait; what each got (a decision or the error) and how often OPA was asked."""
    asked = 0

    async def go() -> list[Any]:
        release = asyncio.Event()

        async def opa(request: httpx.Request) -> httpx.Response:
            nonlocal asked
            asked += 1
            await release.wait()
            return answer

        config = OPASettings(url="http://opa.test", provenance=False)
        transport = httpx.MockTransport(opa)
        async with httpx.AsyncClient(base_url=config.url, transport=transport) as http:
            engine = OPAPolicyEngine(config, http, clock=Clock())
            waiting = [asyncio.ensure_future(engine.decide(DOCUMENT)) for _ in range(requests)]
            for _ in range(20):  # bounded: let every request reach the cache and OPA
                await asyncio.sleep(0)
            release.set()
            return list(await asyncio.gather(*waiting, return_exceptions=True))

    return asyncio.run(go()), asked


def test_misses_while_opa_is_asked_share_its_answer() -> None:
    answer = httpx.Response(200, json={"result": ALLOW, "decision_id": "opa-0"})
    decisions, asked = _concurrent(answer, 5)
    assert asked == 1
    assert [d.decision_id for d in decisions] == ["opa-0"] * 5
    assert [d.cached for d in decisions] == [False, True, True, True, True]


def test_a_failed_answer_fails_every_request_that_waited_for_it() -> None:
    errors, asked = _concurrent(httpx.Response(500), 3)
    assert asked == 1
    assert all(isinstance(e, PolicyUnavailable) for e in errors)


# JSON documents as OPA's input may hold them, with what orjson has no form for (lone surrogates,
# integers beyond 64 bits), so the standard library's fallback is generated too. Not infinity:
# JSON has no form for it (orjson writes it null, as it would None), OPA refuses the standard
# library's "Infinity", and no input the gateway makes holds a float at all.
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_PRINCIPALS = st.dictionaries(
    st.sampled_from(["dag", "subject", "task", "run", "try_number", "issuer"]), _JSON
)
_DOCUMENTS = st.fixed_dictionaries(
    {"principal": _PRINCIPALS}, optional={"request": _JSON, "analysis": _JSON}
)


def _grounds(document: dict[str, Any]) -> str:
    """What a decision rests on, in the standard library's canonical JSON: the oracle."""
    principal = {
        k: v for k, v in document["principal"].items() if k not in {"task", "run", "try_number"}
    }
    return json.dumps({**document, "principal": principal}, sort_keys=True)


@given(_DOCUMENTS, _DOCUMENTS)
def test_two_inputs_share_a_decision_exactly_when_their_grounds_are_the_same(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    same = _grounds(first) == _grounds(second)
    assert (_cache_key(first) == _cache_key(second)) is same


@given(_DOCUMENTS, st.randoms(use_true_random=False))
def test_an_inputs_key_is_the_same_whatever_the_order_of_its_entries_or_its_context(
    document: dict[str, Any], random: Any
) -> None:
    principal = [*document["principal"].items(), ("task", "t"), ("run", "r")]
    random.shuffle(principal)
    entries = [(k, v) for k, v in document.items() if k != "principal"]
    entries.append(("principal", dict(principal)))
    random.shuffle(entries)
    assert _cache_key(dict(entries)) == _cache_key(document)


def test_an_input_orjson_cannot_write_gets_a_key_of_its_own() -> None:
    surrogate = {"principal": {"dag": "etl"}, "request": {"statement": "RETURN '\ud800'"}}
    huge = {"principal": {"dag": "etl"}, "request": {"limit": 2**64}}
    assert isinstance(_cache_key(surrogate), str) and isinstance(_cache_key(huge), str)
    assert isinstance(_cache_key(DOCUMENT), bytes)
    assert _cache_key(surrogate) != _cache_key({**surrogate, "request": {"statement": "x"}})
