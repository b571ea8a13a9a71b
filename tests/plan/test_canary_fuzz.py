"""The canary fuzzer: generated statements against the real Neo4j and OPA, and what got through.

For each statement hypothesis draws (``tests/plan/cypher.py``) and a test grant, the gateway's
own steps decide: Neo4j's ``EXPLAIN``, the plan reader, OPA over ``policies/``. A statement the
policy allows is then run, inside a transaction that is rolled back, and the oracles of
``tests/plan/canary.py`` look for anything it reached beyond its grant. CI runs a fixed-seed
budget (``--fuzz-examples``, 2,500 by default); ``pytest -m fuzz --fuzz-examples 50000`` runs a
longer, randomly seeded hunt. Every case found joins ``tests/policy/bypass_corpus.json``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neo4j import Driver, ManagedTransaction, Record
from neo4j.exceptions import ClientError, DatabaseError, Neo4jError

from proxy.analysis import Analysis
from proxy.neo4j.shown import notifications as shown
from proxy.plan import read_plan
from proxy.policy import input_document
from tests.plan.canary import (
    CANARY,
    GRANTS,
    WITHOUT_UNREADABLE,
    Grant,
    GraphState,
    canonical,
    copied_canaries,
    holds_canary,
    name_leaks,
    secret_names,
    spelled,
    write_violations,
)
from tests.plan.conftest import PlanStack
from tests.plan.cypher import Statement, statements

pytestmark = pytest.mark.integration
TX_TIMEOUT_S = 5.0
FAILED = "Neo.DatabaseError.Statement.ExecutionFailed"


@dataclass
class Outcome:
    """A statement's run: its canonical answer (with the notifications the gateway passes on
    and the counters), the graph after it, its rows, and what else the caller is shown
    (Neo4j's error message, or the notifications' texts)."""

    answer: list[str]
    after: GraphState | None  # None when it failed
    rows: list[Record]
    said: str


@dataclass
class Verdict:
    allowed: bool
    reasons: list[str]
    query_type: str


class Checker:
    """Decides as the gateway does, runs what is allowed, and applies the oracles."""

    def __init__(self, stack: PlanStack, stats: Counter[str]) -> None:
        self.driver: Driver = stack.driver
        self.http = httpx.Client(base_url=stack.opa_url, timeout=10.0)
        self.stats = stats
        self.before: GraphState = self._read(lambda tx: GraphState.read(lambda q: list(tx.run(q))))
        self.secret = {grant.dag: secret_names(grant, self.before) for grant in GRANTS}

    def _read(self, work: Callable[[ManagedTransaction], Any]) -> Any:
        with self.driver.session(database="neo4j", notifications_min_severity="OFF") as session:
            return session.execute_read(work)

    def decide(self, statement: Statement, grant: Grant) -> Verdict | None:
        """The gateway's verdict, or None when Neo4j itself refuses to plan the statement."""
        with self.driver.session(database="neo4j", notifications_min_severity="OFF") as session:
            try:
                summary = session.run("EXPLAIN " + statement.text, statement.parameters).consume()
            except Neo4jError:
                return None
        assert summary.plan is not None and summary.query_type is not None
        facts = read_plan(summary.plan, statement=statement.text)
        analysis = Analysis(query_type=summary.query_type, facts=facts)
        principal = {
            "method": "oidc",
            "issuer": "https://fuzz.test",
            "subject": grant.dag,
            "dag": grant.dag,
            "task": None,
            "run": None,
            "try_number": None,
        }
        document = input_document(
            principal,
            database="neo4j",
            statement=statement.text,
            parameter_names=list(statement.parameters),
            requested_access_mode=None,
            analysis=analysis.document,
        )
        answer = self.http.post("/v1/data/cyphergate/authz/decision", json={"input": document})
        decision = answer.raise_for_status().json()["result"]
        return Verdict(decision["allow"], decision["reasons"], summary.query_type)

    def run(self, statement: Statement, grant: Grant, *, without_unreadable: bool) -> Outcome:
        """The answer (or error) of the statement, and the graph after it; rolled back."""
        with self.driver.session(database="neo4j", notifications_min_severity="INFORMATION") as s:
            tx = s.begin_transaction(timeout=TX_TIMEOUT_S)
            try:
                if without_unreadable:
                    labels = [label for label in grant.read_labels if label != "*"]
                    for cleanup in WITHOUT_UNREADABLE:
                        tx.run(cleanup, labels=labels, types=list(grant.read_types)).consume()
                try:
                    result = tx.run(statement.text, statement.parameters)
                    rows = list(result)
                    metadata = result.consume().metadata
                except ClientError as exc:
                    # The message can name a value (a string where a boolean was wanted) or a
                    # label, type or key: what it names, the caller is shown.
                    return Outcome([f"error {exc.code}"], None, [], exc.message or "")
                except DatabaseError as exc:
                    if exc.code != FAILED:
                        raise
                    # Neo4j failed the statement itself (a shortest path whose ends are one
                    # node): the caller is told it failed (5xx), never Neo4j's words.
                    return Outcome([f"error {exc.code}"], None, [], "")
                # What the gateway passes on of Neo4j's notifications, and only that.
                said = [
                    f"{n.get('code')} {n.get('title')} {n.get('description')}"
                    for n in shown(metadata)
                ]
                answer = canonical(rows) + sorted(f"notification {n.split()[0]}" for n in said)
                # The counters a caller may ask for (includeCounters) are an answer too.
                answer.append(json.dumps(metadata.get("stats", {}), sort_keys=True))
                after = GraphState.read(lambda q: list(tx.run(q)))
                return Outcome(answer, after, rows, "\n".join(said))
            finally:
                tx.rollback()

    def check(self, statement: Statement, grant: Grant) -> None:
        self.stats["generated"] += 1
        verdict = self.decide(statement, grant)
        if verdict is None:
            self.stats["refused by Neo4j"] += 1
            return
        if not verdict.allowed:
            self.stats["denied"] += 1
            for reason in verdict.reasons:
                self.stats["reason " + reason.split(":", 1)[0]] += 1
            return
        assert not statement.refused, f"{grant.dag} was allowed {statement.text!r}"
        self.stats["allowed"] += 1
        self.stats[f"allowed {grant.dag}"] += 1
        try:
            ran = self.run(statement, grant, without_unreadable=False)
        except Neo4jError as exc:  # a timeout, say: nothing to judge
            self.stats["not run: " + (exc.code or type(exc).__name__)] += 1
            return
        problems: list[str] = []
        if not grant.reads_everything:
            if holds_canary(ran.answer) or CANARY in ran.said:
                problems.append(f"a canary in the answer: {ran.answer} {ran.said!r}")
            own = spelled(statement.text, statement.parameters)
            problems += name_leaks(grant, self.secret[grant.dag], own, ran.rows, ran.said)
            if ran.after is not None:
                problems += copied_canaries(grant, ran.after)
        if ran.after is not None:
            problems += write_violations(grant, self.before, ran.after)
        # Writes too: rolled back, what they answer must not depend on what the grant may not
        # read either (a failing write told a canary through its error).
        if verdict.query_type != "s" and not grant.reads_everything and not problems:
            try:
                alone: list[str] | None = self.run(statement, grant, without_unreadable=True).answer
            except Neo4jError:
                alone = None
            if alone is not None and alone != ran.answer:
                problems.append(f"the answer depends on unreadable data:\n {ran.answer}\n {alone}")
            self.stats["non-interference checked"] += 1
        assert not problems, (
            f"{grant.dag} was allowed {statement.text!r} ({statement.parameters}):\n"
            + "\n".join(problems)
        )


