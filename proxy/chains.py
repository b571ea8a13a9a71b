"""The processes of a replica, named apart: which audit chain, leases record and leased-user
prefix each worker of ``server.workers`` uses, and where a replica's chains are found on disk.

One rule for the gateway (each worker opens its own) and for the tools that read them all
(``cyphergate audit verify|query|archive``).
"""

from __future__ import annotations

import re
from pathlib import Path

from proxy.settings import AuditSettings, Settings


def worker_settings(settings: Settings, index: int) -> Settings:
    """The settings of worker ``index`` (1 to ``server.workers``) of a replica.

    Each worker appends to a chain of its own (``audit.path`` and ``audit.chain_id`` suffixed
    ``-w<index>``), and leases users under a prefix of its own (``<prefix>w<index>_``, none a
    prefix of another's) recorded in a leases file of its own, so that no worker ever sweeps
    another's users. Only worker 1 rotates the gateway's password (``neo4j.rotation_interval_s``):
    the workers share its secret and start together, and rotations of one secret at once refuse
    each other's logins and, on Secrets Manager, which has no lock, displace each other's staged
    value; the others follow the store. One worker alone keeps the names as configured.
    """
    if settings.server.workers == 1:
        return settings
    if not 1 <= index <= settings.server.workers:
        raise ValueError(f"worker {index} of {settings.server.workers} does not exist")
    neo4j = settings.neo4j.model_copy(
        update={
            "lease_user_prefix": f"{settings.neo4j.lease_user_prefix}w{index}_",
            "leases_path": _suffixed(settings.neo4j.leases_path, index),
            "rotation_interval_s": settings.neo4j.rotation_interval_s if index == 1 else 0.0,
        }
    )
    return settings.model_copy(update={"audit": audit_chain(settings.audit, index), "neo4j": neo4j})


def audit_chain(audit: AuditSettings, index: int) -> AuditSettings:
    """Worker ``index``'s audit settings: its own file and chain id, and its own file for each
    JSON Lines sink (two processes appending to one file could interleave their lines)."""
    sinks = [
        sink.model_copy(update={"path": _suffixed(sink.path, index)})
        if sink.path is not None
        else sink
        for sink in audit.sinks
    ]
    return audit.model_copy(
        update={
            "path": _suffixed(audit.path, index),
            "chain_id": f"{audit.chain_id}-w{index}",
            "sinks": sinks,
        }
    )


def replica_chains(settings: Settings) -> list[AuditSettings]:
    """The audit chains of one replica: its workers' now, and any a different number of workers
    left beside them (a reviewer must not lose a chain because ``server.workers`` changed)."""
    workers = settings.server.workers
    chains = [worker_settings(settings, i).audit for i in range(1, workers + 1)]
    known = {chain.path for chain in chains}
    return chains + [
        settings.audit.model_copy(update={"path": path, "chain_id": chain})
        for chain, path in chains_on_disk(settings.audit.path, settings.audit.chain_id)
        if path not in known
    ]


def chains_on_disk(path: Path, chain_id: str) -> list[tuple[str, Path]]:
    """``(chain id, file)`` of every chain of the replica that ``path`` and ``chain_id`` name
    (the replica's own, or one of its workers'), that exists now: the unsuffixed one first,
    then the workers' in order."""
    if str(path) == ":memory:":
        return []
    base_path, base_chain = path, chain_id
    if (own := re.fullmatch(r"(.+)-w([1-9][0-9]*)", path.stem)) and chain_id.endswith(
        f"-w{own.group(2)}"
    ):
        base_path = path.with_name(own.group(1) + path.suffix)
        base_chain = chain_id.removesuffix(f"-w{own.group(2)}")
    stem, suffix = base_path.stem, base_path.suffix
    pattern = re.compile(re.escape(stem) + r"-w([1-9][0-9]*)" + re.escape(suffix))
    workers = sorted(
        (int(match.group(1)), found)
        for found in base_path.parent.glob(f"{stem}-w*{suffix}")
        if (match := pattern.fullmatch(found.name)) is not None
    )
    chains = [(base_chain, base_path)] if base_path.exists() else []
    return chains + [(f"{base_chain}-w{index}", found) for index, found in workers]


def _suffixed(path: Path, index: int) -> Path:
    """``audit.sqlite3`` -> ``audit-w2.sqlite3`` (a memory-only log stays in memory)."""
    if str(path) == ":memory:":
        return path
    return path.with_name(f"{path.stem}-w{index}{path.suffix}")
