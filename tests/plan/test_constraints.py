"""A write reads the labels and types whose uniqueness or key constraints it may break."""

from __future__ import annotations

from proxy.plan import ANY, PlanFacts
from proxy.plan.constraints import compared_on_write
from proxy.statement import Constraint

ACCOUNT_EMAIL = Constraint("NODE", "Account", frozenset({"email"}))
MOVIE_TITLE = Constraint("NODE", "Movie", frozenset({"title"}))
OWNS_SINCE = Constraint("RELATIONSHIP", "OWNS", frozenset({"since"}))
ALL = (ACCOUNT_EMAIL, MOVIE_TITLE, OWNS_SINCE)


def reads(facts: PlanFacts) -> tuple[set[str], set[str]]:
    after = compared_on_write(facts, ALL)
    return set(after.labels_read), set(after.rel_types_read)


def test_a_property_a_constraint_covers_reads_its_label() -> None:
    """As any label where the statement does not name it (the refusal would name it), by its
    name where it does."""
    facts = PlanFacts(labels_read=frozenset({"Person"}), properties_written=frozenset({"email"}))
    assert reads(facts) == ({"Person", ANY}, set())
    named = PlanFacts(
        labels_read=frozenset({"Person", "Account"}), properties_written=frozenset({"email"})
    )
    assert reads(named) == ({"Person", "Account"}, set())


def test_a_label_written_reads_itself_where_a_constraint_is_on_it() -> None:
    facts = PlanFacts(labels_written=frozenset({"Movie"}))  # CREATE (:Movie {name: $n})
    assert reads(facts) == ({"Movie"}, set())


def test_properties_written_unknown_read_every_constrained_label_and_type() -> None:
    facts = PlanFacts(properties_written=frozenset({ANY}))  # SET p += $map
    assert reads(facts) == ({ANY}, {ANY})  # never a list of the constrained labels and types


def test_a_type_written_reads_itself_where_a_constraint_is_on_it() -> None:
    facts = PlanFacts(rel_types_written=frozenset({ANY}))
    assert reads(facts) == (set(), {ANY})
    named = PlanFacts(rel_types_written=frozenset({"OWNS"}))
    assert reads(named) == (set(), {"OWNS"})


def test_writes_no_constraint_covers_read_nothing_more() -> None:
    facts = PlanFacts(labels_written=frozenset({"Person"}), properties_written=frozenset({"name"}))
    assert compared_on_write(facts, ALL) is facts


def test_a_relationship_written_with_a_compared_key_reads_nodes_of_any_label() -> None:
    """A relationship constraint compares with relationships at nodes the grant may not read."""
    facts = PlanFacts(
        labels_read=frozenset({"Person"}),
        rel_types_written=frozenset({"OWNS"}),
        properties_written=frozenset({"since"}),
    )
    assert reads(facts) == ({"Person", ANY}, {"OWNS"})


def test_a_node_key_named_like_a_relationship_constraint_reads_no_more_labels() -> None:
    facts = PlanFacts(labels_written=frozenset({"Person"}), properties_written=frozenset({"since"}))
    assert reads(facts) == (set(), {ANY})
