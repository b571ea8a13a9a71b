"""proxy.neo4j.relay and proxy.neo4j.bolt on the real Neo4j: records relayed as Neo4j sent them
equal what the driver reads, with the driver executor's semantics (row limits, rollbacks,
failures, explicit transactions), and connections kept per user and reused after a failure."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from neo4j import Driver

from proxy.codec.packstream import unpack
from proxy.codec.values import to_wire
from proxy.errors import (
    BadRequest,
    CypherGateError,
    GraphFailed,
    Neo4jClientError,
    RowLimitExceeded,
)
from proxy.metrics import Metrics
from proxy.neo4j.bolt import Address
from proxy.neo4j.logins import Login, LoginRetries
from proxy.neo4j.relay import RelayExecutor, UserBoltPools
from proxy.neo4j.relay_rows import RelayRows
from proxy.neo4j.rotation import RotatingAuth
from proxy.neo4j.secret_sources import Credential, FixedSecretSource
from proxy.statement import Execution, Opening
from tests.bolt.cutting_relay import EndingRelay

pytestmark = pytest.mark.integration

LABEL = "RelayTest"


@pytest.fixture
def clean(neo4j_admin: Driver) -> Iterator[None]:
    neo4j_admin.execute_query(f"MATCH (n:{LABEL}) DETACH DELETE n")
    yield
    neo4j_admin.execute_query(f"MATCH (n:{LABEL}) DETACH DELETE n")


def _execution(statement: str, **options: Any) -> Execution:
    defaults: dict[str, Any] = {
        "database": "neo4j",
        "statement": statement,
        "parameters": {},
        "access_mode": "WRITE",
        "timeout_s": 10.0,
        "metadata": {"dag": "relay_test", "request": "r-1"},
    }
    return Execution(**(defaults | options))


def _relay(status: dict[str, Any]) -> tuple[RelayExecutor, UserBoltPools, Login]:
    neo4j = status["neo4j"]
    credential = Credential(neo4j["gateway_user"], neo4j["gateway_password"])
    pools = UserBoltPools(Address.parse(neo4j["bolt_uri"]), size=4, acquire_timeout_s=2.0)
    login = Login(user=credential.user, credential=lambda: credential)
    return RelayExecutor(pools), pools, login


def _run(status: dict[str, Any], body: Callable[..., Awaitable[Any]]) -> Any:
    async def go() -> Any:
        executor, pools, login = _relay(status)
        try:
            return await body(executor, login, pools)
        finally:
            await pools.close()

    return asyncio.run(go())


def test_relayed_records_are_the_bolt_values_of_what_the_driver_reads(
    status: dict[str, Any], neo4j_admin: Driver, clean: None
) -> None:
    statement = (
        f"CREATE (n:{LABEL} {{name: 'a', at: datetime('2026-11-30T10:00:00+01:00')}})"
        "-[r:KNOWS {since: 2020}]->(m:" + LABEL + " {name: 'b'}) "
        "RETURN n, r, [n.name, m.name] AS names, point({x: 1.5, y: 2}) AS p, null AS nothing"
    )

    async def body(executor: RelayExecutor, login: Login, _: UserBoltPools) -> Any:
        async with executor.run(_execution(statement), login) as rows:
            assert isinstance(rows, RelayRows)
            records = [unpack(message).fields[0] async for message in rows.records()]
            return rows.fields, records, await rows.summary()

    fields, records, summary = _run(status, body)
    assert fields == ["n", "r", "names", "p", "nothing"]
    (expected,) = neo4j_admin.execute_query(
        f"MATCH (n:{LABEL} {{name: 'a'}})-[r:KNOWS]->(m) "
        "RETURN n, r, [n.name, m.name] AS names, point({x: 1.5, y: 2}) AS p, null AS nothing"
    ).records
    assert records == [[to_wire(value) for value in expected.values()]]
    assert summary.rows == 1
    assert summary.counters["nodesCreated"] == 2
    assert summary.counters["relationshipsCreated"] == 1
    assert summary.counters["containsUpdates"] is True
    assert summary.query_type == "rw"
    assert summary.bookmarks and summary.bookmarks[0]


def test_a_refused_statement_raises_neo4js_error_and_the_connection_is_used_again(
    status: dict[str, Any],
) -> None:
    async def body(executor: RelayExecutor, login: Login, pools: UserBoltPools) -> Any:
        with pytest.raises(Neo4jClientError) as refused:
            async with executor.run(_execution("RETURN 1 +"), login) as rows:
                await rows.summary()
        with pytest.raises(Neo4jClientError) as failed_late:  # fails while streaming
            async with executor.run(_execution("UNWIND [1, 0] AS x RETURN 1 / x"), login) as rows:
                await rows.summary()
        async with executor.run(_execution("RETURN 42 AS answer"), login) as rows:
            values = [row async for row in rows]
        assert login.credential is not None
        idle = len(pools.pool(login.credential())._idle)
        return refused.value.code, failed_late.value.code, values, idle

    syntax, arithmetic, values, idle = _run(status, body)
    assert syntax == "Neo.ClientError.Statement.SyntaxError"
    assert arithmetic == "Neo.ClientError.Statement.ArithmeticError"
    assert values == [[42]]
    assert idle == 1  # the one connection, reset after each failure and reused


def test_a_write_past_its_row_limit_rolls_back_and_a_read_is_truncated(
    status: dict[str, Any], neo4j_admin: Driver, clean: None
) -> None:
    write = f"UNWIND range(1, 5) AS i CREATE (n:{LABEL} {{i: i}}) RETURN n.i AS i"

    async def body(executor: RelayExecutor, login: Login, _: UserBoltPools) -> Any:
        with pytest.raises(RowLimitExceeded):
            async with executor.run(_execution(write, row_limit=3), login) as rows:
                await rows.summary()
        read = _execution(
            "UNWIND range(1, 5) AS i RETURN i",
            access_mode="READ",
            row_limit=2,
            row_limit_action="truncate",
        )
        async with executor.run(read, login) as rows:
            kept = [row async for row in rows]
            summary = await rows.summary()
        # A list counts as its elements: collect() cannot fold the limit away.
        folded = _execution("RETURN range(1, 5) AS all", access_mode="READ", row_limit=3)
        with pytest.raises(RowLimitExceeded):
            async with executor.run(folded, login) as rows:
                await rows.summary()
        return kept, summary

    kept, summary = _run(status, body)
    assert kept == [[1], [2]]
    assert summary.truncated and summary.rows == 2
    assert neo4j_admin.execute_query(f"MATCH (n:{LABEL}) RETURN count(n)").records[0][0] == 0


def test_an_auto_commit_block_ended_by_an_error_rolls_back_and_one_left_unread_commits(
    status: dict[str, Any], neo4j_admin: Driver, clean: None
) -> None:
    def creating(name: str) -> Execution:  # more rows than one PULL asks for
        return _execution(
            f"UNWIND range(1, 3000) AS i CREATE (:{LABEL} {{name: '{name}', step: i}}) RETURN i"
        )

    async def body(executor: RelayExecutor, login: Login, _: UserBoltPools) -> None:
        with pytest.raises(ConnectionResetError):
            async with executor.run(creating("failed"), login) as rows:
                async for _row in rows:
                    raise ConnectionResetError("the caller went away")  # after its first row
        async with executor.run(creating("unread"), login):
            pass  # as a driver's session does: the rest is discarded, and it commits

    _run(status, body)
    counts = neo4j_admin.execute_query(
        f"MATCH (n:{LABEL}) RETURN n.name AS name, count(*) AS n ORDER BY name"
    ).records
    assert [(record["name"], record["n"]) for record in counts] == [("unread", 3000)]


def test_explicit_transactions_commit_roll_back_and_roll_back_when_closed_open(
    status: dict[str, Any], neo4j_admin: Driver, clean: None
) -> None:
    opening = Opening(database="neo4j", access_mode="WRITE", timeout_s=10.0, metadata={})

    async def create(executor: RelayExecutor, login: Login, name: str, end: str) -> list[str]:
        transaction = await executor.begin(opening, login)
        try:
            for step in range(2):
                statement = f"CREATE (:{LABEL} {{name: '{name}', step: {step}}})"
                async with transaction.run(_execution(statement)) as rows:
                    await rows.summary()
            if end == "commit":
                return await transaction.commit()
            if end == "rollback":
                await transaction.rollback()
            return []
        finally:
            await transaction.close()

    async def body(executor: RelayExecutor, login: Login, _: UserBoltPools) -> Any:
        committed = await create(executor, login, "kept", "commit")
        await create(executor, login, "rolled", "rollback")
        await create(executor, login, "abandoned", "close")
        return committed

    bookmarks = _run(status, body)
    assert len(bookmarks) == 1
    names = neo4j_admin.execute_query(
        f"MATCH (n:{LABEL}) RETURN n.name AS name ORDER BY n.step"
    ).records
    assert [record["name"] for record in names] == ["kept", "kept"]


def test_what_cannot_be_sent_is_refused_before_neo4j(status: dict[str, Any]) -> None:
    async def body(executor: RelayExecutor, login: Login, _: UserBoltPools) -> None:
        too_big = _execution("RETURN $n", parameters={"n": 2**64})
        with pytest.raises(BadRequest) as refused:
            async with executor.run(too_big, login):
                pass
        assert refused.value.reason == "parameter_not_sendable:PackStreamError"

    _run(status, body)


@pytest.fixture
def probe_user(neo4j_admin: Driver) -> Iterator[Credential]:
    """A Neo4j user of this test's own: refused logins lock out their user for a while, and
    never the gateway's."""
    credential = Credential("relay_probe", secrets.token_urlsafe(12))
    neo4j_admin.execute_query(
        "CREATE OR REPLACE USER relay_probe SET PASSWORD $password CHANGE NOT REQUIRED",
        password=credential.password,
        database_="system",
    )
    yield credential
    neo4j_admin.execute_query("DROP USER relay_probe IF EXISTS", database_="system")


