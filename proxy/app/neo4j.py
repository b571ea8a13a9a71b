"""The Neo4j wing of the composition root: the secret source, the driver and the relay's pools,
the credential broker (the gateway's own user, or a leased user per DAG), rotation, and
``creds rotate-root``. Built from ``settings.neo4j`` here and nowhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from proxy.api.state import ReadinessCheck
from proxy.faults import NO_FAULTS, Faults
from proxy.metrics import Metrics
from proxy.neo4j.bolt import Address
from proxy.neo4j.brokers import LeasedUsers, ServiceAccount
from proxy.neo4j.executor import Neo4jExecutor, connect
from proxy.neo4j.leases import LeaseManager
from proxy.neo4j.logins import Login, LoginRetries
from proxy.neo4j.pools import UserPools
from proxy.neo4j.relay import RelayExecutor, UserBoltPools
from proxy.neo4j.rotation import RotatingAuth, Rotator, rotating_every
from proxy.neo4j.secret_sources import (
    AWSSecretsManagerSource,
    FileSecretSource,
    FixedSecretSource,
    SecretSource,
    secrets_manager_client,
)
from proxy.settings import Neo4jSettings, Settings, refuse_placeholder_password


@dataclass(frozen=True, slots=True)
class Neo4jWing:
    """The Neo4j wing, assembled: what plans and runs statements, and who they run as."""

    executor: Neo4jExecutor
    credentials: ServiceAccount | LeasedUsers
    # /readyz's checks of the wing: Neo4j, the secret store, the leases.
    readiness: Mapping[str, ReadinessCheck]
    relay: RelayExecutor


@asynccontextmanager
async def open_neo4j(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    faults: Faults = NO_FAULTS,
    manage: bool = True,
) -> AsyncIterator[Neo4jWing]:
    """The Neo4j wing for ``settings.neo4j``, open for the block.

    Only the serving gateway manages credentials (settles an interrupted rotation, rotates,
    leases users): a command-line tool beside it (``manage=False``) must not race it.
    """
    config = settings.neo4j
    metrics = metrics or Metrics()
    source = secret_source(config, development=settings.profile == "development")
    credential = await source.current()
    # Whichever source it came from (a file, Secrets Manager, the environment).
    refuse_placeholder_password(credential.password)
    auth = RotatingAuth(source, credential)
    rotator = Rotator(config.uri, source, auth, faults=faults)
    if manage:
        await rotator.recover()
    retries = LoginRetries(auth, lock_time_s=config.auth_lock_time_s, metrics=metrics)
    async with AsyncExitStack() as stack:
        if isinstance(source, AWSSecretsManagerSource):
            stack.callback(source.close)
        timeouts = config.model_dump(
            include={"max_connection_lifetime_s", "connection_timeout_s", "acquisition_timeout_s"}
        )
        driver = connect(config.uri, auth, **timeouts)
        stack.push_async_callback(driver.close)
        checks: dict[str, ReadinessCheck] = {"secret_store": source.check_ready}
        credentials: ServiceAccount | LeasedUsers = ServiceAccount(auth, retries)
        relay_pools = UserBoltPools(
            Address.parse(config.uri),
            lifetime_s=config.max_connection_lifetime_s,
            connect_timeout_s=config.connection_timeout_s,
            acquire_timeout_s=config.acquisition_timeout_s,
        )
        stack.push_async_callback(relay_pools.close)
        if manage and config.credentials == "leases":
            pools = UserPools(lambda leased: connect(config.uri, leased.auth(), **timeouts))
            stack.push_async_callback(pools.close)  # after the leases: they close theirs
            leases = LeaseManager(
                driver,
                path=config.leases_path,
                prefix=config.lease_user_prefix,
                ttl_s=config.lease_ttl_s,
                renew_fraction=config.lease_renew_fraction,
                faults=faults,
                metrics=metrics,
                on_dropped=_each(pools.close_user, relay_pools.close_user),
            )
            await leases.open()
            stack.push_async_callback(leases.close)
            credentials = LeasedUsers(leases, retries, pools)
            checks["leases"] = leases.check_ready
        if manage and config.rotation_interval_s > 0:
            await stack.enter_async_context(
                rotating_every(rotator, config.rotation_interval_s, metrics)
            )
        executor = Neo4jExecutor(
            driver,
            own=Login(user=credential.user, retries=retries),
            plan_timeout_s=config.plan_timeout_s,
        )
        checks["neo4j"] = executor.check_ready
        yield Neo4jWing(
            executor=executor,
            credentials=credentials,
            readiness=checks,
            relay=RelayExecutor(relay_pools),
        )


def _each(*closers: Callable[[str], Awaitable[None]]) -> Callable[[str], Awaitable[None]]:
    """One callback that calls every one of ``closers`` in turn."""

    async def close(user: str) -> None:
        for closer in closers:
            await closer(user)

    return close


def secret_source(settings: Neo4jSettings, *, development: bool) -> SecretSource:
    """The secret source the settings describe (``neo4j.secret``, ``password_file`` or
    ``password``)."""
    user = settings.user
    secret = settings.secret
    if secret is None:
        if settings.password_file is not None:
            return FileSecretSource(settings.password_file, user)
        return FixedSecretSource(settings.read_password(), user)
    if secret.source == "file":
        if secret.path is None:
            raise ValueError("neo4j.secret.path is required for a file source")
        return FileSecretSource(secret.path, user)
    if secret.source == "aws_secrets_manager":
        client = secrets_manager_client(secret.region, secret.endpoint_url, secret.timeout_s)
        return AWSSecretsManagerSource(secret, user, client)
    if not development:
        raise ValueError("neo4j.secret.source = 'env' is for the development profile only")
    if secret.value is None:
        raise ValueError("neo4j.secret.value is not set (CYPHERGATE_NEO4J__SECRET__VALUE)")
    return FixedSecretSource(secret.value.get_secret_value(), user)


async def rotate_root(settings: Settings) -> str:
    """Rotate the gateway's own credential now (``cyphergate creds rotate-root``); returns the
    user. Afterwards only the secret store (and the gateways reading it) knows the password."""
    source = secret_source(settings.neo4j, development=False)
    rotator = Rotator(settings.neo4j.uri, source, RotatingAuth(source, await source.current()))
    await rotator.recover()
    return (await rotator.rotate()).user
