"""Reviewers' HTTP API: ``GET /audit/records`` and ``GET /audit/records/{seq}/proof``.

Both take ``chain`` (one of the replica's chains, one per worker; default: the first); a page of
records names its chain and every chain there is.

Every call is authorised by the audit-access policy and leaves an ``access`` record
(:mod:`proxy.gateway.review`), whether it is allowed or not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from fastapi import APIRouter, Request

from proxy.api.state import client_address, combined, runtime, start_request
from proxy.audit.reader import BadFilter, RecordFilter
from proxy.audit.record import EVENT_KINDS
from proxy.errors import AuditChainNotFound, BadRequest, CypherGateError
from proxy.gateway.review import AuditReview

router = APIRouter(prefix="/audit")
Read = TypeVar("Read")
_MAX_CHAIN = 200


async def _authorized(
    request: Request,
    read: Callable[[], Read],
    chain: str | None,
    lookup: Callable[[AuditReview, Read], Awaitable[object]] | None = None,
) -> tuple[AuditReview, Read]:
    """The review use case, once the bearer credential's identity may read the log, and what
    ``read`` makes of the request's parameters.

    The parameters are plain text, read here and not by FastAPI: a value FastAPI refuses is a
    422 before any route runs, so it left no ``access`` record. An unreadable one is a 400
    naming it, and a ``chain`` the replica does not keep a 404, recorded with that status (not
    as a read that succeeded), and only for a caller who may read the log. So is what
    ``lookup`` raises, looking for what was asked once the caller may read (a proof of a
    record there is none of).
    """
    request_id = start_request(request)
    review = runtime(request).review
    # Joined if sent twice, and so refused (several_credentials), as the query door does:
    # never the first of two, which a proxy in front reading the last would not have checked.
    prove = review.bearer(combined(request.headers).get("authorization"))
    refusal: CypherGateError | None = None
    try:
        value = read()
    except BadFilter as exc:
        value, refusal = None, BadRequest(str(exc), reason="bad_filter")

    async def find() -> None:
        # Once the caller may read: the log is read for nobody else, and whatever fails here
        # is recorded as the answer it becomes.
        if chain is not None and chain not in await review.chains():
            raise AuditChainNotFound(chain)
        if lookup is not None and value is not None:
            await lookup(review, value)

    await review.authorize(prove, request_id, client_address(request), refusal=refusal, lookup=find)
    if value is None:  # refused, and authorize raised it
        raise AssertionError("unreachable")
    return review, value


@router.get("/records")
async def records(
    request: Request,
    dag: str | None = None,
    event: str | None = None,
    decision: str | None = None,
    database: str | None = None,
    principal: str | None = None,
    reason: str | None = None,
    text: str | None = None,
    label: str | None = None,
    since: str | None = None,
    until: str | None = None,
    after: str | None = None,
    limit: str | None = None,
    chain: str | None = None,
) -> dict[str, Any]:
    """One page of records matching the filters of ``audit query``, oldest first."""

    def read() -> RecordFilter:
        chain_name(chain)
        return RecordFilter(
            dag=dag,
            event=one_of(event, "event", EVENT_KINDS),
            verdict=one_of(decision, "decision", ("allow", "deny")),
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

    review, flt = await _authorized(request, read, chain)
    return await review.records(flt, chain)


@router.get("/records/{seq}/proof")
async def proof(request: Request, seq: str, chain: str | None = None) -> dict[str, Any]:
    """What proves record ``seq`` of ``chain`` with nothing but the public key."""

    def read() -> int:
        chain_name(chain)
        return record_number(seq, "seq")

    proofs: list[dict[str, Any]] = []

    async def find(review: AuditReview, number: int) -> None:
        proofs.append(await review.proof(number, chain))  # RecordNotProvable: a 404, recorded

    await _authorized(request, read, chain, find)
    return proofs[0]


def one_of(text: str | None, name: str, choices: Iterable[str]) -> str | None:
    """``text``, if it is one of ``choices`` (or not given)."""
    if text is None or text in choices:
        return text
    raise BadFilter(f"{name}: expected one of {', '.join(choices)}")


def chain_name(text: str | None) -> None:
    """Refuse a ``chain`` no replica could have (``audit.chain_id`` is short)."""
    if text is not None and len(text) > _MAX_CHAIN:
        raise BadFilter(f"chain: expected at most {_MAX_CHAIN} characters")


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
