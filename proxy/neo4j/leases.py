"""Per-DAG leased Neo4j users: the dynamic-credential model of Vault's database engine, on Neo4j.

On a DAG's first request the gateway creates a Neo4j user for it (``<prefix><dag>_<random>``,
a random password, ``CHANGE NOT REQUIRED``) and runs the DAG's statements as that user, on a
driver of its own (:mod:`proxy.neo4j.pools`), so Neo4j's own logs and ``SHOW TRANSACTIONS`` name
the DAG. A lease lives ``ttl_s``; one still in use is replaced once ``renew_fraction`` of it has
passed, and a replaced or expired lease is dropped (and its driver closed, through
``on_dropped``) as soon as no request holds it.

Crash safety (write-ahead, like the audit log): a lease is recorded in ``leases_path`` *before*
its user is created and deleted from it only *after* the user is dropped. Passwords are never
written anywhere, so after a restart no recorded lease can be used: :meth:`LeaseManager.open`
drops every recorded user, and any user with this replica's prefix that the record does not
know (an orphan). Each replica needs its own prefix, and no prefix may begin another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import neo4j
from neo4j import AsyncDriver

from proxy.errors import LeasesTaken
from proxy.faults import NO_FAULTS, Faults
from proxy.locks import ExclusiveFile, FileTaken
from proxy.metrics import Metrics
from proxy.neo4j.errors import translated_errors
from proxy.neo4j.rotation import PASSWORD_BYTES
from proxy.neo4j.secret_sources import Credential

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    user TEXT PRIMARY KEY,
    dag TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
)
"""


@dataclass(eq=False)
class Lease:
    """One leased user; ``holders`` counts the requests running as it."""

    credential: Credential
    dag: str
    created: float
    expires: float
    holders: int = 0
    used: bool = False
    retired: bool = False
    dropped: bool = False

    @property
    def user(self) -> str:
        return self.credential.user


