"""Neo4j's planning errors tell what exists: those a DAG must not learn from become refusals.

The analysis (``EXPLAIN``) runs before the policy decides, once the preflight allowed the
request's database. Neo4j's errors would then tell a DAG that may call no procedure (or
user-defined function) which exist, and any DAG which databases exist besides its own (a
``USE`` of one it has no grant for: Neo4j says a missing one is not found, and, in a subquery on
a database that is no composite one, that an existing one may not be reached from there): such
an error is answered as the policy answers a known procedure, function or database the DAG may
not use.
"""

from __future__ import annotations

import re

from proxy.errors import DatabaseNotFound, Neo4jClientError
from proxy.policy import Preflight

_UNKNOWN_FUNCTION = re.compile(r"Unknown function '([^']*)'")
# Neo4j's semantic (or syntax) error for a USE in a subquery of a database that exists.
_OTHER_GRAPH = re.compile(
    r"^Attempted to access graph (.+?)(?: \(line \d+, column \d+ \(offset: \d+\)\))?$", re.M
)


def planning_refusal(
    error: Neo4jClientError | DatabaseNotFound, database: str, preflight: Preflight
) -> str | None:
    """The refusal's reason for Neo4j's planning ``error`` of a statement on ``database``, or
    None when Neo4j's own answer tells the DAG nothing it may not know."""
    if isinstance(error, DatabaseNotFound):
        # The request's own database is one the preflight allowed: it may learn it is not there.
        missing = error.database
        if missing is not None and missing.casefold() == database.casefold():
            return None
        return f"database_not_granted:{missing or '*'}"
    other = _OTHER_GRAPH.search(error.message)
    if other is not None and other.group(1).casefold() != database.casefold():
        return f"database_not_granted:{other.group(1)}"
    kind = _unknown_call(error)
    if kind == "procedure" and not preflight.procedures:
        return "procedure_not_granted:*"
    if kind == "function" and not preflight.functions:
        return "function_not_granted:*"
    return None


def _unknown_call(error: Neo4jClientError) -> str | None:
    """``procedure`` or ``function`` when Neo4j could not plan a call of an unknown one (a
    built-in function name, without a namespace, is not a user-defined one)."""
    if error.code == "Neo.ClientError.Procedure.ProcedureNotFound":
        return "procedure"
    match = _UNKNOWN_FUNCTION.search(error.message)
    if error.code == "Neo.ClientError.Statement.SyntaxError" and match and "." in match.group(1):
        return "function"
    return None
