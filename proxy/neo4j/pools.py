"""One connection pool per leased user, so that a pooled connection never changes user.

The driver's pool hands a session whichever idle connection comes first; with session-level
auth, a connection last used by another user is logged off and on again (Bolt ``LOGOFF`` and
``LOGON``), and Neo4j checks the password again each time: a password hash per statement once
several users share one pool (the gateway's own, for ``EXPLAIN`` and lease administration, and
one per DAG). A driver per user logs each connection in once, when it opens.

The number of pools is bounded by the leases that exist (one per DAG in use, plus replaced
ones not yet dropped); a lease's pool is closed when its user is dropped
(:meth:`UserPools.close_user`, which :class:`~proxy.neo4j.leases.LeaseManager` calls).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from neo4j import AsyncDriver

from proxy.neo4j.secret_sources import Credential

log = logging.getLogger(__name__)

# Given a credential, a driver that logs every connection in with it.
Connector = Callable[[Credential], AsyncDriver]


class UserPools:
    """Drivers by user, each logged in with its user's credential, opened on first use."""

    def __init__(self, connect: Connector) -> None:
        self._connect = connect
        self._drivers: dict[str, AsyncDriver] = {}

    @property
    def users(self) -> set[str]:
        """The users whose drivers are open."""
        return set(self._drivers)

    def driver(self, credential: Credential) -> AsyncDriver:
        """The driver of ``credential``'s user. A leased user's password never changes, so the
        user names the driver."""
        driver = self._drivers.get(credential.user)
        if driver is None:
            driver = self._drivers[credential.user] = self._connect(credential)
        return driver

    async def close_user(self, user: str) -> None:
        """Close ``user``'s driver (no statement runs as it any more: its lease is dropped)."""
        driver = self._drivers.pop(user, None)
        if driver is not None:
            await _closed(driver)

    async def close(self) -> None:
        """Close every driver."""
        for user in list(self._drivers):
            await self.close_user(user)


async def _closed(driver: AsyncDriver) -> None:
    """Close ``driver``; failing to (Neo4j away) leaves nothing to undo."""
    try:
        await driver.close()
    except Exception:
        log.exception("could not close a leased user's driver")
