"""The one settings object, read once at the edge (``cyphergate serve``) and passed down.

Sources, highest priority first: ``CYPHERGATE_*`` environment variables (nested sections
separated by ``__``, e.g. ``CYPHERGATE_OPA__URL``), then the TOML configuration file.
"""

from __future__ import annotations

import tomllib
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from proxy.settings_errors import ConfigurationError, validation_problems

# Algorithms a gateway may accept. Never "none", never HMAC: an HMAC key would be the issuer's
# public key, which anyone can read.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "EdDSA")
IPNetwork = IPv4Network | IPv6Network
_PLACEHOLDER_SECRETS = {"neo4j", "password", "changeme", "change-me", "secret"}


class _Section(BaseModel):
    """A section of the configuration: an unknown key is a typo, refused by name (a misspelt
    ``audit.path`` must not silently become the default path)."""

    model_config = ConfigDict(extra="forbid")


class AdmissionSettings(_Section):
    """How many statements the gateway works on at once, both doors together, and how many may
    wait (proxy/gateway/admission.py). The defaults come from benchmarks/request_path.py on a
    2-core machine (the README's "Load and limits")."""

    max_in_flight: int = Field(default=32, gt=0, description="Statements worked on at once.")
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
    """The HTTP door's connections (proxy/api/connections.py) and request bodies."""

    max_connections: int = Field(
        default=1000, gt=0, description="Open connections; beyond, a new one is closed at once."
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A connection whose request headers are not in this long after it opened"
        " (or after its previous answer) is closed.",
    )
    body_timeout_s: float = Field(
        default=10.0, gt=0, description="A request body slower than this to arrive gets 408."
    )
    keep_alive_s: int = Field(
        default=5, gt=0, description="An idle keep-alive connection is closed after this."
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
        " (Neo4j's server.http.transaction_idle_timeout).",
    )
    max_transactions: int = Field(
        default=64,
        gt=0,
        description="Explicit transactions of the Query API open at once; each holds a Neo4j"
        " connection (the driver's pool has 100) and its DAG's credential. Beyond: 503.",
    )
    admission: AdmissionSettings = Field(default_factory=lambda: AdmissionSettings())
    http: HTTPSettings = Field(default_factory=lambda: HTTPSettings())
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
        return self


class SecretSettings(_Section):
    """Where the gateway's Neo4j credential is kept (see proxy/neo4j/secret_sources.py)."""

    source: Literal["file", "aws_secrets_manager", "env"]
    path: Path | None = Field(default=None, description="file: JSON or a bare password.")
    secret_id: str | None = Field(default=None, description="aws_secrets_manager: name or ARN.")
    region: str = "us-east-1"
    endpoint_url: str | None = Field(default=None, description="For a Secrets Manager endpoint.")
    value: SecretStr | None = Field(
        default=None, description="env (development only): CYPHERGATE_NEO4J__SECRET__VALUE."
    )
    refresh_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="After this, a value read from Secrets Manager is refreshed in the background.",
    )
    timeout_s: float = Field(
        default=3.0, gt=0, description="Longest wait for one Secrets Manager call."
    )

    @model_validator(mode="after")
    def _what_the_source_needs(self) -> SecretSettings:
        needed = {"file": "path", "aws_secrets_manager": "secret_id"}.get(self.source)
        if needed is not None and getattr(self, needed) is None:
            raise ValueError(f"source = {self.source!r} needs {needed}")
        return self


