"""The driver test clients, run against the real Neo4j of the test session with basic auth.

This proves the clients themselves, so that the Bolt door's tests can trust them: every step
passes, rows are what the Python driver gets for the same statement, a rolled-back transaction
leaves nothing, a refused statement reports its Neo4j code, and each program refuses malformed
input. Neo4j Community has no bearer authentication, so ``expired_token_refresh`` is only
checked for its input here; the gateway's Bolt door is where it runs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from neo4j import Driver

from tests.drivers.clients import (
    LANGUAGES,
    BasicAuth,
    ClientFailed,
    Outcome,
    basic,
    plain,
    run_client,
    run_cypher_shell,
    run_raw,
)

each_language = pytest.mark.parametrize("language", LANGUAGES)

# Statements whose answers the Python driver and each client must agree on: every plain type,
# parameters in and out, graph values, an empty result and one longer than a fetch batch.
READS: list[tuple[str, dict[str, Any]]] = [
    (
        "RETURN 1 AS i, -9007199254740993 AS big, 2.5 AS f, 'héllo ✓' AS s, true AS b, "
        "null AS z, [1, 'two', [3.5, false]] AS l, {k: 'v', n: {m: 1}} AS m",
        {},
    ),
    (
        "RETURN $i AS i, $f AS f, $s AS s, $l AS l, $m AS m, $z AS z",
        {"i": 7, "f": 0.25, "s": 'ü\n"', "l": [1, 2.5, "x"], "m": {"a": [True, None]}, "z": None},
    ),
    (
        "MATCH (a:DriverClientTest {suite: $suite})-[r:KNOWS]->(b) "
        "RETURN a, r, b, a.born AS born, a.tags AS tags",
        {},
    ),
    ("MATCH p = (:DriverClientTest {suite: $suite})-[:KNOWS]->() RETURN p", {}),
    ("MATCH (n:DriverClientTest {suite: $suite}) RETURN n.name AS name ORDER BY name", {}),
    ("MATCH (n:DriverClientTest {suite: 'no such suite'}) RETURN n", {}),
    ("UNWIND range(1, 2500) AS x RETURN x, x * x AS square", {}),
]


@pytest.fixture(scope="module")
def auth(status: dict[str, Any]) -> BasicAuth:
    return basic(status["neo4j"]["user"], status["neo4j"]["password"])


@pytest.fixture(scope="module")
def uri(status: dict[str, Any]) -> str:
    return str(status["neo4j"]["bolt_uri"])


@pytest.fixture(scope="module")
def suite(neo4j_admin: Driver) -> Iterator[str]:
    """A small graph of this module's own, removed at the end."""
    suite = uuid.uuid4().hex
    neo4j_admin.execute_query(
        "CREATE (:DriverClientTest {suite: $suite, name: 'Ada', born: date('1815-12-10'), "
        "tags: ['math', 'engines']})-[:KNOWS {since: 1833}]->"
        "(:DriverClientTest:Engineer {suite: $suite, name: 'Charles', big: 9007199254740993})",
        suite=suite,
    )
    yield suite
    neo4j_admin.execute_query(
        "MATCH (n:DriverClientTest {suite: $suite}) DETACH DELETE n", suite=suite
    )


def python_rows(driver: Driver, statement: str, params: dict[str, Any]) -> list[Any]:
    records, _, _ = driver.execute_query(statement, params, routing_="r")
    return [plain(dict(zip(record.keys(), record.values(), strict=True))) for record in records]


def by_name(outcomes: list[Outcome]) -> dict[str, Outcome]:
    assert len({o["name"] for o in outcomes}) == len(outcomes), "step names must be unique"
    return {o["name"]: o for o in outcomes}


@each_language
def test_rows_match_the_python_driver(
    language: str, uri: str, auth: BasicAuth, suite: str, neo4j_admin: Driver
) -> None:
    reads = [(statement, {**params, "suite": suite}) for statement, params in READS]
    statements = [{"statement": s, "params": p} for s, p in reads]
    steps: list[dict[str, Any]] = [{"step": "verify_connectivity"}]
    for index, spec in enumerate(statements):
        steps.append({"step": "autocommit", "name": f"autocommit {index}", **spec})
        steps.append({"step": "execute_query", "name": f"query {index}", "routing": "read", **spec})
    steps.append({"step": "read_tx", "statements": statements})

    outcomes = by_name(run_client(language, uri, auth, steps))

    assert [name for name, o in outcomes.items() if not o["ok"]] == []
    expected = [python_rows(neo4j_admin, statement, params) for statement, params in reads]
    for index, rows in enumerate(expected):
        assert outcomes[f"autocommit {index}"]["rows"] == rows, reads[index][0]
        assert outcomes[f"query {index}"]["rows"] == rows, reads[index][0]
    assert outcomes["read_tx"]["rows"] == expected
    assert outcomes["verify_connectivity"]["rows"] == []
    bookmarks = outcomes["autocommit 0"].get("bookmarks")
    assert bookmarks and all(isinstance(bookmark, str) for bookmark in bookmarks)
    # The graph values, spelled out once, so that plain() itself is checked too.
    assert expected[2] == [
        {
            "a": {
                "labels": ["DriverClientTest"],
                "properties": {
                    "suite": suite,
                    "name": "Ada",
                    "born": "1815-12-10",
                    "tags": ["math", "engines"],
                },
            },
            "r": {"type": "KNOWS", "properties": {"since": 1833}},
            "b": {
                "labels": ["DriverClientTest", "Engineer"],
                "properties": {"suite": suite, "name": "Charles", "big": 9007199254740993},
            },
            "born": "1815-12-10",
            "tags": ["math", "engines"],
        }
    ]


