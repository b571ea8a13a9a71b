"""What the request path tells a front door that asked for lineage (``Gateway.run``'s
``on_lineage``), with fakes at its seams: an allowed statement's touch, once, before it runs;
nothing for a refused one; a shadow-mode refusal that ran is told like any statement that ran."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from proxy.errors import PolicyDenied
from proxy.gateway.call import Call, Statement
from proxy.gateway.path import Gateway
from proxy.lineage import Lineage
from tests.fakes import FakePolicy, fake_gateway

SPACE = "neo4j://graph.internal:7687"


def gateway(policy: FakePolicy, *, namespace: str | None = SPACE) -> Gateway:
    return fake_gateway(policy=policy, lineage_namespace=namespace)


def call(text: str) -> Call:
    async def read() -> Statement:
        return Statement(text=text, parameters={})

    return Call("r-7", "films", "Bearer good", None, {}, read)


def told(gateway: Gateway, text: str) -> list[Lineage]:
    seen: list[Lineage] = []

    async def go(tell: Callable[[Lineage], None]) -> None:
        async with gateway.run(call(text), on_lineage=tell) as rows:
            assert seen, "told before the rows are read"
            [row async for row in rows]

    asyncio.run(go(seen.append))
    return seen


def test_an_allowed_statement_is_told_once_with_its_request_id_and_namespace() -> None:
    (lineage,) = told(gateway(FakePolicy()), "CREATE (:N)")
    assert lineage.request_id == "r-7" and lineage.namespace == SPACE
    assert lineage.touched.database == "films"
    assert lineage.touched.outputs() == ["films.N"] and lineage.touched.inputs() == []


def test_a_refused_statement_is_told_nothing() -> None:
    seen: list[Lineage] = []

    async def go() -> None:
        refusing = gateway(FakePolicy(allow=False))
        async with refusing.run(call("CREATE (:N)"), on_lineage=seen.append):
            pass

    with pytest.raises(PolicyDenied):
        asyncio.run(go())
    assert seen == []


def test_a_shadow_refusal_that_runs_is_told() -> None:
    (lineage,) = told(gateway(FakePolicy(allow=False, shadow=True)), "CREATE (:N)")
    assert lineage.touched.labels_written == ("N",)


def test_a_gateway_without_a_namespace_tells_nothing() -> None:
    seen: list[Lineage] = []

    async def go() -> None:
        async with gateway(FakePolicy(), namespace=None).run(
            call("RETURN 1"), on_lineage=seen.append
        ) as rows:
            [row async for row in rows]

    asyncio.run(go())
    assert seen == []
