"""Bolt 5 values on one side, the official neo4j driver's values on the other.

:func:`to_wire` turns what the driver hands the gateway in a record into what a Bolt server
sends; :func:`from_wire` turns a parameter a client sent (as :func:`~proxy.codec.packstream.unpack`
reads it) into what the driver takes. The structures and their fields are those of Neo4j's
structure semantics (https://neo4j.com/docs/bolt/current/bolt/structure-semantics/):

* Node ``N`` (id, labels, properties, element_id); Relationship ``R`` (id, start id, end id,
  type, properties, element_id, start element_id, end element_id); Path ``P`` (distinct nodes,
  distinct UnboundRelationships ``r`` (id, type, properties, element_id), indices);
* Date ``D`` (days since 1970-01-01); Time ``T`` (nanoseconds since local midnight, offset in
  seconds); LocalTime ``t``; LocalDateTime ``d`` (wall-clock seconds since the epoch,
  nanoseconds); Duration ``E`` (months, days, seconds, nanoseconds);
* DateTime ``I`` (seconds since the epoch in UTC, nanoseconds, offset) and DateTimeZoneId ``i``
  (the same with a zone name), Bolt 5.0 on and 4.4 with the ``utc`` patch; ``utc=False`` gives
  the legacy ``F`` and ``f`` of older Bolt, whose seconds are the local wall clock's instead;
* Point2D ``X`` (srid, x, y) and Point3D ``Y`` (srid, x, y, z).

Time zones come back as pytz zones, as the driver's own decoding gives them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Final

import pytz
from neo4j.graph import Node, Path, Relationship
from neo4j.spatial import CartesianPoint, Point, WGS84Point
from neo4j.time import Date, DateTime, Duration, Time

from proxy.codec.packstream import PackStreamError, Structure

_EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()
_NANOS: Final = 1_000_000_000
_DAY: Final = 86_400
_PLAIN: Final = frozenset({type(None), bool, int, float, str, bytes, bytearray})
_PYTZ_ZONES: Final = (pytz.tzinfo.BaseTzInfo, type(pytz.FixedOffset(60)))
_GRAPH_TAGS: Final = frozenset({b"N", b"R", b"r", b"P"})
_POINT_TYPES: Final[dict[int, tuple[type[Point], int]]] = {
    7203: (CartesianPoint, 2),
    9157: (CartesianPoint, 3),
    4326: (WGS84Point, 2),
    4979: (WGS84Point, 3),
}


class UnsupportedValue(PackStreamError):
    """A well-formed value that does not cross here: a graph entity or an unknown structure as
    a parameter (Neo4j refuses those too), a structure of another Bolt version, a temporal
    value beyond what the driver can hold, or a driver value that Bolt 5 has no form for.

    A *malformed* structure (wrong number or type of fields) is a plain
    :class:`~proxy.codec.packstream.PackStreamError`.
    """


def to_wire(value: Any, *, utc: bool = True) -> Any:
    """A value from a driver record, with :class:`Structure` where Bolt has one; ``utc=False``
    for date-times as Bolt before 5.0 sends them without the ``utc`` patch."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    convert = _TO_WIRE.get(kind) or _to_wire_subclass(value)
    return convert(value, utc)


def _list(value: list[Any] | tuple[Any, ...], utc: bool) -> list[Any]:
    return [to_wire(item, utc=utc) for item in value]


def _dict(value: dict[str, Any], utc: bool) -> dict[str, Any]:
    return {key: to_wire(item, utc=utc) for key, item in value.items()}


def _to_wire_subclass(value: Any) -> Callable[[Any, bool], Any]:
    # Relationship types are subclasses the driver makes at run time, one per type name; points
    # and durations are tuples, and datetime is a date, so the order matters.
    for base, convert in _TO_WIRE.items():
        if isinstance(value, base):
            return convert
    if isinstance(value, int | float | str):
        return lambda plain, _utc: plain
    raise UnsupportedValue(f"a {type(value).__name__} has no Bolt 5 form")


