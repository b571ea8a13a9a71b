"""Every Cypher type through the Bolt door equals the same statement straight to Neo4j over Bolt,
as the official driver reads both: values Neo4j makes, and values the caller sends as
parameters and gets back."""

from __future__ import annotations

import datetime as dt
from typing import Any

import neo4j
import pytest
import pytz
from neo4j import Driver
from neo4j.spatial import CartesianPoint, WGS84Point
from neo4j.time import Date, DateTime, Duration, Time

from proxy.devstack.stack import DevStack

pytestmark = pytest.mark.integration

MADE_BY_NEO4J = """
RETURN null AS nothing, true AS yes, -9223372036854775808 AS smallest,
       9223372036854775807 AS largest, 1.5e300 AS huge, -0.0 AS negative_zero,
       'héllo ✓ 𝄞' AS text, [1, 'two', [3.5, null], {k: 'v'}] AS list, {a: {b: [1]}} AS map,
       date('1815-12-10') AS date, time('12:34:56.123456789+02:00') AS time,
       localtime('23:59:59.999999999') AS local_time,
       datetime('2026-03-29T02:30:00.000000001[Europe/Berlin]') AS zoned,
       datetime('2026-11-30T08:00:00-05:30') AS offset,
       localdatetime('0001-01-01T00:00:00') AS local_datetime,
       duration('P1Y2M3DT4H5M6.000000007S') AS duration, duration('-PT0.5S') AS negative,
       point({x: 1.5, y: -2}) AS cartesian, point({x: 1, y: 2, z: 3}) AS cartesian_3d,
       point({longitude: 13.4, latitude: 52.5}) AS wgs84,
       point({longitude: 13.4, latitude: 52.5, height: 34}) AS wgs84_3d
"""
GRAPH = """
CREATE p = (a:TypeRoundTrip {name: 'a', tags: ['x'], at: date('2026-01-01')})
           -[r:KNOWS {since: 1999, weight: 0.5}]->(b:TypeRoundTrip:Second {name: 'b'})
           <-[:LIKES]-(c:TypeRoundTrip {name: 'c'})
RETURN a, r, b, p, [a, b] AS nodes, {rel: r} AS inside
"""
PARAMETERS: dict[str, Any] = {
    "int": -(2**63),
    "float": float("inf"),
    "bytes": b"\x00\xff\x10",
    "list": [1, "x", [None, 2.5]],
    "map": {"k": {"v": [True]}},
    "date": Date(2024, 2, 29),
    "time": Time(1, 2, 3, 4, tzinfo=pytz.FixedOffset(-90)),
    "local_time": Time(23, 59, 59, 999999999),
    "zoned": pytz.timezone("America/New_York").localize(dt.datetime(2026, 11, 1, 1, 30)),
    "offset": DateTime(2026, 11, 30, 8, 0, 0, 1, tzinfo=pytz.FixedOffset(330)),
    "local_datetime": DateTime(9999, 12, 31, 23, 59, 59, 999999999),
    "python_datetime": dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
    "duration": Duration(years=-1, days=2, seconds=3, nanoseconds=4),
    "python_timedelta": dt.timedelta(days=1, microseconds=7),
    "cartesian": CartesianPoint((1.0, 2.0)),
    "cartesian_3d": CartesianPoint((1.0, 2.0, 3.0)),
    "wgs84": WGS84Point((13.4, 52.5)),
    "wgs84_3d": WGS84Point((13.4, 52.5, 34.0)),
}


def comparable(value: Any) -> Any:
    """Graph values compared by what they are (their element ids differ between the two runs)."""
    if isinstance(value, neo4j.graph.Node):
        return ("node", sorted(value.labels), dict(value))
    if isinstance(value, neo4j.graph.Relationship):
        return (
            "rel",
            value.type,
            dict(value),
            comparable(value.start_node),
            comparable(value.end_node),
        )
    if isinstance(value, neo4j.graph.Path):
        return (
            "path",
            [comparable(n) for n in value.nodes],
            [comparable(r) for r in value.relationships],
        )
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, float) and value == 0.0:
        return ("zero", str(value))  # -0.0 and 0.0 are equal, but not the same value
    if isinstance(value, float) and value != value:
        return ("nan",)  # NaN equals nothing, itself included
    return value


def rows(driver: Driver, statement: str, **parameters: Any) -> list[dict[str, Any]]:
    with driver.session(database="neo4j") as session:
        result = session.run(statement, parameters)
        found = [comparable(dict(record)) for record in result]
        result.consume()
    return found


@pytest.fixture(scope="module")
def through(stack: DevStack, status: dict[str, Any]) -> Any:
    auth = neo4j.bearer_auth(stack.token("demo_writer"))
    with neo4j.GraphDatabase.driver(status["gateway_bolt_uri"], auth=auth) as driver:
        yield driver


def test_values_neo4j_makes(through: Driver, neo4j_admin: Driver) -> None:
    direct = rows(neo4j_admin, MADE_BY_NEO4J)
    assert rows(through, MADE_BY_NEO4J) == direct
    assert len(direct[0]) == 21


def test_non_finite_floats_as_neo4j_sends_them(through: Driver, neo4j_admin: Driver) -> None:
    statement = (
        "RETURN 0.0 / 0.0 AS nan, 1.0 / 0.0 AS inf, -1.0 / 0.0 AS ninf, [0.0 / 0.0] AS l,"
        " {x: -1.0 / 0.0} AS m"
    )
    direct = rows(neo4j_admin, statement)
    assert direct == [
        {
            "nan": ("nan",),
            "inf": float("inf"),
            "ninf": float("-inf"),
            "l": [("nan",)],
            "m": {"x": float("-inf")},
        }
    ]
    assert rows(through, statement) == direct


def test_graph_values(through: Driver, neo4j_admin: Driver) -> None:
    try:
        assert rows(through, GRAPH) == rows(neo4j_admin, GRAPH)
    finally:
        neo4j_admin.execute_query("MATCH (n:TypeRoundTrip) DETACH DELETE n")


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_parameters_come_back_as_sent(name: str, through: Driver, neo4j_admin: Driver) -> None:
    statement = "RETURN $value AS value"
    direct = rows(neo4j_admin, statement, value=PARAMETERS[name])
    assert rows(through, statement, value=PARAMETERS[name]) == direct
