"""Request ids: version-7 UUIDs, in time order, unique."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from proxy import ids
from proxy.gateway.call import new_request_id


def test_a_request_id_is_a_canonical_version_7_uuid() -> None:
    made = new_request_id()
    parsed = uuid.UUID(made)
    assert str(parsed) == made
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


@given(st.integers(min_value=0, max_value=(1 << 48) - 1))
def test_the_first_48_bits_are_the_milliseconds(millis: int) -> None:
    made = uuid.UUID(ids.time_ordered_uuid(lambda: millis * 1_000_000 + 999_999))
    assert made.int >> 80 == millis
    assert made.version == 7
    assert made.variant == uuid.RFC_4122


def test_later_ids_sort_later_and_none_repeats() -> None:
    now = [1_790_000_000_000_000_000]

    def ticking() -> int:
        now[0] += 1_000_000  # a millisecond per id
        return now[0]

    made = [ids.time_ordered_uuid(ticking) for _ in range(2_000)]
    assert made == sorted(made)
    many = {ids.time_ordered_uuid() for _ in range(20_000)}  # a few milliseconds: 74 random bits
    assert len(many) == 20_000