def _legacy_id(entity: Node | Relationship) -> int:
    # Bolt 5 still carries the legacy integer id. The driver keeps it but deprecates `.id`,
    # which warns on every read; warnings.catch_warnings() would swap the process-wide filters
    # on the hot path and is not safe across threads. So read the attribute `.id` returns; -1
    # (no id) should a driver version stop keeping it.
    legacy = getattr(entity, "_id", None)
    return legacy if type(legacy) is int else -1


def _properties(entity: Node | Relationship, utc: bool) -> dict[str, Any]:
    return {key: to_wire(item, utc=utc) for key, item in entity.items()}


def _node(node: Node, utc: bool) -> Structure:
    # The driver keeps labels as a set; sorted, the same node is always the same bytes.
    labels = sorted(node.labels)
    return Structure(b"N", (_legacy_id(node), labels, _properties(node, utc), node.element_id))


def _relationship(relationship: Relationship, utc: bool) -> Structure:
    start, end = relationship.start_node, relationship.end_node
    if start is None or end is None:
        raise UnsupportedValue("a relationship without its nodes has no Bolt form")
    return Structure(
        b"R",
        (
            _legacy_id(relationship),
            _legacy_id(start),
            _legacy_id(end),
            relationship.type,
            _properties(relationship, utc),
            relationship.element_id,
            start.element_id,
            end.element_id,
        ),
    )


def _path(path: Path, utc: bool) -> Structure:
    """Each distinct node and relationship once; ``indices`` walk them: a relationship's place
    (from 1, negative when walked against its direction), then the next node's (from 0)."""
    nodes: list[Structure] = []
    node_number: dict[str, int] = {}
    relationships: list[Structure] = []
    relationship_number: dict[str, int] = {}
    indices: list[int] = []

    def number_of(node: Node) -> int:
        if node.element_id not in node_number:
            node_number[node.element_id] = len(nodes)
            nodes.append(_node(node, utc))
        return node_number[node.element_id]

    number_of(path.start_node)
    for step, relationship in enumerate(path.relationships):
        if relationship.element_id not in relationship_number:
            relationships.append(
                Structure(
                    b"r",
                    (
                        _legacy_id(relationship),
                        relationship.type,
                        _properties(relationship, utc),
                        relationship.element_id,
                    ),
                )
            )
            relationship_number[relationship.element_id] = len(relationships)
        number = relationship_number[relationship.element_id]
        start = relationship.start_node
        forward = start is not None and start.element_id == path.nodes[step].element_id
        indices += (number if forward else -number, number_of(path.nodes[step + 1]))
    return Structure(b"P", (nodes, relationships, indices))


def _date(value: Date | dt.date, _utc: bool) -> Structure:
    if not isinstance(value, Date):
        value = Date.from_native(value)
    return Structure(b"D", (value.to_ordinal() - _EPOCH_ORDINAL,))


def _time(value: Time | dt.time, _utc: bool) -> Structure:
    if not isinstance(value, Time):
        value = Time.from_native(value)
    offset = value.utc_offset()
    if offset is None:
        return Structure(b"t", (value.ticks,))
    return Structure(b"T", (value.ticks, _offset_seconds(offset)))


def _datetime(value: DateTime | dt.datetime, utc: bool) -> Structure:
    if isinstance(value, DateTime):
        ordinal = value.to_ordinal()
        hour, minute, second, nanosecond = value.hour_minute_second_nanosecond
        offset = _utc_offset(value)
    else:
        ordinal = value.toordinal()
        hour, minute, second = value.hour, value.minute, value.second
        nanosecond = value.microsecond * 1000
        offset = value.utcoffset()
    wall_clock = (ordinal - _EPOCH_ORDINAL) * _DAY + hour * 3600 + minute * 60 + second
    if offset is None:
        return Structure(b"d", (wall_clock, nanosecond))
    offset_seconds = _offset_seconds(offset)
    # Bolt 5 counts seconds in UTC; legacy Bolt counted the wall clock's.
    seconds = wall_clock - offset_seconds if utc else wall_clock
    zone = _zone_name(value.tzinfo)
    if zone is None:
        return Structure(b"I" if utc else b"F", (seconds, nanosecond, offset_seconds))
    return Structure(b"i" if utc else b"f", (seconds, nanosecond, zone))


