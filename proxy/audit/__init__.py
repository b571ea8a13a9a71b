"""The audit log: a hash-chained, append-only record of every request and what it did."""

from __future__ import annotations

from typing import Protocol

from proxy.audit.record import AuditEvent
from proxy.audit.sqlite import Receipt


class AuditLog(Protocol):
    """Where audit events go.

    Contract: ``append`` returns only once the event is durable and chained; if it cannot be
    written it raises :class:`~proxy.errors.AuditUnavailable`, and the caller must not run the
    statement.
    """

    async def append(self, event: AuditEvent) -> Receipt: ...

    async def check_ready(self) -> None: ...