@each_language
def test_transactions_commit_and_roll_back(
    language: str, uri: str, auth: BasicAuth, suite: str, neo4j_admin: Driver
) -> None:
    tag = f"{language}-{uuid.uuid4().hex[:8]}"

    def create(n: int) -> dict[str, Any]:
        return {
            "statement": "CREATE (x:DriverClientTest {suite: $suite, tag: $tag, n: $n}) "
            "RETURN x.n AS n",
            "params": {"suite": suite, "tag": tag, "n": n},
        }

    count = {
        "statement": "MATCH (x:DriverClientTest {tag: $tag}) RETURN count(x) AS c",
        "params": {"tag": tag},
    }
    steps: list[dict[str, Any]] = [
        {"step": "write_tx", "name": "managed", "statements": [create(1), create(2)]},
        {"step": "write_tx", "name": "explicit", "explicit": True, "statements": [create(3)]},
        # The transaction sees its own write, which the rollback then undoes.
        {"step": "rollback_tx", "statements": [create(4), count]},
        {"step": "autocommit", **create(5)},
        {
            "step": "read_tx",
            "statements": [
                {
                    "statement": "MATCH (x:DriverClientTest {tag: $tag}) "
                    "RETURN x.n AS n ORDER BY n",
                    "params": {"tag": tag},
                }
            ],
        },
    ]

    outcomes = by_name(run_client(language, uri, auth, steps))

    assert [name for name, o in outcomes.items() if not o["ok"]] == []
    assert outcomes["managed"]["rows"] == [[{"n": 1}], [{"n": 2}]]
    assert outcomes["explicit"]["rows"] == [[{"n": 3}]]
    assert outcomes["rollback_tx"]["rows"] == [[{"n": 4}], [{"c": 4}]]
    assert outcomes["autocommit"]["rows"] == [{"n": 5}]
    assert outcomes["read_tx"]["rows"] == [[{"n": 1}, {"n": 2}, {"n": 3}, {"n": 5}]]
    for name in ("managed", "explicit", "autocommit"):
        assert outcomes[name].get("bookmarks"), f"{name} committed, so it has a bookmark"
    stored = python_rows(
        neo4j_admin,
        "MATCH (x:DriverClientTest {tag: $tag}) RETURN x.n AS n ORDER BY n",
        {"tag": tag},
    )
    assert stored == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 5}]


@each_language
def test_refused_statements_report_their_codes(
    language: str, uri: str, auth: BasicAuth, suite: str, neo4j_admin: Driver
) -> None:
    tag = f"refused-{language}-{uuid.uuid4().hex[:8]}"
    steps: list[dict[str, Any]] = [
        {"step": "autocommit", "name": "syntax", "statement": "RETRUN 1"},
        {"step": "execute_query", "name": "parameter", "statement": "RETURN $missing AS x"},
        {
            "step": "read_tx",
            "name": "write in a read transaction",
            "statements": [
                {"statement": "CREATE (:DriverClientTest {tag: $tag})", "params": {"tag": tag}}
            ],
        },
        {
            "step": "write_tx",
            "name": "second statement fails",
            "statements": [
                {
                    "statement": "CREATE (:DriverClientTest {suite: $suite, tag: $tag})",
                    "params": {"suite": suite, "tag": tag},
                },
                {"statement": "RETURN 1 / 0 AS boom"},
            ],
        },
        {"step": "autocommit", "name": "still usable", "statement": "RETURN 1 AS one"},
    ]

    outcomes = by_name(run_client(language, uri, auth, steps))
    codes = {name: o["error_code"] for name, o in outcomes.items()}
    assert codes == {
        "syntax": "Neo.ClientError.Statement.SyntaxError",
        "parameter": "Neo.ClientError.Statement.ParameterMissing",
        "write in a read transaction": "Neo.ClientError.Statement.AccessMode",
        "second statement fails": "Neo.ClientError.Statement.ArithmeticError",
        "still usable": None,
    }
    assert [o["ok"] for o in outcomes.values()] == [False, False, False, False, True]
    assert all(o["rows"] == [] for o in list(outcomes.values())[:4])
    assert outcomes["still usable"]["rows"] == [{"one": 1}]
    # The failed transaction's first write went with it.
    assert (
        python_rows(neo4j_admin, "MATCH (x:DriverClientTest {tag: $tag}) RETURN x", {"tag": tag})
        == []
    )

    (unknown,) = run_client(
        language, uri, auth, [{"step": "autocommit", "statement": "RETURN 1"}], database="nope"
    )
    assert not unknown["ok"]
    assert unknown["error_code"] == "Neo.ClientError.Database.DatabaseNotFound"