def test_a_refused_login_is_the_gateways_failure_then_retried_with_the_stores_password(
    status: dict[str, Any], probe_user: Credential
) -> None:
    stale = Credential(probe_user.user, "not-the-password")

    async def body(executor: RelayExecutor, _: Login, __: UserBoltPools) -> Any:
        with pytest.raises(GraphFailed) as refused:
            async with executor.run(
                _execution("RETURN 1"), Login(stale.user, credential=lambda: stale)
            ):
                pass
        # With retries, as the service account's login: the store has the right password now.
        auth = RotatingAuth(FixedSecretSource(probe_user.password, probe_user.user), stale)
        retries = LoginRetries(auth, lock_time_s=0.1, metrics=Metrics())
        login = Login(stale.user, retries=retries, credential=lambda: auth.credential)
        async with executor.run(_execution("RETURN 1 AS one"), login) as rows:
            values = [row async for row in rows]
        return refused.value.reason, values

    reason, values = _run(status, body)
    assert reason == "Neo.ClientError.Security.Unauthorized"
    assert values == [[1]]


def test_a_connection_neo4j_closed_is_not_handed_out_again(status: dict[str, Any]) -> None:
    async def body(executor: RelayExecutor, login: Login, pools: UserBoltPools) -> Any:
        async with executor.run(_execution("RETURN 1"), login) as rows:
            await rows.summary()
        assert login.credential is not None
        pool = pools.pool(login.credential())
        (idle,) = pool._idle
        idle._writer.transport.abort()  # as if Neo4j had gone away meanwhile
        await asyncio.sleep(0.05)
        assert not idle.usable
        async with executor.run(_execution("RETURN 2 AS two"), login) as rows:
            values = [row async for row in rows]
        (fresh,) = pool._idle
        return values, fresh is not idle

    values, replaced = _run(status, body)
    assert values == [[2]]
    assert replaced


