"""The hash chain: what verify catches, with the canonical form pinned down."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.audit.record import (
    GENESIS_HASH,
    RECORD_VERSION,
    AuditEvent,
    ChainProblem,
    SealedRecord,
    canonical,
    seal,
    utc_timestamp,
    verify_chain,
)


def event(n: int) -> AuditEvent:
    return AuditEvent(
        event="decision",
        time=f"2026-01-01T00:00:{n:02d}.000000Z",
        request_id=f"r{n}",
        client=None,
        principal={"method": "oidc", "issuer": "i", "subject": "s", "dag": "d"},
        database="neo4j",
        statement=f"RETURN {n}",
        statement_sha256=None,
        query_type="r",
        decision={"allow": True, "reasons": [], "decision_id": f"d{n}"},
        access_mode="READ",
        status=None,
        error=None,
        rows=None,
        latency_us=None,
    )


def chain(length: int) -> list[SealedRecord]:
    records, prev = [], GENESIS_HASH
    for n in range(1, length + 1):
        record = seal(event(n), seq=n, prev_hash=prev)
        records.append(record)
        prev = record.hash
    return records


def problem(records: list[SealedRecord]) -> ChainProblem | None:
    return next((s for s in verify_chain(records) if isinstance(s, ChainProblem)), None)


def test_intact_chain_verifies() -> None:
    assert problem(chain(5)) is None
    assert list(verify_chain(chain(3))) == [1, 2, 3]


def test_canonical_form_is_sorted_and_compact() -> None:
    assert canonical({"b": 1, "a": ["é", None]}) == '{"a":["é",null],"b":1}'


# The canonical form as the standard library writes it: what orjson's fast path must match.
STANDARD = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# Any character but a lone surrogate (no UTF-8 form: refused either way, below).
TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=24,
)


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(TEXT, JSON_VALUES, max_size=8))
def test_the_canonical_form_is_the_standard_librarys_byte_for_byte(
    document: dict[str, Any],
) -> None:
    """Whichever encoder writes it (integers beyond 64 bits take the standard library's way),
    escapes, control characters, every plane and key order included."""
    assert canonical(document) == STANDARD.encode(document)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(TEXT, JSON_VALUES, max_size=6), TEXT)
def test_a_sealed_body_and_its_hash_are_the_standard_forms(
    principal: dict[str, Any], statement: str
) -> None:
    record = seal(
        dataclasses.replace(event(1), principal=principal, statement=statement),
        seq=7,
        prev_hash=GENESIS_HASH,
    )
    assert record.body == STANDARD.encode(json.loads(record.body))
    assert record.hash == hashlib.sha256(record.body.encode("utf-8")).hexdigest()
    assert json.loads(record.body)["statement"] == statement


def test_what_the_fast_encoder_would_write_otherwise_is_the_standard_librarys() -> None:
    # Floats have one text form per implementation: the standard library's is the one.
    assert canonical({"x": 1e16, "y": [0.1]}) == '{"x":1e+16,"y":[0.1]}'
    assert (
        canonical({"big": 2**64, "small": -(2**70)})
        == '{"big":18446744073709551616,"small":-1180591620717411303424}'
    )
    with pytest.raises(ValueError):
        canonical({"x": float("nan")})
    with pytest.raises(UnicodeEncodeError):
        canonical({"x": "\ud800"})
    with pytest.raises(TypeError):  # not JSON: refused, as the standard library refuses it
        canonical({"when": datetime(2026, 1, 1, tzinfo=UTC)})


def test_altered_record_is_named() -> None:
    records = chain(5)
    records[2] = dataclasses.replace(
        records[2], body=records[2].body.replace("RETURN 3", "RETURN 4")
    )
    found = problem(records)
    assert found is not None and found.seq == 3 and "altered" in found.why


def test_altered_and_rehashed_record_breaks_the_next_link() -> None:
    records = chain(5)
    forged = seal(dataclasses.replace(event(3), statement="DROP"), seq=3, prev_hash=records[1].hash)
    records[2] = forged
    found = problem(records)
    assert found is not None and found.seq == 4 and "previous record" in found.why


def test_deleted_record_is_named() -> None:
    records = chain(5)
    del records[1]
    found = problem(records)
    assert found is not None and found.seq == 2 and "missing" in found.why


@pytest.mark.parametrize("version", [2, 0, "1", True, None])
def test_a_record_of_a_format_version_verify_does_not_know_is_not_passed(version: Any) -> None:
    """Found by review: verify never read a record's ``v``, so records of a format it does
    not know (a later writer's, whose fields may mean more than it checks) were OK."""
    records = chain(3)
    document = json.loads(records[1].body)
    if version is None:
        del document["v"]
    else:
        document["v"] = version
    body = canonical(document)
    records[1] = SealedRecord(seq=2, body=body, hash=hashlib.sha256(body.encode()).hexdigest())
    third = json.loads(records[2].body) | {"prev_hash": records[1].hash}
    body = canonical(third)
    records[2] = SealedRecord(seq=3, body=body, hash=hashlib.sha256(body.encode()).hexdigest())
    found = problem(records)
    assert found is not None and found.seq == 2 and "format version" in found.why


def test_swapped_records_are_caught() -> None:
    records = chain(5)
    records[1], records[2] = records[2], records[1]
    found = problem(records)
    assert found is not None and found.seq == 2


def test_a_sealed_body_is_the_canonical_form_of_every_field_nested_documents_included() -> None:
    # seal copies the event shallowly; the body must be what a deep copy (asdict) would give.
    nested = dataclasses.replace(
        event(1),
        decision={"allow": True, "reasons": ["a", "b"], "decision_id": "x", "policy_revision": "y"},
        analysis={"labels_read": ["A", "B"], "operators": [{"name": "Filter", "rows": 3}]},
        parameters={"id": "sha256:00", "name": None},
        counters={"nodes_created": 0, "contains_updates": False},
        transaction={"id": "t1", "action": "commit"},
        error={"code": "Neo.ClientError", "reason": "why"},
    )
    record = seal(nested, seq=7, prev_hash=GENESIS_HASH)
    expected = {
        **dataclasses.asdict(nested),
        "v": RECORD_VERSION,
        "seq": 7,
        "prev_hash": GENESIS_HASH,
    }
    del expected["late"]  # only a late record names it
    del expected["committed"]  # only a failed outcome that committed names it
    assert record.body == canonical(expected)
    late = seal(dataclasses.replace(nested, late=True), seq=7, prev_hash=GENESIS_HASH)
    assert late.body == canonical({**expected, "late": True})
    committed = seal(dataclasses.replace(nested, committed=True), seq=7, prev_hash=GENESIS_HASH)
    assert committed.body == canonical({**expected, "committed": True})


@pytest.mark.parametrize(
    "change",
    [
        {"latency_us": 1.5},
        {"counters": {"nodes_created": 1.0}},
        {"analysis": {"operators": [{"name": "Filter", "rows": 2.5}]}},
        {"transaction": {"id": "t", "metadata": {"deep": [[{"x": float("nan")}]]}}},
        {"parameters": {"p": None}, "decision": {"allow": True, "reasons": [(0.1,)]}},
    ],
)
def test_a_float_at_any_depth_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="no floats"):
        seal(dataclasses.replace(event(1), **change), seq=1, prev_hash=GENESIS_HASH)


@settings(max_examples=500, deadline=None)
@given(st.floats(min_value=0, max_value=253_402_300_799, allow_nan=False))
def test_record_times_are_written_as_rfc3339_utc_microseconds(seconds: float) -> None:
    # The writer formats by hand (faster); it must write exactly what strftime would, rounding
    # to the microsecond as datetime does, from 1970 to the end of year 9999.
    expected = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert utc_timestamp(seconds) == expected


def test_record_times_keep_four_digit_years_and_six_digit_fractions() -> None:
    assert utc_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert utc_timestamp(1_796_000_000.5) == "2026-11-30T00:53:20.500000Z"
