"""What the Bolt tests leave in the session's Neo4j is removed after each module: every node
they create has a label starting with ``Bolt``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from neo4j import Driver


@pytest.fixture(scope="module", autouse=True)
def bolt_nodes_removed(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("integration") is None:
        yield  # a module that never touches the session's Neo4j
        return
    neo4j_admin: Driver = request.getfixturevalue("neo4j_admin")
    yield
    neo4j_admin.execute_query(
        "MATCH (n) WHERE any(label IN labels(n) WHERE label STARTS WITH 'Bolt') DETACH DELETE n"
    )
