"""The gateway's own Neo4j credential: where it is kept, and how it is rotated without a failure.

Secret sources (one :class:`SecretSource` protocol): a mounted file, AWS Secrets Manager
(``AWSCURRENT``/``AWSPENDING`` stages, through boto3), or an environment variable (development
profile only). A secret is JSON ``{"username": ..., "password": ...}``; a file may hold the
bare password instead.

Rotation invariant (the Vault and Secrets Manager pattern, so that a crash at any point leaves
a credential that works and that the store knows):

1. the new password is written to the store as *pending*, next to the current one;
2. Neo4j's password is changed (``ALTER CURRENT USER SET PASSWORD FROM ... TO ...``);
3. the pending value is promoted to current.

After a crash, :meth:`Rotator.recover` finds a pending value and asks Neo4j which of the two
works (one login attempt each at most, so Neo4j's authentication rate limit is never reached),
then promotes or discards the pending one. The driver takes the credential from
:class:`RotatingAuth`, an auth manager that always returns the newest value, so pooled
connections re-authenticate instead of failing. Secret values never leave this module except to
the driver and the store: ``repr`` hides them and no log line names them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import neo4j
from neo4j import AsyncGraphDatabase
from neo4j import exceptions as neo4j_errors
from neo4j.auth_management import AsyncAuthManager

from proxy.errors import GraphFailed, GraphUnavailable, NotSupported
from proxy.settings import Neo4jSettings, SecretSettings

log = logging.getLogger(__name__)

PASSWORD_BYTES = 32


@dataclass(frozen=True, slots=True)
class Credential:
    """A Neo4j user and password; the password never appears in ``repr``."""

    user: str
    password: str = field(repr=False)

    def auth(self) -> neo4j.Auth:
        return neo4j.basic_auth(self.user, self.password)


class SecretSource(Protocol):
    """Where a credential is kept.

    Contract: ``current`` returns the credential in use (``invalidate`` makes the next call
    read the store itself); ``stage`` stores a new one beside it (pending) and returns its
    version; ``promote`` makes a pending version current and ``discard`` forgets it;
    ``pending`` returns the staged version, if any. A source that cannot be written raises
    :class:`NotSupported` from ``stage``.
    """

    def invalidate(self) -> None: ...

    def exclusive(self) -> AbstractAsyncContextManager[None]:
        """Held across a whole rotation, so two processes never rotate one secret at once."""
        ...

    async def current(self) -> Credential: ...

    async def pending(self) -> tuple[str, Credential] | None: ...

    async def stage(self, credential: Credential) -> str: ...

    async def promote(self, version: str) -> None: ...

    async def discard(self, version: str) -> None: ...


def parse_secret(text: str, default_user: str) -> Credential:
    """A credential from JSON ``{"username", "password"}``, or a bare password."""
    text = text.strip()
    if text.startswith("{"):
        document = json.loads(text)
        return Credential(str(document.get("username") or default_user), str(document["password"]))
    return Credential(default_user, text)


def secret_text(credential: Credential) -> str:
    """The stored form of a credential."""
    return json.dumps({"username": credential.user, "password": credential.password})


class FileSecretSource:
    """A mounted file (a Kubernetes secret), re-read whenever it changes.

    Rotation needs the file's folder to be writable: the pending value is ``<file>.pending``,
    promoted by an atomic rename. A read-only mount still works for reading.
    """

    def __init__(self, path: Path, default_user: str) -> None:
        self._path = path
        self._pending = path.with_name(path.name + ".pending")
        self._default_user = default_user
        self._cached: tuple[int, Credential] | None = None

    def invalidate(self) -> None:
        self._cached = None

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """An advisory lock on ``<file>.lock``, shared by every process using this file."""
        lock = self._path.with_name(self._path.name + ".lock")
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock

    async def current(self) -> Credential:
        stamp = self._path.stat().st_mtime_ns
        if self._cached is None or self._cached[0] != stamp:
            text = self._path.read_text(encoding="utf-8")
            self._cached = (stamp, parse_secret(text, self._default_user))
        return self._cached[1]

    async def pending(self) -> tuple[str, Credential] | None:
        if not self._pending.exists():
            return None
        text = self._pending.read_text(encoding="utf-8")
        return "pending", parse_secret(text, self._default_user)

    async def stage(self, credential: Credential) -> str:
        _write_private(self._pending, secret_text(credential))
        return "pending"

    async def promote(self, version: str) -> None:
        del version  # a file keeps one pending value
        os.replace(self._pending, self._path)
        _fsync_dir(self._path.parent)
        self._cached = None

    async def discard(self, version: str) -> None:
        del version
        self._pending.unlink(missing_ok=True)


class AWSSecretsManagerSource:
    """A secret in AWS Secrets Manager, following its rotation stages.

    ``AWSCURRENT`` is read (cached for ``refresh_interval_s``, and re-read at once after
    :meth:`invalidate`, which the gateway calls when Neo4j refuses the credential);
    ``stage`` puts a version labelled ``AWSPENDING``; ``promote`` moves ``AWSCURRENT`` to it
    (Secrets Manager keeps the old one as ``AWSPREVIOUS``). boto3 is synchronous: every call runs
    in a worker thread.
    """

    def __init__(self, settings: SecretSettings, default_user: str, client: Any = None) -> None:
        if not settings.secret_id:
            raise ValueError("neo4j.secret.secret_id is required for aws_secrets_manager")
        self._settings = settings
        self._secret_id = settings.secret_id
        self._default_user = default_user
        self._client = client or _secrets_manager_client(settings)
        self._cached: tuple[float, Credential] | None = None

    def invalidate(self) -> None:
        """Forget the cached value: the next read asks Secrets Manager."""
        self._cached = None

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        # Secrets Manager has no lock. Two rotations at once stay consistent: a promotion moves
        # AWSCURRENT to its own version even if another process removed that version's
        # AWSPENDING label, and the loser's ALTER ... FROM fails before it stages anything new.
        yield

    async def current(self) -> Credential:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self._settings.refresh_interval_s:
            answer = await self._call("get_secret_value", VersionStage="AWSCURRENT")
            self._cached = (now, parse_secret(answer["SecretString"], self._default_user))
        return self._cached[1]

    async def pending(self) -> tuple[str, Credential] | None:
        versions = await self._call("list_secret_version_ids", IncludeDeprecated=False)
        for version in versions.get("Versions", []):
            stages = version.get("VersionStages", [])
            if "AWSPENDING" in stages and "AWSCURRENT" not in stages:
                answer = await self._call("get_secret_value", VersionId=version["VersionId"])
                credential = parse_secret(answer["SecretString"], self._default_user)
                return str(version["VersionId"]), credential
        return None

    async def stage(self, credential: Credential) -> str:
        version = str(uuid.uuid4())
        await self._call(
            "put_secret_value",
            ClientRequestToken=version,
            SecretString=secret_text(credential),
            VersionStages=["AWSPENDING"],
        )
        return version

    async def promote(self, version: str) -> None:
        current = await self._current_version()
        await self._call(
            "update_secret_version_stage",
            VersionStage="AWSCURRENT",
            MoveToVersionId=version,
            RemoveFromVersionId=current,
        )
        await self._call(
            "update_secret_version_stage",
            VersionStage="AWSPENDING",
            RemoveFromVersionId=version,
        )
        self.invalidate()

    async def discard(self, version: str) -> None:
        await self._call(
            "update_secret_version_stage", VersionStage="AWSPENDING", RemoveFromVersionId=version
        )

    async def _current_version(self) -> str:
        versions = await self._call("list_secret_version_ids", IncludeDeprecated=False)
        for version in versions.get("Versions", []):
            if "AWSCURRENT" in version.get("VersionStages", []):
                return str(version["VersionId"])
        raise GraphFailed(reason="secret_without_current_version")

    async def _call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        method = getattr(self._client, operation)
        try:
            answer: dict[str, Any] = await asyncio.to_thread(
                method, SecretId=self._secret_id, **arguments
            )
        except Exception as exc:  # botocore's errors: the store is unavailable
            raise GraphUnavailable(reason=f"secret_store:{type(exc).__name__}") from exc
        return answer


class FixedSecretSource:
    """A credential given in the configuration (``neo4j.password``, or an environment variable
    in the development profile): it cannot be rotated."""

    def __init__(self, value: str, default_user: str) -> None:
        self._credential = parse_secret(value, default_user)

    def invalidate(self) -> None:
        return None

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        yield  # nothing to rotate

    async def current(self) -> Credential:
        return self._credential

    async def pending(self) -> tuple[str, Credential] | None:
        return None

    async def stage(self, credential: Credential) -> str:
        del credential
        raise NotSupported(
            "A credential given in the configuration cannot be rotated; use a file or AWS "
            "Secrets Manager.",
            reason="fixed_secret",
        )

    async def promote(self, version: str) -> None:
        del version

    async def discard(self, version: str) -> None:
        del version


class RotatingAuth(AsyncAuthManager):
    """The driver's auth manager: always the newest credential of one Neo4j user.

    Every new connection asks the source (which caches: Secrets Manager for
    ``refresh_interval_s``, a file until it changes), so a rotation made elsewhere is picked
    up without a restart. When Neo4j refuses the credential, the source is read again at once,
    and a staged (pending) value is tried too: a rotation function may have set it in Neo4j
    before promoting it. The refusal still reaches the caller, which may retry once, since
    nothing ran.
    """

    def __init__(self, source: SecretSource, credential: Credential) -> None:
        self._source = source
        self._credential = credential
        # The store's value as last read: only a change *there* overrides a credential set by
        # use() (during our own rotation the store still says the old one until promotion).
        self._seen = credential
        self._settling = asyncio.Lock()  # one refusal is settled at a time

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
            for fresh in (current, *(() if staged is None else (staged[1],))):
                if fresh != refused and fresh.user == refused.user:
                    log.info("the Neo4j credential of %s changed elsewhere; using it", fresh.user)
                    self._credential = fresh
                    return True
            return False

    async def get_auth(self) -> neo4j.Auth:
        if self._settling.locked():
            # A refusal is being settled: wait for its outcome rather than log in with what
            # Neo4j just refused. Refused logins count towards Neo4j's rate limit.
            async with self._settling:
                pass
        try:
            fresh = await self._source.current()
        except Exception:  # the store is briefly away: keep using what works
            log.warning("could not read the Neo4j credential's store; keeping the last one")
        else:
            if fresh != self._seen and fresh.user == self._credential.user:
                self._seen = fresh
                if fresh != self._credential:
                    log.info("the Neo4j credential of %s changed in its store", fresh.user)
                    self._credential = fresh
        return self._credential.auth()

    async def handle_security_exception(
        self, auth: tuple[str, str] | neo4j.Auth | None, error: neo4j_errors.Neo4jError
    ) -> bool:
        if error.code == "Neo.ClientError.Security.Unauthorized":
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
        crash_at: str | None = None,
    ) -> None:
        self._uri = uri
        self._source = source
        self._auth = auth
        self._lock = asyncio.Lock()
        self._crash_at = crash_at

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
            crash_point(self._crash_at, "password_altered")
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
        async with AsyncGraphDatabase.driver(self._uri, auth=credential.auth()) as driver:
            # False (not an exception) when Neo4j refuses the credential.
            return await driver.verify_authentication()

    async def _alter(self, old: Credential, new: Credential) -> None:
        async with (
            AsyncGraphDatabase.driver(self._uri, auth=old.auth()) as driver,
            driver.session(database="system") as session,
        ):
            result = await session.run(
                "ALTER CURRENT USER SET PASSWORD FROM $old TO $new",
                old=old.password,
                new=new.password,
            )
            await result.consume()


def open_source(settings: Neo4jSettings, *, development: bool) -> SecretSource:
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
        return AWSSecretsManagerSource(secret, user)
    if not development:
        raise ValueError("neo4j.secret.source = 'env' is for the development profile only")
    if secret.value is None:
        raise ValueError("neo4j.secret.value is not set (CYPHERGATE_NEO4J__SECRET__VALUE)")
    return FixedSecretSource(secret.value.get_secret_value(), user)


def crash_point(configured: str | None, here: str) -> None:
    """Die here, as ``kill -9`` would, if the crash tests asked for it (``faults.crash_at``)."""
    if configured == here:
        log.critical("fault injection: dying at %s", here)
        os._exit(137)


def _secrets_manager_client(settings: SecretSettings) -> Any:
    import boto3

    return boto3.client(
        "secretsmanager", region_name=settings.region, endpoint_url=settings.endpoint_url
    )


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


async def rotate_root(settings: Neo4jSettings) -> str:
    """Rotate the gateway's own credential now (``cyphergate creds rotate-root``); returns the
    user. Afterwards only the secret store (and the gateways reading it) knows the password."""
    source = open_source(settings, development=False)
    auth = RotatingAuth(source, await source.current())
    rotator = Rotator(settings.uri, source, auth)
    await rotator.recover()
    return (await rotator.rotate()).user
