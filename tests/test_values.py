"""proxy.values: a record's values in the Query API's JSON, the same whether the neo4j driver
read them or they are still in their Bolt form (the relay's), with the driver's own hydration as
the oracle."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import pytz
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from neo4j import spatial as neo4j_spatial
from neo4j import time as neo4j_time

from proxy.codec.packstream import PackStreamError, Structure, pack, unpack
from proxy.codec.values import UnsupportedValue, to_wire
from proxy.values import InvalidValue, from_typed, to_plain, to_typed
from tests.codec.oracle import Bolt, driver_unpack
from tests.codec.test_values import (
    driver_values,
    wire_nodes,
    wire_paths,
    wire_relationships,
)

EXAMPLES = settings(max_examples=150, derandomize=True, deadline=None, database=None)
# One graph value per example: the driver keeps one object per element id in a record, so two
# made-up entities sharing an id but not their ends (no real graph has them) would differ.
graph_values = wire_paths() | wire_relationships() | wire_nodes(1)
wire_values = (
    driver_values.map(to_wire)
    | graph_values
    | st.tuples(graph_values, driver_values.map(to_wire)).map(list)
    | st.builds(lambda key, value: {key: value}, st.text(max_size=4), graph_values)
)


def _both_ways(wire: Any) -> tuple[Any, Any]:
    """``wire`` as the relay reads it, and as the driver reads the same bytes."""
    try:
        data = pack(wire)
    except PackStreamError:  # a lone surrogate in a type name: no UTF-8, so no Bolt either
        reject()
    return unpack(data), driver_unpack(data, Bolt.V5)


@EXAMPLES
@given(wire_values)
def test_bolt_values_encode_as_the_drivers_do(wire: Any) -> None:
    relayed, read = _both_ways(wire)
    assert to_plain(relayed) == to_plain(read)
    assert to_typed(relayed) == to_typed(read)


def test_a_path_walking_a_relationship_twice_shows_its_ends_as_the_driver_does() -> None:
    """The spec's example, (42)-[1000]->(69)-[1000]->(42)<-[1001]-(1): the driver keeps one
    object per relationship and sets its ends at every step, so both steps of 1000 show the
    ends of the last one (69 to 42)."""
    nodes = [Structure(b"N", (n, ["Person"], {"n": n}, f"n{n}")) for n in (42, 69, 1)]
    relationships = [Structure(b"r", (r, "KNOWS", {}, f"r{r}")) for r in (1000, 1001)]
    relayed, read = _both_ways(Structure(b"P", (nodes, relationships, [1, 1, 1, 0, -2, 2])))
    plain = to_plain(relayed)
    assert plain == to_plain(read)
    assert to_typed(relayed) == to_typed(read)
    walked = ["n42", "r1000", "n69", "r1000", "n42", "r1001", "n1"]
    assert [item["elementId"] for item in plain] == walked
    first, second = plain[1], plain[3]
    assert (first["startNodeElementId"], first["endNodeElementId"]) == ("n69", "n42")
    assert second == first
    assert (plain[5]["startNodeElementId"], plain[5]["endNodeElementId"]) == ("n1", "n42")


def test_a_date_the_driver_cannot_hold_is_written_from_its_fields() -> None:
    """A date past year 9999 or before year 1 (Neo4j has them, the driver's types do not) is
    written from its Bolt fields as Neo4j writes it (tests/test_request_path.py holds these to
    Neo4j's own Query API); a zoned one, which the zone rules cannot place, is an error, never
    a guess."""
    assert to_plain(Structure(b"D", (2932897,))) == "+10000-01-01"
    assert to_typed(Structure(b"D", (-719163,))) == {"$type": "Date", "_value": "0000-12-31"}
    assert to_plain(Structure(b"d", (-62198755200, 0))) == "-0001-01-01T00:00:00"
    far = to_typed(Structure(b"I", (253402300800 - 7200, 500_000_000, 7200)))
    assert far == {"$type": "OffsetDateTime", "_value": "+10000-01-01T00:00:00.5+02:00"}
    with pytest.raises(UnsupportedValue):
        to_plain(Structure(b"i", (253402300800, 0, "Europe/Berlin")))


@pytest.mark.parametrize(
    "value",
    [
        # A 3D point in a 2D system and the reverse: the driver's class names the SRID by the
        # number of coordinates, so these ran as points in another system (Neo4j refuses them).
        {"$type": "Point", "_value": "SRID=7203;POINT Z (1 2 3)"},
        {"$type": "Point", "_value": "SRID=4326;POINT (1 2 3)"},
        {"$type": "Point", "_value": "SRID=9157;POINT (1 2)"},
        {"$type": "Point", "_value": "SRID=4979;POINT (1 2)"},
        {"$type": "Float", "_value": "nan"},
        {"$type": "Float", "_value": "inf"},
        {"$type": "Float", "_value": "1_0"},
        {"$type": "Float", "_value": "\u0661"},  # an Arabic-Indic one
        {"$type": "Null", "_value": 1},
        {"$type": "Null", "_value": False},
        {"$type": "Map", "_value": [["a", {"$type": "Integer", "_value": "1"}]]},
    ],
)
def test_typed_values_neo4j_refuses_are_refused(value: dict[str, Any]) -> None:
    """Each of these is a 400 from Neo4j's Query API 5.26 (tried there): the gateway decoded
    them, the points into another value than the one sent."""
    with pytest.raises(InvalidValue):
        from_typed(value, "parameters.x")


def test_typed_values_neo4j_takes_decode_as_neo4j_reads_them() -> None:
    def one(kind: str, inner: Any) -> Any:
        return from_typed({"$type": kind, "_value": inner})

    assert one("Point", "SRID=7203;POINT Z (1 2)").srid == 7203  # Neo4j ignores the Z
    assert one("Point", "SRID=9157;POINT (1 2 3)").srid == 9157
    assert tuple(one("Point", "SRID=4979;POINT Z (1 2 3)")) == (1.0, 2.0, 3.0)
    floats = ["NaN", "Infinity", "+Infinity", "-Infinity", "1.", ".5", " 1.5", "1e400", "-2E-3"]
    assert [str(one("Float", text)) for text in floats] == [
        "nan", "inf", "inf", "-inf", "1.0", "0.5", "1.5", "inf", "-0.002",
    ]  # fmt: skip
    assert one("Null", None) is None
    assert one("Map", {}) == {}


def test_point_coordinates_are_written_as_neo4j_writes_them() -> None:
    """Neo4j writes a point's coordinates as Java writes doubles (1.0E20, 1.2345678E7, 1.0E-4;
    tried on 5.26); they were Python's (1e+20, 12345678.0, 0.0001)."""
    far = neo4j_spatial.CartesianPoint((1e20, 1e-5))
    assert to_plain(far) == "SRID=7203;POINT (1.0E20 1.0E-5)"
    high = neo4j_spatial.WGS84Point((1e-4, 0.5, 1e7))
    assert to_typed(high) == {"$type": "Point", "_value": "SRID=4979;POINT Z (1.0E-4 0.5 1.0E7)"}
    wide = neo4j_spatial.CartesianPoint((12345678.0, 0.001))
    assert to_plain(wide) == "SRID=7203;POINT (1.2345678E7 0.001)"


@pytest.mark.parametrize("zone", ["Etc/UTC", "GMT", "Etc/GMT+1", "Etc/GMT-14", "Zulu", "Universal"])
def test_a_date_time_in_a_zone_of_one_fixed_offset_is_typed_as_neo4j_types_it(zone: str) -> None:
    """Java normalizes a zone with no transitions to its offset, so Neo4j's typed answer for
    datetime('2024-01-01T00:00:00[Etc/UTC]') is an OffsetDateTime (tried on 5.26); the gateway
    answered a ZonedDateTime naming the zone."""
    instant = datetime.datetime(2024, 1, 1, tzinfo=pytz.utc)
    offset = to_typed(neo4j_time.DateTime.from_native(instant.astimezone(pytz.timezone(zone))))
    assert offset["$type"] == "OffsetDateTime", offset
    assert "[" not in offset["_value"]
    berlin = neo4j_time.DateTime.from_native(instant.astimezone(pytz.timezone("Europe/Berlin")))
    assert to_typed(berlin)["$type"] == "ZonedDateTime"
