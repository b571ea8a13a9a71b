"""Bolt values against the official driver's own hydration and dehydration, both ways."""

from __future__ import annotations

import contextlib
import datetime as dt
import warnings
import zoneinfo
from typing import Any

import pytest
import pytz
from hypothesis import assume, given, reject, settings
from hypothesis import strategies as st
from neo4j.graph import Graph, Node, Path, Relationship
from neo4j.spatial import CartesianPoint, Point, WGS84Point
from neo4j.time import Date, DateTime, Duration, Time

from proxy.codec.packstream import PackStreamError, Structure, pack, unpack
from proxy.codec.values import UnsupportedValue, from_wire, to_wire
from tests.codec.oracle import Bolt, driver_pack, driver_unpack, same

EXAMPLES = settings(max_examples=300, derandomize=True, deadline=None, database=None)
INT64 = st.integers(-(2**63), 2**63 - 1)
ZONES = sorted(pytz.common_timezones)
# zoneinfo reads the system's tz database, which may lack a name pytz has.
ZONEINFO_ZONES = sorted(set(ZONES) & zoneinfo.available_timezones())


def _zone(tzinfo: dt.tzinfo | None) -> str | None:
    name = getattr(tzinfo, "zone", None) or getattr(tzinfo, "key", None)
    return name if isinstance(name, str) else None


