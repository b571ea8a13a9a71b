"""proxy.neo4j.pools on the real Neo4j: leased users' statements never re-authenticate a pooled
connection, and a dropped lease's driver is closed."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from neo4j import basic_auth
from neo4j.auth_management import AsyncAuthManagers

from proxy.metrics import Metrics
from proxy.neo4j.brokers import LeasedUsers
from proxy.neo4j.executor import Neo4jExecutor, connect
from proxy.neo4j.leases import LeaseManager
from proxy.neo4j.logins import Login, LoginRetries
from proxy.neo4j.pools import UserPools
from proxy.neo4j.rotation import RotatingAuth
from proxy.neo4j.secret_sources import Credential, FixedSecretSource
from proxy.statement import Execution

pytestmark = pytest.mark.integration

DAGS = ("pools_a", "pools_b", "pools_c")
_SENT = re.compile(r"\]\s+C: ([A-Z]+)")


class BoltMessages(logging.Handler):
    """Counts the Bolt messages the driver sends, from its debug log (``C: LOGON ...``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sent: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        sent = _SENT.search(record.getMessage())
        if sent is not None:
            self.sent[sent[1]] += 1


def test_statements_of_several_dags_never_log_a_pooled_connection_in_again(
    status: dict[str, Any], tmp_path: Path
) -> None:
    neo4j = status["neo4j"]
    own = Credential(neo4j["gateway_user"], neo4j["gateway_password"])
    messages = BoltMessages()
    driver_log = logging.getLogger("neo4j")
    level = driver_log.level

    async def go() -> None:
        driver = connect(
            neo4j["bolt_uri"],
            AsyncAuthManagers.static(basic_auth(own.user, own.password)),
            max_connection_lifetime_s=3600,
        )
        pools = UserPools(
            lambda leased: connect(neo4j["bolt_uri"], leased.auth(), max_connection_lifetime_s=3600)
        )
        leases = LeaseManager(
            driver,
            path=tmp_path / "leases.sqlite3",
            prefix="cg_pools_",
            ttl_s=600,
            renew_fraction=0.5,
            on_dropped=pools.close_user,
        )
        retries = LoginRetries(
            RotatingAuth(FixedSecretSource(own.password, own.user), own),
            lock_time_s=1,
            metrics=Metrics(),
        )
        broker = LeasedUsers(leases, retries, pools)
        executor = Neo4jExecutor(driver, own=Login(user=own.user))
        await leases.open()
        users: set[str] = set()

        async def statement(dag: str) -> None:
            execution = Execution(
                database="neo4j",
                statement="RETURN $dag AS dag",
                parameters={"dag": dag},
                access_mode="READ",
                timeout_s=10,
                metadata={"dag": dag},
            )
            async with broker.hold(dag) as login, executor.run(execution, login) as rows:
                assert [row async for row in rows] == [[dag]]
                users.add(login.user)

        try:
            await executor.plan("neo4j", "RETURN 1 AS one")  # the gateway's own user, too
            for dag in DAGS:  # each DAG's lease, created before anything is counted
                await statement(dag)
            driver_log.addHandler(messages)
            driver_log.setLevel(logging.DEBUG)
            for _ in range(10):  # interleaved, concurrent: a shared pool would swap users
                await asyncio.gather(*(statement(dag) for dag in DAGS * 3))
        finally:
            driver_log.removeHandler(messages)
            driver_log.setLevel(level)
            await leases.close()
            assert pools.users == set()  # every lease dropped, every driver closed
            await pools.close()
            await driver.close()
        assert len(users) == len(DAGS)

    asyncio.run(go())
    assert messages.sent["RUN"] == 10 * 3 * len(DAGS)
    assert messages.sent["LOGOFF"] == 0  # no connection changed user
    assert messages.sent["LOGON"] == messages.sent["HELLO"]  # only new connections log in