class Neo4jSettings(_Section):
    """How the gateway reaches Neo4j, with its own credential (never the caller's)."""

    uri: str = "bolt://127.0.0.1:7687"
    user: str = "cyphergate"
    password: SecretStr | None = None
    password_file: Path | None = Field(
        default=None, description="A file holding the password (a mounted Kubernetes secret)."
    )
    secret: SecretSettings | None = None
    max_connection_lifetime_s: float = Field(
        default=3600.0, gt=0, description="Connections older than this are replaced."
    )
    bolt_relay: bool = Field(
        default=True,
        description="The Bolt door's statements run on connections of the gateway's own to the "
        "one server neo4j.uri names, records relayed undecoded; false: on the driver, which "
        "routes a neo4j:// URI across a cluster.",
    )
    credentials: Literal["service_account", "leases"] = Field(
        default="service_account",
        description="Run statements as the gateway's user, or as a leased user per DAG.",
    )
    rotation_interval_s: float = Field(
        default=0.0, ge=0, description="Rotate the gateway's password this often (0: never)."
    )
    lease_ttl_s: float = Field(default=900.0, gt=0, description="A per-DAG user lives this long.")
    lease_renew_fraction: float = Field(
        default=0.5, gt=0, lt=1, description="A used lease is replaced after this part of its TTL."
    )
    lease_user_prefix: str = Field(
        default="cg_gateway_",
        pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
        description="Leased users are named <prefix><dag>_<random>; one prefix per replica, "
        "none a prefix of another's.",
    )
    leases_path: Path = Field(
        default=Path("cyphergate-leases.sqlite3"), description="Where leases are recorded."
    )
    auth_lock_time_s: float = Field(
        default=5.0,
        ge=0,
        description="Neo4j's dbms.security.auth_lock_time: after too many refused logins, "
        "wait this long once before trying again.",
    )
    default_timeout_s: float = Field(default=30.0, gt=0)
    connection_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Longest wait to open a connection to Neo4j (TCP, handshake).",
    )
    acquisition_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest wait of a statement for a Neo4j connection."
    )
    home_database: str = Field(
        default="neo4j", description="The database of a Bolt statement that names none."
    )
    analysis_cache_size: int = Field(default=4096, ge=0)
    analysis_cache_ttl_s: float = Field(
        default=300.0, gt=0, description="Plans change with indexes: re-explain after this."
    )

    @model_validator(mode="after")
    def _one_password_source(self) -> Neo4jSettings:
        given = [self.password, self.password_file, self.secret]
        if sum(value is not None for value in given) != 1:
            raise ValueError(
                "set exactly one of neo4j.password, neo4j.password_file and neo4j.secret"
            )
        if self.password is not None:
            refuse_placeholder_password(self.password.get_secret_value())
        return self

    def read_password(self) -> str:
        """The password, read now (a mounted secret file may have changed)."""
        value = _read_secret(self.password, self.password_file, "neo4j.password")
        refuse_placeholder_password(value)
        return value


class OPASettings(_Section):
    url: str = "http://127.0.0.1:8181"
    package: str = "cyphergate.authz"
    audit_package: str = Field(
        default="cyphergate.audit_access", description="Decides who may read the audit log."
    )
    rule: str = "decision"
    preflight_rule: str = Field(
        default="preflight",
        description="Asked before a statement is planned, on the DAG and database alone.",
    )
    timeout_s: float = Field(default=1.0, gt=0, description="A slower answer is a denial (503).")
    provenance: bool = Field(
        default=True,
        description="Ask OPA which bundle revision made each decision (its ?provenance).",
    )
    decision_cache_size: int = Field(
        default=8192, ge=0, description="Decisions kept for reuse (0: ask OPA every time)."
    )
    decision_cache_ttl_s: float = Field(
        default=1.0,
        ge=0,
        description="A decision is reused for the same input this long at most, and only while "
        "OPA names the same revision (0: ask OPA every time).",
    )


class OIDCIssuerSettings(_Section):
    """One trusted token issuer."""

    issuer: str
    audiences: list[str] = Field(min_length=1)
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "PS256", "ES256", "EdDSA"])
    dag_claim: str | None = Field(
        default="dag_id",
        description="A claim the issuer asserts server-side naming the DAG; None to rely on"
        " bindings only. Never a claim the client can choose.",
    )
    token_types: list[str] = Field(
        default_factory=lambda: ["at+jwt", "JWT"],
        description="Accepted values of the JOSE 'typ' header (case-insensitive).",
    )
    require_typ: bool = Field(default=False, description="Refuse tokens without a 'typ'.")
    max_lifetime_s: int = Field(
        default=24 * 3600, gt=0, description="Longest exp - iat accepted; longer is refused."
    )
    jwks_ttl_s: float = Field(default=300.0, gt=0)
    jwks_min_refresh_interval_s: float = Field(
        default=10.0,
        ge=0,
        description="An unknown key id refreshes the key set at most this often.",
    )

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        bad = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if bad or not value:
            raise ValueError(f"algorithms must be from {ASYMMETRIC_ALGORITHMS}, got {bad}")
        return value