def identical(left: Any, right: Any, *, legacy: bool = False) -> bool:
    """The same driver value: type, fields, offset and zone name, where ``==`` on neo4j.time
    compares instants only. ``legacy``: a zoned date-time keeps its wall clock and zone only,
    as legacy Bolt sends it (its offset in an ambiguous hour is lost, per the spec)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, DateTime):

        def kept(value: DateTime) -> tuple[Any, ...]:
            zone = _zone(value.tzinfo)
            offset = None if legacy and zone else value.utc_offset()
            return value.year_month_day, value.hour_minute_second_nanosecond, zone, offset

        return kept(left) == kept(right)
    if isinstance(left, Time):
        return (left.ticks, left.utc_offset()) == (right.ticks, right.utc_offset())
    if isinstance(left, Point):
        return getattr(left, "srid", None) == getattr(right, "srid", None) and same(
            tuple(left), tuple(right)
        )
    if isinstance(left, list):
        return len(left) == len(right) and all(
            identical(a, b, legacy=legacy) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, dict):
        return list(left) == list(right) and all(
            identical(left[key], right[key], legacy=legacy) for key in left
        )
    return same(left, right)


# --- driver values -----------------------------------------------------------------------------

offsets = st.integers(-18 * 60, 18 * 60).map(pytz.FixedOffset)  # minutes; 0 is pytz.utc
local_times = st.builds(
    Time, st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999_999_999)
)
# A day of margin at both ends, so that any offset stays within the years 1 to 9999 in UTC.
dates = st.dates(dt.date(1, 1, 2), dt.date(9999, 12, 30)).map(Date.from_native)
local_datetimes = st.builds(DateTime.combine, dates, local_times)


@st.composite
def zoned_datetimes(draw: st.DrawFn) -> DateTime:
    """An instant in a named pytz zone, often within two hours of one of its transitions."""
    zone = pytz.timezone(draw(st.sampled_from(ZONES)))
    transitions: list[dt.datetime] = [
        moment
        for moment in getattr(zone, "_utc_transition_times", [])
        if dt.datetime(1900, 1, 1) < moment < dt.datetime(2100, 1, 1)
    ]
    if draw(st.booleans()) and transitions:
        instant = draw(st.sampled_from(transitions))
        instant += dt.timedelta(seconds=draw(st.integers(-7200, 7200)))
    else:
        instant = draw(st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2100, 1, 1)))
    utc = DateTime.from_native(instant).replace(
        nanosecond=draw(st.integers(0, 999_999_999)), tzinfo=pytz.utc
    )
    value = utc.as_timezone(zone)
    try:
        value.utc_offset()
    except ValueError:  # local mean time, e.g. +00:19:32: no driver can hold it
        reject()
    return value


durations = st.builds(
    lambda months, days, seconds, nanoseconds: Duration(
        months=months, days=days, seconds=seconds, nanoseconds=nanoseconds
    ),
    st.integers(-(10**6), 10**6),
    st.integers(-(10**7), 10**7),
    st.integers(-(10**12), 10**12),
    st.integers(-(10**10), 10**10),
) | st.sampled_from([Duration.min, Duration.max, Duration()])
coordinate = st.floats(allow_nan=True, allow_infinity=True)


def _point(srid: int, coordinates: tuple[float, ...]) -> Point:
    point = Point(coordinates)
    point.srid = srid
    return point


points = (
    st.tuples(coordinate, coordinate).map(CartesianPoint)
    | st.tuples(coordinate, coordinate, coordinate).map(CartesianPoint)
    | st.tuples(coordinate, coordinate).map(WGS84Point)
    | st.tuples(coordinate, coordinate, coordinate).map(WGS84Point)
    | st.builds(
        _point,
        st.integers(0, 2**31).filter(lambda srid: srid not in (7203, 9157, 4326, 4979)),
        st.tuples(coordinate, coordinate) | st.tuples(coordinate, coordinate, coordinate),
    )
)
temporal_and_spatial = (
    dates
    | local_times
    | st.builds(Time.replace, local_times, tzinfo=offsets)
    | local_datetimes
    | st.builds(DateTime.replace, local_datetimes, tzinfo=offsets)
    | zoned_datetimes()
    | durations
    | points
)
driver_values = st.recursive(
    temporal_and_spatial | st.none() | st.booleans() | INT64 | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children, max_size=6)
    ),
    max_leaves=12,
)


def _utc_as_offset(wire: Any) -> Any:
    """The driver's own wire form, with pytz.utc sent as the offset 0 as ours does (see
    ``values._zone_name``): the driver sends the zone "UTC" for the very same object."""
    if isinstance(wire, Structure):
        if wire.tag == b"i" and wire.fields[2] == "UTC":
            return Structure(b"I", (*wire.fields[:2], 0))
        if wire.tag == b"f" and wire.fields[2] == "UTC":
            return Structure(b"F", (*wire.fields[:2], 0))
    if isinstance(wire, list):
        return [_utc_as_offset(item) for item in wire]
    if isinstance(wire, dict):
        return {key: _utc_as_offset(item) for key, item in wire.items()}
    return wire


class TestDriverValues:
    @EXAMPLES
    @given(driver_values)
    def test_to_wire_reads_back_through_the_driver(self, value: Any) -> None:
        for bolt in Bolt:
            read = driver_unpack(pack(to_wire(value, utc=bolt.utc)), bolt)
            assert identical(read, value, legacy=not bolt.utc), bolt

    @EXAMPLES
    @given(driver_values)
    def test_from_wire_reads_what_the_driver_sends(self, value: Any) -> None:
        for bolt in Bolt:
            read = from_wire(unpack(driver_pack(value, bolt)), utc=bolt.utc)
            assert identical(read, value, legacy=not bolt.utc), bolt

    @EXAMPLES
    @given(driver_values)
    def test_to_wire_is_the_drivers_own_wire_form(self, value: Any) -> None:
        for bolt in Bolt:
            expected = _utc_as_offset(unpack(driver_pack(value, bolt)))
            assert same(to_wire(value, utc=bolt.utc), expected), bolt

    def test_the_specs_examples(self) -> None:
        """1970-01-01T02:15:00.000000042+01:00, in Europe/Paris too, from the structure
        semantics page: 4500 s in UTC for Bolt 5, 8100 s on the wall clock for legacy Bolt."""
        paris = pytz.timezone("Europe/Paris")
        utc = DateTime(1970, 1, 1, 1, 15, 0, 42, tzinfo=pytz.utc)
        for tzinfo, zone_field in ((pytz.FixedOffset(60), 3600), (paris, "Europe/Paris")):
            value = utc.as_timezone(tzinfo)
            assert value.hour_minute_second_nanosecond == (2, 15, 0, 42)
            tag, legacy_tag = (b"I", b"F") if zone_field == 3600 else (b"i", b"f")
            assert to_wire(value) == Structure(tag, (4500, 42, zone_field))
            assert to_wire(value, utc=False) == Structure(legacy_tag, (8100, 42, zone_field))
            assert identical(from_wire(Structure(tag, (4500, 42, zone_field))), value)
            assert identical(
                from_wire(Structure(legacy_tag, (8100, 42, zone_field)), utc=False), value
            )

    def test_utc(self) -> None:
        """Neo4j's default offset Z and the zone "UTC" both reach the gateway as pytz.utc; it
        goes out as the offset. A zoneinfo "UTC" names its zone."""
        instant = DateTime(2024, 3, 31, 1, 30, tzinfo=pytz.utc)
        assert to_wire(instant) == Structure(b"I", (1711848600, 0, 0))
        for wire in (Structure(b"I", (1711848600, 0, 0)), Structure(b"i", (1711848600, 0, "UTC"))):
            assert from_wire(wire).tzinfo is pytz.utc
        native = dt.datetime(2024, 3, 31, 1, 30, tzinfo=zoneinfo.ZoneInfo("UTC"))
        assert to_wire(native) == Structure(b"i", (1711848600, 0, "UTC"))

    def test_dst_edges(self) -> None:
        """Both sides of Berlin's spring gap and autumn overlap, by instant."""
        berlin = pytz.timezone("Europe/Berlin")
        for utc_text in (
            "2024-03-31T00:59:59",
            "2024-03-31T01:00:00",
            "2024-10-27T00:30:00",
            "2024-10-27T01:30:00",
        ):
            utc = DateTime.from_iso_format(utc_text).replace(tzinfo=pytz.utc)
            value = utc.as_timezone(berlin)
            wire = to_wire(value)
            assert wire.fields[0] == int(utc.to_native().timestamp())
            assert identical(driver_unpack(pack(wire), Bolt.V5), value)
            assert identical(from_wire(unpack(pack(wire))), value)
        autumn = [
            DateTime(2024, 10, 27, h, 30, tzinfo=pytz.utc).as_timezone(berlin) for h in (0, 1)
        ]
        assert autumn[0].hour == autumn[1].hour == 2  # the same wall clock, an hour apart
        assert to_wire(autumn[1]).fields[0] - to_wire(autumn[0]).fields[0] == 3600


