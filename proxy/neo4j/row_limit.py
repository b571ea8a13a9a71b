"""A policy's row limit, counted as a statement's rows arrive: one rule for both ways a
statement runs (the official driver, :mod:`proxy.neo4j.executor`, and the relay's own
connections, :mod:`proxy.neo4j.relay_rows`)."""

from __future__ import annotations

from proxy.errors import RowLimitExceeded
from proxy.statement import JSON, Execution


def row_weight(values: list[JSON]) -> int:
    """How many rows one row counts for under a row limit: 1, or, when it holds lists, the
    number of their elements at every depth (in maps too): a row of ``collect(n)`` counts as
    many rows as it collected."""
    total = 0
    pending: list[JSON] = list(values)
    while pending:
        value = pending.pop()
        if isinstance(value, list):
            total += len(value)
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value.values())
    return max(1, total)


class RowBudget:
    """The rows a statement has given so far, against its policy's limit (if any)."""

    __slots__ = ("_truncate", "_weight", "count", "limit", "truncated")

    def __init__(self, execution: Execution) -> None:
        self.limit = execution.row_limit  # None: no limit, and no row is weighed
        self._truncate = execution.row_limit_action == "truncate"
        self.count = 0  # rows given
        self._weight = 0  # rows, with a list counted as its elements (see row_weight)
        self.truncated = False

    def admit(self, values: list[JSON]) -> bool:
        """Count a row; False once the rows are past the limit and the action is to truncate
        (this row and every later one are dropped), :class:`RowLimitExceeded` when it is to
        fail. Past the limit, never more is held."""
        if self.limit is not None:
            # A list counts as many rows as it holds, so collect() cannot fold the limit away.
            self._weight += row_weight(values)
            if self._weight > self.limit:
                if not self._truncate:
                    raise RowLimitExceeded(self.limit)
                self.truncated = True
                return False
        self.count += 1
        return True
