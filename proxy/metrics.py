"""What the operator watches at ``/metrics``, in Prometheus' text format.

The metrics live in prometheus_client's process-wide registry (beside its process metrics:
memory, CPU, open files), one definition here for each, incremented where the thing happens.
Labels are kept to small, fixed sets: no DAG, user, statement or secret ever becomes a label
value, so the page reveals how the gateway is doing and nothing of what it guards. Denial reasons
appear by kind only (``label_not_granted``, not ``label_not_granted:Account``); per-DAG detail
is the audit log's business.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "cyphergate_requests",
    "Query requests answered, by verdict (allow, deny: refused or shadow-refused) and status.",
    ["verdict", "status"],
)
REQUEST_SECONDS = Histogram(
    "cyphergate_request_duration_seconds",
    "Time from a request's arrival to its answer, by verdict.",
    ["verdict"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DENIALS = Counter(
    "cyphergate_denials",
    "Reasons given for refusals, by kind (the part before any ':').",
    ["reason"],
)
CACHE_LOOKUPS = Counter(
    "cyphergate_cache_lookups",
    "Lookups in the analysis and decision caches.",
    ["cache", "result"],
)
LOGIN_RETRIES = Counter(
    "cyphergate_neo4j_login_retries",
    "Requests tried again because Neo4j refused the gateway's login, by Neo4j's code.",
    ["cause"],
)
ROTATIONS = Counter(
    "cyphergate_neo4j_password_rotations",
    "Rotations of the gateway's own Neo4j password, by result.",
    ["result"],
)
LEASES_ACTIVE = Gauge("cyphergate_neo4j_leases_active", "Leased per-DAG Neo4j users now held.")
LEASES_CREATED = Counter("cyphergate_neo4j_leases_created", "Per-DAG Neo4j users created.")
LEASES_DROPPED = Counter(
    "cyphergate_neo4j_leases_dropped", "Per-DAG Neo4j users dropped (replaced, ended, orphaned)."
)
AUDIT_FAILURES = Counter(
    "cyphergate_audit_write_failures",
    "Audit records that could not be written (a decision record: the request was refused).",
    ["event"],
)


def reason_kind(reason: str) -> str:
    """``label_not_granted:Account`` -> ``label_not_granted``: a bounded label value."""
    return reason.split(":", 1)[0]