class TestNativeValues:
    """Python's own types, should the driver or the gateway hand them over."""

    @pytest.mark.parametrize(
        "value",
        [
            dt.date(1, 1, 1),
            dt.date(9999, 12, 31),
            dt.time(23, 59, 59, 999_999),
            dt.time(12, 0, tzinfo=pytz.FixedOffset(-150)),
            dt.datetime(2000, 2, 29, 12, 30, 15, 123_456),
            dt.datetime(2000, 2, 29, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
            dt.datetime(2000, 2, 29, 12, 30, tzinfo=dt.UTC),
            pytz.timezone("America/New_York").localize(
                dt.datetime(2021, 11, 7, 1, 30), is_dst=True
            ),
            pytz.timezone("America/New_York").localize(
                dt.datetime(2021, 11, 7, 1, 30), is_dst=False
            ),
            dt.timedelta(days=-1, seconds=5, microseconds=7),
        ],
        ids=repr,
    )
    def test_as_the_driver_sends_them(self, value: Any) -> None:
        for bolt in Bolt:
            assert same(to_wire(value, utc=bolt.utc), unpack(driver_pack(value, bolt)))

    @EXAMPLES
    @given(
        st.datetimes(dt.datetime(1900, 1, 2), dt.datetime(2100, 1, 1)),
        st.sampled_from(ZONEINFO_ZONES),
    )
    def test_zoneinfo(self, naive: dt.datetime, zone: str) -> None:
        """As the driver sends the same instant in the pytz zone of that name. Never given to
        the driver itself: it hands zoneinfo a neo4j DateTime, which crashes CPython 3.11 or
        answers garbage (python/cpython#125318)."""
        value = naive.replace(tzinfo=zoneinfo.ZoneInfo(zone))
        as_pytz = value.astimezone(pytz.timezone(zone))
        offset = value.utcoffset()
        assert offset is not None
        assume(offset.seconds % 60 == 0)  # local mean time: no driver can hold it
        # The two tz databases agree here, and the wall clock exists (not in a spring gap).
        assume(as_pytz.utcoffset() == offset and as_pytz.replace(tzinfo=None) == naive)
        for bolt in Bolt:
            assert to_wire(value, utc=bolt.utc) == unpack(driver_pack(as_pytz, bolt))
        assert to_wire(DateTime.from_native(value)) == to_wire(value)


# --- graph values ------------------------------------------------------------------------------

property_values = (
    st.booleans()
    | INT64
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.lists(st.integers(0, 9), max_size=3)
    | temporal_and_spatial.map(to_wire)
)
properties = st.dictionaries(st.text(max_size=6), property_values, max_size=4)
# The driver makes a class per relationship type, named after it: Python refuses a NUL there.
type_names = st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=5)


