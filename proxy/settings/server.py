"""The ``[server]`` section: the doors, their limits, the workers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    IPvAnyNetwork,
    model_validator,
)

from proxy.settings.base import (
    _Section,
)


class AdmissionSettings(_Section):
    """How many statements the gateway works on at once, both doors together, and how many may
    wait (proxy/gateway/admission.py). The defaults come from benchmarks/request_path.py on a
    2-core machine (the README's "Load and limits")."""

    max_in_flight: int = Field(default=32, gt=0, description="Statements worked on at once.")
    max_in_flight_per_identity: int | None = Field(
        default=None,
        gt=0,
        description="Of those, held by one identity's statements at once (a Bolt connection's"
        " known from its LOGON, an HTTP request's once verified, before its body is read): so"
        " that one caller's results left open or bodies never sent cannot take every slot; one"
        " beyond waits its turn. Default: three quarters of max_in_flight, rounded up (the rest"
        " is always left to other identities).",
    )
    max_waiting: int = Field(
        default=96,
        ge=0,
        description="Statements waiting for a slot; beyond, 503 with Retry-After at once"
        " (Bolt: a FAILURE Neo.TransientError.Request.ResourceExhaustion).",
    )
    max_wait_s: float = Field(
        default=1.0, gt=0, description="A statement that waits longer for a slot is refused."
    )
    retry_after_s: int = Field(
        default=1, ge=1, le=3600, description="Retry-After of an overload refusal."
    )


class HTTPSettings(_Section):
    """The HTTP door's connections (proxy/api/connections.py), request bodies and answers."""

    max_connections: int = Field(
        default=1000, gt=0, description="Open connections; beyond, a new one is closed at once."
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A connection whose request headers are not in this long after it opened"
        " (or after its previous answer) is closed.",
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=16 * 1024,
        description="A request whose headers (request line included) take more bytes gets 431"
        " and its connection is closed, before they are parsed further.",
    )
    body_timeout_s: float = Field(
        default=10.0, gt=0, description="A request body slower than this to arrive gets 408."
    )
    keep_alive_s: int = Field(
        default=5, gt=0, description="An idle keep-alive connection is closed after this."
    )
    max_answer_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="The JSON rows of one Query API answer, which is built whole before it is"
        " sent: a statement whose rows take more fails (413 answer_too_large; its auto-commit"
        " transaction rolls back while Neo4j still holds it open). Bolt streams without bound.",
    )


class RateSettings(_Section):
    """One rate limit: at most ``requests`` in any ``window_s`` seconds (a moving window, so a
    client may spend them in one burst, then waits until the oldest leaves the window)."""

    requests: int = Field(gt=0, description="Calls allowed in any window.")
    window_s: int = Field(default=1, ge=1, le=3600, description="The window, in seconds.")


class RateLimitSettings(_Section):
    """Rate limits of both doors (proxy/gateway/rates.py); each is off unless given. Each
    worker of server.workers counts its own calls."""

    per_client: RateSettings | None = Field(
        default=None,
        description="Per client address (an IPv6 one by its /64), before the credential is"
        " verified: bounds the STS calls and signature checks one address can cause.",
    )
    per_identity: RateSettings | None = Field(
        default=None, description="Per verified identity (issuer and subject)."
    )
    per_dag: RateSettings | None = Field(
        default=None, description="Per DAG acted as, whichever identity acts as it."
    )


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Gateway processes sharing the HTTP and Bolt ports of this replica; each"
        " has its own audit chain, leases record and leased-user prefix (see proxy/chains.py).",
    )
    schema_epoch_file: Path | None = Field(
        default=None,
        description="Set by the supervisor of server.workers for its workers: the schema epoch"
        " they share (proxy/epoch.py), so a schema statement empties every worker's plan cache.",
    )
    max_body_bytes: int = Field(default=1024 * 1024, gt=0, description="Larger bodies get 413.")
    forwarded_allow_ips: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Addresses or networks of front proxies whose X-Forwarded-For names the"
        " client; empty: the peer address is the client, whatever a header says.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one object per line, each with its request_id."
    )
    metrics: bool = Field(
        default=True, description="Serve /metrics (Prometheus text; no DAG names, no secrets)."
    )
    transaction_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="An explicit transaction of the Query API left idle this long is rolled back"
        " (Neo4j's server.http.transaction_idle_timeout); over Bolt, one that has run no"
        " statement for this long.",
    )
    max_transactions: int = Field(
        default=64,
        gt=0,
        description="Explicit transactions of the Query API open at once; each holds a Neo4j"
        " connection (the driver's pool has 100) and its DAG's credential. Beyond: 503.",
    )
    max_transactions_per_identity: int = Field(
        default=16,
        gt=0,
        description="Of those, open at once by one identity: so that one caller cannot hold"
        " them all. Beyond: 503.",
    )
    bolt_max_transactions: int = Field(
        default=64,
        gt=0,
        description="Explicit transactions of the Bolt door open at once, all identities"
        " together (each of them holds at most max_transactions_per_identity); each holds a"
        " Neo4j connection and its DAG's credential once a statement ran. Beyond: BEGIN gets"
        " MaximumTransactionLimitReached.",
    )
    admission: AdmissionSettings = Field(default_factory=lambda: AdmissionSettings())
    http: HTTPSettings = Field(default_factory=lambda: HTTPSettings())
    rate_limits: RateLimitSettings = Field(default_factory=lambda: RateLimitSettings())
    tls_certificate: Path | None = Field(
        default=None, description="PEM certificate chain: the HTTP door speaks https only."
    )
    tls_key: Path | None = Field(default=None, description="PEM key of tls_certificate.")
    # The Bolt door (proxy/bolt/): off unless a port is given (0: one the system picks).
    bolt_port: int | None = Field(default=None, ge=0, le=65535)
    bolt_host: str | None = Field(default=None, description="Default: the HTTP door's host.")
    bolt_advertised_address: str | None = Field(
        default=None,
        description="host:port that ROUTE answers name; default: the address the client dialled.",
    )
    bolt_tls_certificate: Path | None = Field(
        default=None, description="PEM certificate chain: bolt+s:// and neo4j+s://."
    )
    bolt_tls_key: Path | None = Field(default=None, description="PEM key of the certificate.")
    bolt_max_connections: int = Field(default=1000, gt=0)
    bolt_max_message_bytes: int = Field(
        default=16 * 1024 * 1024, gt=0, description="Larger Bolt messages close the connection."
    )
    bolt_max_held_result_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Memory a transaction's earlier result may take when it is read ahead (its"
        " next statement starts first); beyond it that statement fails, and so its transaction.",
    )
    bolt_handshake_timeout_s: float = Field(default=10.0, gt=0)
    bolt_idle_timeout_s: float = Field(
        default=300.0, gt=0, description="A Bolt connection silent this long is closed."
    )
    bolt_message_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A Bolt message begun must be whole within this, or the connection closes.",
    )
    bolt_routing_ttl_s: int = Field(default=300, gt=0)

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if (self.bolt_tls_certificate is None) != (self.bolt_tls_key is None):
            raise ValueError("bolt_tls_certificate and bolt_tls_key go together")
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("tls_certificate and tls_key go together")
        return self
