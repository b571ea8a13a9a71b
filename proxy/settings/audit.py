"""The ``[audit]`` section: the log, its archive, its reviewers' page and its SIEM sinks."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from proxy.settings.base import (
    _read_secret,
    _Section,
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


_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})")
# What each kind of sink reads; any other key of the kinds' is refused for it, by name.
_SINK_KEYS = {
    "jsonl": {"path"},
    "syslog": {"address", "transport", "app_name"},
    "hec": {"url", "token_file", "token_env", "verify_tls", "source", "sourcetype", "index"},
}


class SinkSettings(_Section):
    """One ``[[audit.sinks]]`` entry: where committed audit records are streamed, and in which
    form. The SQLite chain stays the source of truth; a sink reads it after its cursor."""

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="Names the sink in /metrics, the logs and its cursor file.",
    )
    kind: Literal["jsonl", "syslog", "hec"]
    format: Literal["record", "ocsf"] = Field(
        default="record", description="record: our record and its seq, hash, chain; ocsf: OCSF."
    )
    path: Path | None = Field(
        default=None, description="jsonl: the file records are appended to; unset: stdout."
    )
    address: str | None = Field(default=None, description="syslog: the collector's host:port.")
    transport: Literal["udp", "tcp"] = Field(
        default="udp", description="syslog: UDP, or TCP with octet-counting framing."
    )
    app_name: str = Field(default="cyphergate", pattern=r"^[!-~]{1,48}$")
    url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="hec: the collector's base URL; events go to <url>/services/collector/event.",
    )
    token_file: Path | None = Field(default=None, description="hec: file holding the token.")
    token_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="hec: name of the environment variable holding the token.",
    )
    verify_tls: bool = True
    source: str | None = None
    sourcetype: str | None = None
    index: str | None = None
    batch: int = Field(default=100, gt=0, le=10_000, description="Records sent at once at most.")
    poll_interval_s: float = Field(
        default=0.25, gt=0, le=60, description="How often the chain is read for new records."
    )
    retry_min_s: float = Field(default=0.5, gt=0, description="First wait after a failure.")
    retry_max_s: float = Field(default=30.0, gt=0, description="Longest wait between retries.")
    timeout_s: float = Field(default=5.0, gt=0, description="Longest wait for one delivery.")

    @model_validator(mode="after")
    def _keys_of_its_kind(self) -> SinkSettings:
        others = set[str]().union(*_SINK_KEYS.values()) - _SINK_KEYS[self.kind]
        stray = sorted(key for key in others & self.model_fields_set)
        if stray:
            raise ValueError(f"not a key of a {self.kind} sink: {', '.join(stray)}")
        if self.kind == "syslog":
            if self.address is None or _HOST_PORT.fullmatch(self.address) is None:
                raise ValueError("a syslog sink needs address = 'host:port'")
            if not 0 < int(self.address.rsplit(":", 1)[1]) < 65536:
                raise ValueError("the syslog address' port must be 1 to 65535")
        if self.kind == "hec":
            if self.url is None:
                raise ValueError("an hec sink needs url")
            if (self.token_file is None) == (self.token_env is None):
                raise ValueError("an hec sink needs exactly one of token_file and token_env")
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("retry_max_s must not be below retry_min_s")
        return self

    def syslog_address(self) -> tuple[str, int]:
        """``(host, port)`` of a syslog sink (brackets of an IPv6 host removed)."""
        match = _HOST_PORT.fullmatch(self.address or "")
        if match is None:  # excluded by the validator
            raise ValueError(f"audit sink {self.name} has no syslog address")
        return match["host"].strip("[]"), int(match["port"])

    def read_token(self) -> str:
        """The HEC token, read now from its file or the environment (never logged)."""
        if self.token_env is not None:
            token = os.environ.get(self.token_env, "").strip()
            if not token:
                raise ValueError(f"audit sink {self.name}: ${self.token_env} is not set")
            return token
        return _read_secret(None, self.token_file, f"audit sink {self.name} token")


class AuditSettings(_Section):
    path: Path = Path("cyphergate-audit.sqlite3")
    max_batch: int = Field(default=256, gt=0, description="Records written in one commit at most.")
    chain_id: str = Field(
        default="gateway",
        # It names the chain's folder in the archive (<prefix>/<chain id>/): a "/" would put
        # one chain's segments inside another's, which that chain's archiver and verify then
        # read as its own. Short enough for the reviewers' API (`chain`, 200 at most) with a
        # worker's "-wK".
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="Names this replica's chain in checkpoints and the archive: letters,"
        " digits, '.', '_' and '-', 128 at most.",
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
    sinks: list[SinkSettings] = Field(
        default_factory=list,
        description="Where committed records are streamed for a SIEM ([[audit.sinks]]).",
    )

    @field_validator("sinks")
    @classmethod
    def _names_apart(cls, sinks: list[SinkSettings]) -> list[SinkSettings]:
        names = [sink.name for sink in sinks]
        if len(set(names)) != len(names):
            raise ValueError("each audit sink needs a name of its own")
        return sinks

    @model_validator(mode="after")
    def _sinks_read_a_file(self) -> AuditSettings:
        if self.sinks and str(self.path) == ":memory:":
            raise ValueError("audit sinks read the log's file: audit.path cannot be :memory:")
        return self
