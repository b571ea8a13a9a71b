"""Benchmark: PackStream and Bolt value mapping for one typical record, ours against the
official driver's own (pure Python) codec, in one run, in-process. No servers.

The record has ten columns of mixed types: integers small and large, a float, a boolean, a
null, strings short and long, a list, a map and a date. Two measures, each the best of several
timeit repeats, in microseconds per record:

* ``codec``    pack then unpack, structures left raw (proxy.codec.packstream against the
  driver's Packer and Unpacker);
* ``mapping``  driver values to bytes and back to driver values (to_wire, pack, unpack,
  from_wire against the driver's dehydration, Packer, Unpacker and Bolt 5 hydration).

    .venv/bin/python benchmarks/packstream.py [--number 20000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

from neo4j._codec.hydration.bolt.v2 import HydrationHandler
from neo4j._codec.packstream import Structure as DriverStructure
from neo4j._codec.packstream._common import PackableBuffer, UnpackableBuffer
from neo4j._codec.packstream.v1 import Packer, Unpacker
from neo4j.time import Date

from proxy.codec.packstream import Structure, pack, unpack
from proxy.codec.values import from_wire, to_wire


def record(date: Any) -> list[Any]:
    return [
        42,
        "Ada Lovelace",
        3.14159,
        True,
        None,
        [1, 2, 3],
        {"city": "London", "postcode": 10115},
        date,
        "a longer string value, as a description column might hold",
        2**40,
    ]


def driver_codec(value: Any, hooks: Any = None, hydration: Any = None) -> Any:
    # The driver's codec has no type hints, hence the ignores.
    buffer = PackableBuffer()  # type: ignore[no-untyped-call]
    Packer(buffer).pack(value, dehydration_hooks=hooks)  # type: ignore[no-untyped-call]
    reader = Unpacker(UnpackableBuffer(buffer.data))  # type: ignore[no-untyped-call]
    return reader.unpack(hydration)  # type: ignore[no-untyped-call]


def time_us(work: Callable[[], Any], number: int) -> float:
    return timeit.timeit(work, number=number) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    raw = record(Structure(b"D", (19_000,)))
    driver_raw = record(DriverStructure(b"D", 19_000))
    values = record(Date(2022, 1, 8))
    handler = HydrationHandler()

    def ours_mapping() -> Any:
        return from_wire(unpack(pack(to_wire(values))))

    def driver_mapping() -> Any:
        scope = handler.new_hydration_scope()
        return driver_codec(values, scope.dehydration_hooks, scope.hydration_hooks)

    assert from_wire(unpack(pack(to_wire(values)))) == driver_mapping() == values
    assert unpack(pack(raw)) == raw
    print(f"one 10-column record, µs (best of {args.repeat} rounds of {args.number})")
    print(f"{'':10}{'ours':>8}{'driver':>8}{'ratio':>8}")
    for name, ours, theirs in (
        ("codec", lambda: unpack(pack(raw)), lambda: driver_codec(driver_raw)),
        ("mapping", ours_mapping, driver_mapping),
    ):
        # Interleaved, so that drift in the machine's speed hits both alike.
        rounds = [
            (time_us(ours, args.number), time_us(theirs, args.number)) for _ in range(args.repeat)
        ]
        mine, driver = (min(times) for times in zip(*rounds, strict=True))
        print(f"{name:10}{mine:8.2f}{driver:8.2f}{driver / mine:7.1f}x")


if __name__ == "__main__":
    main()
