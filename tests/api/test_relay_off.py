"""``neo4j.http_relay``: the HTTP door's statements run on the gateway's own Bolt connections,
records decoded straight into the Query API's JSON (the session gateway's default), or with
``false`` on the official driver (a cluster a ``neo4j://`` URI routes), with the same answers,
plain and typed, graph entities, temporal values and points included, and the same refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

QUERY = "/db/neo4j/query/v2"
LABEL = "HttpRelayOff"
STATEMENTS = (
    f"MATCH (a:{LABEL} {{name: 'a'}}) RETURN a",
    f"MATCH (a:{LABEL})-[r:KNOWS]->(b) RETURN a.name, r, b.name",
    f"MATCH p = (:{LABEL})-[:KNOWS]->(:{LABEL}) RETURN p",
    f"MATCH (a:{LABEL} {{name: 'a'}}) RETURN a.born, a.at, a.where",
    "RETURN [1, 2.5, 'x', true, null] AS list, {a: date('2026-11-30')} AS map,"
    " datetime('2026-11-30T10:00:00[Europe/Berlin]') AS zoned, localtime('10:11') AS lt,"
    " duration('P1Y2M3DT4.5S') AS d, point({x: 1, y: 2, z: 3}) AS p3, 0.0 / 0.0 AS nan,"
    " 9007199254740993 AS big",
    "UNWIND range(1, 3) AS x RETURN x ORDER BY x",
)


def test_the_http_door_answers_alike_on_the_driver(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver, tmp_path: Path
) -> None:
    neo4j_admin.execute_query(f"MATCH (n:{LABEL}) DETACH DELETE n")
    neo4j_admin.execute_query(
        f"CREATE (:{LABEL} {{name: 'a', at: datetime('2026-11-30T10:00:00.5+01:00'),"
        " born: date('1815-12-10'), where: point({latitude: 1, longitude: 2})})"
        f"-[:KNOWS {{since: 2020}}]->(:{LABEL} {{name: 'b'}})"
    )

    def configure(config: dict[str, Any]) -> None:
        config["neo4j"]["http_relay"] = False

    second = SecondGateway(stack, tmp_path / "gateway", "httprelayoff", configure=configure)
    second.start()
    token = stack.token("demo_reader")
    answers: dict[str, list[Any]] = {"relay": [], "driver": []}
    try:
        with httpx.Client(base_url=second.url, timeout=60) as on_driver:
            for media_type in ("application/json", "application/vnd.neo4j.query"):
                headers = {
                    "Content-Type": media_type,
                    "Accept": media_type,
                    "Authorization": f"Bearer {token}",
                }
                for statement in STATEMENTS:
                    body = json.dumps({"statement": statement, "includeCounters": True})
                    for name, client in (("relay", gateway), ("driver", on_driver)):
                        response = client.post(QUERY, content=body, headers=headers)
                        assert response.status_code == 202, (name, response.text)
                        answer = response.json()
                        assert answer.pop("bookmarks")
                        answers[name].append(answer)
            refused = on_driver.post(
                QUERY,
                json={"statement": f"CREATE (:{LABEL})"},
                headers={"Authorization": f"Bearer {token}"},
            )
    finally:
        second.stop()
        neo4j_admin.execute_query(f"MATCH (n:{LABEL}) DETACH DELETE n")
    assert answers["relay"] == answers["driver"]
    assert answers["relay"][0]["data"]["values"][0][0]["labels"] == [LABEL]  # a node, in full
    assert refused.status_code == 403
    with AuditReader(second.audit) as log:
        decisions = list(log.query(RecordFilter(event="decision", text="UNWIND range(1, 3)")))
        outcomes = list(log.query(RecordFilter(event="outcome")))
    assert len(decisions) == 2  # plain and typed, each recorded once
    for decision in decisions:
        ran = [o["status"] for o in outcomes if o["request_id"] == decision["request_id"]]
        assert ran == [202]
