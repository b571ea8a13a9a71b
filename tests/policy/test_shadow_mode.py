"""Shadow mode runs what the policy refuses, except what no rollout excuses, on both doors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import neo4j
import pytest

from proxy.devstack.stack import DevStack
from tests.conftest import changed_policy_data
from tests.csv_source import csv_source

pytestmark = pytest.mark.integration


@pytest.fixture
def fetched() -> Iterator[tuple[str, list[str]]]:
    """A server on loopback, and the paths Neo4j fetched from it."""
    with csv_source(b"name\nfetched\n") as served:
        yield served


def _shadow(data: dict[str, Any]) -> None:
    data["cyphergate"]["grants"]["dags"]["demo_labels"]["mode"] = "shadow"


def test_shadow_mode_never_loads_a_source_the_grant_does_not_name(
    stack: DevStack, status: dict[str, Any], fetched: tuple[str, list[str]]
) -> None:
    """A DAG being rolled out runs statements its grant refuses, but a LOAD CSV source is no
    question of labels: Neo4j reads the server's files or fetches from its network."""
    server, paths = fetched
    headers = {"Authorization": stack.auth_header("demo_labels")}
    with changed_policy_data(stack, _shadow):
        # Shadow mode is on: a label the grant does not name is recorded and run.
        excused = httpx.post(
            f"{status['gateway_url']}/db/neo4j/query/v2",
            json={"statement": "MATCH (a:Account) RETURN count(a) AS n"},
            headers=headers,
            timeout=30,
        )
        assert excused.status_code == 202, excused.text
        over_http = httpx.post(
            f"{status['gateway_url']}/db/neo4j/query/v2",
            json={"statement": f"LOAD CSV FROM '{server}/http.csv' AS row RETURN row"},
            headers=headers,
            timeout=30,
        )
        assert over_http.status_code == 403, over_http.text
        assert f"load_csv_not_granted:{server}/http.csv" in over_http.text
        auth = neo4j.bearer_auth(stack.token("demo_labels"))
        with (
            neo4j.GraphDatabase.driver(status["gateway_bolt_uri"], auth=auth) as driver,
            driver.session(database="neo4j") as session,
            pytest.raises(neo4j.exceptions.ClientError) as refused,
        ):
            session.run(f"LOAD CSV FROM '{server}/bolt.csv' AS row RETURN row").consume()
        assert refused.value.code == "Neo.ClientError.Security.Forbidden"
        assert f"load_csv_not_granted:{server}/bolt.csv" in str(refused.value.message)
    assert paths == []
