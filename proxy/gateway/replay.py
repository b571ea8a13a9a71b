"""What a policy would decide: for one statement now, or for every request already recorded.

``explain`` plans one statement on Neo4j with the gateway's own credential (nothing runs),
builds the input document the gateway would send, and asks the policy. ``replay`` rebuilds the
input document of each recorded decision from the audit log (principal, database, statement,
parameter names, requested access mode and the analysis recorded at the time) and asks a
proposed policy, so a reviewer of a policy change sees which decisions it would change before it
lands. The proposed policy runs in a private OPA server (:mod:`proxy.opa_server`); the command
line opens it and the engine that asks it (``proxy/app/``), and hands them in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from proxy.gateway.seams import PolicyDecider, StatementAnalyzer
from proxy.plan.text import without_secrets
from proxy.policy import Decision, input_document, policy_input
from proxy.principal import Identity, Principal


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
    # The policy still refuses it, but in shadow mode now: it would run (it did not).
    now_runs_in_shadow: bool = False
    # For a statement that ran and would still run: the limits it ran under, and would now.
    was_constraints: dict[str, Any] | None = None
    now_constraints: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        """``newly_denied``, ``newly_allowed``, ``newly_run_in_shadow``, ``reasons_changed`` or
        ``constraints_changed`` (the same word, but another row limit, its action or timeout)."""
        if self.was_allow and not self.now_allow:
            return "newly_denied"
        if self.now_allow and not self.was_allow:
            return "newly_allowed"
        if self.now_runs_in_shadow:
            return "newly_run_in_shadow"
        if self.was_reasons == self.now_reasons and self.was_constraints != self.now_constraints:
            return "constraints_changed"
        return "reasons_changed"


@dataclass
class ReplaySummary:
    """How many recorded decisions were replayed, skipped (no analysis recorded), changed, and
    how many of those replayed ran but were recorded without their constraints (written before
    records carried them): for those, only the word (allowed, and why not) was compared."""

    replayed: int = 0
    skipped: int = 0
    changed: int = 0
    without_constraints: int = 0


async def explain(
    analyzer: StatementAnalyzer,
    policy: PolicyDecider,
    *,
    dag: str,
    database: str,
    statement: str,
    parameter_names: list[str],
) -> dict[str, Any]:
    """The analysis, input document and decision for one statement as ``dag``. Neo4j plans the
    statement as written; OPA (which logs every input) gets it as the gateway records and sends
    it, its password literals hidden."""
    analysis = await analyzer.analyse(database, statement)
    identity = Identity(method="oidc", issuer="cyphergate-cli", subject="policy-explain")
    document = policy_input(
        Principal(identity=identity, dag=dag),
        database=database,
        statement=without_secrets(statement),
        parameter_names=parameter_names,
        requested_access_mode=None,
        analysis=analysis,
    )
    decision = await policy.decide(document)
    return {"analysis": analysis.document, "input": document, "decision": _shown(decision)}


async def replay(
    records: Iterable[dict[str, Any]], policy: PolicyDecider, summary: ReplaySummary
) -> AsyncIterator[Change]:
    """Re-decide each recorded decision with ``policy`` (which must not answer from a cache);
    yield those that change: the policy's word (allowed, and why not); for a refusal, that
    shadow mode would now run what was refused and did not run; for a statement that ran and
    would still run, the constraints it ran under (if the record has them)."""
    for record in records:
        document = recorded_input(record)
        if document is None:
            summary.skipped += 1
            continue
        summary.replayed += 1
        decision = await policy.decide(document)
        was = record["decision"]
        # A shadow-mode record ran although the policy refused it: compare the policy's word.
        was_allow = bool(was.get("allow")) and not was.get("shadow_denied", False)
        was_reasons = tuple(was.get("reasons") or ())
        # The record's "allow" says whether it ran (a shadow-mode refusal did).
        newly_run = not was.get("allow") and decision.enforced_allow
        was_constraints = now_constraints = None
        if was.get("allow") and decision.enforced_allow:
            was_constraints = was.get("constraints")
            if was_constraints is None:
                summary.without_constraints += 1
            else:
                now_constraints = decision.constraints()
        same = (was_allow, was_reasons) == (decision.allow, decision.reasons)
        if same and not newly_run and was_constraints == now_constraints:
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
            now_runs_in_shadow=newly_run and not decision.allow,
            was_constraints=was_constraints,
            now_constraints=now_constraints,
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
