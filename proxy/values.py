"""Neo4j values in the Query API's two JSON forms, written exactly as Neo4j writes them.

* plain JSON (``application/json``): numbers, strings and lists as they are; graph entities as
  objects; temporal values, durations and points as strings;
* typed JSON (``application/vnd.neo4j.query``): every value as ``{"$type": ..., "_value": ...}``,
  so that integers, floats, dates and points survive the round trip. The neo4j driver speaks
  this form over ``http://``; parameters arrive in it too and are decoded here.

The values encoded are those of a record in either of two forms: as the neo4j driver hands them
out, or as Bolt carries them (:func:`~proxy.codec.packstream.unpack`'s, with a
:class:`~proxy.codec.packstream.Structure` for each graph entity, temporal value and point),
which is how the relay (:mod:`proxy.neo4j.relay`) reads them. A graph entity in its Bolt form is
written straight from its fields; a temporal value or point is first read as the driver would
read it (:func:`~proxy.codec.values.from_wire`), so that both forms give the same JSON.

Both encoders are checked against Neo4j's own Query API in the acceptance tests.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import pytz
from neo4j import graph as neo4j_graph
from neo4j import spatial as neo4j_spatial
from neo4j import time as neo4j_time

from proxy.codec.packstream import Structure
from proxy.codec.values import from_wire

JSON = Any
TYPED_MEDIA_TYPE = "application/vnd.neo4j.query"

# The days since 1970-01-01 of 0001-01-01 and 9999-12-31: the driver's types hold these years.
_DAYS = (-719162, 2932896)
_FRACTION = re.compile(r"\.(\d+)")
_INTEGER = re.compile(r"[-+]?[0-9]+")
# Java's decimal forms (Double.parseDouble), without its hexadecimal ones and f/d suffixes.
_FLOAT = re.compile(
    r"[\x00-\x20]*[-+]?(?:NaN|Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)[\x00-\x20]*"
)
_POINT = re.compile(
    r"SRID=(\d+);\s*POINT\s*(Z\s*)?\(\s*([-+0-9.eE]+)\s+([-+0-9.eE]+)(?:\s+([-+0-9.eE]+))?\s*\)"
)


class InvalidValue(ValueError):
    """A typed parameter that does not decode; the message says which and why."""


def to_plain(value: Any) -> JSON:
    """A driver value in the plain JSON form."""
    return _encode(value, typed=False)


def to_typed(value: Any) -> JSON:
    """A driver value in the typed JSON form."""
    return _encode(value, typed=True)


def _encode(value: Any, *, typed: bool) -> JSON:
    # The common kinds first, by exact type: this runs for every value of every row.
    kind = type(value)
    if kind is str:
        return {"$type": "String", "_value": value} if typed else value
    if kind is int:
        return {"$type": "Integer", "_value": str(value)} if typed else value
    if kind is Structure:
        return _encode_structure(value, typed=typed)
    if kind is list:
        items = [_encode(item, typed=typed) for item in value]
        return {"$type": "List", "_value": items} if typed else items
    if kind is dict:
        entries = {key: _encode(item, typed=typed) for key, item in value.items()}
        return {"$type": "Map", "_value": entries} if typed else entries

    def wrap(kind: str, inner: JSON) -> JSON:
        return {"$type": kind, "_value": inner} if typed else inner

    if value is None:
        return wrap("Null", None)
    if isinstance(value, bool):
        return wrap("Boolean", value)
    if isinstance(value, int):
        return wrap("Integer", str(value)) if typed else value
    if isinstance(value, float):
        if typed:
            return wrap("Float", _java_float(value))
        # JSON has no NaN or infinities: Neo4j writes them as the strings "NaN", "Infinity".
        return value if math.isfinite(value) else _java_float(value)
    if isinstance(value, str):
        return wrap("String", value)
    # Points and durations are tuples, so they come before lists.
    if isinstance(value, neo4j_spatial.Point):
        coordinates = " ".join(_java_float(float(c)) for c in value)  # 1.0E20, as Neo4j
        text = f"SRID={value.srid};POINT{' Z' if len(value) == 3 else ''} ({coordinates})"
        return wrap("Point", text)
    if isinstance(value, neo4j_time.Duration):
        return wrap("Duration", value.iso_format())
    if isinstance(value, neo4j_time.Date):
        return wrap("Date", value.iso_format())
    if isinstance(value, neo4j_time.Time):
        name = "LocalTime" if value.tzinfo is None else "Time"
        return wrap(name, _java_style_iso(value.iso_format()))
    if isinstance(value, neo4j_time.DateTime):
        return _encode_datetime(value, wrap, typed=typed)
    if isinstance(value, bytes | bytearray):
        return wrap("Base64", base64.b64encode(bytes(value)).decode("ascii"))
    if isinstance(value, neo4j_graph.Node):
        return _encode_node(value, typed=typed)
    if isinstance(value, neo4j_graph.Relationship):
        return _encode_relationship(value, typed=typed)
    if isinstance(value, neo4j_graph.Path):
        walked: list[JSON] = []
        for index, node in enumerate(value.nodes):
            if index:
                walked.append(_encode(value.relationships[index - 1], typed=typed))
            walked.append(_encode(node, typed=typed))
        return wrap("Path", walked)
    if isinstance(value, list | tuple):
        return wrap("List", [_encode(item, typed=typed) for item in value])
    if isinstance(value, dict):
        return wrap("Map", {key: _encode(item, typed=typed) for key, item in value.items()})
    return wrap("String", str(value))


def _encode_structure(value: Structure, *, typed: bool) -> JSON:
    """A value in its Bolt form (see the module docstring). Raises
    :class:`~proxy.codec.values.UnsupportedValue` (a ``ValueError``) for one the driver could
    not hold either (a date beyond year 9999, an unknown structure)."""
    tag, fields = value.tag, value.fields
    if tag == b"N":
        _id, labels, properties, element_id = fields
        return _node_json(element_id, labels, properties, typed=typed)
    if tag == b"R":
        _id, _start, _end, kind, properties, element_id, start_id, end_id = fields
        return _relationship_json(element_id, start_id, end_id, kind, properties, typed=typed)
    if tag == b"P":
        return _path_json(*fields, typed=typed)
    far = _far_temporal(value)
    if far is not None:
        return {"$type": far[0], "_value": far[1]} if typed else far[1]
    return _encode(from_wire(value), typed=typed)


def _far_temporal(value: Structure) -> tuple[str, str] | None:
    """A date or a local or offset date-time outside the years 1 to 9999 (Neo4j has them, the
    driver's types do not, and read year 0 as its "zero date"), written from its Bolt fields as
    Neo4j writes it (seconds always, the fraction without trailing zeros); None for any other
    value, and for these inside those years."""
    tag, fields = value.tag, value.fields
    if not fields or not all(type(field) is int for field in fields):
        return None
    if tag == b"D" and len(fields) == 1:
        return ("Date", _java_date(fields[0])) if not _DAYS[0] <= fields[0] <= _DAYS[1] else None
    if tag not in (b"d", b"I") or len(fields) != 2 + (tag == b"I"):
        return None
    seconds, nanos, *offset = fields
    days, of_day = divmod(seconds + (offset[0] if offset else 0), 86400)
    if _DAYS[0] <= days <= _DAYS[1]:
        return None
    hour, rest = divmod(of_day, 3600)
    text = f"{_java_date(days)}T{hour:02}:{rest // 60:02}:{rest % 60:02}"
    if nanos:
        text += "." + f"{nanos:09}".rstrip("0")
    if not offset:
        return "LocalDateTime", text
    sign, minutes = ("-" if offset[0] < 0 else "+"), abs(offset[0]) // 60
    zone = "Z" if offset[0] == 0 else f"{sign}{minutes // 60:02}:{minutes % 60:02}"
    return "OffsetDateTime", text + zone


def _java_date(days: int) -> str:
    """The proleptic Gregorian date ``days`` after 1970-01-01, as Java's ``LocalDate`` writes it
    (``+10000-01-01``, ``-0001-12-31``); the civil-from-days algorithm of H. Hinnant."""
    era, day_of_era = divmod(days + 719468, 146097)
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    year = year_of_era + era * 400 + (month <= 2)
    if year > 9999:
        return f"+{year}-{month:02}-{day:02}"
    return f"{'-' if year < 0 else ''}{abs(year):04}-{month:02}-{day:02}"


def _path_json(
    nodes: list[Structure], relationships: list[Structure], indices: list[int], *, typed: bool
) -> JSON:
    """A path's nodes and relationships in walking order, each relationship with its start and
    end as the driver gives them: from the last step that walks it (the driver hydrates each
    distinct relationship once and sets its ends at every step)."""
    ends: dict[int, tuple[str, str]] = {}
    walk: list[tuple[int, int]] = []
    last = 0
    for step in range(0, len(indices), 2):
        number, following = indices[step], indices[step + 1]
        here, there = nodes[last].fields[3], nodes[following].fields[3]
        if number > 0:
            ends[number - 1] = (here, there)
        else:
            ends[-number - 1] = (there, here)
        walk.append((abs(number) - 1, following))
        last = following
    items = [_encode(nodes[0], typed=typed)]
    for relationship, node in walk:
        _id, kind, properties, element_id = relationships[relationship].fields
        start, end = ends[relationship]
        items.append(_relationship_json(element_id, start, end, kind, properties, typed=typed))
        items.append(_encode(nodes[node], typed=typed))
    return {"$type": "Path", "_value": items} if typed else items


def _encode_datetime(
    value: neo4j_time.DateTime, wrap: Callable[[str, JSON], JSON], *, typed: bool
) -> JSON:
    if value.tzinfo is None:
        return wrap("LocalDateTime", _java_style_iso(value.iso_format()))
    text = _java_style_iso(value.iso_format())
    zone = getattr(value.tzinfo, "key", None) or getattr(value.tzinfo, "zone", None)
    # Neo4j writes a zone of one fixed offset (Etc/UTC, GMT, Etc/GMT+1: Java normalizes them to
    # that offset) as the offset; pytz gives such a zone, with no transitions, a static class.
    fixed = isinstance(value.tzinfo, pytz.tzinfo.StaticTzInfo)
    if typed and zone and zone not in ("UTC", "Z") and not fixed:
        return wrap("ZonedDateTime", f"{text}[{zone}]")
    return wrap("OffsetDateTime", text)


def _encode_node(value: neo4j_graph.Node, *, typed: bool) -> JSON:
    return _node_json(value.element_id, value.labels, dict(value), typed=typed)


def _node_json(
    element_id: str, labels: Iterable[str], properties: dict[str, Any], *, typed: bool
) -> JSON:
    encoded = {key: _encode(item, typed=typed) for key, item in properties.items()}
    if typed:
        inner = {"_element_id": element_id, "_labels": sorted(labels), "_properties": encoded}
        return {"$type": "Node", "_value": inner}
    return {"elementId": element_id, "labels": sorted(labels), "properties": encoded}


def _encode_relationship(value: neo4j_graph.Relationship, *, typed: bool) -> JSON:
    # A Node with no properties is falsy (it is a mapping), hence "is not None".
    start, end = value.start_node, value.end_node
    start_id = None if start is None else start.element_id
    end_id = None if end is None else end.element_id
    return _relationship_json(
        value.element_id, start_id, end_id, value.type, dict(value), typed=typed
    )


def _relationship_json(
    element_id: str,
    start_id: str | None,
    end_id: str | None,
    kind: str,
    properties: dict[str, Any],
    *,
    typed: bool,
) -> JSON:
    encoded = {key: _encode(item, typed=typed) for key, item in properties.items()}
    if typed:
        inner = {
            "_element_id": element_id,
            "_start_node_element_id": start_id,
            "_end_node_element_id": end_id,
            "_type": kind,
            "_properties": encoded,
        }
        return {"$type": "Relationship", "_value": inner}
    return {
        "elementId": element_id,
        "startNodeElementId": start_id,
        "endNodeElementId": end_id,
        "type": kind,
        "properties": encoded,
    }


def _java_style_iso(text: str) -> str:
    """Neo4j writes times as Java does: no trailing zeros in the fraction, ``Z`` for UTC."""
    text = _FRACTION.sub(lambda m: "." + m[1].rstrip("0") if m[1].rstrip("0") else "", text, 1)
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _java_float(value: float) -> str:
    """A float as Java's Double.toString writes it (what Neo4j sends in typed JSON)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return repr(value)  # Python's shortest round-trip digits, positional in this range
    shortest = Decimal(repr(value))
    sign, digits, _ = shortest.as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    mantissa = f"{text[0]}.{text[1:] or '0'}"
    return f"{'-' if sign else ''}{mantissa}E{shortest.adjusted()}"


def from_typed(value: JSON, where: str = "parameters") -> Any:
    """A typed JSON value as a driver value; raises :class:`InvalidValue` naming the place."""
    if not isinstance(value, dict) or set(value) != {"$type", "_value"}:
        raise InvalidValue(f'{where}: expected {{"$type": ..., "_value": ...}}')
    kind, inner = value["$type"], value["_value"]
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise InvalidValue(f"{where}: unknown $type {kind!r}")
    try:
        return decoder(inner, where)
    except InvalidValue:
        raise
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise InvalidValue(f"{where}: not a valid {kind}") from exc


def _string(inner: JSON) -> str:
    if not isinstance(inner, str):
        raise TypeError("expected a string")
    return inner


def _decode_point(inner: JSON) -> neo4j_spatial.Point:
    match = _POINT.fullmatch(_string(inner).strip())
    if match is None:
        raise ValueError("not a WKT point")
    srid = int(match[1])
    coordinates = [float(c) for c in match.group(3, 4, 5) if c is not None]
    point_class, dimensions = _POINT_CLASSES[srid]
    # The driver's class names its SRID by the number of coordinates: a 3D point said to be in
    # a 2D system (or the reverse) would run as a point in the other system. Neo4j refuses it.
    if len(coordinates) != dimensions:
        raise ValueError(f"SRID {srid} takes {dimensions} coordinates")
    return point_class(coordinates)


_POINT_CLASSES: dict[int, tuple[Callable[[list[float]], neo4j_spatial.Point], int]] = {
    7203: (neo4j_spatial.CartesianPoint, 2),
    9157: (neo4j_spatial.CartesianPoint, 3),
    4326: (neo4j_spatial.WGS84Point, 2),
    4979: (neo4j_spatial.WGS84Point, 3),
}


def _decode_zoned(inner: JSON) -> neo4j_time.DateTime:
    text = _string(inner)
    if not (text.endswith("]") and "[" in text):
        return neo4j_time.DateTime.from_iso_format(text.replace("Z", "+00:00"))
    text, zone = text[:-1].split("[", 1)
    with_offset = neo4j_time.DateTime.from_iso_format(text.replace("Z", "+00:00"))
    local = with_offset.replace(tzinfo=None)
    # pytz (the driver's own zone library) applies daylight saving correctly to the driver's
    # DateTime; the written offset picks the right side of an ambiguous autumn hour.
    timezone = pytz.timezone(zone)
    for is_dst in (False, True):
        candidate: neo4j_time.DateTime = timezone.localize(local, is_dst=is_dst)
        if candidate.utcoffset() == with_offset.utcoffset():
            return candidate
    raise ValueError(f"{text} is not a time in {zone}")


def _plain(decode: Callable[[JSON], Any]) -> Callable[[JSON, str], Any]:
    return lambda inner, _where: decode(inner)


def _integer(text: str) -> int:
    """Digits, with a sign: Python's int() also takes "1_0", " 10 " and other scripts' digits."""
    if _INTEGER.fullmatch(text) is None:
        raise ValueError("expected an integer in decimal digits")
    return int(text)


def _float(text: str) -> float:
    """Java's decimal forms, as Neo4j reads them: Python's float() also takes "nan", "inf",
    "1_0" and other scripts' digits, which Neo4j refuses."""
    if _FLOAT.fullmatch(text) is None:
        raise ValueError("expected a decimal number, NaN or Infinity")
    return float(text)


def _null(inner: JSON) -> None:
    if inner is not None:
        raise TypeError("expected null")


def _boolean(inner: JSON) -> bool:
    if not isinstance(inner, bool):
        raise TypeError("expected true or false")
    return inner


def _list(inner: JSON, where: str) -> list[Any]:
    return [from_typed(item, f"{where}[{index}]") for index, item in enumerate(inner)]


def _map(inner: JSON, where: str) -> dict[str, Any]:
    if not isinstance(inner, dict):  # dict() would also take a list of pairs
        raise TypeError("expected an object")
    return {str(key): from_typed(item, f"{where}.{key}") for key, item in inner.items()}


_DECODERS: dict[str, Callable[[JSON, str], Any]] = {
    "Null": _plain(_null),
    "Boolean": _plain(_boolean),
    "Integer": _plain(lambda inner: _integer(_string(inner))),
    "Float": _plain(lambda inner: _float(_string(inner))),
    "String": _plain(_string),
    "Base64": _plain(lambda inner: base64.b64decode(_string(inner), validate=True)),
    "List": _list,
    "Map": _map,
    "Date": _plain(lambda inner: neo4j_time.Date.from_iso_format(_string(inner))),
    "LocalTime": _plain(lambda inner: neo4j_time.Time.from_iso_format(_string(inner))),
    "Time": _plain(
        lambda inner: neo4j_time.Time.from_iso_format(_string(inner).replace("Z", "+00:00"))
    ),
    "LocalDateTime": _plain(lambda inner: neo4j_time.DateTime.from_iso_format(_string(inner))),
    "OffsetDateTime": _plain(lambda inner: _decode_zoned(inner)),
    "ZonedDateTime": _plain(lambda inner: _decode_zoned(inner)),
    "Duration": _plain(lambda inner: neo4j_time.Duration.from_iso_format(_string(inner))),
    "Point": _plain(lambda inner: _decode_point(inner)),
}
