"""Asking Open Policy Agent whether a DAG may run a statement.

The input document is versioned and described by ``policies/schemas/input.json``. The answer
is validated strictly: anything but a well-formed decision object is treated as a failure.
Fail closed, always: an OPA error, timeout or malformed answer is :class:`PolicyUnavailable`
(503); an undefined answer is a denial (403).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from opa_client import AsyncOpaClient
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from proxy.analysis import Analysis
from proxy.errors import PolicyUnavailable
from proxy.principal import Identity, Principal
from proxy.settings import OPASettings

INPUT_VERSION = 1
AccessMode = Literal["READ", "WRITE"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's verdict on one request, with the constraints the gateway enforces.

    Only a :class:`PolicyEngine` makes these.
    """

    allow: bool
    reasons: tuple[str, ...]
    decision_id: str
    access_mode: AccessMode
    timeout_s: float | None

    def as_document(self) -> dict[str, Any]:
        """The decision as it appears in the audit record."""
        return {"allow": self.allow, "reasons": list(self.reasons), "decision_id": self.decision_id}


def policy_input(
    principal: Principal,
    *,
    database: str,
    statement: str,
    parameter_names: list[str],
    requested_access_mode: AccessMode | None,
    analysis: Analysis,
) -> dict[str, Any]:
    """The input document OPA decides on; its shape is ``policies/schemas/input.json``."""
    return {
        "version": INPUT_VERSION,
        "principal": principal.as_document(),
        "request": {
            "database": database,
            "statement": statement,
            "parameter_names": sorted(parameter_names),
            "access_mode": requested_access_mode,
        },
        "analysis": analysis.as_document(),
    }


class PolicyEngine(Protocol):
    """Decides on an input document.

    Contract: return a :class:`Decision` for a well-formed answer (allow or deny); raise
    :class:`PolicyUnavailable` for anything else. Never return allow by default.
    """

    async def decide(self, document: dict[str, Any]) -> Decision: ...

    async def authorize_audit_read(self, identity: Identity) -> AccessDecision:
        """May this identity read the audit log? Deny unless the policy says so."""
        ...

    async def check_ready(self) -> None: ...


class _Constraints(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    access_mode: AccessMode
    timeout_ms: int | None = Field(default=None, gt=0)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    allow: StrictBool
    reasons: list[str] = Field(default_factory=list)
    constraints: _Constraints


class _AccessAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    allow: StrictBool
    reasons: list[str] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """Whether a caller may read the audit log, and why not."""

    allow: bool
    reasons: tuple[str, ...]


class OPAPolicyEngine:
    """A :class:`PolicyEngine` backed by an OPA server, through ``opa-python-client``."""

    def __init__(self, settings: OPASettings) -> None:
        url = urlsplit(settings.url)
        if url.scheme not in {"http", "https"} or url.hostname is None:
            raise ValueError(f"opa.url must be an http(s) URL, got {settings.url!r}")
        self._settings = settings
        self._client = AsyncOpaClient(
            host=url.hostname,
            port=url.port or (443 if url.scheme == "https" else 80),
            ssl=url.scheme == "https",
            retries=0,  # a retry would only stretch the time before we fail closed
            timeout=settings.timeout_s,
        )

    async def open(self) -> None:
        """Open the HTTP session; call once from inside the event loop."""
        await self._client._init_session()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._client.close_connection()

    async def _query(self, package: str, document: dict[str, Any]) -> dict[str, Any]:
        """OPA's raw answer for ``<package>.<rule>``; any failure is PolicyUnavailable."""
        try:
            async with asyncio.timeout(self._settings.timeout_s):
                response = await self._client.query_rule(
                    input_data=document, package_path=package, rule_name=self._settings.rule
                )
        except TimeoutError:
            raise PolicyUnavailable(reason="opa_timeout") from None
        except Exception as exc:  # aiohttp, JSON and client errors alike: fail closed
            raise PolicyUnavailable(reason=f"opa_error:{type(exc).__name__}") from exc
        if not isinstance(response, dict):
            raise PolicyUnavailable(reason="opa_malformed_decision")
        return response

    async def authorize_audit_read(self, identity: Identity) -> AccessDecision:
        """May ``identity`` read the audit log? Asks ``opa.audit_package``; denies by default."""
        document = {
            "version": INPUT_VERSION,
            "action": "audit.read",
            "identity": {**identity.as_document(), "client_id": identity.client_id},
        }
        response = await self._query(self._settings.audit_package, document)
        if "result" not in response:
            return AccessDecision(allow=False, reasons=("policy_undefined",))
        try:
            answer = _AccessAnswer.model_validate(response["result"])
        except ValidationError:
            raise PolicyUnavailable(reason="opa_malformed_decision") from None
        return AccessDecision(allow=answer.allow, reasons=tuple(answer.reasons))

    async def decide(self, document: dict[str, Any]) -> Decision:
        """Ask OPA for ``<package>.<rule>`` on ``document``; see the module docstring."""
        response = await self._query(self._settings.package, document)
        decision_id = str(uuid.uuid4())
        if "result" not in response:
            return Decision(
                allow=False,
                reasons=("policy_undefined",),
                decision_id=decision_id,
                access_mode="READ",
                timeout_s=None,
            )
        try:
            answer = _Answer.model_validate(response["result"])
        except ValidationError:
            raise PolicyUnavailable(reason="opa_malformed_decision") from None
        constraints = answer.constraints
        return Decision(
            allow=answer.allow,
            reasons=tuple(answer.reasons),
            decision_id=decision_id,
            access_mode=constraints.access_mode,
            timeout_s=constraints.timeout_ms / 1000 if constraints.timeout_ms else None,
        )

    async def check_ready(self) -> None:
        """Raise unless OPA answers its health check."""
        if not await self._client.check_health():
            raise PolicyUnavailable(reason="opa_unhealthy")
