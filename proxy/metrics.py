"""What the operator watches at ``/metrics``, in Prometheus' text format.

One :class:`Metrics` per application (built by ``create_app``, handed to each collaborator
through its constructor), on a registry of its own together with the process's own figures
(memory, CPU, open files). Labels are kept to small, fixed sets: no DAG, user, statement or
secret ever becomes a label value, so the page reveals how the gateway is doing and nothing of
what it guards. Denial reasons appear by kind only (``label_not_granted``, not
``label_not_granted:Account``); per-DAG detail is the audit log's business.
"""

from __future__ import annotations

import re

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "Metrics"]

_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The gateway's counters; :meth:`render` is the ``/metrics`` page."""

    def __init__(self) -> None:
        self._answered: dict[tuple[str, int | None], tuple[Counter, Histogram]] = {}
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        self.requests = Counter(
            "cyphergate_requests",
            "Query requests answered, by verdict (allow; deny: refused or shadow-refused).",
            ["verdict", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "cyphergate_request_duration_seconds",
            "Time from a request's arrival to its answer, by verdict.",
            ["verdict"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.denials = Counter(
            "cyphergate_denials",
            "Reasons given for refusals, by kind (the part before any ':').",
            ["reason"],
            registry=registry,
        )
        self.cache_lookups = Counter(
            "cyphergate_cache_lookups",
            "Lookups in the analysis and decision caches.",
            ["cache", "result"],
            registry=registry,
        )
        self.login_retries = Counter(
            "cyphergate_neo4j_login_retries",
            "Requests tried again because Neo4j refused the gateway's login, by Neo4j's code.",
            ["cause"],
            registry=registry,
        )
        self.rotations = Counter(
            "cyphergate_neo4j_password_rotations",
            "Rotations of the gateway's own Neo4j password, by result.",
            ["result"],
            registry=registry,
        )
        self.leases_active = Gauge(
            "cyphergate_neo4j_leases_active",
            "Leased per-DAG Neo4j users now held.",
            registry=registry,
        )
        self.leases_created = Counter(
            "cyphergate_neo4j_leases_created", "Per-DAG Neo4j users created.", registry=registry
        )
        self.leases_dropped = Counter(
            "cyphergate_neo4j_leases_dropped",
            "Per-DAG Neo4j users dropped (replaced, ended, or left by an earlier run).",
            registry=registry,
        )
        self.leases_refused = Counter(
            "cyphergate_neo4j_leases_refused",
            "Leased users whose login Neo4j refused (dropped by hand, a restore), retired early.",
            registry=registry,
        )
        self.transactions = Counter(
            "cyphergate_transactions",
            "Explicit transactions ended, by action (commit, rollback) and cause (client,"
            " failure, expired, closed).",
            ["action", "cause"],
            registry=registry,
        )
        self.audit_failures = Counter(
            "cyphergate_audit_write_failures",
            "Audit records that could not be written (a decision record: the request was refused).",
            ["event"],
            registry=registry,
        )
        self.audit_writer_errors = Counter(
            "cyphergate_audit_writer_errors",
            "Failed writes of the audit writer, by exception type (its batch was refused; the"
            " writer went on), and appends that waited past audit.append_timeout_s.",
            ["cause"],
            registry=registry,
        )
        self.audit_late = Counter(
            "cyphergate_audit_late_records",
            "After-the-fact records (outcomes, transaction ends) the log refused when they came,"
            " by what became of them: written late, or lost (no room to keep them).",
            ["result"],
            registry=registry,
        )
        self.audit_commits = Counter(
            "cyphergate_audit_commits",
            "Transactions of the audit writer that wrote records, each synced to disk: records"
            " over commits is how many appends one sync serves (group commit).",
            registry=registry,
        )
        self.audit_records = Counter(
            "cyphergate_audit_records",
            "Audit records committed (on time and late).",
            registry=registry,
        )
        self.audit_late_pending = Gauge(
            "cyphergate_audit_late_records_pending",
            "After-the-fact records kept in memory until the audit log takes writes again.",
            registry=registry,
        )
        # SIEM sinks (proxy/siem): labelled by the sink's configured name and the chain it tails.
        self.sink_lag_records = Gauge(
            "cyphergate_audit_sink_lag_records",
            "Committed audit records a SIEM sink has not delivered yet.",
            ["sink", "chain"],
            registry=registry,
        )
        self.sink_lag_seconds = Gauge(
            "cyphergate_audit_sink_lag_seconds",
            "Age of the oldest committed audit record a SIEM sink has not delivered (0: none).",
            ["sink", "chain"],
            registry=registry,
        )
        self.sink_delivered = Counter(
            "cyphergate_audit_sink_delivered_records",
            "Audit records a SIEM sink delivered (a record sent again after a failure counts"
            " again).",
            ["sink", "chain"],
            registry=registry,
        )
        self.sink_failures = Counter(
            "cyphergate_audit_sink_delivery_failures",
            "Failed deliveries of a SIEM sink (each is retried), by cause (connect, write,"
            " timeout, http_<status>).",
            ["sink", "chain", "cause"],
            registry=registry,
        )

        self.lineage_events = Counter(
            "cyphergate_lineage_events",
            "OpenLineage run events of statements ([lineage]), by outcome: emitted; dropped (the"
            " queue was full); failed (the transport or the event failed); skipped (no DAG).",
            ["outcome"],
            registry=registry,
        )

        self.statements_in_flight = Gauge(
            "cyphergate_statements_in_flight",
            "Statements holding an admission slot now (server.admission.max_in_flight at most).",
            registry=registry,
        )
        self.statements_waiting = Gauge(
            "cyphergate_statements_waiting",
            "Statements waiting for an admission slot now (server.admission.max_waiting at most).",
            registry=registry,
        )

    def answered(self, verdict: str, status: int | None, seconds: float) -> None:
        """Count one answered request and its time. The labelled children are kept, one pair
        per verdict and status: finding them again (``labels``) cost more than counting."""
        children = self._answered.get((verdict, status))
        if children is None:
            children = (
                self.requests.labels(verdict, str(status)),
                self.request_seconds.labels(verdict),
            )
            self._answered[(verdict, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def denied(self, reason: str) -> None:
        """Count one refusal reason by its kind: ``label_not_granted:Account`` counts as
        ``label_not_granted``. A reason not shaped like a kind (a policy author's free text,
        which could name a label) counts as ``other``, so the label values stay few and bare."""
        kind = reason.split(":", 1)[0]
        self.denials.labels(kind if _KIND.fullmatch(kind) else "other").inc()

    def render(self) -> bytes:
        """The page, in Prometheus' text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
