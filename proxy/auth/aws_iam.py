"""AWS IAM authentication, the way HashiCorp Vault does it.

The caller signs an ``sts:GetCallerIdentity`` request with its AWS credentials (SigV4, by
botocore; see :mod:`proxy.client`) but does not send it. It sends the gateway the request's
method, URL, body and headers instead, in ``Authorization: CypherGate-AWS-IAM <proof>``, where
``<proof>`` is base64 of the JSON object ``{"method", "url", "body" (base64), "headers"}``. The
gateway checks the request is exactly that one harmless call, addressed to a configured STS
endpoint, signed over our server id and recent, then forwards it to STS, which verifies the
signature and answers who signed it. The gateway never checks a signature itself.

Checks, in order; each failure is a 401 with its own audit reason:

1. the proof decodes to exactly those four fields (``iam_malformed_proof``);
2. method ``POST`` (``iam_method_not_post``); body exactly
   ``Action=GetCallerIdentity&Version=2011-06-15`` (``iam_body_not_allowed``);
3. URL exactly one of ``sts_endpoints``: no other host is ever contacted (``iam_url_not_allowed``);
4. headers only from an allow-list, no duplicates, values in printable ASCII (no line break
   to split the request sent on), ``Host`` (if sent) the URL's (``iam_header_not_allowed``);
5. ``X-CypherGate-Server-ID`` present, equal to ours, and listed in ``SignedHeaders``
   (``iam_server_id_missing`` / ``_mismatch`` / ``_unsigned``), so a proof made for another
   service cannot be replayed here; the ``Authorization`` header exactly SigV4's form, each of
   its parts once (``iam_authorization_malformed``), so that no second ``SignedHeaders`` can
   say otherwise to STS than to us;
6. ``X-Amz-Date`` at most ``max_age_s`` ago and at most a minute ahead (clocks disagree),
   so that no proof is good for longer than ``max_age_s`` and a minute (``iam_request_stale``);
7. STS, reached with redirects off, answers 200 with a well-formed identity (``iam_sts_rejected``,
   ``iam_sts_malformed``; STS down or throttling the gateway is a 503, ``iam_sts_status_<n>``,
   ``iam_sts_throttled``); an assumed-role ARN is reduced to its role,
   ``arn:aws:iam::ACCOUNT:role/NAME``: the session name is the caller's choice and never names a
   DAG.

A verified proof is remembered until its date leaves the window, so a worker repeating the same
proof costs no STS round trip; afterwards the same proof is stale.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import httpx
from defusedxml import ElementTree

from proxy.clock import Clock
from proxy.errors import AuthenticationFailed, IdentityProviderUnavailable
from proxy.principal import Identity
from proxy.settings import IAMSettings
from proxy.wire import GET_CALLER_IDENTITY_BODY as GET_CALLER_IDENTITY_BODY
from proxy.wire import IAM_SCHEME
from proxy.wire import SERVER_ID_HEADER as SERVER_ID_HEADER

# The names live in proxy.wire, so that callers sign proofs without importing the server.
SCHEME = IAM_SCHEME
ALLOWED_HEADERS = frozenset(
    {
        "authorization",
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
        SERVER_ID_HEADER.lower(),
    }
)
_MAX_PROOF_BYTES = 16 * 1024
CLOCK_SKEW_S = 60  # how far ahead of ours a signer's clock may be
# Signature Version 4's Authorization header, exactly: the algorithm, then Credential,
# SignedHeaders and Signature, each once, in that order.
_SIGNATURE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=[A-Za-z0-9/_\-]+, ?"
    r"SignedHeaders=(?P<signed>[a-z0-9\-]+(?:;[a-z0-9\-]+)*), ?"
    r"Signature=[0-9a-f]{64}"
)
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")  # printable ASCII: what a signed header may hold
_STS_NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"
_ASSUMED_ROLE = re.compile(r"arn:(aws[a-z\-]*):sts::(\d{12}):assumed-role/([\w+=,.@\-]+)/[^/]+")
_IAM_ROLE_OR_USER = re.compile(r"arn:(aws[a-z\-]*):iam::(\d{12}):(role|user)/[\w+=,.@\-/]+")
_CACHE_SIZE = 4096
_THROTTLED = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded"})


class IAMAuthenticator:
    """Verifies Vault-style signed ``GetCallerIdentity`` proofs through STS."""

    def __init__(self, settings: IAMSettings, http: httpx.AsyncClient, clock: Clock) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._verified: OrderedDict[str, tuple[float, Identity]] = OrderedDict()

    async def authenticate(self, credentials: str) -> Identity:
        """Verify a proof; see the module docstring for every check."""
        proof = _decode(credentials)
        headers = self._checked_request(proof)
        signed_at = self._checked_date(headers)
        key = hashlib.sha256(credentials.encode("ascii", "replace")).hexdigest()
        cached = self._verified.get(key)
        if cached is not None:
            return cached[1]
        identity = await self._ask_sts(proof["url"], headers)
        self._remember(key, signed_at, identity)
        return identity

    async def check_ready(self) -> None:
        """Nothing to prefetch: STS is asked per proof."""
        return None

    def _checked_request(self, proof: dict[str, Any]) -> dict[str, str]:
        if proof["method"] != "POST":
            raise AuthenticationFailed(reason="iam_method_not_post")
        if proof["body"] != GET_CALLER_IDENTITY_BODY:
            raise AuthenticationFailed(reason="iam_body_not_allowed")
        if proof["url"] not in self._settings.sts_endpoints:
            raise AuthenticationFailed(reason="iam_url_not_allowed")
        headers: dict[str, str] = {}
        for name, value in proof["headers"].items():
            lower = name.lower()
            if lower not in ALLOWED_HEADERS or lower in headers:
                raise AuthenticationFailed(reason="iam_header_not_allowed")
            if _HEADER_VALUE.fullmatch(value) is None:  # a line break would split the request
                raise AuthenticationFailed(reason="iam_header_not_allowed")
            headers[lower] = value
        host = headers.pop("host", None)
        if host is not None and host != httpx.URL(proof["url"]).netloc.decode("ascii"):
            raise AuthenticationFailed(reason="iam_header_not_allowed")
        server_id = headers.get(SERVER_ID_HEADER.lower())
        if server_id is None:
            raise AuthenticationFailed(reason="iam_server_id_missing")
        if not hmac.compare_digest(server_id.encode(), self._settings.server_id.encode()):
            raise AuthenticationFailed(reason="iam_server_id_mismatch")
        authorization = headers.get("authorization")
        if authorization is None:
            raise AuthenticationFailed(reason="iam_server_id_unsigned")
        signed = _SIGNATURE.fullmatch(authorization)
        if signed is None:  # one of each part, once: no second SignedHeaders for STS to read
            raise AuthenticationFailed(reason="iam_authorization_malformed")
        if SERVER_ID_HEADER.lower() not in signed.group("signed").split(";"):
            raise AuthenticationFailed(reason="iam_server_id_unsigned")
        return headers

    def _checked_date(self, headers: dict[str, str]) -> float:
        try:
            signed_at = datetime.strptime(headers.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ")
        except ValueError:
            raise AuthenticationFailed(reason="iam_date_missing") from None
        timestamp = signed_at.replace(tzinfo=UTC).timestamp()
        age = self._clock() - timestamp
        # Signed in the future by more than clocks disagree would stretch the window a proof is
        # good for (and remembered) beyond max_age_s.
        if age > self._settings.max_age_s or -age > min(CLOCK_SKEW_S, self._settings.max_age_s):
            raise AuthenticationFailed(reason="iam_request_stale")
        return timestamp

    async def _ask_sts(self, url: str, headers: dict[str, str]) -> Identity:
        forwarded = {k: v for k, v in headers.items() if k != "content-length"}
        try:
            response = await self._http.post(
                url,
                content=GET_CALLER_IDENTITY_BODY.encode(),
                headers=forwarded,
                follow_redirects=False,
                timeout=self._settings.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise IdentityProviderUnavailable(reason="iam_sts_unreachable") from exc
        if response.status_code >= 500:
            raise IdentityProviderUnavailable(reason=f"iam_sts_status_{response.status_code}")
        if _throttled(response):  # STS's rate, not the proof: a 503 the caller retries
            raise IdentityProviderUnavailable(reason="iam_sts_throttled")
        if response.status_code != 200:
            raise AuthenticationFailed(reason="iam_sts_rejected")
        return _identity_from(response.content)

    def _remember(self, key: str, signed_at: float, identity: Identity) -> None:
        now = self._clock()
        self._verified[key] = (signed_at, identity)
        # Forget proofs that have left the window, and keep the cache bounded.
        while self._verified:
            oldest_key, (oldest_at, _) = next(iter(self._verified.items()))
            if now - oldest_at <= self._settings.max_age_s and len(self._verified) <= _CACHE_SIZE:
                break
            del self._verified[oldest_key]


def _decode(credentials: str) -> dict[str, Any]:
    if len(credentials) > _MAX_PROOF_BYTES:
        raise AuthenticationFailed(reason="iam_malformed_proof")
    try:
        proof = json.loads(base64.b64decode(credentials, validate=True))
        if not isinstance(proof, dict) or set(proof) != {"method", "url", "body", "headers"}:
            raise ValueError("wrong fields")
        body = base64.b64decode(proof["body"], validate=True).decode("utf-8")
        headers = proof["headers"]
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("headers must be a string map")
        if not isinstance(proof["method"], str) or not isinstance(proof["url"], str):
            raise ValueError("method and url must be strings")
    except (ValueError, TypeError, binascii.Error, UnicodeError, RecursionError):
        raise AuthenticationFailed(reason="iam_malformed_proof") from None
    return {"method": proof["method"], "url": proof["url"], "body": body, "headers": headers}


def _throttled(response: httpx.Response) -> bool:
    """Whether STS turned the call away for the rate of calls (429, or 400 with a code botocore
    retries as throttling), not for what the proof proves."""
    if response.status_code == 429:
        return True
    if response.status_code != 400:
        return False
    try:
        root = ElementTree.fromstring(response.content)
    except (ElementTree.ParseError, ValueError):
        return False
    codes = (element.text for element in root.iter() if element.tag.rpartition("}")[2] == "Code")
    return next(codes, None) in _THROTTLED


def _identity_from(xml: bytes) -> Identity:
    try:
        root = ElementTree.fromstring(xml)
        arn = root.findtext(f"{_STS_NS}GetCallerIdentityResult/{_STS_NS}Arn")
        account = root.findtext(f"{_STS_NS}GetCallerIdentityResult/{_STS_NS}Account")
    except (ElementTree.ParseError, ValueError):  # defusedxml refusals are ValueErrors
        raise AuthenticationFailed(reason="iam_sts_malformed") from None
    if not arn or not account:
        raise AuthenticationFailed(reason="iam_sts_malformed")
    assumed = _ASSUMED_ROLE.fullmatch(arn)
    if assumed is not None:
        partition, arn_account, role = assumed.groups()
        subject = f"arn:{partition}:iam::{arn_account}:role/{role}"
    elif _IAM_ROLE_OR_USER.fullmatch(arn) is not None:
        subject = arn
    else:
        raise AuthenticationFailed(reason="iam_unsupported_principal")
    if f":{account}:" not in subject:
        raise AuthenticationFailed(reason="iam_sts_malformed")
    return Identity(method="aws_iam", issuer=f"aws:{account}", subject=subject)
