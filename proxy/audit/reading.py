"""Reading the audit log from the event loop, for the reviewers' API and page.

Each read opens a fresh read-only connection (:class:`~proxy.audit.reader.AuditReader`) on one
of :data:`READ_THREADS` threads of its own, so a slow query never blocks requests and every read
sees the log as it is then. Not the event loop's default executor: the request path needs that
one (the loop's DNS lookups for a new connection, lease records), and a whole-chain verify or a
text search over a long log holds a thread for seconds to minutes; more reads wait their turn.

A replica with several workers (``server.workers``) keeps one chain per worker, and any worker
may answer a reviewer: every read names its chain (``None``: the replica's first), and the
chains are looked up on disk at each read, so a worker that started later is never missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proxy.audit.checkpoint import Checkpoint
from proxy.audit.reader import AuditReader, DamagedLog, NotAnAuditLog, RecordFilter
from proxy.audit.record import ChainProblem
from proxy.chains import chains_on_disk
from proxy.errors import AuditChainNotFound, CypherGateError

_T = TypeVar("_T")
# Reviewers' reads at once; more wait for one of these threads.
READ_THREADS = 2


class AuditLogReading:
    """The reads of a replica's log, chain by chain (the use cases' ``AuditReading``);
    ``path`` and ``chain_id`` name the replica's own chain or one of its workers'."""

    def __init__(self, path: Path, chain_id: str = "gateway") -> None:
        self._path = path
        self._chain_id = chain_id
        # Idle threads end with the process; a thread is started only by a first read.
        self._executor = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="audit-reading")

    async def chains(self) -> list[str]:
        """The replica's chains, the default first."""
        return [chain for chain, _ in await self._on_thread(self._chains)]

    async def query(self, flt: RecordFilter, chain: str | None = None) -> list[dict[str, Any]]:
        """Records matching ``flt``, as :meth:`AuditReader.query` orders them."""
        return await self._read(chain, lambda reader: list(reader.query(flt)))

    async def proof(self, seq: int, chain: str | None = None) -> dict[str, Any] | None:
        """See :meth:`AuditReader.proof`."""
        return await self._read(chain, lambda reader: reader.proof(seq))

    async def record(self, seq: int, chain: str | None = None) -> dict[str, Any] | None:
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

        return await self._read(chain, read)

    async def head(
        self, chain: str | None = None
    ) -> tuple[tuple[int, str] | None, list[Checkpoint]]:
        """The newest record's ``(seq, hash)`` and every checkpoint, in one read."""
        return await self._read(chain, lambda reader: (reader.head(), reader.checkpoints()))

    async def verify(
        self,
        public_key: Ed25519PublicKey | None,
        chain: str | None = None,
        *,
        sealed_before: str | None = None,
    ) -> tuple[int, ChainProblem | None]:
        """Verify the whole log: how many records verified, and the first problem if any. Its
        checkpoints must name the chain read (another worker's file in its place names its
        own), and with ``sealed_before`` no older record may follow the last checkpoint."""
        name = chain or (await self.chains())[0]

        def read(reader: AuditReader) -> tuple[int, ChainProblem | None]:
            verified = 0
            for step in reader.verify(public_key, chain=name, sealed_before=sealed_before):
                if isinstance(step, ChainProblem):
                    return verified, step
                verified += 1
            return verified, None

        return await self._read(name, read)

    async def denials_by_dag(
        self, since: str, chain: str | None = None
    ) -> dict[str | None, dict[str, int]]:
        """See :meth:`AuditReader.denials_by_dag`."""
        return await self._read(chain, lambda reader: reader.denials_by_dag(since))

    def _chains(self) -> list[tuple[str, Path]]:
        return chains_on_disk(self._path, self._chain_id) or [(self._chain_id, self._path)]

    async def _read(self, chain: str | None, work: Callable[[AuditReader], _T]) -> _T:
        """Run ``work`` on a fresh read-only connection to ``chain``, off the event loop."""

        def run() -> _T:
            chains = self._chains()
            path = chains[0][1] if chain is None else dict(chains).get(chain)
            if path is None:
                raise AuditChainNotFound(chain or "")
            try:
                with AuditReader(path) as reader:
                    return work(reader)
            except NotAnAuditLog as exc:  # said to the reviewer, not a 500 naming nothing
                raise _unreadable(exc) from None

        return await self._on_thread(run)

    async def _on_thread(self, work: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)


def _unreadable(error: NotAnAuditLog) -> CypherGateError:
    """What a reviewer is told of a chain's file that cannot be read as a log (edited into what
    no writer makes, or no log at all): a 500 that says so, without the file's path."""
    if isinstance(error, DamagedLog):
        return CypherGateError(
            "The audit log holds a record or checkpoint no gateway writes: it was altered."
            " `cyphergate audit verify` names the first altered record.",
            reason="audit_log_damaged",
        )
    return CypherGateError(
        "The audit log's file cannot be read as an audit log.", reason="audit_log_unreadable"
    )