def _utc_offset(value: DateTime) -> dt.timedelta | None:
    """The offset of a driver DateTime, asked of its zone safely.

    CPython's zoneinfo reads whatever it is handed as a C datetime (python/cpython#125318):
    given a neo4j DateTime, as the driver's ``utc_offset()`` would give it, it answers garbage
    or crashes the process. pytz zones are pure Python and what the driver decodes to; any
    other zone is asked about the equivalent native datetime.
    """
    tzinfo = value.tzinfo
    if tzinfo is None:
        return None
    if isinstance(tzinfo, _PYTZ_ZONES):
        return value.utc_offset()
    return tzinfo.utcoffset(value.to_native())


def _offset_seconds(offset: dt.timedelta) -> int:
    if offset.microseconds:
        raise UnsupportedValue("Bolt has no UTC offsets with fractions of a second")
    return offset.days * _DAY + offset.seconds


def _zone_name(tzinfo: dt.tzinfo | None) -> str | None:
    # The driver reads Neo4j's offset Z (its default, `datetime()`) as pytz.FixedOffset(0),
    # which is pytz.utc, the very object it gives for the zone named "UTC": send the offset,
    # by far the more common of the two.
    if tzinfo is pytz.utc:
        return None
    name = getattr(tzinfo, "zone", None) or getattr(tzinfo, "key", None)  # pytz, zoneinfo
    return name if isinstance(name, str) else None


def _duration(value: Duration, _utc: bool) -> Structure:
    return Structure(b"E", (value.months, value.days, value.seconds, value.nanoseconds))


def _timedelta(value: dt.timedelta, _utc: bool) -> Structure:
    # As the driver sends one: the days stay days, as in a Cypher duration.
    return Structure(b"E", (0, value.days, value.seconds, value.microseconds * 1000))


def _point(value: Point, _utc: bool) -> Structure:
    srid = getattr(value, "srid", None)  # a bare Point has none unless one is set
    if type(srid) is not int:
        raise UnsupportedValue("a point without an SRID has no Bolt form")
    if len(value) == 2:
        return Structure(b"X", (srid, *map(float, value)))
    if len(value) == 3:
        return Structure(b"Y", (srid, *map(float, value)))
    raise UnsupportedValue(f"Bolt has no {len(value)}-dimensional points")


# By exact type (the fast path); in this order for subclasses, see _to_wire_subclass.
_TO_WIRE: Final[dict[type, Callable[[Any, bool], Any]]] = {
    Node: _node,
    Relationship: _relationship,
    Path: _path,
    Point: _point,
    CartesianPoint: _point,
    WGS84Point: _point,
    Duration: _duration,
    DateTime: _datetime,
    dt.datetime: _datetime,
    Date: _date,
    dt.date: _date,
    Time: _time,
    dt.time: _time,
    dt.timedelta: _timedelta,
    list: _list,
    tuple: _list,
    dict: _dict,
}


def from_wire(value: Any, *, utc: bool = True) -> Any:
    """A parameter a client sent, as the driver takes it: temporal and spatial structures as
    neo4j.time, neo4j.spatial and pytz values, lists and dictionaries element by element.

    Raises :class:`UnsupportedValue` for graph entities, unknown tags, date-times of the other
    Bolt generation (``utc`` says which is spoken) and values beyond the driver's range, and
    :class:`~proxy.codec.packstream.PackStreamError` for a malformed structure.
    """
    kind = type(value)
    if kind is Structure:
        return _from_structure(value, utc)
    if kind is list:
        return [from_wire(item, utc=utc) for item in value]
    if kind is dict:
        return {key: from_wire(item, utc=utc) for key, item in value.items()}
    return value


def _from_structure(value: Structure, utc: bool) -> Any:
    entry = _FROM_WIRE.get(value.tag) or (_UTC if utc else _LEGACY).get(value.tag)
    if entry is None:
        tag = f"0x{value.tag.hex().upper()}"
        if value.tag in _GRAPH_TAGS:
            raise UnsupportedValue("nodes, relationships and paths cannot be parameters")
        if value.tag in _UTC or value.tag in _LEGACY:
            raise UnsupportedValue(f"structure {tag} belongs to another Bolt version")
        raise UnsupportedValue(f"unknown structure {tag}")
    name, types, read = entry
    fields = value.fields
    if len(fields) != len(types) or any(
        type(f) is not t for f, t in zip(fields, types, strict=True)
    ):
        raise PackStreamError(f"malformed {name}: {len(types)} fields of the right types wanted")
    try:
        return read(*fields)
    except PackStreamError:
        raise
    except (ValueError, OverflowError) as exc:
        raise UnsupportedValue(f"{name} outside what the driver can hold") from exc


