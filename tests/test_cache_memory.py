"""The caches keyed by what a caller sends (the analysis cache by statement text, the decision
cache by the policy input, which holds it) are bounded in memory, not only in entries: a caller
sending distinct long statements (131,072 characters at most through a front door, up to four
bytes each) must not make the gateway hold a cache's count of them. Shown here with longer ones
given to the caches themselves."""

from __future__ import annotations

import asyncio
import gc
import sys
import types
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from proxy.analysis import Analysis, Analyzer
from proxy.plan import PlanFacts
from proxy.policy import OPAPolicyEngine
from proxy.settings import OPASettings

MIB = 1024 * 1024
ALLOW = {"allow": True, "reasons": [], "constraints": {"access_mode": "READ"}}
STATEMENTS = 160  # of 1 MiB each: what the default caches' counts (4,096, 8,192) let in


def statement(i: int) -> str:
    return f"RETURN {i} // " + "x" * MIB


def held_mib(fill: Callable[[], Coroutine[Any, Any, object]]) -> float:
    """The memory reachable from what ``fill()`` returns (tracemalloc would count the buffers
    orjson over-allocates, which are not resident, and the process's size is too noisy)."""
    kept = asyncio.run(fill())
    seen: set[int] = set()
    size = 0
    waiting = [kept]
    while waiting:
        value = waiting.pop()
        if id(value) in seen or isinstance(value, type | types.ModuleType | types.FunctionType):
            continue
        seen.add(id(value))
        size += sys.getsizeof(value)
        waiting.extend(gc.get_referents(value))
    return size / MIB


class Explainer:
    async def explain(self, database: str, statement: str) -> Analysis:
        del database, statement
        return Analysis(query_type="r", facts=PlanFacts())


def test_the_analysis_cache_holds_a_bounded_amount_of_statement_text() -> None:
    async def fill() -> Analyzer:
        analyzer = Analyzer(Explainer(), max_entries=4096)
        for i in range(STATEMENTS):
            await analyzer.analyse("neo4j", statement(i))
        return analyzer  # kept while measured

    assert held_mib(fill) < 100, "the analysis cache kept every long statement"


def test_the_decision_cache_holds_a_bounded_amount_of_input() -> None:
    def opa(request: httpx.Request) -> httpx.Response:
        del request
        return httpx.Response(200, json={"result": ALLOW})

    async def fill() -> OPAPolicyEngine:
        config = OPASettings(url="http://opa.test", provenance=False)
        transport = httpx.MockTransport(opa)
        async with httpx.AsyncClient(base_url=config.url, transport=transport) as http:
            engine = OPAPolicyEngine(config, http)
            for i in range(STATEMENTS):
                document = {"version": 2, "principal": {"dag": "etl"}}
                await engine.decide({**document, "request": {"statement": statement(i)}})
        return engine  # kept while measured

    assert held_mib(fill) < 100, "the decision cache kept every long input"
