"""OIDC key handling with a fake issuer at the HTTP seam: refresh limits and outage behaviour.

The real provider is exercised in test_identity.py and test_hostile_credentials.py; here the
issuer is an httpx.MockTransport so that every call to it can be counted exactly.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from joserfc import jws, jwt
from joserfc.jwk import KeySet, RSAKey

from proxy.auth.oidc import OIDCAuthenticator
from proxy.errors import AuthenticationFailed, IdentityProviderUnavailable
from proxy.settings import OIDCIssuerSettings

ISSUER = "https://issuer.test"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})


class FakeIssuer:
    def __init__(self) -> None:
        self.calls = 0
        self.up = True
        self.keys = KeySet([KEY])

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if not self.up:
            return httpx.Response(503)
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})
        return httpx.Response(200, json=self.keys.as_dict(private=False))


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def token(clock: Clock, key: RSAKey = KEY, **claims: Any) -> str:
    """A token issued at the authenticator's own "now" (leeway is zero in these tests)."""
    now = int(clock.now)
    body = {"iss": ISSUER, "aud": "gw", "sub": "s", "dag_id": "etl", "iat": now, "exp": now + 60}
    body.update(claims)
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "at+jwt"}, body, key)


def authenticator(issuer: FakeIssuer, clock: Clock, **settings: Any) -> OIDCAuthenticator:
    http = httpx.AsyncClient(transport=httpx.MockTransport(issuer.handler))
    config = OIDCIssuerSettings(issuer=ISSUER, audiences=["gw"], **settings)
    return OIDCAuthenticator([config], http, clock, leeway_s=0, max_token_bytes=8192)


def test_cached_keys_cost_no_issuer_calls() -> None:
    issuer, clock = FakeIssuer(), Clock()
    auth = authenticator(issuer, clock)

    async def go() -> None:
        for _ in range(100):
            identity = await auth.authenticate(token(clock))
            assert identity.asserted_dag == "etl"

    asyncio.run(go())
    assert issuer.calls == 2  # discovery and JWKS, once


def test_a_flood_of_unknown_kids_refreshes_once_per_interval() -> None:
    issuer, clock = FakeIssuer(), Clock()
    auth = authenticator(issuer, clock, jwks_min_refresh_interval_s=10)
    strangers = [RSAKey.generate_key(2048, parameters={"kid": f"random-{n}"}) for n in range(3)]

    async def flood(count: int) -> None:
        for n in range(count):
            with pytest.raises(AuthenticationFailed) as error:
                await auth.authenticate(token(clock, strangers[n % 3]))
            assert error.value.reason == "unknown_key"

    asyncio.run(auth.authenticate(token(clock)))
    asyncio.run(flood(100))
    assert issuer.calls == 2  # within 10 s of the first fetch: no refresh at all
    clock.now += 11
    asyncio.run(flood(100))
    assert issuer.calls == 4  # one refresh (discovery and JWKS) for 100 unknown kids


def test_issuer_down_keeps_cached_keys_and_rotation_is_picked_up() -> None:
    issuer, clock = FakeIssuer(), Clock()
    auth = authenticator(issuer, clock, jwks_ttl_s=60, jwks_min_refresh_interval_s=0)
    asyncio.run(auth.authenticate(token(clock)))
    issuer.up = False
    clock.now += 120  # keys are stale and the issuer is down: cached keys still verify
    asyncio.run(auth.authenticate(token(clock)))
    issuer.up = True
    new_key = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    issuer.keys = KeySet([new_key, KEY])
    identity = asyncio.run(auth.authenticate(token(clock, new_key)))
    assert identity.subject == "s"


def test_issuer_never_reached_is_unavailable_not_unauthorised() -> None:
    issuer, clock = FakeIssuer(), Clock()
    issuer.up = False
    auth = authenticator(issuer, clock)
    with pytest.raises(IdentityProviderUnavailable):
        asyncio.run(auth.authenticate(token(clock)))


def test_typ_can_be_required() -> None:
    issuer, clock = FakeIssuer(), Clock()
    auth = authenticator(issuer, clock, require_typ=True)
    now = int(clock.now)
    claims = {"iss": ISSUER, "aud": "gw", "sub": "s", "iat": now, "exp": now + 60}
    # A JWS without "typ" (joserfc's jwt.encode always adds one).
    untyped = jws.serialize_compact({"alg": "RS256", "kid": "k1"}, json.dumps(claims), KEY)
    with pytest.raises(AuthenticationFailed) as error:
        asyncio.run(auth.authenticate(untyped))
    assert error.value.reason == "missing_typ"


