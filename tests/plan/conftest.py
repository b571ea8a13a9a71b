"""A private local stack (Neo4j and OPA) for the plan reader's tests, holding the canary graph."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from neo4j import Driver, GraphDatabase

from proxy.devstack.install import default_cache_dir
from proxy.devstack.stack import DevStack
from tests.plan.canary import GRANTS, seed_statements

REPO = Path(__file__).resolve().parents[2]
FUZZ_STATS = pytest.StashKey[Counter[str]]()
INDEXES = (
    "CREATE INDEX person_name IF NOT EXISTS FOR (p:Person) ON (p.name)",
    "CREATE CONSTRAINT movie_title IF NOT EXISTS FOR (m:Movie) REQUIRE m.title IS UNIQUE",
    "CALL db.awaitIndexes()",
)


@dataclass(frozen=True)
class PlanStack:
    driver: Driver
    opa_url: str


@pytest.fixture(scope="package")
def plan_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlanStack]:
    """Neo4j with the canary graph and OPA with the test grants, stopped at the end."""
    # The test grants join the repository's in a copy of policies/, served as a bundle.
    policies = shutil.copytree(REPO / "policies", tmp_path_factory.mktemp("plan-policies") / "p")
    data = json.loads((policies / "data.json").read_text(encoding="utf-8"))
    data["cyphergate"]["grants"]["dags"].update({g.dag: g.document() for g in GRANTS})
    (policies / "data.json").write_text(json.dumps(data), encoding="utf-8")
    stack = DevStack(
        tmp_path_factory.mktemp("plan-devstack"),
        cache_dir=default_cache_dir(),
        policies_dir=policies,
    )
    try:
        status = stack.up()
        neo4j = status["neo4j"]
        with GraphDatabase.driver(neo4j["bolt_uri"], auth=(neo4j["user"], neo4j["password"])) as d:
            for statement, parameters in seed_statements():
                d.execute_query(statement, parameters)
            for statement in INDEXES:
                d.execute_query(statement)
            yield PlanStack(d, status["opa"]["url"])
    finally:
        stack.down()


@pytest.fixture(scope="package")
def plan_driver(plan_stack: PlanStack) -> Driver:
    return plan_stack.driver


@pytest.fixture(scope="package")
def fuzz_stats(request: pytest.FixtureRequest) -> Counter[str]:
    """What the canary fuzzer generated, allowed and checked; printed at the end of the run."""
    return request.config.stash.setdefault(FUZZ_STATS, Counter())


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    stats = config.stash.get(FUZZ_STATS, None)
    if stats:
        terminalreporter.write_line("canary fuzzer: " + json.dumps(dict(sorted(stats.items()))))
