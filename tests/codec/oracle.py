"""The official driver's own PackStream codec and Bolt hydration: the oracle that
``proxy.bolt`` is held to. These are private modules of neo4j 6.4.1 (``neo4j._codec``), reached
from here only, used the way the driver's Bolt connections use them.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

from neo4j._codec.hydration import BrokenHydrationObject
from neo4j._codec.hydration.bolt import v1 as hydration_v1
from neo4j._codec.hydration.bolt import v2 as hydration_v2
from neo4j._codec.packstream import Structure as DriverStructure
from neo4j._codec.packstream._common import PackableBuffer, UnpackableBuffer
from neo4j._codec.packstream.v1 import Packer, Unpacker

from proxy.codec.packstream import Structure


class Bolt(Enum):
    """The driver's hydration for a protocol generation."""

    V5 = "5.x"  # DateTime I / i
    V4_4_UTC = "4.4 with the utc patch"  # the same structures as 5.x, from the 4.x handler
    V4 = "4.x"  # legacy DateTime F / f

    @property
    def utc(self) -> bool:
        return self is not Bolt.V4


def _handler(bolt: Bolt) -> Any:
    if bolt is Bolt.V5:
        return hydration_v2.HydrationHandler()
    handler = hydration_v1.HydrationHandler()
    if bolt is Bolt.V4_4_UTC:
        handler.patch_utc()
    return handler


def _to_driver(value: Any) -> Any:
    if isinstance(value, Structure):
        return DriverStructure(value.tag, *map(_to_driver, value.fields))
    if isinstance(value, list):
        return [_to_driver(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_driver(item) for key, item in value.items()}
    return value


def _from_driver(value: Any) -> Any:
    if isinstance(value, DriverStructure):
        return Structure(value.tag, tuple(map(_from_driver, value.fields)))
    if isinstance(value, list):
        return [_from_driver(item) for item in value]
    if isinstance(value, dict):
        return {key: _from_driver(item) for key, item in value.items()}
    return value


def driver_pack(value: Any, bolt: Bolt | None = None) -> bytes:
    """``value`` packed by the driver; with ``bolt``, its driver values dehydrated first as the
    driver sends query parameters."""
    # The driver's codec has no type hints, hence the ignores.
    buffer = PackableBuffer()  # type: ignore[no-untyped-call]
    hooks = None if bolt is None else _handler(bolt).new_hydration_scope().dehydration_hooks
    packer = Packer(buffer)  # type: ignore[no-untyped-call]
    packer.pack(_to_driver(value), dehydration_hooks=hooks)  # type: ignore[no-untyped-call]
    return bytes(buffer.data)


def driver_unpack(data: bytes, bolt: Bolt | None = None) -> Any:
    """The one value that is all of ``data``, unpacked by the driver; with ``bolt``, hydrated
    as the driver hydrates a record (a hydration failure is an AssertionError)."""
    buffer = UnpackableBuffer(data)  # type: ignore[no-untyped-call]
    hooks = None if bolt is None else _handler(bolt).new_hydration_scope().hydration_hooks
    value = Unpacker(buffer).unpack(hooks)  # type: ignore[no-untyped-call]
    assert buffer.p == len(data), "the driver left bytes unread"
    _assert_whole(value)
    return _from_driver(value)


def _assert_whole(value: Any) -> None:
    if isinstance(value, BrokenHydrationObject):
        raise AssertionError(f"the driver could not hydrate it: {value.error!r}")
    if isinstance(value, list):
        for item in value:
            _assert_whole(item)
    elif isinstance(value, dict):
        for item in value.values():
            _assert_whole(item)


def same(left: Any, right: Any) -> bool:
    """Equal, and of the same type all the way down; a NaN is the same as a NaN, -0.0 is not
    0.0 (``==`` says otherwise for both)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        return (math.isnan(left) and math.isnan(right)) or (
            left == right and math.copysign(1, left) == math.copysign(1, right)
        )
    if isinstance(left, list | tuple):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, dict):
        return list(left) == list(right) and all(same(left[key], right[key]) for key in left)
    if isinstance(left, Structure):
        return left.tag == right.tag and same(left.fields, right.fields)
    return bool(left == right)
