"""Reviewers' time filters: an instant is the same instant in any offset, and a bound that
cannot be read is refused (exit 2 on the command line, 400 from the API), never ignored."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.audit.reader import AuditReader, BadFilter, RecordFilter, utc_bound
from proxy.audit.record import utc_timestamp
from tests.audit.test_query import write
from tests.audit.test_record import event
from tests.command_line import cyphergate

START = datetime(2026, 11, 30, tzinfo=UTC)
# 48 records, one every 37 minutes and 123 ms from midnight UTC: they cross the day, and their
# fractions of a second tell a text comparison that drops them from one that keeps them.
TIMES = [START + timedelta(minutes=37 * n, milliseconds=123 * n) for n in range(48)]


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("filters") / "audit.sqlite3"
    write(
        path,
        [
            replace(event(n + 1), time=utc_timestamp(moment.timestamp()))
            for n, moment in enumerate(TIMES)
        ],
    )
    return path


def seqs(path: Path, flt: RecordFilter) -> list[int]:
    with AuditReader(path) as reader:
        return [int(record["seq"]) for record in reader.query(flt)]


@settings(max_examples=150, deadline=None)
@given(
    instant=st.datetimes(
        min_value=datetime(2026, 11, 29, 12),
        max_value=datetime(2026, 12, 2),
        timezones=st.just(UTC),
    ),
    offset_minutes=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    until_hours=st.integers(min_value=0, max_value=30),
)
def test_since_and_until_in_any_offset_select_the_same_records(
    log: Path, instant: datetime, offset_minutes: int, until_hours: int
) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    since = instant.astimezone(zone).isoformat()
    until = (instant + timedelta(hours=until_hours)).astimezone(zone).isoformat()
    expected = [
        n + 1
        for n, moment in enumerate(TIMES)
        if instant <= moment < instant + timedelta(hours=until_hours)
    ]
    assert seqs(log, RecordFilter(since=since, until=until)) == expected
    as_utc = instant.isoformat().replace("+00:00", "Z")
    assert seqs(log, RecordFilter(since=as_utc)) == [
        n + 1 for n, moment in enumerate(TIMES) if moment >= instant
    ]


def test_the_issues_example_instant_in_two_spellings(log: Path) -> None:
    offset = seqs(log, RecordFilter(since="2026-11-30T04:30:00+01:00"))
    utc = seqs(log, RecordFilter(since="2026-11-30T03:30:00Z"))
    naive = seqs(log, RecordFilter(since="2026-11-30T03:30:00"))  # documented: UTC
    assert offset == utc == naive
    assert offset[0] == 7  # 03:42:00.738 is the first record at or after 03:30 UTC
    assert len(offset) == 42


@pytest.mark.parametrize(
    "value", ["notadate", "2026-13-01", "yesterday", "²", "", "0001-01-01T00:00:00+01:00"]
)
def test_an_unreadable_bound_is_refused(value: str) -> None:
    with pytest.raises(BadFilter, match="until: expected an ISO 8601 time"):
        RecordFilter(until=value)


def test_the_command_line_refuses_an_unreadable_bound_with_status_2(log: Path) -> None:
    done = cyphergate("audit", "query", "--log", str(log), "--until", "notadate")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.endswith(  # refused while parsing, after the command's usage
        "\ncyphergate audit query: error: argument --until: expected an ISO 8601 time such as"
        " 2026-11-30T04:30:00+01:00 (UTC when it has no offset)\n"
    )


def test_bounds_are_normalised_to_the_logs_own_format() -> None:
    assert utc_bound("2026-11-30T04:30:00.5+01:00") == "2026-11-30T03:30:00.500000Z"
    assert utc_bound("2026-11-30") == "2026-11-30T00:00:00.000000Z"
    assert utc_timestamp(START.timestamp()) == utc_bound(START.isoformat())


def test_a_database_is_found_in_any_case_as_neo4j_names_it(tmp_path: Path) -> None:
    """Found by review: Neo4j's database names are case-insensitive (``NEO4J`` is ``neo4j``), but
    ``--database neo4j`` (and the API's and page's ``database``) compared the recorded name,
    as the caller spelled it, exactly: a request refused on ``/db/NEO4J`` was missing from
    "what was denied against neo4j"."""
    path = tmp_path / "audit.sqlite3"
    spellings = ["neo4j", "NEO4J", "Neo4j", "system", "neo4j2"]
    write(path, [replace(event(n + 1), database=name) for n, name in enumerate(spellings)])
    assert seqs(path, RecordFilter(database="neo4j")) == [1, 2, 3]
    assert seqs(path, RecordFilter(database="NEO4J")) == [1, 2, 3]
    assert seqs(path, RecordFilter(database="system")) == [4]
