"""The ``[audit]`` section: the log, its archive and its reviewers' page."""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    Field,
    SecretStr,
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