class LeaseManager:
    """Creates, renews and drops the per-DAG users of one gateway replica."""

    def __init__(
        self,
        driver: AsyncDriver,
        *,
        path: Path,
        prefix: str,
        ttl_s: float,
        renew_fraction: float,
        clock: Callable[[], float] = time.time,
        faults: Faults = NO_FAULTS,
        metrics: Metrics | None = None,
        on_dropped: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._driver = driver
        # Told each user dropped, once no request runs as it (to close its connections).
        self._on_dropped = on_dropped
        self._metrics = metrics or Metrics()
        self._path = path
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._renew_after_s = ttl_s * renew_fraction
        self._clock = clock
        self._faults = faults
        self._current: dict[str, Lease] = {}
        self._retired: set[Lease] = set()
        # DAGs whose lease Neo4j refused (its user dropped, a restore from an older backup),
        # until a new one is leased.
        self._refused: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._db: sqlite3.Connection | None = None
        # One process per record: another sweeping it would drop users this one still uses.
        self._ownership = ExclusiveFile(path)
        self._maintainer: asyncio.Task[None] | None = None
        self._metrics.leases_active.set_function(self._held)

    async def open(self) -> None:
        """Open the record, drop what a previous run left, and start maintaining leases.

        Raises :class:`LeasesTaken` if another process keeps this record."""
        try:
            self._ownership.acquire()
        except FileTaken as taken:
            raise LeasesTaken(str(self._path), taken.holder) from taken
        try:
            await self._sweep()
        except BaseException:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._ownership.release()
            raise
        self._maintainer = asyncio.create_task(self._maintain())

    async def _sweep(self) -> None:
        """Drop every user a previous run of this record and prefix left behind."""
        self._db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        recorded = [row[0] for row in self._db.execute("SELECT user FROM leases")]
        existing = await self._users()
        orphans = {u for u in existing if self._is_ours(u)} | set(recorded)
        for user in sorted(orphans):
            await self._drop(user)
        if orphans:
            log.warning("dropped %d leased users left by an earlier run", len(orphans))

    async def close(self) -> None:
        """Stop maintaining and drop every lease (waiting for none: requests have ended)."""
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        self._current.clear()
        self._retired.clear()
        if self._db is not None:
            # Every lease is recorded until its user is dropped, so the record names them all
            # (current, retired, and any whose creation failed half-way).
            for (user,) in self._db.execute("SELECT user FROM leases").fetchall():
                await self._drop(user)
            self._db.close()
        self._ownership.release()

    @contextlib.asynccontextmanager
    async def hold(self, dag: str) -> AsyncIterator[Lease]:
        """The DAG's current lease, held (never dropped) until the block ends."""
        lease = await self.acquire(dag)
        try:
            yield lease
        finally:
            await self.release(lease)

    async def acquire(self, dag: str) -> Lease:
        """The DAG's current lease, held (never dropped) until :meth:`release`."""
        lease = await self._lease_for(dag)
        lease.holders += 1
        lease.used = True
        return lease

    async def release(self, lease: Lease) -> None:
        """No longer hold ``lease`` (an :meth:`acquire`'s); a retired lease nobody holds now is
        dropped."""
        lease.holders -= 1
        if lease.retired and lease.holders == 0:
            try:
                await self._revoke(lease)
            except Exception:  # the maintainer tries again; the request is already done
                log.exception("could not drop leased user %s yet", lease.user)

    def refused(self, lease: Lease) -> None:
        """Neo4j refused ``lease``'s login: the user is gone or its password differs. Retire it
        now (the next request of its DAG leases a new user), not when its time is up."""
        if self._current.get(lease.dag) is lease:
            del self._current[lease.dag]
            self._refused.add(lease.dag)
            self._retire(lease)
            self._metrics.leases_refused.inc()
            log.warning("Neo4j refused leased user %s of DAG %s; retired", lease.user, lease.dag)

    async def check_ready(self) -> str | None:
        """``degraded`` while a DAG whose lease Neo4j refused has no new one yet."""
        return "degraded" if self._refused else None

    def _held(self) -> int:
        """Leased users that exist now (current, or retired and not yet dropped)."""
        return len(self._current) + sum(not lease.dropped for lease in self._retired)

    async def _lease_for(self, dag: str) -> Lease:
        lease = self._current.get(dag)
        if lease is not None and not self._due(lease, self._clock()):
            return lease
        return await self._renew(dag, lease)

    def _due(self, lease: Lease, now: float) -> bool:
        """Time to replace ``lease`` (if it is still used)."""
        return now >= lease.created + self._renew_after_s

    async def _renew(self, dag: str, seen: Lease | None) -> Lease:
        """Replace ``seen`` as the DAG's lease, unless another task already has."""
        async with self._locks.setdefault(dag, asyncio.Lock()):
            current = self._current.get(dag)
            if current is not None and current is not seen:
                return current
            fresh = await self._create(dag)
            self._current[dag] = fresh
            self._refused.discard(dag)
            if seen is not None:
                self._retire(seen)
            return fresh

    async def _create(self, dag: str) -> Lease:
        now = self._clock()
        credential = Credential(self._user_name(dag), secrets.token_urlsafe(PASSWORD_BYTES))
        expires = now + self._ttl_s
        await self._record(
            "INSERT INTO leases VALUES (?, ?, ?, ?)", credential.user, dag, now, expires
        )
        try:
            await self._admin(
                "CREATE USER $user SET PLAINTEXT PASSWORD $password CHANGE NOT REQUIRED",
                user=credential.user,
                password=credential.password,
            )
        except BaseException:
            # It may exist even so (a lost reply, a cancelled task): drop it now, or leave it
            # recorded for the next start-up's sweep if Neo4j is away.
            with contextlib.suppress(Exception):
                await self._drop(credential.user)
            raise
        self._faults.reached("lease_user_created")
        self._metrics.leases_created.inc()
        log.info("leased Neo4j user %s to DAG %s", credential.user, dag)
        return Lease(credential=credential, dag=dag, created=now, expires=expires)

    def _retire(self, lease: Lease) -> None:
        # Dropped by its last holder, or by the maintainer if none holds it: never mid-request.
        lease.retired = True
        self._retired.add(lease)

    async def _revoke(self, lease: Lease) -> None:
        if lease.dropped:
            return
        # Claimed before the await: its last holder and the maintainer may both get here.
        lease.dropped = True
        try:
            await self._drop(lease.user)
        except BaseException:
            lease.dropped = False  # still retired: the maintainer tries again
            raise
        self._retired.discard(lease)

    async def _drop(self, user: str) -> None:
        await self._admin("DROP USER $user IF EXISTS", user=user)
        self._metrics.leases_dropped.inc()
        if self._on_dropped is not None:
            await self._on_dropped(user)
        await self._record("DELETE FROM leases WHERE user = ?", user)

    async def _maintain(self) -> None:
        interval = max(0.2, min(5.0, self._ttl_s / 10))
        while True:
            await asyncio.sleep(interval)
            try:
                await self._maintain_once()
            except Exception:  # Neo4j briefly away: try again next round
                log.exception("lease maintenance failed")

    async def _maintain_once(self) -> None:
        """Renew, retire and drop what is due. A lease that fails (Neo4j refuses one DAG's new
        user, say) is logged and left for the next round: it keeps no other lease past its time."""
        now = self._clock()
        for dag, lease in list(self._current.items()):
            if self._current.get(dag) is not lease:
                continue  # replaced or retired by a request while this round waited
            if self._due(lease, now) and lease.used:
                try:
                    await self._renew(dag, lease)
                except Exception:
                    log.exception("renewing the lease of DAG %s failed", dag)
                    if now < lease.expires:
                        continue
            if now >= lease.expires and self._current.get(dag) is lease:
                del self._current[dag]
                self._retire(lease)
        for lease in list(self._retired):
            if lease.holders == 0:
                try:
                    await self._revoke(lease)
                except Exception:
                    log.exception("dropping the leased user %s failed", lease.user)

    async def _users(self) -> list[str]:
        async with translated_errors():
            records, _, _ = await self._driver.execute_query(
                "SHOW USERS YIELD user", database_="system", routing_=neo4j.RoutingControl.READ
            )
        return [str(r["user"]) for r in records]

    async def _admin(self, statement: str, **parameters: str) -> None:
        async with translated_errors():
            await self._driver.execute_query(statement, parameters, database_="system")

    async def _record(self, sql: str, *values: object) -> None:
        db = self._db
        if db is None:
            raise RuntimeError("LeaseManager.open() was not called")
        await asyncio.to_thread(db.execute, sql, values)

    def _is_ours(self, user: str) -> bool:
        """A user named the way this replica names its leases (see ``_user_name``)."""
        pattern = re.escape(self._prefix) + r"[A-Za-z0-9_]*_[0-9a-f]{10}"
        return re.fullmatch(pattern, user) is not None

    def _user_name(self, dag: str) -> str:
        # Neo4j user names: letters, digits and underscores here; a digest keeps distinct DAG
        # ids distinct after the cleaning.
        clean = re.sub(r"[^A-Za-z0-9_]", "_", dag)[:40]
        digest = hashlib.sha256(dag.encode()).hexdigest()[:4]
        return f"{self._prefix}{clean}_{digest}{secrets.token_hex(3)}"
