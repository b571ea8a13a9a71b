"""What a sink sends for one committed record: our own form, or an OCSF event.

Our form is ``{"chain", "seq", "hash", "record"}``, where ``record`` is the record's body as a
JSON object: its canonical JSON (:func:`proxy.audit.record.canonical`) hashes to ``hash``, so a
receiver can check each record and drop a duplicate by ``(chain, seq)`` (delivery is at least
once). The body is canonical JSON already, so this form is spliced around it, never parsed and
re-encoded: a sink's work per record is a few string operations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from proxy.siem.ocsf import ocsf_event

Format = Literal["record", "ocsf"]


@dataclass(frozen=True, slots=True)
class Committed:
    """One record as the chain holds it: its place, time, event and verdict columns, canonical
    body and hash."""

    seq: int
    time: str
    event: str
    verdict: str
    body: str
    hash: str


@dataclass(frozen=True, slots=True)
class Event:
    """A record rendered for a destination: ``line`` is its document as one line of compact
    UTF-8 JSON (no newline), beside what transports put in their headers."""

    chain: str
    seq: int
    hash: str
    time: str
    kind: str
    refused: bool
    line: bytes


def render(committed: Committed, *, chain: str, form: Format) -> Event:
    """The event a sink sends for ``committed``, in ``form``."""
    if form == "ocsf":
        document = ocsf_event(
            chain=chain,
            seq=committed.seq,
            hash_=committed.hash,
            body=committed.body,
            record=json.loads(committed.body),
        )
        line = compact(document)
    else:
        line = (
            f'{{"chain":{json.dumps(chain, ensure_ascii=False)},"seq":{committed.seq},'
            f'"hash":"{committed.hash}","record":{committed.body}}}'
        ).encode()
    return Event(
        chain=chain,
        seq=committed.seq,
        hash=committed.hash,
        time=committed.time,
        kind=committed.event,
        refused=committed.verdict == "deny",
        line=line,
    )


def compact(document: dict[str, Any]) -> bytes:
    """``document`` as compact UTF-8 JSON."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
