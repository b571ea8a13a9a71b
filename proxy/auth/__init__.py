"""Authentication: turning a request's credential into a verified :class:`Identity`.

Rules: this wing imports the foundation and :mod:`proxy.principal` only; which DAG an identity
acts as is :class:`~proxy.principal.DagResolver`'s business, whether it may is the policy's.
``proxy/app/`` builds the authenticators from ``auth.*`` and hands them their HTTP client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from proxy.errors import AuthenticationFailed, CypherGateError
from proxy.principal import Identity

log = logging.getLogger(__name__)


class Authenticator(Protocol):
    """Verifies one kind of credential.

    Contract: return an :class:`Identity` only for a credential that verified completely;
    raise :class:`AuthenticationFailed` (with a ``reason`` for the audit log) for anything else.
    Never log or echo the credential.
    """

    async def authenticate(self, credentials: str) -> Identity: ...

    async def check_ready(self) -> None:
        """Raise if the authenticator cannot verify credentials right now."""
        ...


class SchemeRouter:
    """Sends the ``Authorization`` header to the authenticator registered for its scheme."""

    def __init__(self, by_scheme: Mapping[str, Authenticator]) -> None:
        self._names = sorted(by_scheme)
        self._by_scheme = {scheme.lower(): auth for scheme, auth in by_scheme.items()}

    @property
    def schemes(self) -> list[str]:
        """The schemes offered in ``WWW-Authenticate``."""
        return list(self._names)

    async def authenticate(self, authorization: str | None) -> Identity:
        """Verify the header value; no header is a 401, like any bad credential, and so is a
        credential an authenticator fails on in a way it did not foresee (fail closed: the
        failure's type is logged, never the credential)."""
        if authorization is None or not authorization.strip():
            raise AuthenticationFailed(reason="missing_credential")
        scheme, _, credentials = authorization.strip().partition(" ")
        authenticator = self._by_scheme.get(scheme.lower())
        if authenticator is None:
            raise AuthenticationFailed(reason="unsupported_scheme")
        credentials = credentials.strip()
        if not credentials:
            raise AuthenticationFailed(reason="empty_credential")
        if "," in credentials:
            # No token or IAM proof holds a comma: an Authorization header sent twice, which
            # the HTTP door joins as HTTP does ("Bearer a, Bearer b"), names no one caller.
            raise AuthenticationFailed(reason="several_credentials")
        try:
            return await authenticator.authenticate(credentials)
        except CypherGateError:
            raise
        except Exception as exc:
            log.error("A credential could not be verified (%s): refused", type(exc).__name__)
            raise AuthenticationFailed(reason=f"unverifiable:{type(exc).__name__}") from None

    async def check_ready(self) -> None:
        """Raise if any authenticator is not ready."""
        for authenticator in self._by_scheme.values():
            await authenticator.check_ready()
