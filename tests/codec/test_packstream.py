"""PackStream against the official driver's own codec, both ways, and against hostile input."""

from __future__ import annotations

import struct
import tracemalloc
from collections import OrderedDict
from enum import IntEnum, StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from neo4j.spatial import CartesianPoint

from proxy.codec.packstream import (
    DEFAULT_LIMITS,
    MAX_SIZE,
    PACK_MAX_DEPTH,
    Limits,
    PackStreamError,
    Structure,
    pack,
    unpack,
)
from tests.codec.oracle import driver_pack, driver_unpack, same

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
RESERVED = [*range(0xC4, 0xC8), 0xCF, 0xD3, 0xD7, 0xDB, *range(0xDC, 0xF0)]
EXAMPLES = settings(max_examples=300, derandomize=True, deadline=None, database=None)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.sampled_from([INT64_MIN, INT64_MAX, -(2**31) - 1, 2**31, -129, -17, -16, 127, 128])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.text(st.characters(min_codepoint=0x1_0000), max_size=20)  # astral planes: 4 bytes each
    | st.binary()
)


def structures(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Structure]:
    return st.builds(
        Structure,
        st.integers(0, 0x7F).map(lambda tag: bytes([tag])),
        st.lists(children, max_size=15).map(tuple),
    )


values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=20)
        | st.dictionaries(st.text(max_size=10), children, max_size=20)
        | structures(children)
    ),
    max_leaves=60,
)


def refused(data: bytes, limits: Limits = DEFAULT_LIMITS) -> PackStreamError:
    with pytest.raises(PackStreamError) as caught:
        unpack(data, limits)
    return caught.value


def unpacks_or_refuses(data: bytes) -> None:
    """Hostile input gives a value or PackStreamError, nothing else; and a value we accept is
    the value the driver reads there too."""
    try:
        value = unpack(data)
    except PackStreamError:
        return
    assert same(driver_unpack(data), value)


