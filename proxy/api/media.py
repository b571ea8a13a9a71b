"""The Query API's media types: which one a header names, which form of answer the client
prefers (plain JSON or typed JSON, ``application/vnd.neo4j.query``), and an ``EXPLAIN``'s plan
in that form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.errors import BadRequest
from proxy.values import TYPED_MEDIA_TYPE, to_plain, to_typed

_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")  # UTF-16 and UTF-32


def without_utf8_bom(body: bytes) -> bytes:
    """A JSON body without a UTF-8 byte order mark before it (RFC 8259 lets a parser ignore
    one, and Neo4j does); one that starts with another encoding's is refused: JSON between
    systems is UTF-8."""
    if body.startswith(_UTF8_BOM):
        return body[len(_UTF8_BOM) :]
    if body.startswith(_OTHER_BOMS):
        raise BadRequest(
            "Invalid request body: JSON must be UTF-8 (RFC 8259); this body is UTF-16 or UTF-32.",
            reason="invalid_body",
        )
    return body


def media_type(header: str | None) -> str:
    """The media type of a ``Content-Type`` header or of one ``Accept`` entry, lower case."""
    return (header or "").split(";")[0].strip().lower()


def wants_typed(accept: str | None) -> bool:
    """Typed JSON when the client accepts it and prefers it to plain JSON, as Neo4j decides:
    by the entries' quality values (``q``, 1 unless given; 0 is "not at all"), and between equal
    ones by which comes first. Plain JSON ranks as its own entry, else as ``application/*``,
    else as ``*/*`` (the most specific range that covers it)."""
    ranks: dict[str, tuple[float, int]] = {}
    for position, entry in enumerate((accept or "").split(",")):
        ranks.setdefault(media_type(entry), (_quality(entry), -position))
    typed = ranks.get(TYPED_MEDIA_TYPE)
    plain = next(
        (ranks[name] for name in ("application/json", "application/*", "*/*") if name in ranks),
        None,
    )
    return typed is not None and typed[0] > 0 and (plain is None or typed > plain)


def _quality(entry: str) -> float:
    """An ``Accept`` entry's ``q`` (1 if absent or not a number from 0 to 1)."""
    for parameter in entry.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return 1.0
            return quality if 0 <= quality <= 1 else 1.0
    return 1.0


def query_plan(plan: Mapping[str, Any], *, typed: bool) -> dict[str, Any]:
    """The plan of a caller's own ``EXPLAIN`` (the driver's and Bolt's form: ``operatorType``,
    ``args``, ``identifiers``, ``children``) as the Query API's ``queryPlan``: the arguments
    under ``arguments``, their values in the answer's form."""
    encode = to_typed if typed else to_plain
    arguments = plan.get("args")
    return {
        "operatorType": plan.get("operatorType"),
        "arguments": {
            key: encode(value)
            for key, value in (arguments.items() if isinstance(arguments, Mapping) else ())
        },
        "identifiers": list(plan.get("identifiers") or ()),
        "children": [
            query_plan(child, typed=typed)
            for child in plan.get("children") or ()
            if isinstance(child, Mapping)
        ],
    }
