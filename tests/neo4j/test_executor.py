"""proxy.neo4j.executor: what a row weighs under a row limit."""

from __future__ import annotations

import pytest

from proxy.neo4j.row_limit import row_weight
from proxy.statement import JSON


@pytest.mark.parametrize(
    ("row", "weight"),
    [
        ([1, "a", None], 1),
        ([[]], 1),
        ([[1, 2, 3]], 3),
        ([[1], [2, 3]], 3),
        ([[[1, 2], [3]]], 5),  # two lists of the outer one, and their three elements
        ([{"xs": [1, 2], "m": {"ys": [3]}}], 3),
        ([{"a": 1}], 1),
    ],
)
def test_a_list_weighs_as_many_rows_as_it_holds(row: list[JSON], weight: int) -> None:
    assert row_weight(row) == weight
