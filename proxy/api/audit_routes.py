"""Reviewers' HTTP API: ``GET /audit/records`` and ``GET /audit/records/{seq}/proof``.

Both take ``chain`` (one of the replica's chains, one per worker; default: the first); a page of
records names its chain and every chain there is.

Every call is authorised by the audit-access policy and leaves an ``access`` record
(:mod:`proxy.gateway.review`), whether it is allowed or not.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from proxy.api.state import client_address, runtime, start_request
from proxy.audit.reader import RecordFilter
from proxy.audit.record import EventKind
from proxy.gateway.review import AuditReview

router = APIRouter(prefix="/audit")


async def _authorized(request: Request) -> AuditReview:
    """The review use case, once the bearer credential's identity may read the log."""
    request_id = start_request(request)
    review = runtime(request).review
    prove = review.bearer(request.headers.get("authorization"))
    await review.authorize(prove, request_id, client_address(request))
    return review


@router.get("/records")
async def records(
    request: Request,
    dag: str | None = None,
    event: EventKind | None = None,
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
    chain: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """One page of records matching the filters of ``audit query``, oldest first."""
    review = await _authorized(request)
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
    return await review.records(flt, chain)


@router.get("/records/{seq}/proof")
async def proof(
    request: Request, seq: int, chain: Annotated[str | None, Query(max_length=200)] = None
) -> dict[str, Any]:
    """What proves record ``seq`` of ``chain`` with nothing but the public key."""
    review = await _authorized(request)
    return await review.proof(seq, chain)