class IAMSettings(_Section):
    """AWS IAM authentication: a signed sts:GetCallerIdentity request, checked by STS."""

    sts_endpoints: list[str] = Field(
        default_factory=lambda: ["https://sts.amazonaws.com/"],
        min_length=1,
        description="The only URLs a proof may name, and the only hosts ever contacted.",
    )
    server_id: str = Field(
        min_length=1, description="Required value of the signed X-CypherGate-Server-ID header."
    )
    max_age_s: int = Field(
        default=300, gt=0, le=900, description="How old (or how far ahead) X-Amz-Date may be."
    )
    timeout_s: float = Field(default=5.0, gt=0)


class BindingSettings(_Section):
    """Which DAGs one verified identity may act as. Name exactly one kind of identity."""

    dags: list[str] = Field(min_length=1)
    oidc_issuer: str | None = Field(default=None, description="With subject, client_id or SA.")
    subject: str | None = None
    client_id: str | None = None
    service_account: str | None = Field(
        default=None, description="A Kubernetes service account as 'namespace:name'."
    )
    iam_role_arn: str | None = Field(default=None, description="arn:aws:iam::ACCOUNT:role/NAME")

    @model_validator(mode="after")
    def _one_kind(self) -> BindingSettings:
        oidc_keys = [k for k in (self.subject, self.client_id, self.service_account) if k]
        if self.iam_role_arn is not None:
            if self.oidc_issuer is not None or oidc_keys:
                raise ValueError("a binding names an IAM role or an OIDC identity, not both")
        elif self.oidc_issuer is None or len(oidc_keys) != 1:
            raise ValueError(
                "an OIDC binding needs oidc_issuer and exactly one of subject, client_id,"
                " service_account"
            )
        return self


class AuthSettings(_Section):
    oidc: list[OIDCIssuerSettings] = Field(default_factory=list)
    aws_iam: IAMSettings | None = None
    bindings: list[BindingSettings] = Field(default_factory=list)
    leeway_s: int = Field(default=30, ge=0, le=300, description="Clock skew allowed on exp/nbf.")
    max_token_bytes: int = Field(
        default=8 * 1024, gt=0, description="Longer bearer tokens are refused unread."
    )
    verified_token_cache_size: int = Field(
        default=4096,
        ge=0,
        description="Verified bearer tokens remembered (by SHA-256) until exp; 0 turns it off.",
    )


class ArchiveSettings(_Section):
    """Where sealed segments go: an S3 bucket created with Object Lock enabled."""

    bucket: str
    prefix: str = "cyphergate-audit"
    endpoint_url: str | None = Field(default=None, description="For S3-compatible stores.")
    region: str = "us-east-1"
    retention_days: int = Field(default=365, gt=0, description="Compliance-mode retention.")


class AuditWebSettings(_Section):
    """The reviewers' page at ``/audit``: people sign in at an OIDC issuer (authorization code
    with PKCE); the audit-access policy decides on every page who is a reviewer."""

    issuer: str = Field(description="The OIDC issuer people sign in at (discovery is used).")
    client_id: str
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    public_url: str = Field(
        description="The gateway's URL as browsers reach it; the callback is <url>/audit/callback."
    )
    session_secret_file: Path | None = Field(
        default=None,
        description="Key (32+ bytes) signing session cookies; without it, a random key per "
        "process (sessions end when the gateway restarts).",
    )
    session_max_age_s: int = Field(default=3600, gt=0, le=86400)
    secure_cookies: bool = Field(
        default=True, description="Send the session cookie over HTTPS only; off for local HTTP."
    )

    @model_validator(mode="after")
    def _one_secret_source(self) -> AuditWebSettings:
        if (self.client_secret is None) == (self.client_secret_file is None):
            raise ValueError(
                "set exactly one of audit.web.client_secret and audit.web.client_secret_file"
            )
        return self

    def read_client_secret(self) -> str:
        """The OAuth client secret, read now."""
        return _read_secret(self.client_secret, self.client_secret_file, "audit.web.client_secret")

    @property
    def redirect_uri(self) -> str:
        return self.public_url.rstrip("/") + "/audit/callback"