class CountingDecode:
    """Counts full verifications (joserfc's signature check) behind the authenticator."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = jwt.decode

        def decode(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr("proxy.auth.oidc.jwt.decode", decode)


def test_a_verified_token_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer, clock = FakeIssuer(), Clock()
    auth = authenticator(issuer, clock)
    decode = CountingDecode(monkeypatch)
    credential = token(clock)
    first = asyncio.run(auth.authenticate(credential))
    clock.now += 30
    again = asyncio.run(auth.authenticate(credential))
    assert again == first
    assert decode.calls == 1


def test_a_remembered_token_past_exp_is_verified_again_and_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issuer, clock = FakeIssuer(), Clock()
    auth = authenticator(issuer, clock, jwks_ttl_s=3600)
    decode = CountingDecode(monkeypatch)
    credential = token(clock)  # exp = now + 60, leeway 0
    asyncio.run(auth.authenticate(credential))
    clock.now = int(clock.now) + 60  # exp <= now: joserfc's rule, and so the cache's
    with pytest.raises(AuthenticationFailed) as error:
        asyncio.run(auth.authenticate(credential))
    assert error.value.reason == "token_expired"
    assert decode.calls == 2


def test_a_clock_moved_back_is_not_answered_from_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer, clock = FakeIssuer(), Clock()
    auth = authenticator(issuer, clock)
    decode = CountingDecode(monkeypatch)
    credential = token(clock)
    asyncio.run(auth.authenticate(credential))
    clock.now -= 5  # iat is now in the future: verification must run, and refuses
    with pytest.raises(AuthenticationFailed) as error:
        asyncio.run(auth.authenticate(credential))
    assert error.value.reason == "token_issued_in_future"
    assert decode.calls == 2


def test_a_rotated_out_key_stops_validating_remembered_tokens() -> None:
    issuer, clock = FakeIssuer(), Clock()
    auth = authenticator(issuer, clock, jwks_ttl_s=3600, jwks_min_refresh_interval_s=0)
    old = token(clock)
    asyncio.run(auth.authenticate(old))
    new_key = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    issuer.keys = KeySet([new_key])  # k1 is withdrawn
    # A token with the new kid makes the gateway fetch the new set: the cache is dropped.
    asyncio.run(auth.authenticate(token(clock, new_key)))
    with pytest.raises(AuthenticationFailed) as error:
        asyncio.run(auth.authenticate(old))
    assert error.value.reason == "unknown_key"


def test_stale_keys_are_refreshed_before_a_remembered_token_is_trusted() -> None:
    issuer, clock = FakeIssuer(), Clock()
    auth = authenticator(issuer, clock, jwks_ttl_s=10, jwks_min_refresh_interval_s=0)
    old = token(clock)
    asyncio.run(auth.authenticate(old))
    issuer.keys = KeySet([RSAKey.generate_key(2048, parameters={"kid": "k2"})])
    clock.now += 11  # the key set's TTL has passed: no answer from memory until it is fetched
    with pytest.raises(AuthenticationFailed) as error:
        asyncio.run(auth.authenticate(old))
    assert error.value.reason == "unknown_key"


def test_a_refetched_unchanged_key_set_keeps_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer, clock = FakeIssuer(), Clock()
    auth = authenticator(issuer, clock, jwks_ttl_s=10, jwks_min_refresh_interval_s=0)
    decode = CountingDecode(monkeypatch)
    credential = token(clock)
    asyncio.run(auth.authenticate(credential))
    clock.now += 11
    asyncio.run(auth.authenticate(credential))  # stale keys: verified again, keys re-fetched
    asyncio.run(auth.authenticate(credential))
    assert decode.calls == 2
    assert issuer.calls == 4


def test_a_token_one_byte_apart_is_a_miss() -> None:
    issuer, clock = FakeIssuer(), Clock()
    auth = authenticator(issuer, clock)
    credential = token(clock)
    asyncio.run(auth.authenticate(credential))
    signing_input, _, signature = credential.rpartition(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    forged = f"{signing_input}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"
    with pytest.raises(AuthenticationFailed) as error:
        asyncio.run(auth.authenticate(forged))
    assert error.value.reason == "bad_signature"
    asyncio.run(auth.authenticate(credential))  # the genuine token is still remembered


def test_the_cache_is_bounded_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer, clock = FakeIssuer(), Clock()
    http = httpx.AsyncClient(transport=httpx.MockTransport(issuer.handler))
    config = OIDCIssuerSettings(issuer=ISSUER, audiences=["gw"])
    decode = CountingDecode(monkeypatch)
    bounded = OIDCAuthenticator(
        [config], http, clock, leeway_s=0, max_token_bytes=8192, verified_cache_size=2
    )
    tokens = [token(clock, sub=f"s{n}") for n in range(3)]
    for credential in [*tokens, tokens[2], tokens[0]]:  # tokens[0] was evicted by tokens[2]
        asyncio.run(bounded.authenticate(credential))
    assert decode.calls == 4
    off = OIDCAuthenticator(
        [config], http, clock, leeway_s=0, max_token_bytes=8192, verified_cache_size=0
    )
    for _ in range(2):
        asyncio.run(off.authenticate(tokens[0]))
    assert decode.calls == 6
