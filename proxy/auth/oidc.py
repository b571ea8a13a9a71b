"""OIDC bearer tokens: JWT access tokens verified against each trusted issuer's published keys.

What this module guarantees, in order, for every token:

1. size: at most ``max_token_bytes``;
2. form: a compact JWS whose payload names an ``iss`` that is configured, exactly;
3. key: the header's ``kid`` is in that issuer's JWKS, fetched from the ``jwks_uri`` of its
   discovery document (cached; an unknown ``kid`` refreshes the set at most once per
   ``jwks_min_refresh_interval_s``);
4. signature: verified with joserfc, with the issuer's explicit algorithm allow-list (joserfc's
   default list admits HS256, which would let a public key act as an HMAC secret);
5. header: no ``jwk``, ``jku``, ``x5u``, ``x5c`` (a token never brings its own key) and no
   ``crit``; ``typ``, when present (or when required), one of the configured token types;
6. claims: ``iss`` equal, ``aud`` one of the issuer's audiences, ``exp`` and ``iat`` present,
   ``exp`` in the future, ``nbf`` and ``iat`` not in the future, all with ``leeway_s``, and
   ``exp - iat`` at most ``max_lifetime_s``;
7. identity: ``sub`` present; a Kubernetes service account is read from
   ``system:serviceaccount:<namespace>:<name>``; the issuer's DAG claim, when configured and
   present, must be a valid Airflow dag_id.

Failures raise :class:`AuthenticationFailed` with a reason for the audit log; the client only
ever sees "Authentication failed."

A token that passed every check is remembered (see :class:`_VerifiedTokens`), so a client that
sends the same token with every statement pays for the signature once, not per statement.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExceededSizeError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from proxy.clock import Clock
from proxy.errors import AuthenticationFailed, IdentityProviderUnavailable
from proxy.principal import Identity, is_dag_id
from proxy.settings import OIDCIssuerSettings

log = logging.getLogger(__name__)

_TIME_CLAIM_REASONS = {
    "exp": "token_expired",
    "nbf": "token_not_yet_valid",
    "iat": "token_issued_in_future",
}
# Header parameters that would let a token bring its own key, or demand processing we do not do.
_REFUSED_HEADERS = ("jwk", "jku", "x5u", "x5c", "crit")
_SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass
class _CachedKeys:
    keys: KeySet
    kids: frozenset[str]
    fetched_at: float
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Verified:
    identity: Identity
    issuer: str
    exp: float
    verified_at: float
    generation: int


class _VerifiedTokens:
    """Identities of tokens that passed every check, keyed by the SHA-256 of the raw token.

    Security invariant: an entry answers only for the exact token that was verified (the key is
    a digest of every byte of it; the token itself is never kept), and only while the full
    verification would still accept it:

    * the same clock and leeway rule as the ``exp`` check: ``int(now) - leeway < exp``; a clock
      that moved back before the verification time misses too (``nbf``/``iat`` were checked
      against the later time);
    * the issuer's key set is fresh and is the generation the token was verified with: a key set
      that changed (a key rotated out) empties the whole cache, and an entry of another
      generation is never used, so a removed key stops validating its tokens at once;
    * nothing else a verification reads can change: issuer settings are fixed at start-up.

    Failures are never remembered: a refused token is verified again, fully, every time. The
    cache is a bounded LRU (``max_entries``; 0 turns it off).
    """

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[bytes, _Verified] = OrderedDict()

    @staticmethod
    def digest(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(self, digest: bytes) -> _Verified | None:
        entry = self._entries.get(digest)
        if entry is not None:
            self._entries.move_to_end(digest)
        return entry

    def put(self, digest: bytes, entry: _Verified) -> None:
        if self._max_entries <= 0:
            return
        self._entries[digest] = entry
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def discard(self, digest: bytes) -> None:
        self._entries.pop(digest, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class IssuerKeys:
    """The JWKS of one issuer, from its discovery document, cached with a TTL."""

    def __init__(self, settings: OIDCIssuerSettings, http: httpx.AsyncClient, clock: Clock) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._cached: _CachedKeys | None = None
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()
        # Bumped whenever a fetched key set differs from the one cached (not on a re-fetch of
        # the same set): verified tokens of an older generation are not trusted.
        self.generation = 0

    def is_fresh(self) -> bool:
        """Whether keys are cached and within their TTL (so no refresh is due)."""
        cached = self._cached
        return cached is not None and self._fresh(cached)

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
            fetched = await self._fetch()
            previous = self._cached
            if previous is not None and previous.document != fetched.document:
                self.generation += 1
            self._cached = fetched
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
        return _CachedKeys(keys=keys, kids=kids, fetched_at=self._clock(), document=jwks)

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
        verified_cache_size: int = 4096,
    ) -> None:
        self._issuers = {settings.issuer: settings for settings in issuers}
        self._keys = {issuer: IssuerKeys(s, http, clock) for issuer, s in self._issuers.items()}
        self._clock = clock
        self._leeway_s = leeway_s
        self._max_token_bytes = max_token_bytes
        self._verified = _VerifiedTokens(verified_cache_size)
        self._generations = {issuer: keys.generation for issuer, keys in self._keys.items()}

    async def authenticate(self, credentials: str) -> Identity:
        """Verify ``credentials`` (the JWT); see the module docstring for every check."""
        if len(credentials) > self._max_token_bytes:
            raise AuthenticationFailed(reason="token_too_large")
        digest = _VerifiedTokens.digest(credentials)
        remembered = self._remembered(digest)
        if remembered is not None:
            return remembered
        header, unverified = _peek(credentials)
        issuer = unverified.get("iss")
        settings = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if settings is None:
            raise AuthenticationFailed(reason="unknown_issuer")
        _check_header(header, settings)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationFailed(reason="missing_key_id")
        issuer_keys = self._keys[settings.issuer]
        keys = await issuer_keys.for_kid(kid)
        if issuer_keys.generation != self._generations[settings.issuer]:
            # A key set changed: whatever was verified before may rest on a key now removed.
            self._verified.clear()
            self._generations[settings.issuer] = issuer_keys.generation
        verified_at = self._clock()
        claims = self._verify(credentials, keys, settings, verified_at)
        identity = _identity(settings, claims)
        self._verified.put(
            digest,
            _Verified(
                identity=identity,
                issuer=settings.issuer,
                exp=claims["exp"],
                verified_at=verified_at,
                generation=issuer_keys.generation,
            ),
        )
        return identity

    def _remembered(self, digest: bytes) -> Identity | None:
        """The identity of an already verified token, while verifying it again would pass."""
        entry = self._verified.get(digest)
        if entry is None:
            return None
        keys = self._keys[entry.issuer]
        now = self._clock()
        if (
            entry.generation != keys.generation
            or not keys.is_fresh()
            or now < entry.verified_at
            or int(now) - self._leeway_s >= entry.exp  # joserfc: exp <= now - leeway expires
        ):
            self._verified.discard(digest)
            return None
        return entry.identity

    def _verify(
        self, token: str, keys: KeySet, settings: OIDCIssuerSettings, now: float
    ) -> dict[str, Any]:
        try:
            decoded = jwt.decode(token, keys, algorithms=settings.algorithms)
        except BadSignatureError:
            raise AuthenticationFailed(reason="bad_signature") from None
        except JoseError as exc:
            raise AuthenticationFailed(reason=f"invalid_token:{exc.error}") from None
        registry = JWTClaimsRegistry(
            now=int(now),
            leeway=self._leeway_s,
            iss={"essential": True, "value": settings.issuer},
            aud={"essential": True, "values": settings.audiences},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(decoded.claims)
        except ExpiredTokenError:
            raise AuthenticationFailed(reason="token_expired") from None
        except (InvalidClaimError, MissingClaimError) as exc:
            if isinstance(exc, MissingClaimError):
                reason = f"missing_{exc.claim}"
            else:
                reason = _TIME_CLAIM_REASONS.get(exc.claim, f"invalid_{exc.claim}")
            raise AuthenticationFailed(reason=reason) from None
        except ClaimError as exc:
            raise AuthenticationFailed(reason=f"invalid_claims:{exc.error}") from None
        claims = dict(decoded.claims)
        if claims["exp"] - claims["iat"] > settings.max_lifetime_s:
            raise AuthenticationFailed(reason="token_lifetime_too_long")
        return claims

    async def check_ready(self) -> None:
        """Raise unless every issuer's keys are available."""
        for keys in self._keys.values():
            await keys.check_ready()