def wire_nodes(count: int) -> st.SearchStrategy[list[Structure]]:
    """``count`` node structures with distinct ids and element ids, labels in sorted order."""
    return st.lists(INT64, min_size=count, max_size=count, unique=True).flatmap(
        lambda ids: st.tuples(
            *(
                st.builds(
                    lambda labels, props, legacy=legacy: Structure(
                        b"N", (legacy, sorted(labels), props, f"4:db:{legacy}")
                    ),
                    st.sets(st.text(min_size=1, max_size=6), max_size=3),
                    properties,
                )
                for legacy in ids
            )
        ).map(list)
    )


@st.composite
def wire_paths(draw: st.DrawFn) -> Structure:
    """A walk of up to six steps that may revisit nodes, each relationship used once, walked
    with or against its direction (a loop only with it: a loop has no other)."""
    walk, indices, known = [0], list[int](), 1
    for step in range(draw(st.integers(0, 6))):
        after = draw(st.integers(0, known))
        known = max(known, after + 1)
        sign = 1 if after == walk[-1] else draw(st.sampled_from([1, -1]))
        indices += [sign * (step + 1), after]
        walk.append(after)
    nodes = draw(wire_nodes(known))
    relationships = [
        Structure(
            b"r",
            (1000 + step, draw(type_names), draw(properties), f"5:db:{step}"),
        )
        for step in range(len(indices) // 2)
    ]
    return Structure(b"P", (nodes, relationships, indices))


@st.composite
def wire_relationships(draw: st.DrawFn) -> list[Structure]:
    """A relationship and, after it, both of its nodes in full."""
    start, end = draw(wire_nodes(2))
    relationship = Structure(
        b"R",
        (
            draw(INT64),
            start.fields[0],
            end.fields[0],
            draw(type_names),
            draw(properties),
            "5:db:r",
            start.fields[3],
            end.fields[3],
        ),
    )
    return [relationship, start, end]


class TestGraphValues:
    @EXAMPLES
    @given(wire_paths() | wire_relationships() | wire_nodes(1))
    def test_to_wire_gives_back_what_the_driver_read(self, wire: Any) -> None:
        """A server's structures, read by the driver and written again by to_wire, are the same
        structures (legacy ids included); the driver reads ours as it read the original."""
        read = driver_unpack(pack(wire), Bolt.V5)
        assert same(to_wire(read), wire)
        again = driver_unpack(pack(to_wire(read)), Bolt.V5)
        assert same(to_wire(again), to_wire(read))

    def test_path_walked_back_and_forth(self) -> None:
        """The spec's example: (42)-[1000]->(69)-[1000]->(42)<-[1001]-(1)."""
        nodes = [Structure(b"N", (n, [], {}, f"n{n}")) for n in (42, 69, 1)]
        relationships = [Structure(b"r", (r, "KNOWS", {}, f"r{r}")) for r in (1000, 1001)]
        wire = Structure(b"P", (nodes, relationships, [1, 1, 1, 0, -2, 2]))
        path = driver_unpack(pack(wire), Bolt.V5)
        assert isinstance(path, Path)
        assert [node.element_id for node in path.nodes] == ["n42", "n69", "n42", "n1"]
        # The driver keeps one object per relationship: walked twice, it keeps the last
        # direction, so the first step reads back as walked against it.
        assert to_wire(path).fields[2] == [-1, 1, 1, 0, -2, 2]

    def test_legacy_ids_without_deprecation_warnings(self) -> None:
        graph = Graph()
        node = Node(graph, "4:db:7", 7, ["Person"], {"name": "Ada"})
        no_id = Node(graph, "4:db:8", None, [], {})  # type: ignore[arg-type]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert to_wire(node) == Structure(b"N", (7, ["Person"], {"name": "Ada"}, "4:db:7"))
            assert to_wire(no_id).fields[0] == -1

    def test_relationship_without_its_nodes(self) -> None:
        loose = Graph().relationship_type("KNOWS")(Graph(), "5:db:1", 1, {})
        assert isinstance(loose, Relationship)
        with pytest.raises(UnsupportedValue):
            to_wire(loose)


# --- what from_wire and to_wire refuse ---------------------------------------------------------


class TestRefusals:
    @pytest.mark.parametrize(
        "wire",
        [
            Structure(b"N", (1, [], {}, "4:db:1")),
            Structure(b"R", (1, 2, 3, "T", {}, "5:db:1", "4:db:2", "4:db:3")),
            Structure(b"r", (1, "T", {}, "5:db:1")),
            Structure(b"P", ([], [], [])),
            [1, {"nested": Structure(b"N", (1, [], {}, "4:db:1"))}],
            Structure(b"V", (b"\xc1", b"")),  # a Bolt 6 vector
            Structure(b"?", ()),
            Structure(b"Z", (1,)),
            Structure(b"\x00", ()),
        ],
        ids=repr,
    )
    def test_graph_values_and_unknown_tags_as_parameters(self, wire: Any) -> None:
        with pytest.raises(UnsupportedValue):
            from_wire(wire)

    def test_date_times_of_the_other_bolt_generation(self) -> None:
        for utc, tags in ((True, b"Ff"), (False, b"Ii")):
            for tag, zone in zip(tags, (0, "UTC"), strict=True):
                with pytest.raises(UnsupportedValue, match="another Bolt version"):
                    from_wire(Structure(bytes([tag]), (0, 0, zone)), utc=utc)

    @pytest.mark.parametrize(
        "wire",
        [
            Structure(b"D", ("1",)),
            Structure(b"D", (True,)),
            Structure(b"D", (1, 2)),
            Structure(b"E", (1, 2, 3)),
            Structure(b"X", (7203, 1, 2.0)),
            Structure(b"i", (0, 0, 3600)),
            Structure(b"I", (0, 1_000_000_000, 0)),
            Structure(b"d", (0, -1)),
        ],
        ids=repr,
    )
    def test_malformed_structures(self, wire: Structure) -> None:
        with pytest.raises(PackStreamError) as caught:
            from_wire(wire)
        assert not isinstance(caught.value, UnsupportedValue)

    @pytest.mark.parametrize(
        "wire",
        [
            Structure(b"D", (10**10,)),
            Structure(b"d", (-(10**15), 0)),
            Structure(b"t", (-1,)),
            Structure(b"T", (0, 3601)),  # an offset with seconds
            Structure(b"I", (0, 0, 90_000)),  # an offset past a day
            Structure(b"i", (0, 0, "Mars/Olympus_Mons")),
            Structure(b"E", (2**62, 0, 0, 0)),
            Structure(b"Y", (4326, 1.0, 2.0, 3.0)),  # 4326 is two-dimensional
        ],
        ids=repr,
    )
    def test_values_beyond_the_driver(self, wire: Structure) -> None:
        with pytest.raises(UnsupportedValue):
            from_wire(wire)

    @settings(max_examples=1000, derandomize=True, deadline=None, database=None)
    @given(
        st.sampled_from(list(b"DTtIidEXYFfNRrPV?Z")).map(lambda tag: bytes([tag])),
        st.lists(
            INT64
            | st.sampled_from([0, -1, 86_400 * 10**9, 10**9, 3_652_059, 3600, 59, 7203, 4979])
            | st.floats()
            | st.sampled_from(["UTC", "Europe/Berlin", "", "x" * 300, "../../etc/passwd"])
            | st.booleans(),
            max_size=5,
        ),
        st.booleans(),
    )
    def test_any_structure_gives_a_value_or_a_packstream_error(
        self, tag: bytes, fields: list[Any], utc: bool
    ) -> None:
        with contextlib.suppress(PackStreamError):
            from_wire(Structure(tag, tuple(fields)), utc=utc)

    def test_plain_values_pass_unchanged(self) -> None:
        value = {"a": [1, "x", b"y", None, 1.5, True, [], {}]}
        assert same(from_wire(value), value)
        assert same(to_wire(value), value)
        assert to_wire(("a", 1)) == ["a", 1]

    @pytest.mark.parametrize(
        "value",
        [
            object(),
            {1, 2},
            Point((1.0, 2.0)),  # no SRID
            CartesianPoint((1.0, 2.0, 3.0, 4.0)),
            dt.datetime(2000, 1, 1, tzinfo=dt.timezone(dt.timedelta(microseconds=1))),
        ],
        ids=repr,
    )
    def test_to_wire_refuses_what_bolt_5_cannot_carry(self, value: Any) -> None:
        with pytest.raises(UnsupportedValue):
            to_wire(value)
