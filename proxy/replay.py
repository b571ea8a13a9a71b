"""What a policy would decide: for one statement now, or for every request already recorded.

``explain`` plans one statement on Neo4j with the gateway's own credential (nothing runs),
builds the input document the gateway would send, and asks OPA. ``replay`` rebuilds the input
document of each recorded decision from the audit log (principal, database, statement,
parameter names, requested access mode and the analysis recorded at the time) and asks a
proposed policy, so a reviewer of a policy change sees which decisions it would change before it
lands. The proposed policy runs in a private OPA server on a free loopback port.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from proxy.devstack.ports import free_ports
from proxy.graph import Neo4jGraph
from proxy.policy import Decision, OPAPolicyEngine, input_document, policy_input
from proxy.principal import Identity, Principal
from proxy.settings import OPASettings, Settings

OPA_START_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Change:
    """A recorded decision that the proposed policy decides differently."""

    seq: int
    time: str
    dag: str | None
    database: str | None
    statement: str | None
    was_allow: bool
    was_reasons: tuple[str, ...]
    now_allow: bool
    now_reasons: tuple[str, ...]

    @property
    def kind(self) -> str:
        """``newly_denied``, ``newly_allowed`` or ``reasons_changed``."""
        if self.was_allow and not self.now_allow:
            return "newly_denied"
        if self.now_allow and not self.was_allow:
            return "newly_allowed"
        return "reasons_changed"


@dataclass
class ReplaySummary:
    """How many recorded decisions were replayed, skipped (no analysis recorded), changed."""

    replayed: int = 0
    skipped: int = 0
    changed: int = 0


async def explain(
    settings: Settings, *, dag: str, database: str, statement: str, parameter_names: list[str]
) -> dict[str, Any]:
    """The analysis, input document and decision for one statement as ``dag``."""
    graph = Neo4jGraph(settings.neo4j, manage=False)
    await graph.open()
    try:
        analysis = await graph.explain(database, statement)
    finally:
        await graph.close()
    identity = Identity(method="oidc", issuer="cyphergate-cli", subject="policy-explain")
    document = policy_input(
        Principal(identity=identity, dag=dag),
        database=database,
        statement=statement,
        parameter_names=parameter_names,
        requested_access_mode=None,
        analysis=analysis,
    )
    async with _engine(settings.opa) as engine:
        decision = await engine.decide(document)
    return {"analysis": analysis.document, "input": document, "decision": _shown(decision)}


async def replay(
    records: Iterable[dict[str, Any]], opa: OPASettings, summary: ReplaySummary
) -> AsyncIterator[Change]:
    """Re-decide each recorded decision with the policy at ``opa``; yield those that change."""
    async with _engine(opa) as engine:
        for record in records:
            document = recorded_input(record)
            if document is None:
                summary.skipped += 1
                continue
            summary.replayed += 1
            decision = await engine.decide(document)
            was = record["decision"]
            # A shadow-mode record ran although the policy refused it: compare the policy's word.
            was_allow = bool(was.get("allow")) and not was.get("shadow_denied", False)
            was_reasons = tuple(was.get("reasons") or ())
            if (was_allow, was_reasons) == (decision.allow, decision.reasons):
                continue
            summary.changed += 1
            yield Change(
                seq=record["seq"],
                time=record["time"],
                dag=(record.get("principal") or {}).get("dag"),
                database=record.get("database"),
                statement=record.get("statement"),
                was_allow=was_allow,
                was_reasons=was_reasons,
                now_allow=decision.allow,
                now_reasons=decision.reasons,
            )


def recorded_input(record: dict[str, Any]) -> dict[str, Any] | None:
    """The input document a decision record was decided on; ``None`` if it cannot be rebuilt
    (not a policy decision, or written before analyses were recorded)."""
    principal = record.get("principal") or {}
    if (
        record.get("event") != "decision"
        or not record.get("decision")
        or record.get("analysis") is None
        or not principal.get("dag")
        or record.get("statement") is None
    ):
        return None
    return input_document(
        principal,
        database=record["database"],
        statement=record["statement"],
        parameter_names=record.get("parameters") or {},
        requested_access_mode=record.get("requested_access_mode"),
        analysis=record["analysis"],
    )


def opa_server_command(opa_binary: Path, port: int, policies: Path, *, watch: bool) -> list[str]:
    """The command line of an OPA server on 127.0.0.1:``port`` over a policy folder: the
    policies and their data, not the JSON schemas (``schemas/``) or the tests (``opa test``)."""
    return [
        str(opa_binary),
        "run",
        "--server",
        "--addr",
        f"127.0.0.1:{port}",
        "--ignore",
        "schemas",
        "--ignore",
        "*_test.rego",
        "--log-level",
        "error",
        *(["--watch"] if watch else []),
        str(policies),
    ]


@contextlib.contextmanager
def proposed_policy(
    opa_binary: Path, policies: Path, *, watch: bool = False
) -> Iterator[OPASettings]:
    """Serve ``policies`` from a private OPA on a free loopback port while the block runs
    (with ``watch``, OPA reloads the folder when a file in it changes)."""
    if not policies.is_dir():
        raise FileNotFoundError(f"no policy folder at {policies}")
    (port,) = free_ports(1)
    command = opa_server_command(opa_binary, port, policies, watch=watch)
    with tempfile.TemporaryFile() as output:
        # The binary and folder are the operator's own arguments; no shell is involved.
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            _wait_healthy(process, port, output)
            yield OPASettings(url=f"http://127.0.0.1:{port}", timeout_s=10.0)
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_healthy(process: subprocess.Popen[bytes], port: int, output: Any) -> None:
    deadline = time.monotonic() + OPA_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output.seek(0)
            raise RuntimeError(
                "OPA refused the proposed policies:\n" + output.read().decode(errors="replace")
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"OPA did not become healthy within {OPA_START_TIMEOUT_S:.0f} s")


@contextlib.asynccontextmanager
async def _engine(settings: OPASettings) -> AsyncIterator[OPAPolicyEngine]:
    # Each replayed decision must come from OPA itself: no decision cache.
    engine = OPAPolicyEngine(settings.model_copy(update={"decision_cache_size": 0}))
    await engine.open()
    try:
        yield engine
    finally:
        await engine.close()


def _shown(decision: Decision) -> dict[str, Any]:
    return {
        "allow": decision.allow,
        "reasons": list(decision.reasons),
        "shadow": decision.shadow,
        "constraints": {
            "access_mode": decision.access_mode,
            "timeout_s": decision.timeout_s,
            "row_limit": decision.row_limit,
            "row_limit_action": decision.row_limit_action,
        },
        "policy_revision": decision.revision,
    }