def test_a_record_larger_than_the_relay_takes_is_no_transient_failure(
    status: dict[str, Any], neo4j_admin: Driver, clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record beyond the relay's bound (64 MiB; 100 kB here) was reported as Neo4j being
    unavailable (503, a transient code): a driver's managed transaction ran the statement
    again, a write included, only to fail alike. It is a client error, not retried, naming the
    cause; the connection, left halfway through the record, is not used again."""
    monkeypatch.setattr("proxy.neo4j.bolt.MAX_MESSAGE_BYTES", 100_000)
    statement = f"CREATE (:{LABEL} {{name: 'big'}}) RETURN $big AS big"
    big = _execution(statement, parameters={"big": "x" * 200_000})

    async def body(executor: RelayExecutor, login: Login, _: UserBoltPools) -> CypherGateError:
        with pytest.raises(CypherGateError) as failed:
            async with executor.run(big, login) as rows:
                await rows.summary()
        async with executor.run(_execution("RETURN 2 AS two"), login) as rows:
            assert [row async for row in rows] == [[2]]  # on another connection
        return failed.value

    error = _run(status, body)
    assert (error.status, error.reason) == (413, "record_too_large"), error.reason
    assert not error.code.startswith("Neo.TransientError")
    assert "100000 bytes" in error.message


def test_addresses_of_every_bolt_scheme_and_nothing_else() -> None:
    assert Address.parse("bolt://db:7688") == Address("db", 7688, None)
    assert Address.parse("neo4j://db") == Address("db", 7687, None)
    assert Address.parse("neo4j+s://db").tls == "verify"
    assert Address.parse("bolt+ssc://db").tls == "trust"
    for wrong in ("http://db:7474", "db:7687", "bolt://"):
        with pytest.raises(ValueError, match="not a Bolt URI"):
            Address.parse(wrong)


def test_a_statement_refused_after_its_transaction_began_leaves_no_transaction_open(
    status: dict[str, Any], neo4j_admin: Driver, clean: None
) -> None:
    """A write under a row limit that fails runs in an explicit transaction; one whose parameter
    Bolt cannot carry is refused, and the connection that began the transaction must not go back
    to the pool inside it, where the next statement of the pool's user (any DAG's, for the
    gateway's own user) would run in it, under the refused one's metadata, never committed."""
    write = f"CREATE (n:{LABEL} {{i: $n}}) RETURN n.i AS i"

    async def body(executor: RelayExecutor, login: Login, _: UserBoltPools) -> None:
        with pytest.raises(BadRequest) as refused:
            async with executor.run(_execution(write, parameters={"n": 2**64}, row_limit=3), login):
                pass
        assert refused.value.reason == "parameter_not_sendable:PackStreamError"
        async with executor.run(_execution(write, parameters={"n": 1}), login) as rows:
            assert [row async for row in rows] == [[1]]
            await rows.summary()

    _run(status, body)
    assert neo4j_admin.execute_query(f"MATCH (n:{LABEL}) RETURN count(n)").records[0][0] == 1


def test_a_connection_given_back_inside_a_transaction_is_reset_whatever_ended_it(
    status: dict[str, Any], neo4j_admin: Driver, clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever ends a statement between its BEGIN and its COMMIT (here a failure of the
    gateway's own, after BEGIN, before the RUN: neither Neo4j's FAILURE nor a lost connection),
    the connection goes back to the pool with Neo4j's transaction ended, never inside it."""
    write = f"CREATE (n:{LABEL} {{i: $n}}) RETURN n.i AS i"
    start = RelayRows.start
    failing = [True]

    async def fails_once(cls: type[RelayRows], *args: Any, **kwargs: Any) -> RelayRows:
        if failing.pop() if failing else False:
            raise RuntimeError("the gateway's own failure, between BEGIN and RUN")
        return await start(*args, **kwargs)

    monkeypatch.setattr(RelayRows, "start", classmethod(fails_once))

    async def body(executor: RelayExecutor, login: Login, _: UserBoltPools) -> None:
        with pytest.raises(RuntimeError):
            async with executor.run(_execution(write, parameters={"n": 2}, row_limit=3), login):
                pass
        async with executor.run(_execution(write, parameters={"n": 1}), login) as rows:
            assert [row async for row in rows] == [[1]]
            await rows.summary()

    _run(status, body)
    assert neo4j_admin.execute_query(f"MATCH (n:{LABEL}) RETURN n.i").records[0][0] == 1


@pytest.mark.parametrize(
    ("reset", "seen"),
    [(True, True), (False, True), (True, False)],
    ids=["reset", "closed", "reset-unseen"],
)
def test_a_pooled_connection_neo4j_ended_while_idle_is_not_handed_to_the_next_statement(
    status: dict[str, Any], neo4j_admin: Driver, clean: None, reset: bool, seen: bool
) -> None:
    """Neo4j (or a firewall between) resets or closes a pooled connection while it sits idle:
    the next read, and the next write, run on a fresh connection instead of failing on it.
    ``seen``: the event loop ran meanwhile and knows; else the statement's first write finds
    it (nothing of it sent)."""
    relay = EndingRelay(status["neo4j"]["bolt_uri"])
    neo4j = status["neo4j"]
    credential = Credential(neo4j["gateway_user"], neo4j["gateway_password"])
    pools = UserBoltPools(Address("127.0.0.1", relay.port), size=4, acquire_timeout_s=2.0)
    login = Login(user=credential.user, credential=lambda: credential)
    executor = RelayExecutor(pools)

    async def go() -> list[Any]:
        answers: list[Any] = []
        try:
            async with executor.run(_execution("RETURN 1 AS one"), login) as rows:
                await rows.summary()
            for statement in ("RETURN 2 AS two", f"CREATE (n:{LABEL}) RETURN 3 AS three"):
                relay.end_all(reset=reset)
                if seen:
                    await asyncio.sleep(0.3)  # the loop reads the reset (or the close)
                else:
                    time.sleep(0.3)  # noqa: ASYNC251 (on purpose: the loop must not see it)
                async with executor.run(_execution(statement), login) as rows:
                    answers.append([row async for row in rows])
        finally:
            await pools.close()
            relay.close()
        return answers

    assert asyncio.run(go()) == [[[2]], [[3]]]
    created, _, _ = neo4j_admin.execute_query(f"MATCH (n:{LABEL}) RETURN count(n) AS n")
    assert created[0]["n"] == 1
