"""Reviewers reading the audit log through the gateway: who may, and what they get.

Reading is itself audited: every attempt leaves an ``access`` record (written before the log is
read), so reviewers are reviewed too. Only identities the policy grants (``opa.audit_package``)
may read; DAG identities are refused unless a security team lists them, which it should not.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from proxy.audit import AuditLog
from proxy.audit.record import AuditEvent, concluded, utc_timestamp
from proxy.audit.sqlite import AuditReader, RecordFilter
from proxy.auth import SchemeRouter
from proxy.clock import Clock
from proxy.errors import CypherGateError, PolicyDenied, RecordNotProvable
from proxy.policy import PolicyEngine

MAX_PAGE = 1000


class AuditReview:
    """Authorises reviewers and answers their queries from the log file."""

    def __init__(
        self,
        *,
        authenticator: SchemeRouter,
        policy: PolicyEngine,
        audit: AuditLog,
        path: Path,
        clock: Clock,
    ) -> None:
        self._authenticator = authenticator
        self._policy = policy
        self._audit = audit
        self._path = path
        self._clock = clock

    async def authorize(
        self, authorization: str | None, request_id: str, client: str | None
    ) -> None:
        """Raise unless the caller may read the log; record the attempt either way."""
        started = self._clock()
        event = AuditEvent(
            event="access", time=utc_timestamp(started), request_id=request_id, client=client
        )
        error: CypherGateError | None = None
        try:
            identity = await self._authenticator.authenticate(authorization)
            event = replace(event, principal={**identity.as_document(), "dag": None})
            decision = await self._policy.authorize_audit_read(identity)
            event = replace(
                event,
                decision={
                    "allow": decision.allow,
                    "reasons": list(decision.reasons),
                    "decision_id": str(uuid.uuid4()),
                },
            )
            if not decision.allow:
                error = PolicyDenied(list(decision.reasons))
        except CypherGateError as caught:
            error = caught
        await self._audit.append(
            concluded(
                event,
                started=started,
                now=self._clock(),
                status=200 if error is None else error.status,
                error=None if error is None else error.as_document(),
            )
        )
        if error is not None:
            raise error

    async def records(self, flt: RecordFilter) -> dict[str, Any]:
        """One page of records, oldest first, and where the next page starts."""
        limit = min(flt.limit or 100, MAX_PAGE)
        page = replace(flt, limit=limit)

        def read() -> list[dict[str, Any]]:
            with AuditReader(self._path) as reader:
                return list(reader.query(page))

        records = await asyncio.to_thread(read)
        after = records[-1]["seq"] if len(records) == limit else None
        return {"records": records, "next_after": after}

    async def proof(self, seq: int) -> dict[str, Any]:
        """The links and signed checkpoint that prove record ``seq``."""

        def read() -> dict[str, Any] | None:
            with AuditReader(self._path) as reader:
                return reader.proof(seq)

        proof = await asyncio.to_thread(read)
        if proof is None:
            raise RecordNotProvable(reason="record_not_provable")
        return proof
