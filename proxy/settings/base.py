"""What every section of the settings shares: refusing unknown keys, reading a secret given
inline or in a file, refusing placeholder passwords."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    SecretStr,
)

# Algorithms a gateway may accept. Never "none", never HMAC: an HMAC key would be the issuer's
# public key, which anyone can read.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "EdDSA")
IPNetwork = IPv4Network | IPv6Network
_PLACEHOLDER_SECRETS = {"neo4j", "password", "changeme", "change-me", "secret"}


class _Section(BaseModel):
    """A section of the configuration: an unknown key is a typo, refused by name (a misspelt
    ``audit.path`` must not silently become the default path). A number is finite: TOML's
    ``inf`` passes every ``gt=0`` bound, and as a time-out or an interval it means a wait with
    no end (OPA or Neo4j never timed out) or a time before any clock (``audit verify``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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
