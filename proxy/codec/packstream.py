"""PackStream v1, the value format of Bolt, written from Neo4j's published specification
(https://neo4j.com/docs/bolt/current/packstream/).

PackStream values are Python values: Null ``None``, Boolean ``bool``, Integer ``int`` (signed 64
bits), Float ``float``, Bytes ``bytes``, String ``str``, List ``list``, Dictionary
``dict[str, ...]`` and Structure :class:`Structure`. What a structure means depends on the Bolt
version and lives in :mod:`proxy.codec.values`, not here.

:func:`unpack` reads what a client sent, so it treats its input as hostile: a declared size is
checked against the bytes really there before anything is built from it, nesting and container
sizes are held to :class:`Limits` with an explicit stack (no recursion, so no input can exhaust
Python's), and every way the input can be wrong ends in :class:`PackStreamError`, whose message
names the fault and its offset but never repeats the data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from proxy.codec.errors import PackStreamError as PackStreamError  # re-exported

# The spec caps every size at 2**31 - 1, although the 32-bit size field could say more.
MAX_SIZE: Final = 0x7FFF_FFFF
# pack() recurses; a value nested deeper than this (or one that contains itself) is refused
# before Python's own recursion limit is near. Clients decode recursively too.
PACK_MAX_DEPTH: Final = 256
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Structure:
    """A PackStream structure: a one-byte tag (0x00 to 0x7F, e.g. ``b"N"`` for a Node) and up
    to 15 fields."""

    tag: bytes
    fields: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Limits:
    """What :func:`unpack` accepts from a client.

    ``max_depth`` counts containers (lists, dictionaries, structures) inside one another: a
    top-level list is depth 1, an empty one too. ``max_items`` bounds the items of one list,
    the entries of one dictionary or the fields of one structure. ``max_containers`` bounds the
    containers of the whole value: each takes one byte or more of the input but tens of bytes of
    memory once built, so a message of empty lists would otherwise cost about seventy times its
    size. Sizes of strings and bytes are bounded by the input itself, which is never trusted
    beyond its length.
    """

    max_depth: int = 64
    max_items: int = 1_000_000
    max_containers: int = 1_000_000

    def __post_init__(self) -> None:
        if self.max_depth < 1 or self.max_items < 0 or self.max_containers < 0:
            raise ValueError("Limits need max_depth >= 1, and max_items and max_containers >= 0")


DEFAULT_LIMITS: Final = Limits()

# Marker groups; the first four are the high nibbles of the tiny markers.
_STRING: Final = 0x80
_LIST: Final = 0x90
_MAP: Final = 0xA0
_STRUCTURE: Final = 0xB0
_BYTES: Final = 0xCC

_FLOAT: Final = struct.Struct(">Bd").pack
_INT8: Final = struct.Struct(">Bb").pack
_INT16: Final = struct.Struct(">Bh").pack
_INT32: Final = struct.Struct(">Bi").pack
_INT64: Final = struct.Struct(">Bq").pack
_SIZE16: Final = struct.Struct(">BH").pack
_SIZE32: Final = struct.Struct(">BI").pack

_READ_FLOAT: Final = struct.Struct(">d").unpack_from
_READ_U16: Final = struct.Struct(">H").unpack_from
_READ_U32: Final = struct.Struct(">I").unpack_from
# INT_8 to INT_64 (0xC8 to 0xCB): width and reader, by the marker's two low bits.
_READ_INT: Final = (
    (1, struct.Struct(">b").unpack_from),
    (2, struct.Struct(">h").unpack_from),
    (4, struct.Struct(">i").unpack_from),
    (8, struct.Struct(">q").unpack_from),
)
# Markers followed by a size of 1, 2 or 4 bytes: their group and the size's width. Every marker
# from 0xC0 to 0xEF not here and not handled on its own is reserved, hence an error.
_SIZED: Final = {
    0xCC: (_BYTES, 1),
    0xCD: (_BYTES, 2),
    0xCE: (_BYTES, 4),
    0xD0: (_STRING, 1),
    0xD1: (_STRING, 2),
    0xD2: (_STRING, 4),
    0xD4: (_LIST, 1),
    0xD5: (_LIST, 2),
    0xD6: (_LIST, 4),
    0xD8: (_MAP, 1),
    0xD9: (_MAP, 2),
    0xDA: (_MAP, 4),
}


def pack(value: Any) -> bytes:
    """``value`` as PackStream; :class:`PackStreamError` if it has no PackStream form.

    Lists and tuples become Lists; a subclass of ``int``, ``float``, ``str`` or ``dict`` packs as
    its base type. Tuple subclasses (points, durations, named tuples) are refused rather than
    flattened: they mean more than their items, so convert them first (``values.to_wire``).
    """
    out = bytearray()
    _pack(out, value, 0)
    return bytes(out)


def _pack(out: bytearray, value: Any, depth: int) -> None:
    """Append ``value``, which sits inside ``depth`` containers; the common types first."""
    kind = type(value)
    if kind is str:
        _pack_string(out, value)
    elif kind is int:
        _pack_int(out, value)
    elif value is None:
        out.append(0xC0)
    elif kind is bool:
        out.append(0xC3 if value else 0xC2)
    elif kind is float:
        out += _FLOAT(0xC1, value)
    elif kind is list or kind is tuple:
        _check_depth(depth)
        _pack_size(out, len(value), 0xD4, tiny=0x90)
        for item in value:
            _pack(out, item, depth + 1)
    elif kind is dict:
        _pack_dict(out, value, depth)
    elif kind is Structure:
        _pack_structure(out, value, depth)
    elif kind is bytes or kind is bytearray:
        _pack_size(out, len(value), 0xCC)
        out += value
    else:
        _pack_subclass(out, value, depth)


def _pack_subclass(out: bytearray, value: Any, depth: int) -> None:
    if isinstance(value, int):  # an IntEnum, say; bool cannot be subclassed
        _pack_int(out, int(value))
    elif isinstance(value, float):
        out += _FLOAT(0xC1, value)
    elif isinstance(value, str):
        _pack_string(out, str(value))
    elif isinstance(value, dict):
        _pack_dict(out, value, depth)
    else:
        raise PackStreamError(f"a {type(value).__name__} has no PackStream form")


def _check_depth(depth: int) -> None:
    if depth >= PACK_MAX_DEPTH:
        raise PackStreamError(f"value nested deeper than {PACK_MAX_DEPTH} (or containing itself)")


def _pack_int(out: bytearray, value: int) -> None:
    # The smallest form the spec lists for each range (INT_8 only for -128 to -17).
    if -0x10 <= value < 0x80:
        out.append(value & 0xFF)
    elif -0x80 <= value < 0x80:
        out += _INT8(0xC8, value)
    elif -0x8000 <= value < 0x8000:
        out += _INT16(0xC9, value)
    elif -0x8000_0000 <= value < 0x8000_0000:
        out += _INT32(0xCA, value)
    elif _INT64_MIN <= value <= _INT64_MAX:
        out += _INT64(0xCB, value)
    else:
        raise PackStreamError("integer outside the signed 64-bit range")


def _pack_string(out: bytearray, value: str) -> None:
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        raise PackStreamError("string with a lone surrogate has no UTF-8 form") from None
    size = len(data)
    if size < 0x10:
        out.append(0x80 | size)
    else:
        _pack_size(out, size, 0xD0)
    out += data


def _pack_size(out: bytearray, size: int, marker8: int, tiny: int = 0) -> None:
    """The marker and size of a string, bytes, list or dictionary (``tiny``: its 4-bit form)."""
    if size < 0x10 and tiny:
        out.append(tiny | size)
    elif size < 0x100:
        out.append(marker8)
        out.append(size)
    elif size < 0x1_0000:
        out += _SIZE16(marker8 + 1, size)
    elif size <= MAX_SIZE:
        out += _SIZE32(marker8 + 2, size)
    else:
        raise PackStreamError(f"size {size} above PackStream's limit of {MAX_SIZE}")


def _pack_dict(out: bytearray, value: dict[Any, Any], depth: int) -> None:
    _check_depth(depth)
    _pack_size(out, len(value), 0xD8, tiny=0xA0)
    for key, item in value.items():
        if not isinstance(key, str):
            raise PackStreamError(f"dictionary key is a {type(key).__name__}, not a string")
        _pack_string(out, key)
        _pack(out, item, depth + 1)


def _pack_structure(out: bytearray, value: Structure, depth: int) -> None:
    tag, fields = value.tag, value.fields
    if type(tag) is not bytes or len(tag) != 1 or tag[0] > 0x7F:
        raise PackStreamError("structure tag must be one byte from 0x00 to 0x7F")
    if len(fields) > 0x0F:
        raise PackStreamError(f"structure has {len(fields)} fields, at most 15 are allowed")
    _check_depth(depth)
    out.append(0xB0 | len(fields))
    out += tag
    for field in fields:
        _pack(out, field, depth + 1)


def unpack(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The one PackStream value that is all of ``data``; :class:`PackStreamError` if ``data`` is
    anything else (empty, cut short, followed by more bytes, malformed, beyond ``limits``).

    Iterative: each list, dictionary and structure being read is a frame on an explicit stack,
    so depth costs a frame, not a Python call. Every size is checked against the bytes left
    before it is used, so a short input declaring a huge size costs nothing.
    """
    # One copy of the message buys bytes' indexing and slicing, faster than a memoryview's.
    buf = data if type(data) is bytes else bytes(data)
    end = len(buf)
    max_depth, max_items = limits.max_depth, limits.max_items
    containers_left = limits.max_containers
    pos = 0
    # The containers being read, innermost last: (items so far, items wanted, group, tag). The
    # innermost one is also kept in locals; a dictionary's items alternate key and value.
    stack: list[tuple[list[Any], int, int, bytes]] = []
    items: list[Any] | None = None
    wanted, group, tag = 0, _LIST, b""
    value: Any
    while True:
        if pos >= end:
            raise PackStreamError("data ends inside a value", pos)
        marker = buf[pos]
        pos += 1
        if marker < 0x80:
            value = marker
        elif marker >= 0xF0:
            value = marker - 0x100
        elif marker == 0xC0:
            value = None
        elif marker == 0xC1:
            if pos + 8 > end:
                raise PackStreamError("data ends inside a float", pos)
            (value,) = _READ_FLOAT(buf, pos)
            pos += 8
        elif marker == 0xC2:
            value = False
        elif marker == 0xC3:
            value = True
        elif 0xC8 <= marker <= 0xCB:
            width, read = _READ_INT[marker & 3]
            if pos + width > end:
                raise PackStreamError("data ends inside an integer", pos)
            (value,) = read(buf, pos)
            pos += width
        else:
            # Everything else has a size: in the marker's low nibble, or in 1, 2 or 4 bytes.
            at = pos - 1
            if marker < 0xC0:
                kind, size = marker & 0xF0, marker & 0x0F
            else:
                sized = _SIZED.get(marker)
                if sized is None:
                    raise PackStreamError(f"marker 0x{marker:02X} is reserved", at)
                kind, width = sized
                if pos + width > end:
                    raise PackStreamError("data ends inside a size", pos)
                if width == 1:
                    size = buf[pos]
                else:
                    (size,) = (_READ_U16 if width == 2 else _READ_U32)(buf, pos)
                    if size > MAX_SIZE:
                        raise PackStreamError(f"size above PackStream's limit of {MAX_SIZE}", pos)
                pos += width
            if kind in (_STRING, _BYTES):
                stop = pos + size
                if stop > end:
                    raise PackStreamError(f"{size} bytes declared, {end - pos} left", pos)
                if kind == _BYTES:
                    value = buf[pos:stop]
                else:
                    try:
                        value = buf[pos:stop].decode("utf-8")
                    except UnicodeDecodeError:
                        raise PackStreamError("string is not valid UTF-8", pos) from None
                pos = stop
            else:
                # A list, dictionary or structure begins.
                if len(stack) >= max_depth:
                    raise PackStreamError(f"values nested deeper than {max_depth}", at)
                containers_left -= 1
                if containers_left < 0:
                    raise PackStreamError(
                        f"more than {limits.max_containers} lists, dictionaries and structures",
                        at,
                    )
                if size > max_items:
                    raise PackStreamError(f"{size} items, more than {max_items} allowed", pos)
                new_tag = b""
                if kind == _STRUCTURE:
                    if pos >= end:
                        raise PackStreamError("data ends before a structure's tag", pos)
                    if buf[pos] > 0x7F:
                        raise PackStreamError("structure tag above 0x7F", pos)
                    new_tag = buf[pos : pos + 1]
                    pos += 1
                elif kind == _MAP:
                    size *= 2
                # Each item (a dictionary's key or value too) takes at least one byte: a size
                # the data left cannot hold is a lie, refused before anything is built.
                if size > end - pos:
                    raise PackStreamError(f"{size} values declared, {end - pos} bytes left", pos)
                if size:
                    items, wanted, group, tag = [], size, kind, new_tag
                    stack.append((items, wanted, group, tag))
                    continue
                value = [] if kind == _LIST else {} if kind == _MAP else Structure(new_tag, ())
        # A value is complete: it goes into the innermost container, which may complete too.
        while True:
            if items is None:
                if pos != end:
                    raise PackStreamError(f"{end - pos} bytes after the value", pos)
                return value
            if group == _MAP and not len(items) & 1 and type(value) is not str:
                raise PackStreamError("dictionary key is not a string", pos)
            items.append(value)
            if len(items) < wanted:
                break
            stack.pop()
            if group == _LIST:
                value = items
            elif group == _MAP:
                pairs = iter(items)
                value = dict(zip(pairs, pairs, strict=True))
            else:
                value = Structure(tag, tuple(items))
            if stack:
                items, wanted, group, tag = stack[-1]
            else:
                items = None


# ---- proxy.codec.native compiles the code above this line ----
# Its compiled twin, if built from this very text, takes over the public names.
IMPLEMENTATION = "python"
if not TYPE_CHECKING:
    from proxy.codec.native import load

    _native = load("packstream")
    if _native is not None:
        IMPLEMENTATION = "native"
        Structure = _native.Structure
        Limits = _native.Limits
        DEFAULT_LIMITS = _native.DEFAULT_LIMITS
        pack = _native.pack
        unpack = _native.unpack
