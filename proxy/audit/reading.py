"""Reading the audit log from the event loop, for the reviewers' API and page.

Each read opens a fresh read-only connection (:class:`~proxy.audit.reader.AuditReader`) in a
worker thread, so a slow query never blocks requests and every read sees the log as it is then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proxy.audit.checkpoint import Checkpoint
from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.record import ChainProblem

_T = TypeVar("_T")


class AuditLogReading:
    """The reads of one log file (the use cases' ``AuditReading``)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    async def query(self, flt: RecordFilter) -> list[dict[str, Any]]:
        """Records matching ``flt``, as :meth:`AuditReader.query` orders them."""
        return await self._read(lambda reader: list(reader.query(flt)))

    async def proof(self, seq: int) -> dict[str, Any] | None:
        """See :meth:`AuditReader.proof`."""
        return await self._read(lambda reader: reader.proof(seq))

    async def record(self, seq: int) -> dict[str, Any] | None:
        """Record ``seq``, the other records of its request, and whether a checkpoint seals it;
        ``None`` if there is no record ``seq``. One connection for the three reads."""

        def read(reader: AuditReader) -> dict[str, Any] | None:
            found = list(reader.query(RecordFilter(after_seq=seq - 1, limit=1)))
            if not found or found[0]["seq"] != seq:
                return None
            related = reader.query(RecordFilter(request_id=found[0]["request_id"]))
            return {
                "record": found[0],
                "related": [r for r in related if r["seq"] != seq],
                "sealed": reader.covering(seq) is not None,
            }

        return await self._read(read)

    async def head(self) -> tuple[tuple[int, str] | None, list[Checkpoint]]:
        """The newest record's ``(seq, hash)`` and every checkpoint, in one read."""
        return await self._read(lambda reader: (reader.head(), reader.checkpoints()))

    async def verify(self, public_key: Ed25519PublicKey | None) -> tuple[int, ChainProblem | None]:
        """Verify the whole log: how many records verified, and the first problem if any."""

        def read(reader: AuditReader) -> tuple[int, ChainProblem | None]:
            verified = 0
            for step in reader.verify(public_key):
                if isinstance(step, ChainProblem):
                    return verified, step
                verified += 1
            return verified, None

        return await self._read(read)

    async def denials_by_dag(self, since: str) -> dict[str | None, dict[str, int]]:
        """See :meth:`AuditReader.denials_by_dag`."""
        return await self._read(lambda reader: reader.denials_by_dag(since))

    async def _read(self, work: Callable[[AuditReader], _T]) -> _T:
        """Run ``work`` on a fresh read-only connection, off the event loop."""

        def run() -> _T:
            with AuditReader(self._path) as reader:
                return work(reader)

        return await asyncio.to_thread(run)
