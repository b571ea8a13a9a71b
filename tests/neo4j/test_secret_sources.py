"""Secret sources: the file and configuration sources, and choosing one from the settings.

AWS Secrets Manager is exercised against moto in tests/test_rotation.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from proxy.app import secret_source
from proxy.errors import NotSupported, SecretStoreUnavailable
from proxy.neo4j.rotation import RotatingAuth, Rotator
from proxy.neo4j.secret_sources import (
    AWSSecretsManagerSource,
    Credential,
    FileSecretSource,
    FixedSecretSource,
    SecretReader,
    parse_secret,
)
from proxy.settings import Neo4jSettings, SecretSettings
from tests.command_line import cyphergate


def test_a_secret_is_json_or_a_bare_password() -> None:
    assert parse_secret('{"username": "u", "password": "p"}', "d") == Credential("u", "p")
    assert parse_secret("  just-the-password\n", "d") == Credential("d", "just-the-password")
    assert "p4ss" not in repr(Credential("u", "p4ss"))


def test_file_source_stages_promotes_and_rereads(tmp_path: Path) -> None:
    path = tmp_path / "neo4j"
    path.write_text('{"username": "gw", "password": "first-password"}')
    source = FileSecretSource(path, "gw")

    async def go() -> None:
        assert await source.current() == Credential("gw", "first-password")
        assert await source.pending() is None
        version = await source.stage(Credential("gw", "second-password"))
        pending = tmp_path / "neo4j.pending"
        assert stat.S_IMODE(pending.stat().st_mode) == 0o600
        assert await source.pending() == (version, Credential("gw", "second-password"))
        assert await source.current() == Credential("gw", "first-password")  # not yet
        await source.promote(version)
        assert await source.current() == Credential("gw", "second-password")
        assert await source.pending() is None
        await source.stage(Credential("gw", "abandoned"))
        await source.discard("pending")
        assert await source.pending() is None
        path.write_text("changed-by-someone-else")  # a remounted Kubernetes secret
        source.invalidate()
        assert await source.current() == Credential("gw", "changed-by-someone-else")

    asyncio.run(go())


def test_credentials_in_the_configuration_cannot_be_rotated() -> None:
    source = FixedSecretSource("a-long-password", "gw")
    with pytest.raises(NotSupported):
        asyncio.run(source.stage(Credential("gw", "x")))


def test_environment_secrets_are_for_development_only() -> None:
    settings = Neo4jSettings(secret=SecretSettings(source="env", value="a-long-password"))
    with pytest.raises(ValueError, match="development"):
        secret_source(settings, development=False)
    source = secret_source(settings, development=True)
    assert asyncio.run(source.current()) == Credential("cyphergate", "a-long-password")


class SlowSecretsManager:
    """A boto3 client stand-in: the first get_secret_value answers with the value of its
    start, only once ``release`` is set."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.release = threading.Event()
        self.calls = 0

    def get_secret_value(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        value = self.value
        if self.calls == 1:
            self.release.wait(timeout=5)
        return {"SecretString": value}


def test_a_secrets_manager_read_begun_before_invalidate_is_not_cached() -> None:
    client = SlowSecretsManager('{"username": "gw", "password": "old-password"}')
    settings = SecretSettings(source="aws_secrets_manager", secret_id="s", refresh_interval_s=60)
    source = AWSSecretsManagerSource(settings, "gw", client=client)

    async def go() -> None:
        early = asyncio.create_task(source.current())
        await asyncio.sleep(0.05)  # in flight with the old value
        client.value = '{"username": "gw", "password": "new-password"}'
        source.invalidate()  # Neo4j refused: read again
        assert (await source.current()).password == "new-password"
        client.release.set()
        assert (await early).password == "old-password"  # what it read, returned late ...
        assert (await source.current()).password == "new-password"  # ... and never cached
        assert client.calls == 2

    asyncio.run(go())


class UnreachableSecretsManager:
    """A boto3 client stand-in whose every call fails, as when the endpoint is away."""

    def get_secret_value(self, **_: Any) -> dict[str, Any]:
        raise ConnectionRefusedError("secretsmanager.example: connection refused")


def test_a_store_that_cannot_be_read_is_unavailable_and_named(tmp_path: Path) -> None:
    """Not "Neo4j is unavailable": the reason names the store and what failed."""
    settings = SecretSettings(source="aws_secrets_manager", secret_id="s")
    sources: list[tuple[SecretReader, str]] = [
        (FileSecretSource(tmp_path / "missing", "gw"), "secret_store:file:FileNotFoundError"),
        (
            AWSSecretsManagerSource(settings, "gw", client=UnreachableSecretsManager()),
            "secret_store:aws_secrets_manager:ConnectionRefusedError",
        ),
    ]
    for source, reason in sources:
        with pytest.raises(SecretStoreUnavailable) as error:
            asyncio.run(source.current())
        assert error.value.reason == reason
        assert (error.value.status, error.value.code) == (
            503,
            "Neo.TransientError.General.SecretStoreUnavailable",
        )


def test_the_command_line_names_an_unavailable_secret_store(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[neo4j]\nuri = "bolt://127.0.0.1:9"\n'
        f'secret = {{source = "file", path = "{tmp_path / "no-such-secret"}"}}\n'
    )
    rotate = cyphergate("creds", "rotate-root", "--config", str(config), timeout=60)
    assert rotate.returncode == 1, rotate.stderr
    assert "Neo.TransientError.General.SecretStoreUnavailable" in rotate.stderr
    assert "secret_store:file:FileNotFoundError" in rotate.stderr
    assert "Neo4j is unavailable" not in rotate.stderr and "Traceback" not in rotate.stderr


class HungSecretsManager:
    """A boto3 client stand-in for a paused Secrets Manager: calls hang while ``paused`` is set."""

    def __init__(self) -> None:
        self.paused = threading.Event()
        self.calls = 0
        self.password = "first-password"

    def get_secret_value(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.paused.is_set():
            time.sleep(0.5)  # boto3's own (short) read timeout, secret.timeout_s, ends it
            raise TimeoutError("read timeout")
        return {"SecretString": json.dumps({"username": "gw", "password": self.password})}


def test_a_hanging_secret_store_never_stalls_a_login() -> None:
    client = HungSecretsManager()
    settings = SecretSettings(
        source="aws_secrets_manager", secret_id="s", refresh_interval_s=0.1, timeout_s=0.5
    )
    source = AWSSecretsManagerSource(settings, "gw", client=client)

    async def go() -> None:
        assert (await source.current()).password == "first-password"
        assert await source.check_ready() is None
        client.paused.set()
        await asyncio.sleep(0.2)  # the cached value is due for a refresh
        started = time.monotonic()
        logins = await asyncio.gather(*(source.current() for _ in range(50)))
        assert time.monotonic() - started < 0.4, "logins waited on the store (0.5 s each)"
        assert {c.password for c in logins} == {"first-password"}
        await asyncio.sleep(1.0)  # the one background read has timed out
        assert client.calls == 2, "one read at a time, not one per login"
        assert await source.check_ready() == "degraded"
        # A refused login must read the store: it waits, at most timeout_s, and is told why.
        source.invalidate()
        started = time.monotonic()
        with pytest.raises(SecretStoreUnavailable) as error:
            await source.current()
        assert error.value.reason.startswith("secret_store:aws_secrets_manager:")
        assert time.monotonic() - started < 1.5
        with pytest.raises(SecretStoreUnavailable):
            await source.check_ready()
        # The store is back: the next read succeeds, and the gateway is ready again.
        client.paused.clear()
        client.password = "second-password"
        await asyncio.sleep(2.0)  # the threads stuck in the paused calls come back
        assert (await source.current()).password == "second-password"
        assert await source.check_ready() is None

    try:
        asyncio.run(go())
    finally:
        source.close()


class ChangingSecretsManager:
    """A boto3 client stand-in answering with whatever ``value`` holds now."""

    def __init__(self, value: str) -> None:
        self.value = value

    def get_secret_value(self, **_: Any) -> dict[str, Any]:
        return {"SecretString": self.value}


# What a store can hold that is no credential: never a password to log in with.
MALFORMED_SECRETS = [
    "",
    "  \n",
    '{"username": "gw"}',
    '{"username": "gw", "password": null}',
    '{"username": "gw", "password": ""}',
    '{"username": "gw", "password": 12345678}',
    '{"username": "gw", "password": "half-written',
]


def test_a_malformed_secret_is_refused_and_the_last_good_one_serves_on(tmp_path: Path) -> None:
    """A store that answers with something other than a credential (emptied, half-written, a
    null or non-string password) is unavailable, named so without echoing what it holds; the
    driver's auth manager keeps the credential that works, rather than logging in with an
    empty password, "None", or a half-written JSON text, and locking the gateway out."""
    good = '{"username": "gw", "password": "the-good-password"}'
    path = tmp_path / "neo4j"
    client = ChangingSecretsManager(good)
    settings = SecretSettings(source="aws_secrets_manager", secret_id="s", refresh_interval_s=0.001)
    stores: list[tuple[SecretReader, str]] = [
        (FileSecretSource(path, "gw"), "secret_store:file:malformed_secret"),
        (
            AWSSecretsManagerSource(settings, "gw", client=client),
            "secret_store:aws_secrets_manager:malformed_secret",
        ),
    ]

    async def go(source: SecretReader, reason: str) -> None:
        path.write_text(good)
        client.value = good
        auth = RotatingAuth(source, await source.current())
        for bad in MALFORMED_SECRETS:
            path.write_text(bad)
            os.utime(path, ns=(time.time_ns(), time.time_ns()))  # seen as changed
            client.value = bad
            for _ in range(3):  # a background read of a cached value, then its outcome
                await auth.get_auth()
                assert auth.credential.password == "the-good-password", bad
                await asyncio.sleep(0.01)
            source.invalidate()
            with pytest.raises(SecretStoreUnavailable) as error:
                await source.current()
            assert error.value.reason == reason
            assert bad.strip() == "" or bad not in str(error.value)
            await auth.get_auth()
            assert auth.credential.password == "the-good-password", bad

    for source, reason in stores:
        asyncio.run(go(source, reason))
    with pytest.raises(ValueError, match="no password") as error:
        FixedSecretSource('{"username": "gw", "password": null}', "gw")
    assert "null" not in str(error.value)


class _RefusingRotator(Rotator):
    """A rotator whose Neo4j accepts no staged value (the crash came before the ALTER)."""

    async def accepted(self, credential: Credential) -> bool:
        del credential
        return False


def test_processes_settling_one_interrupted_rotation_at_once_all_start() -> None:
    """A replica's workers (or replicas) start together after a crash that left a staged value
    Neo4j never got: each finds it and discards it. Secrets Manager has no lock, so the second
    discard finds the label gone; the rotation is settled all the same, and the process must
    start, not fail on a store that is only ahead of it."""
    settings = SecretSettings(source="aws_secrets_manager", secret_id="gw", region="us-east-1")
    current = '{"username": "gw", "password": "the-working-password"}'

    async def go() -> list[Credential]:
        sources = [
            AWSSecretsManagerSource(settings, "gw", boto3.client("secretsmanager", "us-east-1"))
            for _ in range(3)
        ]
        try:
            await sources[0].stage(Credential("gw", "never-set-in-neo4j"))
            rotators = [
                _RefusingRotator("bolt://127.0.0.1:9", s, RotatingAuth(s, await s.current()))
                for s in sources
            ]
            return await asyncio.gather(*(r.recover() for r in rotators))
        finally:
            for source in sources:
                source.close()

    with mock_aws():
        boto3.client("secretsmanager", "us-east-1").create_secret(Name="gw", SecretString=current)
        recovered = asyncio.run(go())
    assert {c.password for c in recovered} == {"the-working-password"}