@pytest.fixture(scope="module")
def checker(plan_stack: PlanStack, fuzz_stats: Counter[str]) -> Iterator[Checker]:
    made = Checker(plan_stack, fuzz_stats)
    yield made
    made.http.close()


def _uses(grant: Grant) -> str:
    """What an attack on ``grant`` aims for: a grant that reads everything can only be
    overstepped by a write; one that writes nothing only by a read."""
    if grant.reads_everything:
        return "writes"
    return "any" if grant.write_labels else "reads"


def _budget(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--fuzz-examples"))


def test_the_oracles_catch_what_they_should(checker: Checker) -> None:
    """The fuzzer's oracles are not blind: a statement known to leak fails each of them."""
    reader, writer = GRANTS[0], GRANTS[1]
    leak = Statement("MATCH (n:Secret) RETURN n.canary AS c", {}, False)
    assert holds_canary(checker.run(leak, reader, without_unreadable=False).answer)
    count = Statement("MATCH (n) RETURN count(*) AS c", {}, False)
    everything = checker.run(count, reader, without_unreadable=False).answer
    assert everything != checker.run(count, reader, without_unreadable=True).answer
    write = Statement("MATCH (n:Secret) SET n.name = 'x'", {}, True)
    after = checker.run(write, writer, without_unreadable=False).after
    assert after is not None and write_violations(writer, checker.before, after)
    narrow = next(grant for grant in GRANTS if "*" not in grant.write_properties)
    key = Statement("MATCH (p:Person) SET p.born = 1", {}, True)
    after = checker.run(key, narrow, without_unreadable=False).after
    assert after is not None and write_violations(narrow, checker.before, after)
    # ACTED_IN is the writer's to delete, but not where it ties a Person to a node it may not read.
    cut = Statement("MATCH (:Person)-[r:ACTED_IN]-(:Secret) DELETE r", {}, True)
    after = checker.run(cut, writer, without_unreadable=False).after
    assert after is not None and write_violations(writer, checker.before, after)
    copy = Statement("MATCH (p:Person), (s:Secret) SET p.name = s.canary", {}, True)
    after = checker.run(copy, writer, without_unreadable=False).after
    assert after is not None and copied_canaries(writer, after)


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("MATCH (n) RETURN labels(n) AS c", "'Vault'"),
        ("MATCH ()-[r]->() RETURN type(r) AS c", "'OWNS'"),
        ("MATCH ()-[r]->() RETURN 'x' + type(r) AS c", "'KNOWS'"),
        ("MATCH (n) RETURN keys(n) AS c", "'canary'"),
        ("MATCH (n) RETURN properties(n) AS c", "'canary'"),
        ("MATCH ()-[r]->() RETURN r {.*} AS c", "'canary'"),
        ("MATCH (n) RETURN n AS c", "an unreadable node ['Account', 'Secret', 'Vault']"),
        ("MATCH p = ()-[]->() RETURN p AS c", "an unreadable relationship OWNS"),
        ("MATCH ()-[r]->() WHERE type(r) STARTS WITH 'K' RETURN date(type(r)) AS c", "'KNOWS'"),
    ],
)
def test_the_name_oracle_catches_names_the_grant_may_not_read(
    checker: Checker, text: str, leak: str
) -> None:
    """A label, type or key name only unreadable things carry is caught wherever it surfaces
    (a string, a map key, an entity returned whole, an error message); the labels of a readable
    node are not (`Secret` of the Movie:Secret node is the grant's to see), nor a name the
    statement spells itself."""
    reader = GRANTS[0]
    ran = checker.run(Statement(text, {}, False), reader, without_unreadable=False)
    found = name_leaks(reader, checker.secret[reader.dag], frozenset(), ran.rows, ran.said)
    assert any(leak in problem for problem in found), (found, ran.said)
    shown = Statement("MATCH (m:Movie) RETURN m AS c, labels(m) AS l", {}, False)
    ran = checker.run(shown, reader, without_unreadable=False)
    assert any("Secret" in row for row in ran.answer), ran.answer
    assert not name_leaks(reader, checker.secret[reader.dag], frozenset(), ran.rows, ran.said)
    own = spelled("RETURN 'OWNS' AS c", {})
    ran = checker.run(Statement("RETURN 'OWNS' AS c", {}, False), reader, without_unreadable=False)
    assert not name_leaks(reader, checker.secret[reader.dag], own, ran.rows, ran.said)


