"""What a sink sends for one committed record: our own form, or an OCSF event.

Our form is ``{"chain", "seq", "hash", "record"}``, where ``record`` is the record's body as a
JSON object: its canonical JSON (:func:`proxy.audit.record.canonical`) hashes to ``hash``, so a
receiver can check each record and drop a duplicate by ``(chain, seq)`` (delivery is at least
once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from proxy.audit.record import verdict_of
from proxy.siem.ocsf import ocsf_event

Format = Literal["record", "ocsf"]


@dataclass(frozen=True, slots=True)
class Committed:
    """One record as the chain holds it: its place, canonical body, hash and time."""

    seq: int
    body: str
    hash: str
    time: str


@dataclass(frozen=True, slots=True)
class Event:
    """A record rendered for a destination, with what transports put in their headers."""

    chain: str
    seq: int
    hash: str
    time: str
    kind: str
    refused: bool
    document: dict[str, Any]


def render(committed: Committed, *, chain: str, form: Format) -> Event:
    """The event a sink sends for ``committed``, in ``form``."""
    record: dict[str, Any] = json.loads(committed.body)
    if form == "ocsf":
        document = ocsf_event(
            chain=chain, seq=committed.seq, hash_=committed.hash, body=committed.body, record=record
        )
    else:
        document = {"chain": chain, "seq": committed.seq, "hash": committed.hash, "record": record}
    status = record.get("status")
    return Event(
        chain=chain,
        seq=committed.seq,
        hash=committed.hash,
        time=committed.time,
        kind=str(record.get("event")),
        refused=verdict_of(record.get("decision"), event=record.get("event")) == "deny"
        or (isinstance(status, int) and status >= 400),
        document=document,
    )


def json_line(event: Event) -> bytes:
    """The event's document as one line of compact UTF-8 JSON, without the newline."""
    return json.dumps(event.document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
