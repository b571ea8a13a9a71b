"""Short-lived, rotated credentials on the real Neo4j and moto's Secrets Manager.

Second gateways run beside the session's, each as a Neo4j user of its own whose password is in a
Secrets Manager secret of its own, so rotating, crashing and sweeping never touch the session
gateway. The last test rotates the session gateway's own credential with the CLI.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import boto3
import httpx
import pytest
from neo4j import Driver, GraphDatabase

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from proxy.devstack.state import AWS_REGION, GATEWAY_SECRET, StackState
from proxy.neo4j.rotation import RotatingAuth, Rotator
from proxy.neo4j.secret_sources import Credential, FileSecretSource
from tests.command_line import cyphergate
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

LOAD_SECONDS = 60.0


def secrets_manager(stack: DevStack) -> Any:
    keys = StackState.load(stack.state_file).gateway_aws_keys
    return boto3.client(
        "secretsmanager",
        endpoint_url=stack.sts_url(),
        region_name=AWS_REGION,
        aws_access_key_id=keys["id"],
        aws_secret_access_key=keys["secret"],
    )


def stored(stack: DevStack, secret_id: str, stage: str = "AWSCURRENT") -> str:
    value = secrets_manager(stack).get_secret_value(SecretId=secret_id, VersionStage=stage)
    password: str = json.loads(value["SecretString"])["password"]
    return password


def accepted(status: dict[str, Any], user: str, password: str) -> bool:
    """One login attempt as ``user`` (never more: Neo4j rate-limits failed logins)."""
    with GraphDatabase.driver(status["neo4j"]["bolt_uri"], auth=(user, password)) as driver:
        return driver.verify_authentication()  # False when Neo4j refuses it


class Lab(NamedTuple):
    """A second gateway running as a Neo4j user of its own, whose password is in a Secrets
    Manager secret of its own."""

    gateway: SecondGateway
    user: str
    first_password: str
    secret_id: str


@pytest.fixture
def own_gateway(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path
) -> Iterator[Callable[..., Lab]]:
    """Make a :class:`Lab` named ``name`` with ``neo4j`` settings; stopped and dropped after."""
    made: list[Lab] = []

    def make(name: str, **neo4j: Any) -> Lab:
        user, password = f"{name}_gateway", secrets.token_urlsafe(24)
        neo4j_admin.execute_query(
            "CREATE USER $user SET PASSWORD $password CHANGE NOT REQUIRED",
            user=user,
            password=password,
            database_="system",
        )
        secret_id = f"cyphergate/test/{user}-{secrets.token_hex(3)}"
        secrets_manager(stack).create_secret(
            Name=secret_id, SecretString=json.dumps({"username": user, "password": password})
        )

        def configure(config: dict[str, Any]) -> None:
            config["neo4j"].update(user=user, **neo4j)
            config["neo4j"]["secret"].update(secret_id=secret_id, refresh_interval_s=1.0)

        gateway = SecondGateway(stack, tmp_path / name, name, configure)
        made.append(Lab(gateway, user, password, secret_id))
        return made[-1]

    yield make
    for lab in made:
        lab.gateway.stop()
        neo4j_admin.execute_query("DROP USER $user IF EXISTS", user=lab.user, database_="system")


@dataclass
class Load:
    statuses: Counter[int] = field(default_factory=Counter)
    writes: int = 0  # acknowledged
    errors: Counter[str] = field(default_factory=Counter)  # the bodies of failed answers


def drive_load(gateway: SecondGateway, seconds: float, clients: int = 4) -> Load:
    """Reads and writes through ``gateway`` from ``clients`` threads."""
    load = Load()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(n: int) -> None:
        dag = "demo_writer" if n % 2 else "demo_reader"
        header = {"Authorization": gateway.stack.auth_header(dag)}
        with httpx.Client(base_url=gateway.url, headers=header, timeout=60) as http:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                body: dict[str, Any] = (
                    {
                        "statement": "CREATE (:RotationProbe {client: $n, i: $i})",
                        "parameters": {"n": n, "i": i},
                    }
                    if dag == "demo_writer"
                    else {"statement": "MATCH (p:RotationProbe) RETURN count(p) AS n"}
                )
                answer = http.post("/db/neo4j/query/v2", json=body)
                with lock:
                    load.statuses[answer.status_code] += 1
                    if answer.status_code != 202:
                        load.errors[answer.text] += 1
                    load.writes += dag == "demo_writer" and answer.status_code == 202

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return load


def prefixed_users(neo4j_admin: Driver, prefix: str) -> list[str]:
    records, _, _ = neo4j_admin.execute_query("SHOW USERS YIELD user", database_="system")
    return [r["user"] for r in records if r["user"].startswith(prefix)]


def test_rotation_and_lease_cycling_under_load_fail_nothing(
    stack: DevStack,
    status: dict[str, Any],
    neo4j_admin: Driver,
    own_gateway: Callable[..., Lab],
) -> None:
    gateway, user, first_password, secret_id = own_gateway(
        "rotlab",
        credentials="leases",
        lease_ttl_s=4.0,
        lease_renew_fraction=0.5,
        rotation_interval_s=3.0,
        max_connection_lifetime_s=2.0,
    )
    gateway.start()
    try:
        load = drive_load(gateway, LOAD_SECONDS)
    finally:
        gateway.stop()
    print(f"statuses over {LOAD_SECONDS:.0f} s: {dict(load.statuses)}")
    assert set(load.statuses) == {202}, (load.errors, gateway.log_text()[-3000:])
    assert load.statuses.total() > 200
    probes, _, _ = neo4j_admin.execute_query("MATCH (p:RotationProbe) RETURN count(p) AS n")
    assert probes[0]["n"] == load.writes  # every acknowledged write is there, once
    neo4j_admin.execute_query("MATCH (p:RotationProbe) DELETE p")

    versions = secrets_manager(stack).list_secret_version_ids(
        SecretId=secret_id, IncludeDeprecated=True
    )["Versions"]
    print(f"password versions in Secrets Manager: {len(versions)}")
    assert len(versions) >= 2  # moto keeps the current and previous ones at least
    with AuditReader(gateway.audit) as reader:
        users = Counter(
            (r["principal"]["dag"], r["credential"]["user"])
            for r in reader.query(RecordFilter(event="outcome"))
        )
    per_dag = Counter(dag for dag, _ in users)
    print(f"leased users per DAG: {dict(per_dag)}")
    assert per_dag["demo_reader"] >= 10 and per_dag["demo_writer"] >= 10
    assert all(u.startswith(gateway.prefix) for _, u in users)
    rotations = gateway.log_text().count("rotated the Neo4j password")
    print(f"rotations of the gateway's own password: {rotations}")
    assert rotations >= LOAD_SECONDS / 3 - 3
    assert "AuthenticationRateLimit" not in gateway.log_text()
    # The password the gateway started with is refused now; the stored one works.
    assert not accepted(status, user, first_password)
    assert accepted(status, user, stored(stack, secret_id))
    # A stopped gateway leaves no leased user behind.
    assert prefixed_users(neo4j_admin, gateway.prefix) == []


def test_a_secret_rotated_elsewhere_is_picked_up_without_restart(
    stack: DevStack,
    status: dict[str, Any],
    neo4j_admin: Driver,
    own_gateway: Callable[..., Lab],
) -> None:
    gateway, user, old_password, secret_id = own_gateway(
        "extlab", credentials="service_account", max_connection_lifetime_s=1.0
    )
    gateway.start()
    result: list[Load] = []
    loader = threading.Thread(target=lambda: result.append(drive_load(gateway, 12.0, clients=4)))
    try:
        loader.start()
        time.sleep(3)
        # What an AWS rotation function does: stage, set in the database, promote.
        client = secrets_manager(stack)
        new_password = secrets.token_urlsafe(24)
        version = client.put_secret_value(
            SecretId=secret_id,
            SecretString=json.dumps({"username": user, "password": new_password}),
            VersionStages=["AWSPENDING"],
        )["VersionId"]
        neo4j_admin.execute_query(
            "ALTER USER $user SET PASSWORD $password CHANGE NOT REQUIRED",
            user=user,
            password=new_password,
            database_="system",
        )
        # Neo4j has the new password, the store's AWSCURRENT still the old one: pooled
        # connections age out (1 s) meanwhile, and new ones must use the staged value.
        time.sleep(2.5)
        current = next(
            v["VersionId"]
            for v in client.list_secret_version_ids(SecretId=secret_id)["Versions"]
            if "AWSCURRENT" in v["VersionStages"]
        )
        client.update_secret_version_stage(
            SecretId=secret_id,
            VersionStage="AWSCURRENT",
            MoveToVersionId=version,
            RemoveFromVersionId=current,
        )
        loader.join()
        after = gateway.query("demo_reader", "RETURN 1 AS one")
    finally:
        loader.join()
        gateway.stop()
    (load,) = result
    print(f"statuses across the external rotation: {dict(load.statuses)}")
    # Logins opened at once with the old password may trip Neo4j's rate limit; those
    # requests wait it out rather than fail.
    waits = gateway.log_text().count("AuthenticationRateLimit")
    print(f"requests that waited out Neo4j's login rate limit: {waits}")
    assert set(load.statuses) == {202}, (load.errors, gateway.log_text()[-3000:])
    assert after.status_code == 202
    assert "changed" in gateway.log_text()  # it noticed, from the store
    assert not accepted(status, user, old_password)


def test_a_login_rate_limit_is_waited_out_not_failed(
    status: dict[str, Any], own_gateway: Callable[..., Lab]
) -> None:
    gateway, user, _, _ = own_gateway(
        "locklab", credentials="service_account", max_connection_lifetime_s=1.0
    )
    gateway.start()
    try:
        assert gateway.query("demo_reader", "RETURN 1 AS one").status_code == 202
        # Three refused logins as the gateway's user (Neo4j's default limit): Neo4j now
        # refuses every login of that user for dbms.security.auth_lock_time (5 s).
        for _ in range(3):
            assert not accepted(status, user, "not-the-password")
        time.sleep(1.5)  # the pooled connection ages out: the next request must log in
        started = time.monotonic()
        answer = gateway.query("demo_reader", "RETURN 1 AS one")
        print(f"the request waited {time.monotonic() - started:.1f} s")
        metrics = httpx.get(gateway.url + "/metrics").text
    finally:
        gateway.stop()
    assert answer.status_code == 202, answer.text
    assert answer.json()["data"]["values"] == [[1]]
    assert "AuthenticationRateLimit" in gateway.log_text()
    retried = 'cyphergate_neo4j_login_retries_total{cause="AuthenticationRateLimit"} 1.0'
    assert retried in metrics.splitlines()


def test_a_crash_between_changing_and_storing_the_password_locks_nothing_out(
    stack: DevStack, status: dict[str, Any], own_gateway: Callable[..., Lab]
) -> None:
    gateway, user, _, secret_id = own_gateway(
        "crashlab", credentials="service_account", rotation_interval_s=1.0
    )
    gateway.start(wait=False, crash_at="password_altered")  # it may die before it is ready
    assert gateway.wait_exit() == 137  # died as kill -9 would, right after ALTER
    staged = stored(stack, secret_id, "AWSPENDING")
    assert stored(stack, secret_id) != staged  # the store still says the old one is current
    assert accepted(status, user, staged)  # while Neo4j already has the new one

    gateway.config["neo4j"]["rotation_interval_s"] = 0.0
    gateway.start()
    try:
        assert gateway.query("demo_reader", "RETURN 1 AS one").status_code == 202
    finally:
        gateway.stop()
    assert stored(stack, secret_id) == staged  # recovery promoted it
    versions = secrets_manager(stack).list_secret_version_ids(SecretId=secret_id)["Versions"]
    assert not any(
        "AWSPENDING" in v["VersionStages"] and "AWSCURRENT" not in v["VersionStages"]
        for v in versions
    )


def test_a_crash_after_creating_a_leased_user_leaves_no_orphan(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path
) -> None:
    gateway = SecondGateway(stack, tmp_path, "leasecrash")
    gateway.start(crash_at="lease_user_created")
    with pytest.raises(httpx.HTTPError):  # the gateway dies under the request
        gateway.query("demo_reader", "RETURN 1 AS one")
    assert gateway.wait_exit() == 137
    assert len(prefixed_users(neo4j_admin, gateway.prefix)) == 1  # created, then the crash

    gateway.start()
    try:
        assert prefixed_users(neo4j_admin, gateway.prefix) == []  # swept at start-up
        response = gateway.query("demo_reader", "RETURN 1 AS one")
        assert response.status_code == 202
        assert len(prefixed_users(neo4j_admin, gateway.prefix)) == 1  # a fresh lease
    finally:
        gateway.stop()
    assert prefixed_users(neo4j_admin, gateway.prefix) == []


def test_a_failed_promotion_is_settled_before_the_next_rotation(
    status: dict[str, Any], neo4j_admin: Driver, tmp_path: Path
) -> None:
    """Neo4j took the new password but the store could not promote it: the next rotation must
    start from what Neo4j accepts (the pending value), not from the stale current one."""
    password = secrets.token_urlsafe(24)
    neo4j_admin.execute_query(
        "CREATE USER filelab_gateway SET PASSWORD $p CHANGE NOT REQUIRED",
        p=password,
        database_="system",
    )
    secret_file = tmp_path / "neo4j-secret"
    secret_file.write_text(json.dumps({"username": "filelab_gateway", "password": password}))
    source = FileSecretSource(secret_file, "filelab_gateway")
    uri = status["neo4j"]["bolt_uri"]

    async def go() -> None:
        auth = RotatingAuth(source, await source.current())
        rotator = Rotator(uri, source, auth)
        promote = source.promote

        async def broken(version: str) -> None:
            raise OSError("the mount is busy")

        source.promote = broken  # type: ignore[method-assign]
        with pytest.raises(OSError):
            await rotator.rotate()
        source.promote = promote  # type: ignore[method-assign]
        staged = (await source.pending() or ("", Credential("x", "x")))[1]
        assert await rotator.accepted(staged)  # only the pending file knows it
        newest = await rotator.rotate()
        assert await source.current() == newest and await source.pending() is None
        assert await rotator.accepted(newest)

    try:
        asyncio.run(go())
    finally:
        neo4j_admin.execute_query("DROP USER filelab_gateway IF EXISTS", database_="system")


def test_rotate_root_changes_the_session_gateways_own_password(
    stack: DevStack, gateway: httpx.Client
) -> None:
    before = stack.status()["neo4j"]
    rotate = cyphergate(
        "creds", "rotate-root", "--config", str(stack.gateway_config_path),
        env=stack.gateway_aws_env(),
    )  # fmt: skip
    assert rotate.returncode == 0, rotate.stderr
    assert "rotated the Neo4j password of cyphergate" in rotate.stdout
    after = stack.status()["neo4j"]
    assert after["gateway_password"] != before["gateway_password"]
    assert before["gateway_password"] not in rotate.stdout + rotate.stderr
    assert after["gateway_password"] not in rotate.stdout + rotate.stderr
    assert after["gateway_password"] == stored(stack, GATEWAY_SECRET)
    status = stack.status()
    assert accepted(status, "cyphergate", after["gateway_password"])
    # The running gateway keeps working: it reads the new value from the store.
    deadline = time.monotonic() + 30
    codes: list[int] = []
    while time.monotonic() < deadline and len(codes) < 20:
        response = gateway.post(
            "/db/neo4j/query/v2",
            json={"statement": "MATCH (n:RotateRootProbe) RETURN count(n) AS n"},
            headers={"Authorization": stack.auth_header("demo_reader")},
        )
        codes.append(response.status_code)
        time.sleep(0.3)
    assert set(codes) == {202}
