"""Least-privilege facts from the plan Neo4j 5.26 returns for ``EXPLAIN``.

:func:`read_plan` turns ``summary.plan`` into what a statement reads and writes: the labels and
relationship types of the entities it touches, the property keys it sets, the procedures and
user-defined functions it calls, its LOAD CSV sources, its risky operators and its longest
variable-length pattern. The policy decides on these facts alone.

What a label in ``labels_read`` means: every node the statement finds (by a scan, an
expansion, a path, a procedure) and that anything above its finder sees, is known to carry one
of the labels recorded for it, because a label scan or index found it or because a positive
label test held on every row that passed; where nothing is known, :data:`ANY` is recorded. The
same holds for relationship types. Labels and types a predicate merely mentions are recorded
too. Writes are recorded against what the written entity is known to be (see
:mod:`proxy.plan.writes`). The reading is a dataflow over the plan tree, one rule per operator
(:mod:`proxy.plan.reader`); an operator or a detail it cannot read makes the analysis say so in
``unreadable`` and makes every fact it could hide :data:`ANY`.

LOAD CSV sources are not in the plan; they are read from the statement text by a lexer that
mirrors Neo4j's own (:mod:`proxy.plan.text`), and trusted only when it finds exactly as many as
the plan has ``LoadCSV`` operators. Names that Neo4j prints ambiguously in a plan (a quoted name
with ``]``, two spaces in a row or a line break, or a variable named like a generated one,
``anon_0``) make the plan unreadable rather than misread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.plan.flow import ANY, Facts
from proxy.plan.operators import RULES
from proxy.plan.reader import BUILTIN_NAMESPACES, Reader
from proxy.plan.text import (
    DYNAMIC,
    UnreadableText,
    cypher_prefix,
    load_csv_sources,
    namespaced_calls,
    tokens,
)

__all__ = ["ANY", "DYNAMIC", "PlanFacts", "read_plan"]

_GENERATED = re.compile(r"anon_\d+\Z")
_PLAIN = re.compile(r"\$\w+\Z")
_SAFE_NAME = re.compile(r"\w+(?: \w+)*\Z")
# Words that, printed unquoted after a name, read as more of a pattern or an expression
# (``getDegree((m)-[:ACTED_IN WHERE true]->())``): never part of a name with spaces.
_STRUCTURE_WORDS = frozenset(
    "WHERE IS TYPED NOT NULL AND OR XOR IN AS STARTS ENDS WITH CONTAINS TRUE FALSE CASE WHEN"  # noqa: SIM905
    " THEN ELSE END DISTINCT ALL ANY NONE SINGLE EXISTS COUNT COLLECT".split()
)
_CYPHER_OPTIONS = frozenset(
    {"runtime", "planner", "replan", "expressionengine", "operatorengine"}
    | {"interpretedpipesfallback", "updatestrategy", "connectcomponentsplanner"}
)


@dataclass(frozen=True, slots=True)
class PlanFacts:
    """What one planned statement reads, writes and calls; :data:`ANY` where unknowable."""

    labels_read: frozenset[str] = frozenset()
    labels_written: frozenset[str] = frozenset()
    rel_types_read: frozenset[str] = frozenset()
    rel_types_written: frozenset[str] = frozenset()
    properties_written: frozenset[str] = frozenset()
    procedures: frozenset[str] = frozenset()
    functions: frozenset[str] = frozenset()
    load_csv: tuple[str, ...] = ()
    operators: frozenset[str] = frozenset()
    deletes: bool = False
    # Databases the operators run on (the ``@db`` suffix): a routed administration command or a
    # ``USE system CALL ...`` shows "system" here although the session's database is another.
    databases: frozenset[str] = frozenset()
    # Commands in the plan (SHOW ..., TERMINATE TRANSACTIONS, administration and index or
    # constraint commands), by operator name: they read or change more than graph data.
    commands: frozenset[str] = frozenset()
    # The most hops any variable-length pattern, shortest path or quantified path may take
    # (2147483647: no bound); None when there is none.
    max_hops: int | None = None
    # What the reader could not read (an unknown operator, details in an unknown form, an
    # ambiguous name); the facts above are then ANY wherever it could matter.
    unreadable: frozenset[str] = frozenset()


def read_plan(plan: Mapping[str, Any], *, statement: str | None = None) -> PlanFacts:
    """The facts of a ``summary.plan`` tree; ``statement`` (its text) names LOAD CSV sources
    and lets ambiguous names be caught. Raises ValueError for something that is not a plan."""
    facts = Facts()
    if statement is not None:
        _check_names(statement, facts)
    try:
        # What the root hands on is seen, whatever its operator (ProduceResults observes).
        facts.observe(Reader(facts, RULES).walk(plan, {}))
    except RecursionError:  # expressions nested beyond what the reader's recursion reaches
        facts.opaque(writes=True, what="nesting too deep")
    sources: list[str] = []
    if statement is not None:
        try:
            sources = load_csv_sources(statement)
        except UnreadableText:
            sources = [DYNAMIC] * max(1, facts.load_csv_ops)
    if len(sources) != facts.load_csv_ops:
        # Never guess which source belongs to which load; and a load in the text that the
        # plan does not show is hidden somewhere the reader did not look.
        if len(sources) > facts.load_csv_ops:
            facts.opaque(writes=False, what="LOAD CSV the plan does not show")
        sources = [DYNAMIC] * max(len(sources), facts.load_csv_ops)
    if DYNAMIC in sources:
        _source_calls(statement, facts)
    sets = facts.sets
    return PlanFacts(
        labels_read=frozenset(sets.get("labels_read", ())),
        labels_written=frozenset(sets.get("labels_written", ())),
        rel_types_read=frozenset(sets.get("rel_types_read", ())),
        rel_types_written=frozenset(sets.get("rel_types_written", ())),
        properties_written=frozenset(sets.get("properties_written", ())),
        procedures=frozenset(sets.get("procedures", ())),
        functions=frozenset(sets.get("functions", ())),
        load_csv=tuple(sources),
        operators=frozenset(sets.get("operators", ())),
        deletes=facts.deletes,
        databases=frozenset(sets.get("databases", ())),
        commands=frozenset(sets.get("commands", ())),
        max_hops=facts.max_hops,
        unreadable=frozenset(sets.get("unreadable", ())),
    )


def _source_calls(statement: str | None, facts: Facts) -> None:
    """The user-defined functions a ``LOAD CSV`` source's expression may call: the plan does not
    print it, so every one the statement calls (any, if its text is unknown)."""
    try:
        calls = namespaced_calls(statement) if statement is not None else None
    except UnreadableText:
        calls = None
    if calls is None:
        facts.add("functions", None)
        return
    facts.add("functions", [c for c in calls if c.rsplit(".", 1)[0] not in BUILTIN_NAMESPACES])


def _safe_name(name: str) -> bool:
    if not _SAFE_NAME.match(name):
        return False
    return " " not in name or _STRUCTURE_WORDS.isdisjoint(name.upper().split(" "))


def _check_names(statement: str, facts: Facts) -> None:
    """What a plan would print ambiguously, or plan as something else: such a plan cannot be
    read safely.

    - A name in backticks may hold only letters, digits, underscores and single spaces, and no
      word such as ``WHERE`` beside a space: Neo4j prints some names without quotes (cached
      properties, ``getDegree`` patterns), where a quote, a bracket, an arrow or a keyword in a
      name would read as structure.
    - A variable named like Neo4j's own anonymous ones (``anon_0``) would be confused with them.
    - ``CYPHER`` options other than the runtime, planner and replanning ones (``debug=...``
      makes Neo4j answer with its internals, and plan nothing that runs)."""
    try:
        found = tokens(statement)
    except UnreadableText:
        facts.opaque(writes=True, what="statement text")
        return
    bracketed, depth = set(), 0
    for token in found:
        text = token.text
        if token.kind == "symbol":
            depth += (text == "[") - (text == "]")
        elif depth > 0 and token.kind in ("name", "word"):
            bracketed.add(text)
        quoted = token.kind == "name" or (token.kind == "parameter" and not _PLAIN.match(text))
        if quoted and not _safe_name(text.removeprefix("$")):
            facts.opaque(writes=True, what="ambiguous name")
        elif token.kind in ("name", "word") and _GENERATED.match(text):
            facts.opaque(writes=True, what="variable named like a generated one")
    facts.bracketed = frozenset(bracketed)
    for option in cypher_prefix(found)[0]:
        if option.lower() not in _CYPHER_OPTIONS:
            facts.opaque(writes=True, what=f"CYPHER option {option}")