def test_a_key_taken_from_a_variable_is_decided_as_any_key(checker: Checker) -> None:
    """Inside FOREACH's and MERGE's details Neo4j prints a dynamic key n[seen] as n.seen: a
    grant of the key `seen` must not let it write `born`. Each shape is checked as the
    fuzzer checks it (its oracle sees `born` written), and refused for the key it may not
    know."""
    narrow = next(grant for grant in GRANTS if "*" not in grant.write_properties)
    for text in (
        "MATCH (p:Person) WHERE p.uid = 3 FOREACH (seen IN ['born'] | SET p[seen] = 1)",
        "FOREACH (seen IN ['born'] | MERGE (w:Person {uid: 3}) ON MATCH SET w[seen] = 1)",
        "UNWIND ['born'] AS seen MERGE (w:Person {uid: 3}) ON MATCH SET w[seen] = 1",
        "UNWIND [{k: 'born'}] AS seen MERGE (w:Person {uid: 3}) ON MATCH SET w[seen.k] = 1",
    ):
        statement = Statement(text, {}, True)
        checker.check(statement, narrow)
        verdict = checker.decide(statement, narrow)
        assert verdict is not None and "property_write_not_granted:*" in verdict.reasons, text


def test_a_delete_is_decided_as_the_commit_that_answers_it(checker: Checker) -> None:
    """Neo4j refuses, at commit (which the fuzzer's rolled-back runs never reach), to delete a
    node that still has a relationship, of any type, to any node: whether a plain DELETE
    committed tells of relationships the grant may not read. So it counts as reading them
    all, and a deleter limited to some labels and types is refused it."""
    deleter = next(grant for grant in GRANTS if grant.dag == "fuzz_writer")
    for text in (
        "MATCH (p:Person {name: $k}) DELETE p",
        "MATCH (p:Person) WHERE p.uid = 3 OPTIONAL MATCH (p)-[r:ACTED_IN]-(m:Movie)"
        " DELETE r WITH DISTINCT p DELETE p",
    ):
        verdict = checker.decide(Statement(text, {"k": "a"}, True), deleter)
        assert verdict is not None and not verdict.allowed, text
        assert "relationship_type_not_granted:*" in verdict.reasons, verdict.reasons
    relationship = Statement("MATCH (:Person)-[r:ACTED_IN]->(:Movie) DELETE r", {}, True)
    verdict = checker.decide(relationship, deleter)  # deleting a relationship always commits
    assert verdict is not None and verdict.allowed, verdict


def test_generated_statements_stay_within_their_grant(
    checker: Checker, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()

    @settings(
        max_examples=_budget(request),
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(grant=st.sampled_from(GRANTS), data=st.data())
    def hunt(grant: Grant, data: st.DataObject) -> None:
        checker.check(data.draw(statements(_uses(grant)), label="statement"), grant)

    hunt()
    checker.stats["seconds"] = int(time.monotonic() - started)
    assert checker.stats["allowed"] > checker.stats["generated"] // 10, checker.stats


@pytest.mark.fuzz
def test_a_long_random_hunt(checker: Checker, request: pytest.FixtureRequest) -> None:
    """On demand: ``pytest -m fuzz tests/plan --fuzz-examples 50000``."""

    @settings(
        max_examples=_budget(request),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(grant=st.sampled_from(GRANTS), data=st.data())
    def hunt(grant: Grant, data: st.DataObject) -> None:
        checker.check(data.draw(statements(_uses(grant)), label="statement"), grant)

    hunt()
