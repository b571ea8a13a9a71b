"""What a statement does, as Neo4j itself plans it with ``EXPLAIN``.

Neo4j plans the statement without running it and reports its query type: ``r`` (read only),
``rw`` (reads and writes), ``w`` (write only) or ``s`` (schema), and the plan, from which the
plan reader (:mod:`proxy.plan`) reads the labels, relationship types, properties, procedures,
LOAD CSV sources and risky operators. The gateway trusts this over anything it could infer from
the text. Analyses are cached per database and exact statement text, in a bounded LRU with a
time to live, and within :data:`MAX_CACHED_BYTES` of statement text (a key is the whole text,
which a caller chooses, up to :data:`proxy.gateway.call.MAX_STATEMENT_CHARACTERS` characters: a
count of entries alone would let 4,096 distinct long statements hold gigabytes of text in
four-byte characters); parameters do not change a plan's facts, so they are not part of the
key. A schema statement run through the gateway advances the schema epoch, which empties the
cache of every process sharing the epoch (the workers of one replica, see :mod:`proxy.epoch`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Protocol

from proxy.epoch import LocalEpoch
from proxy.errors import BadRequest
from proxy.lru import BoundedLRU
from proxy.metrics import Metrics
from proxy.plan import ANY, PlanFacts, read_plan
from proxy.plan.constraints import compared_on_write
from proxy.plan.text import execution_mode
from proxy.statement import Constraint, Plan, QueryType
from proxy.tracing import OFF, Step

# The statement texts the analysis cache keeps, in bytes of memory, at most all together (beside
# its count of entries): thousands of typical statements, a few of the longest a caller may send.
MAX_CACHED_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Analysis:
    """Neo4j's classification of one statement and what its plan touches."""

    query_type: QueryType
    facts: PlanFacts

    @property
    def commits_in_batches(self) -> bool:
        """True for ``CALL { ... } IN TRANSACTIONS``: each batch commits on its own, so if the
        statement fails or is left halfway, what the batches before wrote stays."""
        return not self.facts.operators.isdisjoint(("TransactionApply", "TransactionForeach"))

    @property
    def is_read_only(self) -> bool:
        """True when the statement can run in a READ transaction."""
        return self.query_type == "r"

    @cached_property
    def document(self) -> dict[str, Any]:
        """The analysis as it appears in the policy input (schema v2) and the audit record.

        Built once per analysis (and analyses are cached), so a cache hit sorts nothing;
        shared by every request for the statement, so never modify it."""
        facts = self.facts
        return {
            "query_type": self.query_type,
            "labels": {"read": sorted(facts.labels_read), "write": sorted(facts.labels_written)},
            "relationship_types": {
                "read": sorted(facts.rel_types_read),
                "write": sorted(facts.rel_types_written),
            },
            "properties_written": sorted(facts.properties_written),
            "procedures": sorted(facts.procedures),
            "functions": sorted(facts.functions),
            "load_csv": sorted(set(facts.load_csv)),
            "operators": sorted(facts.operators),
            "deletes": facts.deletes,
            "databases": sorted(facts.databases),
            "commands": sorted(facts.commands),
            "max_hops": facts.max_hops,
            "unreadable": sorted(facts.unreadable),
        }


class Explainer(Protocol):
    """Plans a statement on a database without running it.

    Contract: never executes the statement; raises the gateway's errors (unknown database,
    syntax error, Neo4j unavailable) exactly as running it would.
    """

    async def explain(self, database: str, statement: str) -> Analysis: ...


class SchemaEpoch(Protocol):
    """A number that changes whenever a schema statement is about to run.

    Contract: ``current`` is cheap (it is read on every statement); after ``advance`` (in any
    process sharing the epoch) ``current`` returns a value it has not returned before.
    """

    def current(self) -> int: ...

    def advance(self) -> None: ...


