"""The rate limits (proxy/gateway/rates.py), as a unit: which key each limit counts, what a
refusal carries, and that an unset limit counts nothing."""

from __future__ import annotations

import time

import pytest

from proxy.errors import RateLimited
from proxy.gateway.rates import RateLimits, client_key
from proxy.principal import Identity, Principal
from proxy.settings import RateLimitSettings, RateSettings


def identity(subject: str) -> Identity:
    return Identity(method="oidc", issuer="https://idp.example", subject=subject)


def principal(who: Identity, dag: str) -> Principal:
    return Principal(identity=who, dag=dag)


def limits(**given: RateSettings) -> RateLimits:
    return RateLimits(RateLimitSettings(**given))


def test_the_client_limit_refuses_beyond_its_requests_with_retry_after() -> None:
    rates = limits(per_client=RateSettings(requests=3, window_s=30))
    for _ in range(3):
        rates.before_verification("10.0.0.1:5000")
    with pytest.raises(RateLimited) as refused:
        rates.before_verification("10.0.0.1:5001")  # another port: the same address
    assert refused.value.status == 429
    assert refused.value.reason == "rate_limited:client"
    assert refused.value.code == "Neo.TransientError.Request.TooManyRequests"
    assert refused.value.retry_after_s is not None
    assert 28 <= refused.value.retry_after_s <= 30
    rates.before_verification("10.0.0.2:5000")  # another address has its own quota


def test_ipv6_clients_share_their_slash_64() -> None:
    assert client_key("[2001:db8::1]:443") == client_key("2001:db8::ffff") == "2001:db8::/64"
    assert client_key("[2001:db8:0:1::1]:443") != client_key("[2001:db8::1]:443")
    assert client_key("192.0.2.7:1234") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "unknown"
    rates = limits(per_client=RateSettings(requests=1, window_s=30))
    rates.before_verification("[2001:db8::1]:443")
    with pytest.raises(RateLimited):
        rates.before_verification("[2001:db8::2]:443")


def test_may_verify_tells_without_counting() -> None:
    rates = limits(per_client=RateSettings(requests=1, window_s=30))
    for _ in range(5):
        assert rates.may_verify("10.0.0.1")
    rates.before_verification("10.0.0.1")
    assert not rates.may_verify("10.0.0.1")


def test_identity_and_dag_limits_count_their_own_keys() -> None:
    rates = limits(
        per_identity=RateSettings(requests=2, window_s=30),
        per_dag=RateSettings(requests=3, window_s=30),
    )
    alice, bob = identity("alice"), identity("bob")
    rates.after_verification(alice, principal(alice, "etl"))
    rates.after_verification(alice, principal(alice, "etl"))
    with pytest.raises(RateLimited) as refused:
        rates.after_verification(alice, principal(alice, "etl"))
    assert refused.value.reason == "rate_limited:identity"
    # Alice's refused call was not counted against the DAG: Bob still has one call of it.
    rates.after_verification(bob, principal(bob, "etl"))
    with pytest.raises(RateLimited) as refused:
        rates.after_verification(bob, principal(bob, "etl"))
    assert refused.value.reason == "rate_limited:dag"
    carol = identity("carol")
    rates.after_verification(carol, principal(carol, "reports"))  # another DAG


def test_a_window_frees_its_calls_as_they_leave_it() -> None:
    rates = limits(per_dag=RateSettings(requests=2, window_s=1))
    who = identity("alice")
    rates.after_verification(who, principal(who, "etl"))
    rates.after_verification(who, principal(who, "etl"))
    with pytest.raises(RateLimited) as refused:
        rates.after_verification(who, principal(who, "etl"))
    assert refused.value.retry_after_s == 1
    time.sleep(1.1)
    rates.after_verification(who, principal(who, "etl"))


def test_unset_limits_count_nothing() -> None:
    rates = limits()
    who = identity("alice")
    for _ in range(1000):
        rates.before_verification("10.0.0.1")
        rates.after_verification(who, principal(who, "etl"))
    assert rates.may_verify("10.0.0.1")