class TestRoundTrips:
    @EXAMPLES
    @given(values)
    def test_both_ways_with_the_driver(self, value: Any) -> None:
        ours = pack(value)
        assert ours == driver_pack(value), "not the driver's bytes"
        assert same(driver_unpack(ours), value)
        assert same(unpack(driver_pack(value)), value)

    @pytest.mark.parametrize(
        ("value", "marker", "length"),
        [
            (-16, 0xF0, 1),
            (127, 0x7F, 1),
            (-17, 0xC8, 2),
            (-128, 0xC8, 2),
            (128, 0xC9, 3),
            (-129, 0xC9, 3),
            (32767, 0xC9, 3),
            (-32768, 0xC9, 3),
            (32768, 0xCA, 5),
            (-32769, 0xCA, 5),
            (2**31 - 1, 0xCA, 5),
            (-(2**31), 0xCA, 5),
            (2**31, 0xCB, 9),
            (-(2**31) - 1, 0xCB, 9),
            (INT64_MAX, 0xCB, 9),
            (INT64_MIN, 0xCB, 9),
        ],
    )
    def test_integers_take_the_smallest_form(self, value: int, marker: int, length: int) -> None:
        data = pack(value)
        assert (data[0], len(data)) == (marker, length)
        assert data == driver_pack(value)
        assert unpack(data) == value

    @pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 2**100])
    def test_integers_beyond_64_bits_are_refused(self, value: int) -> None:
        with pytest.raises(PackStreamError, match="64-bit"):
            pack(value)

    @pytest.mark.parametrize(
        "value",
        [float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 5e-324, 1.7976931348623157e308],
    )
    def test_floats_are_ieee_doubles(self, value: float) -> None:
        data = pack(value)
        assert data == b"\xc1" + struct.pack(">d", value) == driver_pack(value)
        assert same(unpack(data), value)

    @pytest.mark.parametrize("size", [0, 15, 16, 255, 256, 65535, 65536])
    def test_sizes_at_each_boundary(self, size: int) -> None:
        """Tiny, 8-, 16- and 32-bit sizes of strings (in bytes), bytes, lists and dictionaries."""
        cases: list[tuple[int | None, int, Any]] = [
            (0x80, 0xD0, "é" * (size // 2) + "x" * (size % 2)),
            (None, 0xCC, b"\xff" * size),
            (0x90, 0xD4, [1] * size),
            (0xA0, 0xD8, {f"{i:05}": i for i in range(size)}),
        ]
        for tiny, marker8, value in cases:
            data = pack(value)
            if tiny is not None and size < 16:
                assert data[0] == tiny | size
            else:
                assert data[0] == marker8 + (size >= 256) + (size >= 65536)
            assert data == driver_pack(value)
            assert same(unpack(data), value)

    def test_deep_and_wide(self) -> None:
        deep: Any = "bottom"
        for _ in range(32):
            deep = [{"k": deep}]  # two containers a turn: 64 in all, the default limit
        wide = list(range(-50_000, 50_000))
        for value in (deep, wide, {str(i): [i, str(i)] for i in range(20_000)}):
            data = pack(value)
            assert data == driver_pack(value)
            assert same(unpack(data), value)
        assert "deeper than 64" in str(refused(pack([deep])))

    def test_duplicate_keys_keep_the_last_value(self) -> None:
        assert unpack(b"\xa2\x81a\x01\x81a\x02") == {"a": 2}

    def test_buffers_of_any_kind(self) -> None:
        data = pack({"a": [1, "two", b"3"]})
        framed = b"\x00\x00" + data + b"\x00"
        for buffer in (bytearray(data), memoryview(data), memoryview(framed)[2:-1]):
            assert unpack(buffer) == {"a": [1, "two", b"3"]}

    def test_subclasses_pack_as_their_base_type(self) -> None:
        class Number(IntEnum):
            ONE = 1

        class Word(StrEnum):
            HELLO = "hello"

        assert pack(Number.ONE) == pack(1)
        assert pack(Word.HELLO) == pack("hello")
        assert pack(OrderedDict(a=1)) == pack({"a": 1})
        assert pack(("a", 1)) == pack(["a", 1])


class TestPackRefuses:
    @pytest.mark.parametrize(
        "value",
        [
            object(),
            {1, 2},
            1j,
            CartesianPoint((1.0, 2.0)),  # a tuple with a meaning: values.to_wire's job
            {1: "a"},
            "\ud800",
            Structure(b"N", tuple(range(16))),
            Structure(b"NN", ()),
            Structure(b"\x80", ()),
        ],
        ids=repr,
    )
    def test_values_without_a_packstream_form(self, value: Any) -> None:
        with pytest.raises(PackStreamError):
            pack(value)

    def test_a_tag_that_is_not_bytes(self) -> None:
        # The compiled Structure checks its fields' types when built, the Python one when packed.
        with pytest.raises((TypeError, PackStreamError)):
            pack(Structure("N", ()))  # type: ignore[arg-type]

    def test_depth_and_cycles(self) -> None:
        nested: Any = []
        for _ in range(PACK_MAX_DEPTH - 1):
            nested = [nested]
        assert unpack(pack(nested), Limits(max_depth=PACK_MAX_DEPTH)) == nested
        with pytest.raises(PackStreamError, match="deeper"):
            pack([nested])
        cycle: list[Any] = []
        cycle.append(cycle)
        with pytest.raises(PackStreamError, match="itself"):
            pack(cycle)


class TestHostileInput:
    @settings(max_examples=1500, derandomize=True, deadline=None, database=None)
    @given(st.binary(max_size=64))
    def test_random_bytes(self, data: bytes) -> None:
        unpacks_or_refuses(data)

    @settings(max_examples=1500, derandomize=True, deadline=None, database=None)
    @given(
        st.lists(
            st.sampled_from(
                [0x00, 0x7F, 0x80, 0x81, 0x91, 0xA1, 0xB1, 0xC1, 0xCB, 0xCC, 0xD0, 0xD4, 0xD8, 0xFF]
            )
            | st.integers(0, 255),
            max_size=40,
        )
    )
    def test_random_markers(self, markers: list[int]) -> None:
        unpacks_or_refuses(bytes(markers))

    @settings(max_examples=400, derandomize=True, deadline=None, database=None)
    @given(values, st.data())
    def test_mutated_encodings(self, value: Any, data: st.DataObject) -> None:
        encoded = bytearray(pack(value))
        at = data.draw(st.integers(0, len(encoded) - 1))
        how = data.draw(st.sampled_from(["flip", "drop", "insert", "cut"]))
        if how == "flip":
            encoded[at] ^= data.draw(st.integers(1, 255))
        elif how == "drop":
            del encoded[at]
        elif how == "insert":
            encoded.insert(at, data.draw(st.integers(0, 255)))
        else:
            del encoded[at:]
        unpacks_or_refuses(bytes(encoded))

    def test_every_prefix_is_refused(self) -> None:
        value = {
            "n": [None, True, -1, 1_000_000, 2**40, 1.5, "astral 🎉", b"\x00\xff"],
            "s": Structure(b"X", (7203, 1.0, 2.0)),
            "long": "x" * 300,
        }
        data = pack(value)
        for cut in range(len(data)):
            assert refused(data[:cut]).offset is not None

    def test_trailing_bytes(self) -> None:
        assert "after the value" in str(refused(pack([1, 2]) + b"\xc0"))
        assert refused(b"\x01\x02").offset == 1

    def test_empty_input(self) -> None:
        assert refused(b"").offset == 0

    @pytest.mark.parametrize("marker", RESERVED, ids=hex)
    def test_reserved_markers(self, marker: int) -> None:
        for data in (bytes([marker]), bytes([0x91, marker]), bytes([marker]) + b"\x00" * 16):
            error = refused(data)
            assert f"0x{marker:02X}" in str(error)
            assert error.offset == data.index(marker)

    @pytest.mark.parametrize(
        "data",
        [b"\xc1\x00", b"\xc8", b"\xc9\x00", b"\xca\x00\x00", b"\xcb" + b"\x00" * 7],
        ids=bytes.hex,
    )
    def test_truncated_fixed_width(self, data: bytes) -> None:
        refused(data)

    @pytest.mark.parametrize(
        "data",
        [
            b"\xcd\x00",
            b"\xce\x00\x00\x00",
            b"\xd1\x01",
            b"\xd2\x00",
            b"\xd5",
            b"\xd6\x00\x00",
            b"\xd9\x00",
        ],
        ids=bytes.hex,
    )
    def test_truncated_sizes(self, data: bytes) -> None:
        assert "ends inside a size" in str(refused(data))

    @pytest.mark.parametrize("marker", [0xCE, 0xD2, 0xD6, 0xDA], ids=hex)
    def test_huge_declared_sizes_allocate_nothing(self, marker: int) -> None:
        """A declared 2**31 - 1 items or bytes with no data behind them, within and beyond the
        item limit; and a 32-bit size past the spec's 2**31 - 1."""
        tracemalloc.start()
        try:
            for limits in (Limits(), Limits(max_items=MAX_SIZE)):
                refused(bytes([marker]) + struct.pack(">I", MAX_SIZE), limits)
                refused(bytes([0x91, marker]) + struct.pack(">I", MAX_SIZE) + b"\x00", limits)
            assert "limit" in str(refused(bytes([marker]) + b"\xff\xff\xff\xff"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024

    @pytest.mark.parametrize(
        "opening", [b"\x91", b"\xa1\x81k", b"\xb1\x4e", b"\xd4\x01"], ids=bytes.hex
    )
    def test_depth_bomb(self, opening: bytes) -> None:
        """100,000 nested containers are refused at the 65th, without reading further."""
        error = refused(opening * 100_000 + b"\xc0")
        assert "deeper than 64" in str(error)
        assert error.offset == len(opening) * 64

    def test_depth_beyond_any_recursion_limit_when_allowed(self) -> None:
        value = unpack(b"\x91" * 100_000 + b"\x2a", Limits(max_depth=100_000))
        depth = 0
        while isinstance(value, list):
            (value,) = value
            depth += 1
        assert (depth, value) == (100_000, 42)

    def test_limits(self) -> None:
        assert unpack(b"\x91\x91\x90", Limits(max_depth=3)) == [[[]]]
        assert "deeper than 2" in str(refused(b"\x91\x91\x90", Limits(max_depth=2)))
        assert unpack(b"\x93\x01\x02\x03", Limits(max_items=3)) == [1, 2, 3]
        assert "more than 3" in str(refused(b"\x94\x01\x02\x03\x04", Limits(max_items=3)))
        assert "more than 1" in str(refused(b"\xa2\x81a\x01\x81b\x02", Limits(max_items=1)))
        assert unpack(b"\x92\x90\xa0", Limits(max_containers=3)) == [[], {}]
        assert "more than 2 lists" in str(refused(b"\x92\x90\xa0", Limits(max_containers=2)))
        with pytest.raises(ValueError, match="max_depth"):
            Limits(max_depth=0)

    def test_a_message_of_empty_containers_is_refused_before_it_costs_much(self) -> None:
        """Three million empty lists in 3 MB would take over 200 MB built; the millionth and
        first is refused, and what was built by then is let go."""
        bomb = b"\x91\xd6" + struct.pack(">I", 3_000_000) + b"\x90" * 3_000_000
        error = refused(bomb, Limits(max_items=MAX_SIZE))
        assert "more than 1000000 lists" in str(error)
        assert error.offset == 6 + 1_000_000 - 2  # two lists hold them

    @pytest.mark.parametrize(
        "key",
        [b"\x01", b"\xc0", b"\x90", b"\xcc\x01k", b"\xb0\x4e", b"\xc1" + bytes(8)],
        ids=bytes.hex,
    )
    def test_dictionary_keys_must_be_strings(self, key: bytes) -> None:
        assert "not a string" in str(refused(b"\xa1" + key + b"\x01"))

    @pytest.mark.parametrize(
        "data",
        [
            b"\x81\xff",
            b"\x82\xc3\x28",
            b"\x82\xc0\xaf",
            b"\x83\xed\xa0\x80",
            b"\x81\xe2",
            b"\xd0\x01\x80",
        ],
        ids=bytes.hex,
    )
    def test_strings_must_be_utf8(self, data: bytes) -> None:
        assert "UTF-8" in str(refused(data))

    def test_structure_tags(self) -> None:
        assert "above 0x7F" in str(refused(b"\xb0\x80"))
        assert "tag" in str(refused(b"\xb0"))
        assert unpack(b"\xb0\x7f") == Structure(b"\x7f", ())

    def test_errors_never_repeat_the_data(self) -> None:
        secret = "s3cr3t-t0k3n-v4lu3"
        for data in (
            pack([secret]) + b"\x00",
            pack([secret])[:-3],
            pack({secret: secret})[:-1] + b"\xff",
            b"\xa1" + pack(secret.encode()) + pack(secret),
        ):
            assert secret not in str(refused(data))
