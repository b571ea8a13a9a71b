"""proxy.plan.text: the statement read as Neo4j reads it, checked against Neo4j itself.

The LOAD CSV sources the policy decides on come from the statement text, so a scanner that
reads it differently from Neo4j is a way around the policy. Besides the unit cases, a generator
hides and reveals loads with comments, strings and unicode escapes, and Neo4j itself says which
URL it fetched (from a server on loopback): the scanner must name exactly that URL, or say it
cannot tell.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from neo4j import Driver
from neo4j.exceptions import Neo4jError

from proxy.plan import DYNAMIC, read_plan
from proxy.plan.text import (
    UnreadableText,
    decode_unicode_escapes,
    load_csv_sources,
    tokens,
    without_secrets,
)
from tests.csv_source import csv_source


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        (r"'\u0041'", "'A'"),
        (r"'\\u0041'", r"'\\u0041'"),  # an escaped backslash: no escape follows it
        (r"'\\\u0041'", r"'\\A'"),  # three: the third starts one
        (r"'\u005cu0041'", r"'\u0041'"),  # an escape's backslash never starts another
        (r"// x\u000a RETURN 1", "// x\n RETURN 1"),
        ("plain", "plain"),
    ],
)
def test_unicode_escapes_are_replaced_as_java_does(raw: str, decoded: str) -> None:
    assert decode_unicode_escapes(raw) == decoded


def test_a_broken_escape_is_unreadable() -> None:
    with pytest.raises(UnreadableText):
        decode_unicode_escapes(r"'\uZZZZ'")


def test_comments_end_where_neo4j_ends_them() -> None:
    # Every code point was tried against Neo4j 5.26: only \n and \r end a // comment.
    assert [t.text for t in tokens("RETURN 1 // x\rAS a")] == ["RETURN", "1", "AS", "a"]
    assert [t.text for t in tokens("RETURN 1 // x\u2028AS a")] == ["RETURN", "1"]
    assert [t.text for t in tokens("RETURN /* a \u002a/ 1")] == ["RETURN", "1"]
    assert [t.text for t in tokens(r"RETURN /* a \u002a/ 1")] == ["RETURN", "1"]


@pytest.mark.parametrize(
    ("statement", "sources"),
    [
        ("LOAD CSV FROM 'https://a.test/x.csv' AS row RETURN row", ["https://a.test/x.csv"]),
        ("load csv with headers from $url as row return row", ["$url"]),
        ("LOAD CSV FROM 'https://a.test/' + $p AS row RETURN row", [DYNAMIC]),
        (r"LOAD CSV FROM 'https://a.test/\'x' AS row RETURN row", [DYNAMIC]),
        ("LOAD /* c */ CSV FROM 'a' AS r LOAD CSV FROM \"b\" AS s RETURN r", ["a", "b"]),
        ("// LOAD CSV FROM 'hidden' AS r\nRETURN 1", []),
        ("RETURN 1 //\r LOAD CSV FROM 'shown' AS r RETURN r", ["shown"]),
        (r"LO\u0041D CSV FROM '\u0066ile:///x' AS r RETURN r", ["file:///x"]),
        ("WITH 'LOAD CSV FROM ''x'' AS r' AS s RETURN s", []),
        ("LOAD CSV FROM $`the url` AS r RETURN r", ["$the url"]),
    ],
)
def test_load_csv_sources(statement: str, sources: list[str]) -> None:
    assert load_csv_sources(statement) == sources


# ---- against Neo4j itself


@pytest.fixture(scope="module")
def csv_server() -> Iterator[tuple[str, list[str]]]:
    """A CSV server on loopback that records the paths Neo4j fetches."""
    with csv_source(b"a,b\n1,2\n") as served:
        yield served


# Ways to hide a load from Neo4j (or to seem to, to a reader that reads otherwise): each wraps
# the load text; the last group ends a comment early, by a bare carriage return or an escape.
_HIDERS = (
    "// {load}\n",
    "// {load}\r",
    "/* {load} */",
    "/* {load} \\u002a/",
    "//\\u000d {load}\n",
    "//\r {load} //\n",
    "/*\n {load} */",
    "/* */ {load} /**/",
    "// x\\u000a {load}\n",
)


@st.composite
def hidden_loads(draw: st.DrawFn, base: str) -> str:
    """A statement with one real load, loads in comments and strings, and loads whose
    hiding place Neo4j ends early."""
    parts = ["WITH 1 AS one"]
    for index in range(draw(st.integers(1, 3))):
        url = f"'{base}/{index}-{draw(st.integers(0, 99))}.csv'"
        load = f"LOAD CSV FROM {url} AS r{index} WITH one, count(*) AS c{index}"
        form = draw(st.integers(0, len(_HIDERS) + 1))
        if form < len(_HIDERS):
            parts.append(_HIDERS[form].format(load=load))
        elif form == len(_HIDERS):
            parts.append(load)
        else:
            quoted = load.replace("'", "\\'")
            parts.append(f"WITH one, '{quoted}' AS s{index}")
    parts.append("RETURN one")
    return " ".join(parts)


@pytest.mark.integration
def test_the_scanner_names_the_url_neo4j_fetches(
    plan_driver: Driver, csv_server: tuple[str, list[str]]
) -> None:
    base, fetched = csv_server

    @settings(max_examples=150, derandomize=True, deadline=None, database=None)
    @given(statement=hidden_loads(base))
    def check(statement: str) -> None:
        with plan_driver.session(database="neo4j", notifications_min_severity="OFF") as session:
            try:
                summary = session.run("EXPLAIN " + statement).consume()
            except Neo4jError:
                return  # Neo4j would not run it either
            assert summary.plan is not None
            named = read_plan(summary.plan, statement=statement).load_csv
            fetched.clear()
            session.run(statement).consume()
        got = sorted({base + path for path in fetched})
        if DYNAMIC in named:
            return  # unknown to the scanner: only a grant of "*" covers it
        assert sorted(set(named)) == got, statement

    check()


@pytest.mark.integration
def test_the_scanner_follows_neo4j_through_known_tricks(
    plan_driver: Driver, csv_server: tuple[str, list[str]]
) -> None:
    base, fetched = csv_server
    trick = (
        f"WITH 1 AS one //\r LOAD CSV FROM '{base}/real.csv' AS row /*\n"
        f" LOAD CSV FROM '{base}/decoy.csv' AS row */ RETURN count(row) AS n"
    )
    with plan_driver.session(database="neo4j", notifications_min_severity="OFF") as session:
        summary = session.run("EXPLAIN " + trick).consume()
        assert summary.plan is not None
        fetched.clear()
        session.run(trick).consume()
    assert fetched == ["/real.csv"]
    assert read_plan(summary.plan, statement=trick).load_csv == (f"{base}/real.csv",)


@pytest.mark.parametrize(
    ("statement", "shown"),
    [
        ("MATCH (n) RETURN 'password'", "MATCH (n) RETURN 'password'"),
        (
            "ALTER CURRENT USER SET PASSWORD FROM 'o\\'ld' TO \"new\"",
            "ALTER CURRENT USER SET PASSWORD FROM '******' TO '******'",
        ),
        (
            "CREATE USER bob SET password 'x' CHANGE NOT REQUIRED",
            "CREATE USER bob SET password '******' CHANGE NOT REQUIRED",
        ),
        # Neo4j reads escapes before it lexes: so does the redaction (the text shown is read).
        ("CREATE USER bob SET PASS\\u0057ORD 'x'", "CREATE USER bob SET PASSWORD '******'"),
        ("CREATE USER bob SET PASSWORD '\\u0027x'", "CREATE USER bob SET PASSWORD '******'"),
        ("CREATE USER bob SET PASSWORD 'x", "CREATE USER bob SET PASSWORD '******'"),
        (
            "RETURN 'a' // 'b\nCREATE USER c SET PASSWORD 'x",
            "RETURN 'a' // 'b\nCREATE USER c SET PASSWORD '******'",
        ),
        ("CALL dbms.security.changePassword('n')", "CALL dbms.security.changePassword('******')"),
        # A broken escape (Neo4j refuses the statement): recorded as sent, or hidden all the same.
        ("RETURN 'C:\\users'", "RETURN 'C:\\users'"),
        ("SET PASS\\u0057ORD 'x' \\uZZ", "SET PASSWORD '******' \\uZZ"),
        (
            "MATCH (u) WHERE u.`Password` = 'p' RETURN u",
            "MATCH (u) WHERE u.`Password` = '******' RETURN u",
        ),
        (
            "MATCH (n) WHERE n.name = '\\u0041' RETURN n",
            "MATCH (n) WHERE n.name = '\\u0041' RETURN n",
        ),
    ],
)
def test_password_literals_are_hidden(statement: str, shown: str) -> None:
    assert without_secrets(statement) == shown


@pytest.mark.parametrize(
    ("statement", "shown"),
    [
        (
            "LOAD CSV FROM 'https://etl:s3cret@files.example/x.csv' AS r RETURN r",
            "LOAD CSV FROM 'https://etl:******@files.example/x.csv' AS r RETURN r",
        ),
        # A raw "@" in the password is the password's: URL parsers split at the last one.
        ("RETURN 'https://etl:p@ss@h/x'", "RETURN 'https://etl:******@h/x'"),
        ("RETURN 'https://a@b:pw@h/x'", "RETURN 'https://a@b:******@h/x'"),
        (r"RETURN 'https://etl:s3cret\u0040h/x'", "RETURN 'https://etl:******@h/x'"),
        ('RETURN "ftp://a:b:c@h/"', 'RETURN "ftp://a:******@h/"'),
        # No password: a user alone, a port, an "@" in the path.
        ("RETURN 'https://etl@h/x'", "RETURN 'https://etl@h/x'"),
        ("RETURN 'https://h:8080/a@b'", "RETURN 'https://h:8080/a@b'"),
        ("RETURN 'mailto:a@b'", "RETURN 'mailto:a@b'"),
    ],
)
def test_a_urls_password_is_hidden(statement: str, shown: str) -> None:
    """Found by review: a LOAD CSV source's user and password reached the audit log, OPA's input
    and its decision log as the caller wrote them."""
    assert without_secrets(statement) == shown


@pytest.mark.parametrize("run", ["a" * 100_000, "1a" * 50_000])
def test_hiding_a_urls_password_takes_time_in_proportion_to_the_statement(run: str) -> None:
    """Every statement is shown so before it is decided, on the event loop: a long run of
    letters (or of letters and digits) with "@" and "://" anywhere in the statement was tried
    as a scheme from each of its letters, each try read to the run's end. 100,000 letters took
    seconds; the 1 MiB of a Query API body, minutes, holding every other request back."""
    statement = "RETURN '@://' + '" + run + "' + 'https://u:p@h/' AS x"
    started = time.perf_counter()
    shown = without_secrets(statement)
    assert time.perf_counter() - started < 0.5
    assert shown == statement.replace("u:p@h", "u:******@h")


def test_a_load_csv_sources_password_is_decided_as_hidden() -> None:
    """The analysis (the policy's input, the record, a refusal's reason) never holds it either."""
    statement = "LOAD CSV FROM 'https://etl:s3cret@files.example/x.csv' AS r RETURN r"
    assert load_csv_sources(statement) == ["https://etl:******@files.example/x.csv"]
