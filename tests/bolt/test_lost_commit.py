"""A commit whose answer never comes back: Neo4j may have committed, so it must not be retried.

A driver's managed transaction (``execute_query``, ``execute_write``) runs its work again after
a transient ``FAILURE``; straight to Neo4j, a connection lost after ``COMMIT`` was sent is the
driver's ``IncompleteCommit``, which it never retries. Through the gateway, the gateway's own
connection to Neo4j is the one lost: its answer must say the outcome is unknown, not that the
database was unavailable, or the driver writes twice.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import neo4j
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from tests.bolt.cutting_relay import CuttingRelay, count_marked, gateway_behind

pytestmark = pytest.mark.integration

_COMMIT = b"\x00\x02\xb0\x12\x00\x00"  # a COMMIT message, in its one chunk


class CommitCutter(CuttingRelay):
    """Once armed, forwards the next ``COMMIT`` and cuts that connection without passing Neo4j's
    answer on: the commit happens, its sender never hears so."""

    def __init__(self, bolt_uri: str) -> None:
        self.armed = threading.Event()
        super().__init__(bolt_uri)

    def _cuts_here(self, data: bytes) -> bool:
        if _COMMIT in data and self.armed.is_set():
            self.armed.clear()
            return True
        return False


def _commit_records(audit: Path) -> list[dict[str, Any]]:
    with AuditReader(audit) as log:
        return [r for r in log.query(RecordFilter(event="transaction")) if r.get("error")]


@pytest.mark.parametrize("relay", [True, False], ids=["relay", "driver"])
def test_a_commit_whose_answer_is_lost_is_not_retried(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path, relay: bool
) -> None:
    cutter = CommitCutter(stack.status()["neo4j"]["bolt_uri"])
    marker = f"lost-commit-{uuid.uuid4().hex[:8]}"
    auth = neo4j.bearer_auth(stack.token("demo_writer"))
    with gateway_behind(
        cutter, stack, tmp_path / "gateway", f"cut{int(relay)}", relays=relay
    ) as second:
        with neo4j.GraphDatabase.driver(str(second.bolt_uri), auth=auth) as driver:
            driver.execute_query("RETURN 1", database_="neo4j")  # warmed up, leases made
            cutter.armed.set()
            with pytest.raises(neo4j.exceptions.Neo4jError) as lost:
                driver.execute_query("CREATE (:BoltDoor {name: $m})", m=marker, database_="neo4j")
        assert cutter.cuts == 1
        # Neo4j committed once; the driver was told not to try again.
        assert count_marked(neo4j_admin, marker) == 1
        assert not lost.value.code.startswith("Neo.TransientError.")
        # The Query API's commit: the same answer, not a 503 a client would retry.
        headers = {"Authorization": stack.auth_header("demo_writer")}
        opened = httpx.post(
            f"{second.url}/db/neo4j/query/v2/tx",
            json={"statement": "CREATE (:BoltDoor {name: $m})", "parameters": {"m": marker}},
            headers=headers,
            timeout=30,
        )
        assert opened.status_code == 202, opened.text
        cutter.armed.set()
        committed = httpx.post(
            f"{second.url}/db/neo4j/query/v2/tx/{opened.json()['transaction']['id']}/commit",
            headers=headers,
            timeout=30,
        )
    assert cutter.cuts == 2
    assert count_marked(neo4j_admin, marker) == 2
    assert committed.status_code == 502, committed.text
    (error,) = committed.json()["errors"]
    assert not error["code"].startswith("Neo.TransientError.")
    ended = _commit_records(second.audit)
    assert [r["error"]["reason"] for r in ended] == ["commit_outcome_unknown"] * 2
