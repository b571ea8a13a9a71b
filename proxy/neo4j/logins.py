"""A credential as the executor uses it, and the retries of a login Neo4j refused.

A :class:`Login` names the Neo4j user a statement runs as (the audit record shows it; never its
secret), says how the driver logs in as it (a driver of its own, session-level auth, or the
executor's driver and its auth manager for the gateway's rotating credential), and how a refused
login is tried again. A refused login ran nothing, so trying it again is safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import neo4j
from neo4j import AsyncDriver

from proxy.errors import GraphFailed
from proxy.metrics import Metrics
from proxy.neo4j.errors import RATE_LIMITED, UNAUTHORIZED
from proxy.neo4j.rotation import RotatingAuth
from proxy.neo4j.secret_sources import Credential

log = logging.getLogger(__name__)
_T = TypeVar("_T")
MAX_RATE_LIMIT_WAITS = 2


class LoginRetries:
    """Tries an attempt again when Neo4j refused the gateway's own login.

    - ``Unauthorized`` (once): the password was rotated elsewhere; again with the store's
      newest value (see :meth:`RotatingAuth.refresh`).
    - ``AuthenticationRateLimit`` (at most twice): too many refused logins (several connections
      opened at once with the old password, say), so Neo4j refuses every login of the user for
      its ``dbms.security.auth_lock_time``; again after ``lock_time_s``, with the store re-read,
      since another wrong password would lock the user once more.
    """

    def __init__(self, auth: RotatingAuth, *, lock_time_s: float, metrics: Metrics) -> None:
        self._auth = auth
        self._lock_time_s = lock_time_s
        self._metrics = metrics

    async def attempt(self, start: Callable[[], Awaitable[_T]]) -> _T:
        """``start()``, tried again as the class docstring says."""
        refreshed, waits = False, 0
        while True:
            in_use = self._auth.credential
            try:
                return await start()
            except GraphFailed as error:
                if error.reason == UNAUTHORIZED and not refreshed:
                    refreshed = True
                    if not await self._auth.refresh(refused=in_use):
                        raise
                elif error.reason == RATE_LIMITED and waits < MAX_RATE_LIMIT_WAITS:
                    waits += 1
                    log.warning(
                        "Neo4j refuses logins for a while (AuthenticationRateLimit); "
                        "trying again in %.1f s",
                        self._lock_time_s,
                    )
                    self._auth.reread()
                    await asyncio.sleep(self._lock_time_s)
                else:
                    raise
                self._metrics.login_retries.labels(error.reason.rsplit(".", 1)[-1]).inc()


@dataclass(frozen=True, slots=True)
class Login:
    """A Neo4j user to run as, valid while its broker holds it."""

    user: str
    # Session-level auth; None: the driver's own auth manager.
    auth: neo4j.Auth | None = field(default=None, repr=False)
    # A driver whose every connection is logged in as this user; None: the executor's (which
    # logs in with the gateway's credential).
    driver: AsyncDriver | None = field(default=None, repr=False)
    # How a refused login is tried again; None: it is not.
    retries: LoginRetries | None = None
    # The user's current credential, for connections of the gateway's own (proxy.neo4j.bolt);
    # asked at each attempt, so that a retry after a refused login uses the refreshed one.
    credential: Callable[[], Credential] | None = field(default=None, repr=False)

    async def attempt(self, start: Callable[[], Awaitable[_T]]) -> _T:
        """``start()`` (which logs in as this user), with this login's retries."""
        if self.retries is None:
            return await start()
        return await self.retries.attempt(start)
