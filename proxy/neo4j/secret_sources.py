"""Where the gateway's own Neo4j credential is kept: the :class:`SecretSource` protocol.

A mounted file (the Kubernetes-secret case), AWS Secrets Manager (``AWSCURRENT``/``AWSPENDING``
stages, through boto3), or a fixed value from the configuration. A secret is JSON
``{"username": ..., "password": ...}``; a file may hold the bare password instead. Each source
can stage a new value beside the current one, promote it and discard it: the steps of a rotation
(see :mod:`proxy.neo4j.rotation`). A store that cannot be read or written raises
:class:`~proxy.errors.SecretStoreUnavailable`, whose reason names the store. Secret values never
leave this module except to their caller: ``repr`` hides them and no log line names them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import neo4j

from proxy.errors import NotSupported, SecretStoreUnavailable
from proxy.settings import SecretSettings

log = logging.getLogger(__name__)


def _consume(task: asyncio.Task[Credential]) -> None:
    """A background read's failure was logged and is in the source's state: not unretrieved."""
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True, slots=True)
class Credential:
    """A Neo4j user and password; the password never appears in ``repr``."""

    user: str
    password: str = field(repr=False)

    def auth(self) -> neo4j.Auth:
        return neo4j.basic_auth(self.user, self.password)


class SecretReader(Protocol):
    """Reads a credential's store (what the driver's auth manager needs).

    Contract: ``current`` returns the credential in use (``invalidate`` makes the next call
    read the store itself); ``pending`` returns the staged version, if any. A store that cannot
    be read raises :class:`~proxy.errors.SecretStoreUnavailable`.
    """

    def invalidate(self) -> None: ...

    async def current(self) -> Credential: ...

    async def pending(self) -> tuple[str, Credential] | None: ...


class SecretSource(SecretReader, Protocol):
    """A store a rotation can write (what :class:`~proxy.neo4j.rotation.Rotator` needs).

    Contract: ``stage`` stores a new credential beside the current one (pending) and returns
    its version; ``promote`` makes a pending version current and ``discard`` forgets it. A
    source that cannot be written raises :class:`NotSupported` from ``stage``.
    """

    def exclusive(self) -> AbstractAsyncContextManager[None]:
        """Held across a whole rotation, so two processes never rotate one secret at once."""
        ...

    async def check_ready(self) -> str | None:
        """For ``/readyz``: raise if no credential can be had; ``degraded`` while a cached one is
        served because the store does not answer."""
        ...

    async def stage(self, credential: Credential) -> str: ...

    async def promote(self, version: str) -> None: ...

    async def discard(self, version: str) -> None: ...


class MalformedSecret(ValueError):
    """A secret that holds no credential; the message never quotes the secret's text."""


def parse_secret(text: str, default_user: str) -> Credential:
    """A credential from JSON ``{"username", "password"}``, or a bare password.

    Raises :class:`MalformedSecret` for anything else (empty, half-written JSON, a password that
    is no non-empty string): logging in with it would only lock the gateway out."""
    text = text.strip()
    if not text.startswith("{"):
        if not text:
            raise MalformedSecret("the secret is empty")
        return Credential(default_user, text)
    try:
        document = json.loads(text)
    except ValueError:
        raise MalformedSecret("the secret is not valid JSON") from None
    password, user = document.get("password"), document.get("username") or default_user
    if not isinstance(password, str) or not password or not isinstance(user, str):
        raise MalformedSecret('the secret has no password (a non-empty string "password")')
    return Credential(user, password)


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

    async def check_ready(self) -> str | None:
        await self.current()
        return None

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """An advisory lock on ``<file>.lock``, shared by every process using this file."""
        lock = self._path.with_name(self._path.name + ".lock")
        with _file_store():
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock

    async def current(self) -> Credential:
        with _file_store():
            stamp = self._path.stat().st_mtime_ns
            if self._cached is None or self._cached[0] != stamp:
                text = self._path.read_text(encoding="utf-8")
                self._cached = (stamp, parse_secret(text, self._default_user))
        return self._cached[1]

    async def pending(self) -> tuple[str, Credential] | None:
        with _file_store():
            if not self._pending.exists():
                return None
            text = self._pending.read_text(encoding="utf-8")
            return "pending", parse_secret(text, self._default_user)

    async def stage(self, credential: Credential) -> str:
        with _file_store():
            _write_private(self._pending, secret_text(credential))
        return "pending"

    async def promote(self, version: str) -> None:
        del version  # a file keeps one pending value
        with _file_store():
            os.replace(self._pending, self._path)
            _fsync_dir(self._path.parent)
        self._cached = None

    async def discard(self, version: str) -> None:
        del version
        with _file_store():
            self._pending.unlink(missing_ok=True)


