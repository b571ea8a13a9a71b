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
from proxy.audit.reader import BadFilter, RecordFilter
from proxy.audit.record import EventKind
from proxy.errors import BadRequest
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
    after: str | None = None,
    limit: str | None = None,
    chain: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """One page of records matching the filters of ``audit query``, oldest first."""
    review = await _authorized(request)
    try:
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
            after_seq=None if after is None else record_number(after, "after", minimum=0),
            limit=100 if limit is None else record_number(limit, "limit", maximum=1000),
        )
    except BadFilter as exc:
        raise BadRequest(str(exc), reason="bad_filter") from exc
    return await review.records(flt, chain)


@router.get("/records/{seq}/proof")
async def proof(
    request: Request, seq: str, chain: Annotated[str | None, Query(max_length=200)] = None
) -> dict[str, Any]:
    """What proves record ``seq`` of ``chain`` with nothing but the public key."""
    review = await _authorized(request)
    try:
        number = record_number(seq, "seq")
    except BadFilter as exc:
        raise BadRequest(str(exc), reason="bad_filter") from exc
    return await review.proof(number, chain)


_MAX_SEQ = 2**63 - 1  # SQLite's INTEGER


def record_number(text: str, name: str, *, minimum: int = 1, maximum: int = _MAX_SEQ) -> int:
    """``text`` as a whole number in ``[minimum, maximum]``, ASCII digits only.

    Python's ``int`` takes other scripts' digits (``"٣"``) and any size; SQLite takes neither
    past 64 bits, so both are refused here as the caller's mistake (400), never a 500.
    """
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        raise BadFilter(f"{name}: expected a whole number (ASCII digits)")
    number = int(text)
    if not minimum <= number <= maximum:
        raise BadFilter(f"{name}: expected a number from {minimum} to {maximum}")
    return number
