"""What OPA's answers must look like before the gateway acts on them, and what an answer names
(its decision id, the revision of the policy that made it).

Validated strictly, so that anything but a well-formed answer is
:class:`~proxy.errors.PolicyUnavailable` (503, ``opa_malformed_decision``), never a decision
the policy did not mean: no unknown field, no string or boolean for a number, numbers within
the bounds the README documents, reasons that agree with the verdict.
"""

from __future__ import annotations

import uuid
from typing import Any, Self, TypeGuard

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from proxy.errors import PolicyUnavailable
from proxy.statement import AccessMode, RowLimitAction

# A decision's numbers must be JSON integers within these (README, "Policies"): a string, a
# boolean (an int to Python), a float or a number beyond them is a policy bug, never a wider
# grant; Neo4j takes the timeout as a 64-bit count of milliseconds, which 2**63 would overflow.
MAX_TIMEOUT_MS = 24 * 60 * 60 * 1000
MAX_ROW_LIMIT = 1_000_000_000


class Constraints(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    access_mode: AccessMode
    timeout_ms: StrictInt | None = Field(default=None, gt=0, le=MAX_TIMEOUT_MS)
    row_limit: StrictInt | None = Field(default=None, ge=0, le=MAX_ROW_LIMIT)
    row_limit_action: RowLimitAction = "error"


class Verdict(BaseModel):
    """An answer's verdict: an allow that names no reason to refuse, or a refusal with its
    reasons, each once; anything else (an allow that names reasons, an empty or repeated reason)
    is a policy bug."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    allow: StrictBool
    reasons: list[StrictStr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        reasons = self.reasons
        if (self.allow and reasons) or not all(reasons) or len(set(reasons)) < len(reasons):
            raise ValueError("an allow with reasons, or an empty or repeated reason")
        return self


class DecisionAnswer(Verdict):
    shadow: StrictBool = False
    constraints: Constraints


class PreflightAnswer(Verdict):
    procedures: StrictBool
    functions: StrictBool
    # A policy written before it said: a transaction opens WRITE unless the caller asks READ
    # (every statement is still decided on its own).
    writes: StrictBool = True


class _BundleProvenance(BaseModel):
    model_config = ConfigDict(frozen=True)
    revision: StrictStr = ""


class _Provenance(BaseModel):
    model_config = ConfigDict(frozen=True)
    bundles: dict[str, _BundleProvenance] = Field(default_factory=dict)


def identity_of(answer: dict[str, Any], *, provenance: bool) -> tuple[str, str | None]:
    """The decision id and policy revision OPA gives for this one answer.

    OPA evaluates a query and reads its bundles' manifests in one storage transaction, so the
    revision in ``provenance`` is the one of the policy that made this very decision (no window
    in which a new bundle is active but an old revision is named). The id is OPA's own
    ``decision_id`` (present when OPA's decision logging is on), so the audit record joins OPA's
    decision log; without it the gateway names the decision itself. One that is no id is
    nonsense, not a reason to name the decision anew (the record would join nothing).
    """
    decision_id = answer.get("decision_id")
    if decision_id is None:
        decision_id = str(uuid.uuid4())
    elif not _is_decision_id(decision_id):
        raise PolicyUnavailable(reason="opa_malformed_decision")
    if not provenance:
        return decision_id, None
    try:
        bundles = _Provenance.model_validate(answer.get("provenance")).bundles
    except ValidationError:
        raise PolicyUnavailable(reason="opa_malformed_provenance") from None
    return decision_id, bundle_revision({name: b.revision for name, b in bundles.items()})


def _is_decision_id(value: object) -> TypeGuard[str]:
    """A short printable string: it goes into Neo4j's transaction metadata and the audit log."""
    return (
        isinstance(value, str) and 0 < len(value) <= 128 and value.isascii() and value.isprintable()
    )


def bundle_revision(revisions: dict[str, str]) -> str | None:
    """One revision for the bundles OPA serves: the revision of the only bundle, else
    ``name=revision`` pairs in name order; None when no bundle names a revision (a policy loaded
    from plain files, which OPA gives no revision)."""
    named = {name: revision for name, revision in revisions.items() if revision}
    if not named:
        return None
    if len(revisions) == 1:
        (revision,) = named.values()
        return revision
    return ",".join(f"{name}={named.get(name, '')}" for name in sorted(revisions))
