"""``neo4j.bolt_relay = false``: the Bolt door's statements run on the official driver instead of
the gateway's own connections (a cluster a ``neo4j://`` URI routes), with the same answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import neo4j
import pytest

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

STATEMENT = (
    "RETURN [1, 2.5, 'x', true, null] AS list, {a: date('2026-11-30')} AS map, "
    "datetime('2026-11-30T10:00:00[Europe/Berlin]') AS at, point({x: 1, y: 2}) AS p"
)


def test_the_bolt_door_answers_alike_on_the_driver(stack: DevStack, tmp_path: Path) -> None:
    def configure(config: dict[str, Any]) -> None:
        config["neo4j"]["bolt_relay"] = False

    second = SecondGateway(stack, tmp_path / "gateway", "relayoff", configure, bolt=True)
    second.start()
    auth = neo4j.bearer_auth(stack.token("demo_reader"))
    status = stack.status()["neo4j"]
    direct_auth = (status["gateway_user"], status["gateway_password"])
    try:
        with neo4j.GraphDatabase.driver(str(second.bolt_uri), auth=auth) as driver:
            through, _, _ = driver.execute_query(STATEMENT, database_="neo4j")
            with pytest.raises(neo4j.exceptions.ClientError) as refused:
                driver.execute_query("CREATE (:RelayOff)", database_="neo4j")
        with neo4j.GraphDatabase.driver(status["bolt_uri"], auth=direct_auth) as driver:
            direct, _, _ = driver.execute_query(STATEMENT, database_="neo4j")
    finally:
        second.stop()
    assert [r.values() for r in through] == [r.values() for r in direct]
    assert refused.value.code == "Neo.ClientError.Security.Forbidden"
    with AuditReader(second.audit) as log:
        (decision,) = log.query(RecordFilter(event="decision", text="RETURN [1, 2.5"))
        outcomes = list(log.query(RecordFilter(event="outcome")))
    assert [o["status"] for o in outcomes if o["request_id"] == decision["request_id"]] == [202]
