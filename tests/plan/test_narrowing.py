"""What a predicate proves about a node's labels, checked by running it on nodes of every label.

The plan reader lets a filter narrow a variable only by a positive label conjunct that every
passing row satisfies. For generated predicates (label expressions with ``!``, ``|``, ``&``,
``%``; NOT, AND, OR, XOR; property tests), the reader's claim "x has one of G" is checked
against Neo4j: every node the predicate lets through carries a label in G. Checked twice: on
the predicate as written (the reader's own parser) and on the plan Neo4j makes of it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from neo4j import Driver

from proxy.plan import ANY, read_plan
from proxy.plan.flow import Binding
from proxy.plan.parser import parse
from proxy.plan.reader import narrow

pytestmark = pytest.mark.integration

LABELS = ("Person", "Movie", "Secret", "Account", "Ghost")
LABEL_EXPRESSIONS = ("{a}", "{a}|{b}", "{a}&{b}", "!{a}", "%", "({a}|{b})&!{c}", "!({a}&{b})")
ATOMS = (
    "x:{label}",
    "x.uid > {n}",
    "x.name = 'n{n}'",
    "x.canary IS NULL",
    "'{a}' IN labels(x)",
    "size(labels(x)) = 2",
    "true",
)


@st.composite
def predicates(draw: st.DrawFn, depth: int = 0) -> str:
    form = draw(st.integers(0, 9 if depth < 3 else 4))
    if form < 5:
        a, b, c = (draw(st.sampled_from(LABELS)) for _ in range(3))
        label = draw(st.sampled_from(LABEL_EXPRESSIONS)).format(a=a, b=b, c=c)
        atom = draw(st.sampled_from(ATOMS))
        return atom.format(label=label, a=a, n=draw(st.integers(0, 14)))
    if form < 6:
        return f"NOT ({draw(predicates(depth + 1))})"
    operator = ("AND", "AND", "OR", "XOR")[form - 6]
    return f"({draw(predicates(depth + 1))} {operator} {draw(predicates(depth + 1))})"


def passing_labels(driver: Driver, predicate: str) -> list[set[str]]:
    records, _, _ = driver.execute_query(
        f"MATCH (x) WHERE x.fz AND ({predicate}) RETURN labels(x) AS labels"
    )
    return [set(r["labels"]) for r in records]


def test_a_narrowed_variable_has_what_the_reader_says(plan_driver: Driver) -> None:
    @settings(max_examples=300, derandomize=True, deadline=None, database=None)
    @given(predicate=predicates())
    def check(predicate: str) -> None:
        env = narrow(parse(predicate), {"x": Binding("node", None, fresh=True)})
        guarantee = env["x"].labels
        if guarantee is None:
            return
        for labels in passing_labels(plan_driver, predicate):
            assert labels & guarantee, (predicate, labels, guarantee)

    check()


def test_the_plan_of_a_filter_claims_no_more_than_holds(plan_driver: Driver) -> None:
    @settings(max_examples=200, derandomize=True, deadline=None, database=None)
    @given(predicate=predicates())
    def check(predicate: str) -> None:
        statement = f"MATCH (x) WHERE {predicate} RETURN x.uid AS uid"
        with plan_driver.session(database="neo4j", notifications_min_severity="OFF") as session:
            summary = session.run("EXPLAIN " + statement).consume()
        assert summary.plan is not None
        read = read_plan(summary.plan, statement=statement).labels_read
        if ANY in read:
            return
        for labels in passing_labels(plan_driver, predicate):
            assert labels & read, (predicate, labels, read)

    check()