class Analyzer:
    """An :class:`Explainer` behind a bounded LRU cache whose entries live ``ttl_s`` at most and
    only while the schema epoch stays where it was when they were cached."""

    def __init__(
        self,
        explainer: Explainer,
        *,
        max_entries: int,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        epoch: SchemaEpoch | None = None,
    ) -> None:
        self._explainer = explainer
        self._epoch = epoch or LocalEpoch()
        self._filled_under = self._epoch.current()
        lookups = (metrics or Metrics()).cache_lookups
        self._hit, self._miss = (
            lookups.labels("analysis", "hit"),
            lookups.labels("analysis", "miss"),
        )
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._clock = clock
        # By database and text: when each analysis was made, and it.
        self._cache: BoundedLRU[tuple[str, str], tuple[float, Analysis]] = BoundedLRU(
            max_entries, MAX_CACHED_BYTES, _cost
        )

    async def analyse(self, database: str, statement: str, step: Step = OFF) -> Analysis:
        """The analysis of ``statement`` on ``database``, from the cache when possible
        (``step``, the request's span of the analysis, is told which)."""
        key = (database, statement)
        if self._epoch.current() != self._filled_under:
            # A schema statement passed through this or another worker: plans may differ now.
            self.clear()
        cached = self._cache.get(key)
        if cached is not None and self._clock() - cached[0] < self._ttl_s:
            self._hit.inc()
            step.set("cyphergate.analysis.cached", True)
            return cached[1]
        self._miss.inc()
        step.set("cyphergate.analysis.cached", False)
        planned_under = self._epoch.current()
        analysis = await self._explainer.explain(database, statement)
        if analysis.query_type == "s":
            # A schema statement (about to run) can change plans: start afresh, everywhere.
            self._epoch.advance()
            self.clear()
        elif self._max_entries > 0 and self._epoch.current() == planned_under:
            # Not a plan begun before a schema change and finished after it (another lookup
            # may have emptied the cache for the new epoch meanwhile).
            self._cache.put(key, (self._clock(), analysis))
        return analysis

    def schema_changed(self) -> None:
        """A schema statement has ended, or the transaction it ran in has. Its analysis moved the
        epoch before it ran; an analysis made since (here or in another worker) may predate its
        effect (a constraint that makes a write read what it is compared with), so move it again.
        """
        self._epoch.advance()
        self.clear()

    def clear(self) -> None:
        """Forget every cached analysis (for example after a schema change)."""
        self._cache.clear()
        self._filled_under = self._epoch.current()


def _procedure_writes(facts: PlanFacts, modes: Mapping[str, str]) -> PlanFacts:
    """``facts``, writing anything if a procedure the statement calls may write.

    A procedure writes to what it is handed or finds (``db.create.setNodeVectorProperty(m,
    ...)`` sets a property of any node; ``apoc.nodes.delete`` deletes what it is handed), and
    the plan names only the call: so a call of one Neo4j does not declare ``READ`` (or does not
    know: found on no list) reads, writes and deletes anything, as a ``DETACH DELETE`` does."""
    if all(modes.get(name) == "READ" for name in facts.procedures):
        return facts
    return replace(
        facts,
        labels_read=facts.labels_read | {ANY},
        rel_types_read=facts.rel_types_read | {ANY},
        labels_written=facts.labels_written | {ANY},
        rel_types_written=facts.rel_types_written | {ANY},
        properties_written=facts.properties_written | {ANY},
        deletes=True,
    )


def _cost(key: tuple[str, str]) -> int:
    """The memory a cache key's statement text takes (its database's name is short)."""
    return sys.getsizeof(key[1])


class Planner(Protocol):
    """Asks Neo4j to plan a statement (``EXPLAIN``).

    Contract: never executes the statement; raises the gateway's errors (unknown database,
    syntax error, Neo4j unavailable) exactly as running it would.
    """

    async def plan(self, database: str, statement: str) -> Plan: ...

    async def constraints(self, database: str) -> tuple[Constraint, ...]:
        """The database's constraints that compare an entity with others (uniqueness, keys)."""
        ...

    async def procedure_modes(self, database: str) -> Mapping[str, str]:
        """The mode Neo4j declares for each procedure it offers on the database (``READ``,
        ``WRITE``, ``SCHEMA``, ``DBMS``), by name."""
        ...


class PlanReader:
    """An :class:`Explainer` over a :class:`Planner`: Neo4j plans, :func:`read_plan` reads."""

    def __init__(self, planner: Planner) -> None:
        self._planner = planner

    async def explain(self, database: str, statement: str) -> Analysis:
        """The analysis of ``statement`` on ``database``, never from a cache.

        A caller's own ``EXPLAIN`` is analysed as the statement it explains (Neo4j plans
        ``EXPLAIN EXPLAIN ...`` as that statement), so it is decided like it and, if allowed,
        runs nothing and answers with the plan. ``PROFILE`` is refused: it runs the statement
        and hands back Neo4j's runtime internals (rows and db hits per operator) beside its
        result."""
        if execution_mode(statement) == "PROFILE":
            raise BadRequest(
                "PROFILE is not offered through the gateway (it runs the statement and returns"
                " Neo4j's runtime internals); EXPLAIN shows the plan and runs nothing.",
                reason="profile_refused",
            )
        plan = await self._planner.plan(database, statement)
        facts = read_plan(plan.operators, statement=statement)
        # Not only "w" and "rw": a DBMS procedure called beside a WRITE one makes it "s".
        if facts.procedures and plan.query_type != "r":
            facts = _procedure_writes(facts, await self._planner.procedure_modes(database))
        if facts.labels_written or facts.rel_types_written or facts.properties_written:
            facts = compared_on_write(facts, await self._planner.constraints(database))
        return Analysis(query_type=plan.query_type, facts=facts)
