"""Who is calling, and which DAG they act as.

Two steps, kept apart: an authenticator turns a credential into an :class:`Identity` (what the
credential proves: issuer, subject, client, service account, IAM role), and the
:class:`DagResolver` maps that identity to the DAGs it may act as, using only verified facts
and the configured bindings. A request may *name* one of those DAGs in ``X-CypherGate-DAG``;
it can never add one. Task, run and try number are recorded as context only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from proxy.errors import BadRequest, DagNotPermitted
from proxy.settings import BindingSettings
from proxy.settings.access import DAG_ID

# Task and run ids are Airflow-made too, but run ids carry '+' and ':' (timestamps), '~'
# (Airflow's allowed_run_id_pattern admits it) and '/' (the Bolt door's principal keeps it).
_CONTEXT_VALUE = re.compile(r"[A-Za-z0-9_.\-+:@ ~/]{1,250}")

AuthMethod = Literal["oidc", "aws_iam"]
# How many identities a DagResolver keeps the DAGs of.
_REMEMBERED = 10_000

DAG_HEADER = "x-cyphergate-dag"
TASK_HEADER = "x-cyphergate-task"
RUN_HEADER = "x-cyphergate-run"
TRY_HEADER = "x-cyphergate-try"
# Where no other name is given, a refusal names the header a value came in.
_HEADERS: Mapping[str, str] = MappingProxyType({})
# The caller's OpenLineage parent run, ``<namespace>/<job>/<run id>`` (proxy/lineage_events.py).
LINEAGE_PARENT_HEADER = "x-cyphergate-lineage-parent"


@dataclass(frozen=True, slots=True)
class Identity:
    """What a verified credential proves. Only authenticators make these.

    ``asserted_dag`` is a DAG the credential's issuer asserted in a signed claim (for example
    ``dag_id`` set server-side by the OIDC provider); ``None`` when it asserted none.
    """

    method: AuthMethod
    issuer: str
    subject: str
    client_id: str | None = None
    service_account: str | None = None
    asserted_dag: str | None = None

    def as_document(self) -> dict[str, str]:
        """The identity as the audit record shows it when no DAG could be resolved."""
        return {"method": self.method, "issuer": self.issuer, "subject": self.subject}


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified identity acting as one DAG. Only :class:`DagResolver` makes these."""

    identity: Identity
    dag: str
    task: str | None = None
    run: str | None = None
    try_number: int | None = None

    @property
    def method(self) -> AuthMethod:
        return self.identity.method

    def as_document(self) -> dict[str, str | int | None]:
        """The principal as it appears in the policy input and the audit record."""
        return {
            "method": self.identity.method,
            "issuer": self.identity.issuer,
            "subject": self.identity.subject,
            "dag": self.dag,
            "task": self.task,
            "run": self.run,
            "try_number": self.try_number,
        }


class DagResolver:
    """Maps an identity to the DAGs it may act as, and picks the one a request names."""

    def __init__(self, bindings: Sequence[BindingSettings], *, remember: int = _REMEMBERED) -> None:
        self._bindings = tuple(bindings)
        # Each identity's DAGs, worked out once: a deployment's bindings (one or more per DAG)
        # are read on every statement otherwise (94 µs a statement with 500 of them). The
        # bindings never change in a resolver's life; an identity is its verified claims, so
        # equal identities have equal DAGs. Emptied when full, so at most ``remember`` kept.
        self._remember = remember
        self._known: dict[Identity, frozenset[str]] = {}

    def allowed_dags(self, identity: Identity) -> frozenset[str]:
        """Every DAG the identity may act as: the issuer's asserted DAG plus matching bindings."""
        known = self._known.get(identity)
        if known is None:
            dags = {dag for b in self._bindings if _matches(b, identity) for dag in b.dags}
            if identity.asserted_dag is not None:
                dags.add(identity.asserted_dag)
            known = frozenset(dags)
            if len(self._known) >= self._remember:
                self._known.clear()
            self._known[identity] = known
        return known

    def resolve(
        self, identity: Identity, headers: Mapping[str, str], names: Mapping[str, str] = _HEADERS
    ) -> Principal:
        """The principal for this request; 403 if the named DAG is not the identity's.
        ``names``: where each header's value came from, as a refusal names it (by default, the
        header itself; Bolt's login principal, :data:`proxy.bolt.messages.PRINCIPAL_PARTS`)."""
        allowed = self.allowed_dags(identity)
        named = headers.get(DAG_HEADER)
        if named is not None:
            if named not in allowed:
                raise DagNotPermitted(reason="dag_not_permitted")
            dag = named
        elif len(allowed) == 1:
            (dag,) = allowed
        elif not allowed:
            raise DagNotPermitted(reason="identity_not_mapped")
        else:
            raise BadRequest(
                "This identity may act as several DAGs: name one in"
                f" {names.get(DAG_HEADER, 'X-CypherGate-DAG')}.",
                reason="dag_ambiguous",
            )
        return Principal(
            identity=identity,
            dag=dag,
            task=_context(headers, TASK_HEADER, names),
            run=_context(headers, RUN_HEADER, names),
            try_number=_try_number(headers, names),
        )


def is_dag_id(value: object) -> bool:
    """True if ``value`` is a string Airflow would accept as a dag_id."""
    return isinstance(value, str) and DAG_ID.fullmatch(value) is not None


def _matches(binding: BindingSettings, identity: Identity) -> bool:
    if binding.iam_role_arn is not None:
        return identity.method == "aws_iam" and identity.subject == binding.iam_role_arn
    if identity.method != "oidc" or identity.issuer != binding.oidc_issuer:
        return False
    if binding.subject is not None:
        return identity.subject == binding.subject
    if binding.client_id is not None:
        return identity.client_id == binding.client_id
    if binding.service_account is not None:
        return identity.service_account == binding.service_account
    return False


def _context(headers: Mapping[str, str], name: str, names: Mapping[str, str]) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    if _CONTEXT_VALUE.fullmatch(value) is None:
        where = names.get(name, f"Header {name}")
        raise BadRequest(f"{where} is not a valid Airflow id.", reason="bad_context_header")
    return value


def _try_number(headers: Mapping[str, str], names: Mapping[str, str]) -> int | None:
    value = headers.get(TRY_HEADER)
    if value is None:
        return None
    # isascii: str.isdigit accepts "²" and other scripts' digits, which int() then refuses.
    if not (value.isascii() and value.isdigit()) or len(value) > 6:
        where = names.get(TRY_HEADER, f"Header {TRY_HEADER}")
        raise BadRequest(f"{where} must be a whole number.", reason="bad_try_header")
    return int(value)