@each_language
def test_a_routing_uri_works(language: str, status: dict[str, Any], auth: BasicAuth) -> None:
    routing_uri = str(status["neo4j"]["bolt_uri"]).replace("bolt://", "neo4j://")
    steps: list[dict[str, Any]] = [
        {"step": "verify_connectivity"},
        {"step": "execute_query", "name": "read", "routing": "read", "statement": "RETURN 1 AS n"},
        {"step": "execute_query", "name": "write", "statement": "RETURN 2 AS n"},
        {"step": "read_tx", "statements": [{"statement": "RETURN 3 AS n"}]},
    ]
    outcomes = by_name(run_client(language, routing_uri, auth, steps))
    assert {name: (o["ok"], o["rows"]) for name, o in outcomes.items()} == {
        "verify_connectivity": (True, []),
        "read": (True, [{"n": 1}]),
        "write": (True, [{"n": 2}]),
        "read_tx": (True, [[{"n": 3}]]),
    }


EVERY_STEP: list[dict[str, Any]] = [
    {"step": "verify_connectivity"},
    {"step": "autocommit", "statement": "RETURN $x AS x", "params": {"x": [1, 2.5, None]}},
    {"step": "execute_query", "statement": "RETURN 1", "routing": "read"},
    {"step": "write_tx", "statements": [{"statement": "CREATE ()"}], "explicit": True},
    {"step": "rollback_tx", "statements": [{"statement": "CREATE ()", "params": {}}]},
    {"step": "read_tx", "name": "labelled", "statements": [{"statement": "RETURN 1"}]},
    {
        "step": "expired_token_refresh",
        "tokens": ["token-a", "token-b"],
        "statement": "RETURN 1 AS n",
        "routing": "read",
    },
]


@each_language
def test_every_step_is_understood(language: str) -> None:
    """No server needed: --check parses and validates each step, expired_token_refresh too."""
    outcomes = run_client(language, "bolt://127.0.0.1:1", basic("u", "p"), EVERY_STEP, check=True)
    assert [(o["step"], o["name"], o["ok"], o.get("checked")) for o in outcomes] == [
        (step["step"], step.get("name", step["step"]), True, True) for step in EVERY_STEP
    ]


def scenario(steps: list[Any]) -> str:
    """A whole input document around ``steps``, for a server that is never called."""
    return json.dumps({"uri": "bolt://127.0.0.1:1", "auth": basic("u", "p"), "steps": steps})


MALFORMED = {
    "not JSON": "{",
    "unknown step": {"step": "drop_everything"},
    "one token to refresh with": {
        "step": "expired_token_refresh",
        "tokens": ["only-one"],
        "statement": "RETURN 1",
    },
    "a transaction without statements": {"step": "write_tx", "statements": []},
}


@each_language
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_input_is_refused(language: str, case: str) -> None:
    malformed = MALFORMED[case]
    document = malformed if isinstance(malformed, str) else scenario([malformed])
    with pytest.raises(ClientFailed) as failed:
        run_raw(language, document, check=True)
    assert failed.value.returncode == 2
    assert "malformed input" in failed.value.stderr


def test_each_client_names_its_pinned_driver() -> None:
    drivers = {
        language: run_raw(language, scenario([]), check=True)["driver"] for language in LANGUAGES
    }
    assert drivers == {
        "js": "neo4j-driver/6.3.0",
        "go": "neo4j-go-driver/v5.28.4",
        "java": "neo4j-java-driver/5.28.15",
    }


def test_cypher_shell(status: dict[str, Any]) -> None:
    neo4j = status["neo4j"]
    answered = run_cypher_shell(
        neo4j["bolt_uri"], neo4j["user"], neo4j["password"], "RETURN 1 AS n, 'x' AS s, [2] AS l"
    )
    assert (answered.returncode, answered.stdout) == (0, 'n, s, l\n1, "x", [2]\n')
    refused = run_cypher_shell(neo4j["bolt_uri"], neo4j["user"], neo4j["password"], "RETRUN 1")
    assert refused.returncode == 1
    assert "Invalid input 'RETRUN'" in refused.stderr
