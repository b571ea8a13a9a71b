"""The gateway's own credential in use: the auth manager, with a fake secret source.

Rotation against the real Neo4j and moto's Secrets Manager is in tests/test_rotation.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from proxy.neo4j.rotation import RotatingAuth
from proxy.neo4j.secret_sources import Credential
from tests.fakes import FakeSource


def test_auth_manager_follows_the_store_but_not_backwards_mid_rotation() -> None:
    old, new = Credential("gw", "old-password"), Credential("gw", "new-password")
    source = FakeSource(old)
    auth = RotatingAuth(source, old)

    async def go() -> None:
        assert (await auth.get_auth()).credentials == "old-password"
        # Our own rotation: Neo4j has the new password, the store not yet (staged only).
        auth.use(new)
        assert (await auth.get_auth()).credentials == "new-password"
        # Someone else rotates the store: the next connection uses it.
        source.value = Credential("gw", "rotated-elsewhere")
        assert (await auth.get_auth()).credentials == "rotated-elsewhere"

    asyncio.run(go())


def test_a_refused_login_tries_the_staged_value() -> None:
    old, staged = Credential("gw", "old-password"), Credential("gw", "staged-password")
    source = FakeSource(old, pending=staged)
    auth = RotatingAuth(source, old)
    assert asyncio.run(auth.refresh()) is True
    assert auth.credential == staged
    asyncio.run(source.promote("v2"))  # the rotation function finishes
    assert asyncio.run(auth.refresh()) is False  # nothing newer than what is in use


def test_one_refusal_handled_twice_stays_on_the_staged_value() -> None:
    """An outside rotation set the staged password in Neo4j and has not promoted it yet. The
    driver handles the refusal (with the refused auth), then the gateway's retry does: the
    second must not switch back to the store's AWSCURRENT, which Neo4j no longer accepts."""
    old, staged = Credential("gw", "old-password"), Credential("gw", "staged-password")
    auth = RotatingAuth(FakeSource(old, pending=staged), old)
    unauthorized = SimpleNamespace(code="Neo.ClientError.Security.Unauthorized")

    async def go() -> None:
        assert await auth.handle_security_exception(old.auth(), cast(Any, unauthorized))
        assert auth.credential == staged
        assert await auth.refresh(refused=old) is True  # the gateway's retry: try again
        assert auth.credential == staged
        # Several requests refused at once, all with the old password.
        assert all(await asyncio.gather(*(auth.refresh(refused=old) for _ in range(5))))
        assert auth.credential == staged
        assert (await auth.get_auth()).credentials == "staged-password"
        # The staged value refused too (someone rolled back): the store's value is tried.
        assert await auth.refresh(refused=staged) is True
        assert auth.credential == old

    asyncio.run(go())


class PromotedMidway(FakeSource):
    """An outside rotation's promotion lands right after the first read of the store."""

    def __init__(self, old: Credential, new: Credential) -> None:
        super().__init__(old, pending=new)
        self.first_read = True

    def _read(self) -> None:
        if not self.first_read:
            self.value, self.staged = self.staged or self.value, None
        self.first_read = False

    async def current(self) -> Credential:
        self._read()
        return self.value

    async def pending(self) -> tuple[str, Credential] | None:
        self._read()
        return None if self.staged is None else ("v2", self.staged)


def test_a_promotion_between_the_reads_is_not_missed() -> None:
    old, new = Credential("gw", "old-password"), Credential("gw", "new-password")
    auth = RotatingAuth(PromotedMidway(old, new), old)
    assert asyncio.run(auth.refresh()) is True
    assert auth.credential == new


class SlowStore(FakeSource):
    """A store whose staged value takes until ``release`` is set to read."""

    def __init__(self, current: Credential, pending: Credential) -> None:
        super().__init__(current, pending)
        self.release = asyncio.Event()

    async def pending(self) -> tuple[str, Credential] | None:
        await self.release.wait()
        return await super().pending()


def test_new_logins_wait_while_a_refusal_is_settled() -> None:
    """No new connection logs in with what Neo4j just refused: refused logins count towards
    Neo4j's rate limit."""
    old, staged = Credential("gw", "old-password"), Credential("gw", "staged-password")

    async def go() -> None:
        source = SlowStore(old, staged)
        auth = RotatingAuth(source, old)
        settling = asyncio.create_task(auth.refresh(refused=old))
        await asyncio.sleep(0)  # the refresh holds the lock, reading the store
        login = asyncio.create_task(auth.get_auth())
        await asyncio.sleep(0.01)
        assert not login.done()
        source.release.set()
        assert await settling is True
        assert (await login).credentials == "staged-password"

    asyncio.run(go())


class FirstReadHeld(FakeSource):
    """The first read of the store takes the value of its start, and returns it late."""

    def __init__(self, current: Credential) -> None:
        super().__init__(current)
        self.release = asyncio.Event()
        self.held = False

    async def current(self) -> Credential:
        value = self.value
        if not self.held:
            self.held = True
            await self.release.wait()
        return value


def test_a_store_read_overtaken_by_a_refresh_is_ignored() -> None:
    """A login reads the store before a promotion and hears back after a refusal's refresh
    read the new value: the old value it carries must not replace the new one."""
    old, new = Credential("gw", "old-password"), Credential("gw", "new-password")

    async def go() -> None:
        source = FirstReadHeld(old)
        auth = RotatingAuth(source, old)
        login = asyncio.create_task(auth.get_auth())
        await asyncio.sleep(0)  # reading the store: the old value
        source.value = new  # promoted elsewhere; Neo4j refuses the old password
        assert await auth.refresh(refused=old) is True
        source.release.set()
        assert (await login).credentials == "new-password"
        assert auth.credential == new
        assert (await auth.get_auth()).credentials == "new-password"

    asyncio.run(go())


def test_a_rotation_never_switches_the_user() -> None:
    auth = RotatingAuth(FakeSource(Credential("gw", "p")), Credential("gw", "p"))
    with pytest.raises(ValueError, match="keep the user"):
        auth.use(Credential("someone-else", "p"))
