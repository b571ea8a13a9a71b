"""Credential brokers: which Neo4j user a DAG's statements run as, held for a block.

:class:`ServiceAccount` hands every DAG the gateway's own (rotating) credential;
:class:`LeasedUsers` hands each DAG a user of its own from :mod:`proxy.neo4j.leases`, never
dropped or replaced while a block holds it, with a driver of its own from
:mod:`proxy.neo4j.pools`. ``proxy/app/`` chooses one from
``neo4j.credentials``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from proxy.errors import GraphFailed, GraphUnavailable
from proxy.neo4j.errors import UNAUTHORIZED
from proxy.neo4j.leases import Lease, LeaseManager
from proxy.neo4j.logins import Login, LoginRetries
from proxy.neo4j.pools import UserPools
from proxy.neo4j.rotation import RotatingAuth


class ServiceAccount:
    """Every statement runs as the gateway's own user (the secret's "username" may differ from
    ``neo4j.user``), with its refused logins tried again."""

    def __init__(self, auth: RotatingAuth, retries: LoginRetries) -> None:
        self._auth = auth
        self._retries = retries

    @contextlib.asynccontextmanager
    async def hold(self, dag: str) -> AsyncIterator[Login]:
        """The gateway's credential in use, for ``dag`` as for any DAG."""
        del dag
        auth = self._auth
        yield Login(
            user=auth.credential.user, retries=self._retries, credential=lambda: auth.credential
        )


class LeasedUsers:
    """Each DAG's statements run as its leased user, on a driver logged in as that user (so its
    connections are logged in once, not again each time another user had them)."""

    def __init__(self, leases: LeaseManager, retries: LoginRetries, pools: UserPools) -> None:
        self._leases = leases
        self._retries = retries
        self._pools = pools

    def hold(self, dag: str) -> contextlib.AbstractAsyncContextManager[Login]:
        """``dag``'s current lease, held (never dropped or replaced away) until the block ends."""
        return _HeldLease(self._leases, self._retries, self._pools, dag)


class _HeldLease:
    """:meth:`LeasedUsers.hold`'s block. A class, not a generator: an async context manager
    made of a generator costs about 2 µs more, and every statement holds a lease."""

    __slots__ = ("_dag", "_lease", "_leases", "_pools", "_retries")

    def __init__(
        self, leases: LeaseManager, retries: LoginRetries, pools: UserPools, dag: str
    ) -> None:
        self._leases = leases
        self._retries = retries
        self._pools = pools
        self._dag = dag
        self._lease: Lease | None = None

    async def __aenter__(self) -> Login:
        # Creating a lease logs in as the gateway: the same retries as its statements.
        leased = self._lease = await self._retries.attempt(self._acquire)
        return Login(
            user=leased.user,
            driver=self._pools.driver(leased.credential),
            credential=lambda: leased.credential,
        )

    async def _acquire(self) -> Lease:
        return await self._leases.acquire(self._dag)

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: object
    ) -> None:
        leased = self._lease
        if leased is None:
            return
        refused = isinstance(error, GraphFailed) and error.reason == UNAUTHORIZED
        if refused:
            # A refused login ran nothing. Retire the lease at once, so only this request
            # fails (503: try again), not every one until the lease's time is up.
            self._leases.refused(leased)
        await self._leases.release(leased)
        if refused:
            raise GraphUnavailable(reason="lease_refused") from error
