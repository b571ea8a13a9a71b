"""Who is calling: the verified identity of a request, and the DAG it acts as."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# Airflow's own rule for dag_id: letters, digits, dashes, dots and underscores, 250 at most.
DAG_ID = re.compile(r"[A-Za-z0-9_.\-]{1,250}")

AuthMethod = Literal["oidc", "aws_iam"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller whose credential verified.

    ``dag`` always comes from the verified credential (a signed claim, a role name), never from
    an unsigned header. Only authenticators make these.
    """

    method: AuthMethod
    issuer: str
    subject: str
    dag: str

    def as_document(self) -> dict[str, str]:
        """The principal as it appears in the policy input and the audit record."""
        return {
            "method": self.method,
            "issuer": self.issuer,
            "subject": self.subject,
            "dag": self.dag,
        }


def is_dag_id(value: object) -> bool:
    """True if ``value`` is a string Airflow would accept as a dag_id."""
    return isinstance(value, str) and DAG_ID.fullmatch(value) is not None
