"""The gateway's own Neo4j credential in use: how it is rotated without a failure.

Rotation invariant (the Vault and Secrets Manager pattern, so that a crash at any point leaves
a credential that works and that the store knows):

1. the new password is written to the store (a :class:`SecretSource`) as *pending*, next to
   the current one;
2. Neo4j's password is changed (``ALTER CURRENT USER SET PASSWORD FROM ... TO ...``);
3. the pending value is promoted to current.

After a crash, :meth:`Rotator.recover` finds a pending value and asks Neo4j which of the two
works (one login attempt each at most, so Neo4j's authentication rate limit is never reached),
then promotes or discards the pending one. The driver takes the credential from
:class:`RotatingAuth`, an auth manager that always returns the newest value, so pooled
connections re-authenticate instead of failing. No log line names a secret value. Neo4j's
exceptions become the gateway's here, and the store's are already
:class:`~proxy.errors.SecretStoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

import neo4j
from neo4j import AsyncGraphDatabase
from neo4j import exceptions as neo4j_errors
from neo4j.auth_management import AsyncAuthManager

from proxy.errors import CypherGateError
from proxy.faults import NO_FAULTS, Faults
from proxy.metrics import Metrics
from proxy.neo4j.errors import UNAUTHORIZED, translated_errors
from proxy.neo4j.secret_sources import Credential, SecretReader, SecretSource

log = logging.getLogger(__name__)

PASSWORD_BYTES = 32


class RotatingAuth(AsyncAuthManager):
    """The driver's auth manager: always the newest credential of one Neo4j user.

    Every new connection asks the source (which caches: Secrets Manager for
    ``refresh_interval_s``, a file until it changes), so a rotation made elsewhere is picked
    up without a restart. When Neo4j refuses the credential, the source is read again at once,
    and a staged (pending) value is tried too: a rotation function may have set it in Neo4j
    before promoting it. The refusal still reaches the caller, which may retry once, since
    nothing ran.
    """

    def __init__(self, source: SecretReader, credential: Credential) -> None:
        self._source = source
        self._credential = credential
        # The store's value as last read: only a change *there* overrides a credential set by
        # use() (during our own rotation the store still says the old one until promotion).
        self._seen = credential
        self._settling = asyncio.Lock()  # one refusal is settled at a time
        self._refreshes = 0  # moved by every refresh(): older store reads are stale

    @property
    def credential(self) -> Credential:
        return self._credential

    def use(self, credential: Credential) -> None:
        """Switch to ``credential`` (same user) for every connection from now on."""
        if credential.user != self._credential.user:
            raise ValueError("a rotation must keep the user")
        self._credential = credential

    async def refresh(self, refused: Credential | None = None) -> bool:
        """Re-read the source (and its pending value) after Neo4j refused ``refused`` (by default
        the credential in use). True if something other than ``refused`` is now in use, so one
        more try makes sense.

        One refusal is often handled twice (by the driver, then by the gateway's retry), and
        several requests are refused at once: a refusal of a credential already replaced must
        not switch back to it, or to the store's ``AWSCURRENT`` that an outside rotation is
        about to replace.
        """
        refused = refused or self._credential
        async with self._settling:
            if self._credential != refused:
                return True
            self._source.invalidate()
            # The staged value first: if a promotion lands between the two reads, the new value
            # is then seen as staged or as current, never missed.
            staged = await self._source.pending()
            current = await self._source.current()
            self._seen = current
            self._refreshes += 1
            for fresh in (current, *(() if staged is None else (staged[1],))):
                if fresh != refused and fresh.user == refused.user:
                    log.info("the Neo4j credential of %s changed elsewhere; using it", fresh.user)
                    self._credential = fresh
                    return True
            return False

    def reread(self) -> None:
        """Ask the store again at the next login (Neo4j is refusing logins for a while): a
        change there is then followed, without treating the credential in use as refused."""
        self._source.invalidate()

    async def get_auth(self) -> neo4j.Auth:
        if self._settling.locked():
            # A refusal is being settled: wait for its outcome rather than log in with what
            # Neo4j just refused. Refused logins count towards Neo4j's rate limit.
            async with self._settling:
                pass
        refreshes = self._refreshes
        try:
            fresh = await self._source.current()
        except Exception:  # the store is briefly away: keep using what works
            log.warning("could not read the Neo4j credential's store; keeping the last one")
        else:
            # A refresh that finished meanwhile read the store later than this read did.
            overtaken = refreshes != self._refreshes
            if not overtaken and fresh != self._seen and fresh.user == self._credential.user:
                self._seen = fresh
                if fresh != self._credential:
                    log.info("the Neo4j credential of %s changed in its store", fresh.user)
                    self._credential = fresh
        return self._credential.auth()

    async def handle_security_exception(
        self, auth: tuple[str, str] | neo4j.Auth | None, error: neo4j_errors.Neo4jError
    ) -> bool:
        if error.code == UNAUTHORIZED:
            with contextlib.suppress(Exception):
                return await self.refresh(_credential_of(auth))
        return False


def _credential_of(auth: tuple[str, str] | neo4j.Auth | None) -> Credential | None:
    """The credential a refused connection used, as the driver reports it."""
    if isinstance(auth, neo4j.Auth) and auth.principal and auth.credentials:
        return Credential(auth.principal, auth.credentials)
    if isinstance(auth, tuple):
        return Credential(*auth)
    return None


class Rotator:
    """Rotates the password of the gateway's own Neo4j user (see the module docstring)."""

    def __init__(
        self,
        uri: str,
        source: SecretSource,
        auth: RotatingAuth,
        *,
        faults: Faults = NO_FAULTS,
    ) -> None:
        self._uri = uri
        self._source = source
        self._auth = auth
        self._lock = asyncio.Lock()
        self._faults = faults

    async def rotate(self) -> Credential:
        """Settle any earlier rotation, then stage, change in Neo4j, promote; returns the new
        credential."""
        async with self._lock, self._source.exclusive():
            # A promotion that failed earlier leaves the working password only as pending:
            # settle it first, and rotate from what Neo4j accepts now.
            old = await self._settle()
            new = Credential(old.user, secrets.token_urlsafe(PASSWORD_BYTES))
            version = await self._source.stage(new)
            await self._alter(old, new)
            self._faults.reached("password_altered")
            self._auth.use(new)  # Neo4j now accepts only the new one
            await self._source.promote(version)
            log.info("rotated the Neo4j password of %s", new.user)
            return new

    async def recover(self) -> Credential:
        """After a crash: settle a staged rotation, and return the credential that works."""
        async with self._lock, self._source.exclusive():
            return await self._settle()

    async def _settle(self) -> Credential:
        staged = await self._source.pending()
        if staged is not None:
            version, candidate = staged
            if await self.accepted(candidate):
                await self._source.promote(version)
                log.warning("completed a rotation interrupted after Neo4j changed it")
            else:
                await self._source.discard(version)
                log.warning("discarded a rotation interrupted before Neo4j changed it")
        current = await self._source.current()
        self._auth.use(current)
        return current

    async def accepted(self, credential: Credential) -> bool:
        """Whether Neo4j accepts ``credential`` now (one login attempt)."""
        async with (
            translated_errors(),
            AsyncGraphDatabase.driver(self._uri, auth=credential.auth()) as driver,
        ):
            # False (not an exception) when Neo4j refuses the credential.
            return await driver.verify_authentication()

    async def _alter(self, old: Credential, new: Credential) -> None:
        async with (
            translated_errors(),
            AsyncGraphDatabase.driver(self._uri, auth=old.auth()) as driver,
            driver.session(database="system") as session,
        ):
            result = await session.run(
                "ALTER CURRENT USER SET PASSWORD FROM $old TO $new",
                old=old.password,
                new=new.password,
            )
            await result.consume()


@contextlib.asynccontextmanager
async def rotating_every(
    rotator: Rotator, interval_s: float, metrics: Metrics
) -> AsyncIterator[None]:
    """Rotate the gateway's password every ``interval_s`` while the block runs; a failed
    rotation is counted and logged, and tried again next time (requests are unaffected)."""

    async def rotate_periodically() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await rotator.rotate()
            except CypherGateError as error:
                metrics.rotations.labels("failed").inc()
                log.error("password rotation failed: %s", error.reason)
            except Exception as exc:  # a malformed secret, say: keep the task (and say why)
                metrics.rotations.labels("failed").inc()
                log.error("password rotation failed: %s", type(exc).__name__)
            else:
                metrics.rotations.labels("ok").inc()

    task = asyncio.create_task(rotate_periodically())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
