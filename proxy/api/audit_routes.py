"""Reviewers' HTTP API: ``GET /audit/records`` and ``GET /audit/records/{seq}/proof``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from proxy.api.routes import client_address
from proxy.audit.reader import RecordFilter
from proxy.audit.review import AuditReview
from proxy.gateway import new_request_id


def build_audit_router() -> APIRouter:
    """Routes reading the audit log; the lifespan puts an :class:`AuditReview` on app.state."""
    router = APIRouter(prefix="/audit")

    async def authorized(request: Request) -> AuditReview:
        request_id = new_request_id()
        request.state.request_id = request_id
        review: AuditReview = request.app.state.review
        client = client_address(request)
        await review.authorize(
            review.bearer(request.headers.get("authorization")), request_id, client
        )
        return review

    @router.get("/records")
    async def records(
        request: Request,
        dag: str | None = None,
        event: Literal["decision", "outcome", "access"] | None = None,
        decision: Literal["allow", "deny"] | None = None,
        database: str | None = None,
        principal: str | None = None,
        reason: str | None = None,
        text: str | None = None,
        label: str | None = None,
        since: str | None = None,
        until: str | None = None,
        after: Annotated[int | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        review = await authorized(request)
        flt = RecordFilter(
            dag=dag,
            event=event,
            verdict=decision,
            database=database,
            subject=principal,
            reason=reason,
            text=text,
            label=label,
            since=since,
            until=until,
            after_seq=after,
            limit=limit,
        )
        return await review.records(flt)

    @router.get("/records/{seq}/proof")
    async def proof(request: Request, seq: int) -> dict[str, Any]:
        review = await authorized(request)
        return await review.proof(seq)

    return router
