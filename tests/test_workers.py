"""Several gateway processes: replicas beside each other, and workers of one replica.

Three replicas on one machine share the session's Neo4j and OPA, one of them with two worker
processes on one port; under concurrent load each process appends to a chain of its own and
leases users under a prefix of its own, and ``audit verify`` and ``audit query`` read all the
chains. A process that opens a chain another process writes refuses to start.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader
from proxy.chains import replica_chains
from proxy.devstack.stack import DevStack
from proxy.settings import load_settings
from tests.command_line import cyphergate
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

DAGS = ("demo_reader", "demo_writer")
PER_REPLICA = 24  # statements sent to each replica, 8 at a time


@dataclass
class Replicas:
    gateways: list[SecondGateway]
    sent: dict[str, int]  # replica name -> statements answered
    users_seen: dict[str, set[str]]  # replica name -> leased users that ran its statements


def _signed(stack: DevStack, name: str, workers: int) -> Any:
    session_audit = load_settings(stack.gateway_config_path).audit

    def configure(config: dict[str, Any]) -> None:
        config["audit"].update(
            chain_id=name,
            signing_key_file=str(session_audit.signing_key_file),
            checkpoint_every=10,
        )
        config["server"]["workers"] = workers
        # 24 statements at once on a shared two-core machine: OPA may answer in more than the
        # default second, which would (rightly) be a 503; this test is about the processes.
        config["opa"]["timeout_s"] = 15.0

    return configure


def _load(gateway: SecondGateway) -> int:
    """``PER_REPLICA`` statements, 8 at a time, each on a new connection (so that the kernel
    spreads them over a replica's workers); how many were answered."""

    def one(i: int) -> httpx.Response:
        dag = DAGS[i % len(DAGS)]
        with httpx.Client(timeout=60) as client:  # one connection per statement
            return client.post(
                f"{gateway.url}/db/neo4j/query/v2",
                json={"statement": "RETURN $i AS i", "parameters": {"i": i}},
                headers={"Authorization": gateway.stack.auth_header(dag)},
            )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(PER_REPLICA)))
    failed = [a for a in answers if a.status_code != 202]
    assert not failed, f"{gateway.url}: {failed[0].status_code} {failed[0].text}"
    return len(answers)


@pytest.fixture(scope="module")
def replicas(
    stack: DevStack, neo4j_admin: Driver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    folder = tmp_path_factory.mktemp("replicas")
    names = ("replica1", "replica2", "replica3")
    workers = {"replica1": 1, "replica2": 2, "replica3": 1}
    gateways = [
        SecondGateway(stack, folder / name, name, _signed(stack, name, workers[name]))
        for name in names
    ]
    for gateway in gateways:  # the three start side by side
        gateway.start(wait=False)
    try:
        for gateway in gateways:  # five interpreters start at once on a shared machine
            gateway.wait_ready(timeout=240)
        with ThreadPoolExecutor(3) as pool:
            sent = dict(zip(names, pool.map(_load, gateways), strict=True))
        users = {
            name: {
                str(r["user"])
                for r in neo4j_admin.execute_query(
                    "SHOW USERS YIELD user WHERE user STARTS WITH $prefix RETURN user",
                    prefix=gateway.prefix,
                    database_="system",
                ).records
            }
            for name, gateway in zip(names, gateways, strict=True)
        }
        yield Replicas(gateways, sent, users)
    finally:
        for gateway in gateways:
            gateway.stop()


def test_each_process_of_each_replica_leases_under_a_prefix_of_its_own(
    replicas: Replicas,
) -> None:
    one, two, three = replicas.users_seen.values()
    # Replica 2's two workers each lease its DAGs: one user per DAG and worker, and every user
    # of replica 2 under one worker's prefix (so neither worker's sweep matches the other's).
    assert all(u.startswith(("cg_replica2_w1_", "cg_replica2_w2_")) for u in two), two
    assert {u[: len("cg_replica2_w1_")] for u in two} == {"cg_replica2_w1_", "cg_replica2_w2_"}
    assert len(one) == len(three) == len(DAGS)
    assert not one & two and not two & three and not one & three


def test_any_worker_answers_reviewers_for_every_chain_of_its_replica(
    stack: DevStack, replicas: Replicas
) -> None:
    two = replicas.gateways[1]
    auditor = {"Authorization": "Bearer " + stack.client_token("demo_auditor")}

    def page(**params: str) -> httpx.Response:
        with httpx.Client(timeout=60) as client:  # a new connection: any worker may take it
            return client.get(f"{two.url}/audit/records", params=params, headers=auditor)

    reads: dict[str, set[tuple[str, ...]]] = {}
    for chain in ("replica2-w1", "replica2-w2"):
        for _ in range(4):
            answer = page(chain=chain, event="decision", limit="1000")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["chain"] == chain
            assert body["chains"] == ["replica2-w1", "replica2-w2"]
            reads.setdefault(chain, set()).add(tuple(r["request_id"] for r in body["records"]))
    (first,), (second,) = reads.values()  # each chain reads the same from either worker
    assert first and second and not set(first) & set(second)
    assert len(first) + len(second) == replicas.sent["replica2"]
    assert page(limit="1").json()["chain"] == "replica2-w1"  # the default
    assert page(chain="replica1").status_code == 404  # another replica's chain is not here


def test_a_second_process_on_a_chain_refuses_to_start(
    stack: DevStack, replicas: Replicas, tmp_path: Path
) -> None:
    first = replicas.gateways[0]  # running, and writing its chain

    def same_chain(config: dict[str, Any]) -> None:
        config["audit"]["path"] = str(first.audit)

    second = SecondGateway(stack, tmp_path / "second", "chainsecond", same_chain)
    second.start(wait=False)
    assert second.wait_exit() != 0
    log = second.log_text()
    assert f"The audit log {first.audit} is being written by gateway process" in log
    assert str(first.process.pid if first.process else "?") in log
    assert first.query("demo_reader", "RETURN 1 AS one").status_code == 202  # still serving
    replicas.sent["replica1"] += 1


def test_each_process_appends_to_its_own_chain_and_the_tools_read_them_all(
    replicas: Replicas,
) -> None:
    for gateway in replicas.gateways:
        gateway.stop()  # each closes its chains with a signed checkpoint
    configs = [str(g.config_file) for g in replicas.gateways]
    chains = [audit for c in configs for audit in replica_chains(load_settings(Path(c)))]
    assert [a.chain_id for a in chains] == [
        "replica1",
        "replica2-w1",
        "replica2-w2",
        "replica3",
    ]
    for audit in chains:
        with AuditReader(audit.path) as reader:
            assert reader.count() > 0, f"{audit.chain_id} served nothing"
            assert {c.chain for c in reader.checkpoints()} == {audit.chain_id}

    config_args = [arg for c in configs for arg in ("--config", c)]
    verified = cyphergate("audit", "verify", *config_args, "--format", "json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    reports = [json.loads(line) for line in verified.stdout.splitlines()]
    assert [r["log"] for r in reports] == [str(a.path) for a in chains]
    assert all(r["ok"] and r["signatures_checked"] and r["checkpoints"] > 0 for r in reports)

    queried = cyphergate("audit", "query", *config_args, "--event", "decision", "--format", "json")
    assert queried.returncode == 0, queried.stderr
    records = [json.loads(line) for line in queried.stdout.splitlines()]
    by_log: dict[str, int] = {}
    for record in records:
        by_log[record["log"]] = by_log.get(record["log"], 0) + 1
    assert sum(by_log.values()) == sum(replicas.sent.values())
    assert set(by_log) == {str(a.path) for a in chains}
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)