def _wall_clock(seconds: int, nanoseconds: int) -> DateTime:
    """The naive DateTime ``seconds`` and ``nanoseconds`` after 1970-01-01T00:00."""
    if not 0 <= nanoseconds < _NANOS:
        raise PackStreamError("nanoseconds of a date-time outside 0 to 999,999,999")
    days, second_of_day = divmod(seconds, _DAY)
    return DateTime.combine(
        Date.from_ordinal(_EPOCH_ORDINAL + days),
        Time.from_ticks(second_of_day * _NANOS + nanoseconds),
    )


def _fixed_offset(offset_seconds: int) -> dt.tzinfo:
    minutes, seconds = divmod(offset_seconds, 60)
    if seconds:
        # The driver's own decoding would drop the seconds, moving the instant; refuse instead.
        raise UnsupportedValue("the driver holds no UTC offsets with seconds")
    return pytz.FixedOffset(minutes)  # type: ignore[no-any-return]  # ValueError past a day


def _zone(zone_id: str) -> Any:  # a pytz zone; pytz has no type hints
    try:
        return pytz.timezone(zone_id)
    except pytz.UnknownTimeZoneError:
        raise UnsupportedValue("unknown time zone") from None


def _in_utc(seconds: int, nanoseconds: int, zone: dt.tzinfo) -> DateTime:
    return _wall_clock(seconds, nanoseconds).replace(tzinfo=pytz.utc).as_timezone(zone)


def _point_from_wire(srid: int, *coordinates: float) -> Point:
    known = _POINT_TYPES.get(srid)
    if known is None:
        # An SRID the driver does not know is Neo4j's to accept or refuse.
        point = Point(coordinates)
        point.srid = srid
        return point
    point_type, dimensions = known
    if len(coordinates) != dimensions:
        raise UnsupportedValue(f"SRID {srid} has {dimensions} coordinates")
    return point_type(coordinates)


_Reader = tuple[str, tuple[type, ...], Callable[..., Any]]
_FROM_WIRE: Final[dict[bytes, _Reader]] = {
    b"D": ("Date", (int,), lambda days: Date.from_ordinal(_EPOCH_ORDINAL + days)),
    b"T": ("Time", (int, int), lambda ticks, offset: Time.from_ticks(ticks, _fixed_offset(offset))),
    b"t": ("LocalTime", (int,), Time.from_ticks),
    b"d": ("LocalDateTime", (int, int), _wall_clock),
    b"E": (
        "Duration",
        (int, int, int, int),
        lambda months, days, seconds, nanoseconds: Duration(
            months=months, days=days, seconds=seconds, nanoseconds=nanoseconds
        ),
    ),
    b"X": ("Point2D", (int, float, float), _point_from_wire),
    b"Y": ("Point3D", (int, float, float, float), _point_from_wire),
}
# Bolt 5 (and 4.4 with the utc patch): seconds in UTC, shown in the zone.
_UTC: Final[dict[bytes, _Reader]] = {
    b"I": (
        "DateTime",
        (int, int, int),
        lambda s, ns, offset: _in_utc(s, ns, _fixed_offset(offset)),
    ),
    b"i": ("DateTimeZoneId", (int, int, str), lambda s, ns, zone: _in_utc(s, ns, _zone(zone))),
}
# Older Bolt: seconds on the wall clock. A zone's ambiguous hour resolves as the driver's does.
_LEGACY: Final[dict[bytes, _Reader]] = {
    b"F": (
        "DateTime",
        (int, int, int),
        lambda s, ns, offset: _wall_clock(s, ns).replace(tzinfo=_fixed_offset(offset)),
    ),
    b"f": (
        "DateTimeZoneId",
        (int, int, str),
        lambda s, ns, zone: _zone(zone).localize(_wall_clock(s, ns)),
    ),
}
