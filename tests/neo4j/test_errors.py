"""Neo4j's error messages about the statement the gateway planned (``EXPLAIN`` and the caller's
statement), as Neo4j words them about the caller's own: the messages are Neo4j 5.26's."""

from __future__ import annotations

import pytest

from proxy.neo4j.errors import without_prefix

_END = "Unexpected end of input: expected CYPHER, EXPLAIN, PROFILE or Query"


@pytest.mark.parametrize(
    ("planned", "shown"),
    [
        (
            # "RETRN 1" planned: the caller's positions and line, the caret under it.
            "Invalid input 'RETRN': expected 'FOREACH', 'ALTER' (line 1, column 9 (offset: 8))\n"
            '"EXPLAIN RETRN 1"\n'
            "         ^",
            "Invalid input 'RETRN': expected 'FOREACH', 'ALTER' (line 1, column 1 (offset: 0))\n"
            '"RETRN 1"\n'
            " ^",
        ),
        (
            # An empty (or blank) statement: Neo4j's error falls in the prefix, which the
            # caller never sent; it is the start of the caller's statement.
            f'{_END} (line 1, column 8 (offset: 7))\n"EXPLAIN"\n        ^',
            f'{_END} (line 1, column 1 (offset: 0))\n""\n ^',
        ),
        (
            f'{_END} (line 1, column 8 (offset: 7))\n"EXPLAIN // only a comment"\n        ^',
            f'{_END} (line 1, column 1 (offset: 0))\n"// only a comment"\n ^',
        ),
    ],
    ids=["in the statement", "empty", "a comment only"],
)
def test_an_error_names_the_callers_statement_never_the_prefix(planned: str, shown: str) -> None:
    """Found by review: an empty, blank or comment-only statement was told of an error at
    column 8 of a quoted ``"EXPLAIN"``, naming the gateway's own planning, not the caller's."""
    assert without_prefix(planned, "EXPLAIN ") == shown