def _check_header(header: dict[str, Any], settings: OIDCIssuerSettings) -> None:
    """Header rules that hold before any key is looked up."""
    for name in _REFUSED_HEADERS:
        if name in header:
            raise AuthenticationFailed(reason=f"header_{name}_refused")
    alg = header.get("alg")
    if alg not in settings.algorithms:
        raise AuthenticationFailed(reason="algorithm_not_allowed")
    typ = header.get("typ")
    if typ is None:
        if settings.require_typ:
            raise AuthenticationFailed(reason="missing_typ")
        return
    accepted = {t.lower() for t in settings.token_types}
    normalised = str(typ).lower().removeprefix("application/")
    if normalised not in accepted:
        raise AuthenticationFailed(reason="typ_not_allowed")


def _identity(settings: OIDCIssuerSettings, claims: dict[str, Any]) -> Identity:
    """The identity a verified token proves."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthenticationFailed(reason="missing_sub")
    client_id = claims.get("client_id", claims.get("azp"))
    service_account = None
    if subject.startswith(_SERVICE_ACCOUNT_PREFIX):
        namespace, _, name = subject.removeprefix(_SERVICE_ACCOUNT_PREFIX).partition(":")
        if namespace and name:
            service_account = f"{namespace}:{name}"
    asserted = None
    if settings.dag_claim is not None and settings.dag_claim in claims:
        asserted = claims[settings.dag_claim]
        if not is_dag_id(asserted):
            raise AuthenticationFailed(reason="invalid_dag_claim")
    return Identity(
        method="oidc",
        issuer=settings.issuer,
        subject=subject,
        client_id=client_id if isinstance(client_id, str) else None,
        service_account=service_account,
        asserted_dag=asserted,
    )


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload of a compact JWS, NOT verified: only to pick the issuer and key."""
    try:
        signature = jws.extract_compact(token.encode("ascii"))
        payload = json.loads(signature.payload)
    except ExceededSizeError:  # joserfc caps the header (512 bytes), so no key fits in it
        raise AuthenticationFailed(reason="header_too_large") from None
    except (JoseError, ValueError, UnicodeError, RecursionError):  # nesting beyond the parser
        raise AuthenticationFailed(reason="malformed_token") from None
    if not isinstance(payload, dict):
        raise AuthenticationFailed(reason="malformed_token")
    return dict(signature.headers()), payload
