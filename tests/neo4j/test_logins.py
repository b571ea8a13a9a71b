"""Retries of a login Neo4j refused, with a fake secret source at the seam.

The same retries against the real Neo4j (a rotation elsewhere, a tripped rate limit) are in
tests/test_rotation.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from proxy.app import open_neo4j
from proxy.errors import GraphFailed, SecretStoreUnavailable
from proxy.metrics import Metrics
from proxy.neo4j.errors import RATE_LIMITED, UNAUTHORIZED
from proxy.neo4j.logins import LoginRetries
from proxy.neo4j.rotation import RotatingAuth
from proxy.neo4j.secret_sources import Credential
from proxy.settings import Neo4jSettings, Settings
from tests.fakes import FakeSource

OLD, NEW = Credential("gw", "old-password"), Credential("gw", "new-password")


def retries_with(source: FakeSource, metrics: Metrics) -> tuple[LoginRetries, RotatingAuth]:
    auth = RotatingAuth(source, OLD)  # what open_neo4j() would set up
    return LoginRetries(auth, lock_time_s=0, metrics=metrics), auth


def refusals(*reasons: str) -> Callable[[], Awaitable[str]]:
    """An attempt refused with ``reasons`` in turn, then answered."""
    left = list(reasons)

    async def attempt() -> str:
        if left:
            raise GraphFailed(reason=left.pop(0))
        return "ran"

    return attempt


def retried(metrics: Metrics, cause: str) -> float | None:
    return metrics.registry.get_sample_value(
        "cyphergate_neo4j_login_retries_total", {"cause": cause}
    )


def test_a_rate_limit_is_waited_out_and_a_stale_password_replaced() -> None:
    """Locked out, then refused with the old password: the store's new value is used."""
    metrics, source = Metrics(), FakeSource(OLD)
    retries, auth = retries_with(source, metrics)
    source.value = NEW  # rotated elsewhere and promoted
    attempt = refusals(RATE_LIMITED, UNAUTHORIZED, RATE_LIMITED)
    assert asyncio.run(retries.attempt(attempt)) == "ran"
    assert auth.credential == NEW
    assert retried(metrics, "AuthenticationRateLimit") == 2
    assert retried(metrics, "Unauthorized") == 1


def test_login_retries_are_bounded() -> None:
    metrics = Metrics()
    retries, _ = retries_with(FakeSource(OLD), metrics)
    with pytest.raises(GraphFailed):  # a third lock-out is not waited for
        asyncio.run(retries.attempt(refusals(RATE_LIMITED, RATE_LIMITED, RATE_LIMITED)))
    retries, _ = retries_with(FakeSource(OLD), metrics)
    with pytest.raises(GraphFailed):  # refused, and the store has nothing else to offer
        asyncio.run(retries.attempt(refusals(UNAUTHORIZED)))
    retries, _ = retries_with(FakeSource(OLD, pending=NEW), metrics)
    with pytest.raises(GraphFailed):  # refused twice: the second is the caller's
        asyncio.run(retries.attempt(refusals(UNAUTHORIZED, UNAUTHORIZED)))
    retries, _ = retries_with(FakeSource(OLD), metrics)
    with pytest.raises(GraphFailed):  # any other failure is not a login's: never retried
        asyncio.run(retries.attempt(refusals("Neo.ClientError.Statement.SyntaxError")))


@pytest.mark.parametrize("secret", ["neo4j", '{"username": "gw", "password": "changeme"}'])
def test_a_placeholder_password_from_a_secret_source_is_refused(
    tmp_path: Path, secret: str
) -> None:
    """The inline password is checked when the settings load; one read from a mounted file
    (or Secrets Manager, or the environment) is checked when the gateway starts."""
    path = tmp_path / "neo4j-password"
    path.write_text(secret)
    settings = Settings(neo4j=Neo4jSettings(password_file=path))

    async def start() -> None:
        async with open_neo4j(settings, metrics=Metrics()):
            pass

    with pytest.raises(ValueError, match="placeholder"):
        asyncio.run(start())


class StoreDown(FakeSource):
    """The store cannot be read when a refused login is being settled."""

    async def pending(self) -> tuple[str, Credential] | None:
        raise SecretStoreUnavailable(reason="secret_store:file:PermissionError")


def test_a_store_down_while_a_refusal_is_settled_is_named_as_such() -> None:
    retries, _ = retries_with(StoreDown(OLD), Metrics())
    with pytest.raises(SecretStoreUnavailable) as error:
        asyncio.run(retries.attempt(refusals(UNAUTHORIZED)))
    assert error.value.reason == "secret_store:file:PermissionError"
