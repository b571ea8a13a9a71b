"""OIDC bearer tokens: JWT access tokens verified against each trusted issuer's published keys.

What this module guarantees, in order, for every token:

1. size: at most ``max_token_bytes``;
2. form: a compact JWS whose payload names an ``iss`` that is configured, exactly;
3. key: the header's ``kid`` is in that issuer's JWKS, fetched from the ``jwks_uri`` of its
   discovery document (cached; an unknown ``kid`` refreshes the set at most once per
   ``jwks_min_refresh_interval_s``);
4. signature: verified with joserfc, with the issuer's explicit algorithm allow-list (joserfc's
   default list admits HS256, which would let a public key act as an HMAC secret);
5. claims: ``iss`` equal, ``aud`` one of the issuer's audiences, ``exp`` present and in the
   future, ``nbf`` and ``iat`` not in the future, all with ``leeway_s``;
6. DAG: the configured claim is present and is a valid Airflow dag_id.

Failures raise :class:`AuthenticationFailed` with a reason for the audit log; the client only
ever sees "Authentication failed."
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from proxy.clock import Clock
from proxy.errors import AuthenticationFailed, IdentityProviderUnavailable
from proxy.principal import Principal, is_dag_id
from proxy.settings import OIDCIssuerSettings

log = logging.getLogger(__name__)

_RESERVED_TIME_CLAIMS = {"exp": "token_expired", "nbf": "token_not_yet_valid"}


@dataclass
class _CachedKeys:
    keys: KeySet
    kids: frozenset[str]
    fetched_at: float


class IssuerKeys:
    """The JWKS of one issuer, from its discovery document, cached with a TTL."""

    def __init__(self, settings: OIDCIssuerSettings, http: httpx.AsyncClient, clock: Clock) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._cached: _CachedKeys | None = None
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()

    async def for_kid(self, kid: str) -> KeySet:
        """A key set that contains ``kid``; see :meth:`_refresh` for when the set is re-fetched."""
        cached = self._cached
        if cached is not None and self._fresh(cached) and kid in cached.kids:
            return cached.keys
        async with self._lock:
            cached = self._cached
            if cached is None or not self._fresh(cached) or kid not in cached.kids:
                await self._refresh()
            cached = self._cached
        if cached is None:
            raise IdentityProviderUnavailable(reason="jwks_unavailable")
        if kid not in cached.kids:
            raise AuthenticationFailed(reason="unknown_key")
        return cached.keys

    def _fresh(self, cached: _CachedKeys) -> bool:
        return self._clock() - cached.fetched_at < self._settings.jwks_ttl_s

    async def _refresh(self) -> None:
        """Fetch the key set, at most once per ``jwks_min_refresh_interval_s``.

        The limit holds for every cause (expiry, unknown ``kid``, readiness), so a flood of
        tokens with random key ids costs the issuer one request per interval. A failed fetch
        keeps the keys already cached: an issuer that is down does not break tokens signed
        with keys the gateway already has.
        """
        now = self._clock()
        if now - self._last_attempt < self._settings.jwks_min_refresh_interval_s:
            return
        self._last_attempt = now
        try:
            self._cached = await self._fetch()
        except (httpx.HTTPError, ValueError, KeyError, TypeError, JoseError) as exc:
            log.warning("could not fetch the keys of %s: %s", self._settings.issuer, exc)

    async def _fetch(self) -> _CachedKeys:
        issuer = self._settings.issuer
        discovery = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        if discovery.get("issuer") != issuer:
            raise ValueError("discovery document names another issuer")
        jwks = await self._get_json(str(discovery["jwks_uri"]))
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        kids = frozenset(key.kid for key in keys.keys if key.kid)
        return _CachedKeys(keys=keys, kids=kids, fetched_at=self._clock())

    async def _get_json(self, url: str) -> dict[str, Any]:
        response = await self._http.get(url, follow_redirects=False)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not return a JSON object")
        return document

    async def check_ready(self) -> None:
        """Raise unless keys are cached (refreshing them first if they are due)."""
        async with self._lock:
            cached = self._cached
            if cached is None or not self._fresh(cached):
                await self._refresh()
        if self._cached is None:
            raise IdentityProviderUnavailable(reason="jwks_unavailable")


class OIDCAuthenticator:
    """Verifies bearer JWTs from any of the configured issuers."""

    def __init__(
        self,
        issuers: Sequence[OIDCIssuerSettings],
        http: httpx.AsyncClient,
        clock: Clock,
        *,
        leeway_s: int,
        max_token_bytes: int,
    ) -> None:
        self._issuers = {settings.issuer: settings for settings in issuers}
        self._keys = {issuer: IssuerKeys(s, http, clock) for issuer, s in self._issuers.items()}
        self._clock = clock
        self._leeway_s = leeway_s
        self._max_token_bytes = max_token_bytes

    async def authenticate(self, credentials: str) -> Principal:
        """Verify ``credentials`` (the JWT) and map it to a principal; see the module docstring."""
        if len(credentials) > self._max_token_bytes:
            raise AuthenticationFailed(reason="token_too_large")
        header, unverified = _peek(credentials)
        issuer = unverified.get("iss")
        settings = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if settings is None:
            raise AuthenticationFailed(reason="unknown_issuer")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationFailed(reason="missing_key_id")
        keys = await self._keys[settings.issuer].for_kid(kid)
        claims = self._verify(credentials, keys, settings)
        dag = claims.get(settings.dag_claim)
        if not is_dag_id(dag):
            raise AuthenticationFailed(reason="missing_dag_claim")
        subject = claims.get("sub")
        return Principal(
            method="oidc",
            issuer=settings.issuer,
            subject=subject if isinstance(subject, str) else "",
            dag=str(dag),
        )

    def _verify(self, token: str, keys: KeySet, settings: OIDCIssuerSettings) -> dict[str, Any]:
        try:
            decoded = jwt.decode(token, keys, algorithms=settings.algorithms)
        except BadSignatureError:
            raise AuthenticationFailed(reason="bad_signature") from None
        except JoseError as exc:
            raise AuthenticationFailed(reason=f"invalid_token:{exc.error}") from None
        registry = JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=self._leeway_s,
            iss={"essential": True, "value": settings.issuer},
            aud={"essential": True, "values": settings.audiences},
            exp={"essential": True},
        )
        try:
            registry.validate(decoded.claims)
        except ExpiredTokenError:
            raise AuthenticationFailed(reason="token_expired") from None
        except (InvalidClaimError, MissingClaimError) as exc:
            claim = getattr(exc, "claim", "unknown")
            reason = f"{'missing' if isinstance(exc, MissingClaimError) else 'invalid'}_{claim}"
            raise AuthenticationFailed(reason=_RESERVED_TIME_CLAIMS.get(claim, reason)) from None
        except ClaimError as exc:
            raise AuthenticationFailed(reason=f"invalid_claims:{exc.error}") from None
        return dict(decoded.claims)

    async def check_ready(self) -> None:
        """Raise unless every issuer's keys are available."""
        for keys in self._keys.values():
            await keys.check_ready()


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload of a compact JWS, NOT verified: only to pick the issuer and key."""
    try:
        signature = jws.extract_compact(token.encode("ascii"))
        payload = json.loads(signature.payload)
    except (JoseError, ValueError, UnicodeError):
        raise AuthenticationFailed(reason="malformed_token") from None
    if not isinstance(payload, dict):
        raise AuthenticationFailed(reason="malformed_token")
    return dict(signature.headers()), payload