class AWSSecretsManagerSource:
    """A secret in AWS Secrets Manager, following its rotation stages.

    ``AWSCURRENT`` is read and cached. A login never waits on the store while a value is
    cached: past ``refresh_interval_s`` the cached value is served and one read refreshes it in
    the background. Only a value the gateway has not got (at start, or after :meth:`invalidate`,
    which the gateway calls when Neo4j refuses the credential) is waited for, by one read shared
    by every caller, at most ``timeout_s``. ``stage`` puts a version labelled ``AWSPENDING``;
    ``promote`` moves ``AWSCURRENT`` to it (Secrets Manager keeps the old one as
    ``AWSPREVIOUS``). ``client`` is a boto3 ``secretsmanager`` client (with short timeouts of
    its own); boto3 is synchronous, so every call runs on this source's own four threads, never
    the event loop's default executor, which DNS look-ups and SQLite reads need.
    """

    def __init__(self, settings: SecretSettings, default_user: str, client: Any) -> None:
        if not settings.secret_id:
            raise ValueError("neo4j.secret.secret_id is required for aws_secrets_manager")
        self._settings = settings
        self._secret_id = settings.secret_id
        self._default_user = default_user
        self._client = client
        self._cached: tuple[float, Credential] | None = None
        self._generation = 0  # moved by invalidate()
        self._threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="secret-store")
        self._reading: asyncio.Task[Credential] | None = None  # the one read in flight
        self._failing: str | None = None  # why the last read failed, until one succeeds

    def invalidate(self) -> None:
        """Forget the cached value: the next read asks Secrets Manager (a read already in
        flight may predate a promotion, so it is not waited for)."""
        self._cached = None
        self._reading = None
        self._generation += 1

    async def check_ready(self) -> str | None:
        if self._cached is None:
            await self.current()
            return None
        return "degraded" if self._failing is not None else None

    def close(self) -> None:
        """Give back the threads (one stuck in a call ends with its timeout)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        # Secrets Manager has no lock, so one process rotates a secret: a replica's worker 1
        # (proxy.chains). Two at once would stage over each other's AWSPENDING: the loser's
        # ALTER ... FROM fails, but a crash of the winner before its promotion would leave its
        # password in an unlabelled version, where recovery does not look.
        yield

    async def current(self) -> Credential:
        cached = self._cached
        if cached is not None:
            if time.monotonic() - cached[0] > self._settings.refresh_interval_s:
                self._read()  # in the background; this login goes on with the cached value
            return cached[1]
        # Nothing cached: wait for the shared read, at most the store's timeout.
        try:
            async with asyncio.timeout(self._settings.timeout_s):
                return await asyncio.shield(self._read())
        except TimeoutError:
            raise SecretStoreUnavailable(
                reason="secret_store:aws_secrets_manager:timeout"
            ) from None

    def _read(self) -> asyncio.Task[Credential]:
        """The read of ``AWSCURRENT`` in flight, started if there is none."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read_current(), name="secret-store-read")
            self._reading.add_done_callback(_consume)
        return self._reading

    async def _read_current(self) -> Credential:
        generation, started = self._generation, time.monotonic()
        try:
            answer = await self._call("get_secret_value", VersionStage="AWSCURRENT")
            value = self._parsed(answer)
        except SecretStoreUnavailable as error:
            self._failing = error.reason
            if self._cached is not None:
                log.warning(
                    "the secret store did not answer (%s); the cached value serves on", error.reason
                )
            raise
        self._failing = None
        # A read that began before an invalidate() may predate a promotion: never cache it.
        if generation == self._generation:
            self._cached = (started, value)
        return value

    async def pending(self) -> tuple[str, Credential] | None:
        versions = await self._call("list_secret_version_ids", IncludeDeprecated=False)
        for version in versions.get("Versions", []):
            stages = version.get("VersionStages", [])
            if "AWSPENDING" in stages and "AWSCURRENT" not in stages:
                answer = await self._call("get_secret_value", VersionId=version["VersionId"])
                credential = self._parsed(answer)
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
        await self._unstage(version)
        self.invalidate()

    async def discard(self, version: str) -> None:
        await self._unstage(version)

    async def _unstage(self, version: str) -> None:
        """Take ``AWSPENDING`` off ``version``. Secrets Manager has no lock: another process
        settling the same interrupted rotation may have taken it off already (then it refuses
        the removal), which settles it just the same."""
        try:
            await self._call(
                "update_secret_version_stage",
                VersionStage="AWSPENDING",
                RemoveFromVersionId=version,
            )
        except SecretStoreUnavailable:
            if await self._staged(version):
                raise

    async def _staged(self, version: str) -> bool:
        versions = await self._call("list_secret_version_ids", IncludeDeprecated=True)
        return any(
            v.get("VersionId") == version and "AWSPENDING" in v.get("VersionStages", [])
            for v in versions.get("Versions", [])
        )

    async def _current_version(self) -> str:
        versions = await self._call("list_secret_version_ids", IncludeDeprecated=False)
        for version in versions.get("Versions", []):
            if "AWSCURRENT" in version.get("VersionStages", []):
                return str(version["VersionId"])
        raise SecretStoreUnavailable(reason="secret_store:aws_secrets_manager:no_current_version")

    def _parsed(self, answer: dict[str, Any]) -> Credential:
        """The credential in a ``get_secret_value`` answer (a binary secret holds none)."""
        try:
            return parse_secret(str(answer.get("SecretString") or ""), self._default_user)
        except MalformedSecret:
            raise SecretStoreUnavailable(
                reason="secret_store:aws_secrets_manager:malformed_secret"
            ) from None

    async def _call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        method = functools.partial(
            getattr(self._client, operation), SecretId=self._secret_id, **arguments
        )
        # Bounded by the client's own timeouts (a write abandoned here could still land).
        loop = asyncio.get_running_loop()
        try:
            answer: dict[str, Any] = await loop.run_in_executor(self._threads, method)
        except Exception as exc:  # botocore's errors: the store is unavailable
            raise SecretStoreUnavailable(
                reason=f"secret_store:aws_secrets_manager:{type(exc).__name__}"
            ) from exc
        return answer


def secrets_manager_client(region: str, endpoint_url: str | None, timeout_s: float) -> Any:
    """A boto3 ``secretsmanager`` client whose calls end within ``timeout_s`` (connect, then
    read), one attempt each: boto3's defaults (60 s, 3 attempts) would hold a login minutes."""
    import boto3
    from botocore.config import Config

    quick = Config(connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 1})
    return boto3.client(
        "secretsmanager", region_name=region, endpoint_url=endpoint_url, config=quick
    )


class FixedSecretSource:
    """A credential given in the configuration (``neo4j.password``, or an environment variable
    in the development profile): it cannot be rotated."""

    def __init__(self, value: str, default_user: str) -> None:
        self._credential = parse_secret(value, default_user)

    def invalidate(self) -> None:
        return None

    async def check_ready(self) -> str | None:
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


@contextlib.contextmanager
def _file_store() -> Iterator[None]:
    """A mounted file that cannot be read or written, or holds no credential (being rewritten,
    say): the store is unavailable."""
    try:
        yield
    except OSError as exc:
        raise SecretStoreUnavailable(reason=f"secret_store:file:{type(exc).__name__}") from exc
    except MalformedSecret:
        raise SecretStoreUnavailable(reason="secret_store:file:malformed_secret") from None


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
