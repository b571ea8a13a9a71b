"""The analysis beyond what the plan reader reads: what a procedure's declared mode adds."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from proxy.analysis import PlanReader
from proxy.plan import ANY
from proxy.statement import Constraint, Plan
from tests.plan.test_reader import op


@dataclass
class ProcedurePlanner:
    """Neo4j planning ``MATCH (n:Person) CALL <procedure>(n)``, typed ``query_type``, with the
    procedures' modes as ``modes`` says."""

    procedure: str
    query_type: str
    modes: dict[str, str] = field(default_factory=dict)

    async def plan(self, database: str, statement: str) -> Plan:
        call = op(
            "ProcedureCall",
            f"{self.procedure}(n) :: ()",
            op("NodeByLabelScan", "n:Person", ids="n"),
            ids="n",
        )
        return Plan(query_type=self.query_type, operators=op("ProduceResults", "", call))  # type: ignore[arg-type]

    async def constraints(self, database: str) -> tuple[Constraint, ...]:
        return ()

    async def procedure_modes(self, database: str) -> dict[str, str]:
        return self.modes


def test_a_procedure_that_may_write_reads_writes_and_deletes_anything() -> None:
    """A procedure Neo4j does not declare READ writes to what it is handed, and the plan names
    only the call: ``apoc.nodes.delete(n)`` deletes, so it needs the delete grant, and what it
    hands back may be anything (found by review: it wrote anything but deleted nothing, so a
    grant writing ``*`` without ``delete`` deleted through it)."""
    for modes in ({"apoc.nodes.delete": "WRITE"}, {}):  # declared WRITE, or found on no list
        planner = ProcedurePlanner("apoc.nodes.delete", "w", modes)
        facts = asyncio.run(PlanReader(planner).explain("neo4j", "CALL ...")).facts
        assert facts.deletes, modes
        assert ANY in facts.labels_written and ANY in facts.labels_read, modes
        assert ANY in facts.rel_types_written and ANY in facts.rel_types_read, modes
    reads = ProcedurePlanner("db.labels", "rw", {"db.labels": "READ"})
    facts = asyncio.run(PlanReader(reads).explain("neo4j", "CALL ...")).facts
    assert not facts.deletes and ANY not in facts.labels_written
