"""What a write reads through the database's constraints.

A uniqueness or key constraint compares the entity a statement writes with every other entity
of its label or type: a write that breaks one fails (at write time or at commit, naming the
other entity and its value), so whether it failed tells whether some node of that label holds
the value, readable by the grant or not. A grant that reads :Person and writes its ``email``
learned so, one guess per statement, whether any :Account held an address, when an admin had
made ``Account.email`` unique and a node was both (found by review). So a statement that writes
a property such a constraint covers, or the label or type it is on, reads that label or type:
by its name where the statement names it (reads or writes it), else as any (:data:`ANY`). The
policy's reasons for a refusal reach the caller, and a constraint on a label the statement does
not name would be named there (``SET p += $map`` would list every constrained label and type),
though which labels and types have constraints is not a label grant's to learn (``SHOW
CONSTRAINTS`` reads ``*``). Existence and type constraints check the written entity alone, and
tell nothing of others.

A relationship constraint compares with every relationship of its type, those at nodes the grant
may not read too (Neo4j's own ``READ`` hides a relationship whose end it may not traverse, and a
grant of a type is no more): so a write of a property it covers also reads nodes of any label
(:data:`ANY`).
"""

from __future__ import annotations

from dataclasses import replace

from proxy.plan import ANY, PlanFacts
from proxy.statement import Constraint


def compared_on_write(facts: PlanFacts, constraints: tuple[Constraint, ...]) -> PlanFacts:
    """``facts``, also reading each label or type whose constraint a write of theirs may break
    (its properties written, any property written, or its label or type written), by name if the
    statement names it, else as :data:`ANY`; and, where a relationship's constraint compares a
    property written, nodes of any label."""
    written = facts.properties_written
    labels, types = set(facts.labels_read), set(facts.rel_types_read)
    named = {
        "NODE": facts.labels_read | facts.labels_written,
        "RELATIONSHIP": facts.rel_types_read | facts.rel_types_written,
    }
    for constraint in constraints:
        names_written = (
            facts.labels_written if constraint.entity == "NODE" else facts.rel_types_written
        )
        compared = ANY in written or not written.isdisjoint(constraint.properties)
        if not (compared or constraint.name in names_written or ANY in names_written):
            continue
        # By name only where the statement names it: the policy's reasons reach the caller.
        name = constraint.name if constraint.name in named[constraint.entity] else ANY
        if constraint.entity == "NODE":
            labels.add(name)
            continue
        types.add(name)
        if compared and names_written:
            # Only a relationship written (created, or a property of it set) is compared, and
            # never by its type alone (no SET gives a relationship a type).
            labels.add(ANY)
    if labels == facts.labels_read and types == facts.rel_types_read:
        return facts
    return replace(facts, labels_read=frozenset(labels), rel_types_read=frozenset(types))