class AuditSettings(_Section):
    path: Path = Path("cyphergate-audit.sqlite3")
    max_batch: int = Field(default=256, gt=0, description="Records written in one commit at most.")
    chain_id: str = Field(
        default="gateway", min_length=1, description="Names this replica's chain in checkpoints."
    )
    signing_key_file: Path | None = Field(
        default=None, description="Ed25519 private key (PEM) that signs checkpoints."
    )
    hmac_key_file: Path | None = Field(
        default=None, description="Key (32+ bytes) for HMAC digests of parameter values."
    )
    checkpoint_every: int = Field(default=1000, gt=0, description="Records between checkpoints.")
    checkpoint_interval_s: float = Field(
        default=60.0, gt=0, description="Longest time between checkpoints while writing."
    )
    append_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest wait for a record to be durable (then 503)."
    )
    late_capacity: int = Field(
        default=10_000,
        ge=0,
        description="Outcome records kept in memory while the log refuses writes, to be written"
        " late.",
    )
    archive: ArchiveSettings | None = None
    web: AuditWebSettings | None = Field(
        default=None, description="The reviewers' page; off unless configured."
    )


class Settings(BaseSettings):
    """Everything the gateway needs; nothing is read from the environment elsewhere.

    Unknown sections and keys are refused, ``faults`` among them: crash injection is an object
    the crash tests pass to ``create_app`` (see :mod:`proxy.faults`), never a configuration.
    """

    model_config = SettingsConfigDict(
        env_prefix="CYPHERGATE_", env_nested_delimiter="__", extra="forbid"
    )

    profile: Literal["production", "development"] = Field(
        default="production", description="development allows credentials in the environment."
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    neo4j: Neo4jSettings
    opa: OPASettings = Field(default_factory=OPASettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003 - pydantic-settings' signature
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The configuration file arrives as init arguments; the environment overrides it.
        return (env_settings, init_settings)


def load_settings(config: Path | None = None) -> Settings:
    """Build the settings from an optional TOML file and the environment; fail fast if wrong.

    Raises :class:`ConfigurationError`, whose message names each wrong key and never a value.
    """
    values: dict[str, Any] = {}
    if config is not None:
        try:
            with config.open("rb") as handle:
                values = tomllib.load(handle)
        except OSError as exc:
            raise ConfigurationError(config, [f"cannot read it: {exc.strerror or exc}"]) from None
        except tomllib.TOMLDecodeError as exc:
            # tomllib names the line and column, never the text found there.
            raise ConfigurationError(config, [f"not valid TOML: {exc}"]) from None
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigurationError(config, validation_problems(exc)) from None
    except SettingsError as exc:  # an environment variable that is not valid JSON
        raise ConfigurationError(config, [str(exc)]) from None


def _read_secret(value: SecretStr | None, file: Path | None, name: str) -> str:
    """A secret given inline or in a file (read now: a mounted secret may have changed)."""
    if value is not None:
        return value.get_secret_value()
    if file is None:  # excluded by the validators
        raise ValueError(f"no {name} configured")
    return file.read_text(encoding="utf-8").strip()


def refuse_placeholder_password(value: str) -> None:
    """Refuse a Neo4j password that is a known placeholder or too short to be real."""
    if value.lower() in _PLACEHOLDER_SECRETS or len(value) < 8:
        raise ValueError("the Neo4j password is a placeholder or shorter than 8 characters")
