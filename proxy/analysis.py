"""What a statement does, as Neo4j itself classifies it with ``EXPLAIN``.

Neo4j plans the statement without running it and reports its query type: ``r`` (read only),
``rw`` (reads and writes), ``w`` (write only) or ``s`` (schema). The gateway trusts this over
anything it could infer from the text. Analyses are cached per database and exact statement
text, in a bounded LRU; parameters do not change a plan's type, so they are not part of the key.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal, Protocol

QueryType = Literal["r", "rw", "w", "s"]


@dataclass(frozen=True, slots=True)
class Analysis:
    """Neo4j's classification of one statement."""

    query_type: QueryType

    @property
    def is_read_only(self) -> bool:
        """True when the statement can run in a READ transaction."""
        return self.query_type == "r"

    def as_document(self) -> dict[str, str]:
        """The analysis as it appears in the policy input and the audit record."""
        return {"query_type": self.query_type}


class Explainer(Protocol):
    """Plans a statement on a database without running it.

    Contract: never executes the statement; raises the gateway's errors (unknown database,
    syntax error, Neo4j unavailable) exactly as running it would.
    """

    async def explain(self, database: str, statement: str) -> Analysis: ...


class Analyzer:
    """An :class:`Explainer` behind a bounded LRU cache."""

    def __init__(self, explainer: Explainer, *, max_entries: int) -> None:
        self._explainer = explainer
        self._max_entries = max_entries
        self._cache: OrderedDict[tuple[str, str], Analysis] = OrderedDict()

    async def analyse(self, database: str, statement: str) -> Analysis:
        """The analysis of ``statement`` on ``database``, from the cache when possible."""
        key = (database, statement)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        analysis = await self._explainer.explain(database, statement)
        if self._max_entries > 0:
            self._cache[key] = analysis
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return analysis

    def clear(self) -> None:
        """Forget every cached analysis (for example after a schema change)."""
        self._cache.clear()
