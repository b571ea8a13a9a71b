"""The ``[neo4j]`` section: how the gateway reaches Neo4j, and its own credential."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from proxy.settings.base import _read_secret, _Section, refuse_placeholder_password


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
    http_relay: bool = Field(
        default=True,
        description="The HTTP door's statements run on the gateway's own connections too, "
        "records decoded straight into the Query API's JSON; false: on the driver (a cluster "
        "a neo4j:// URI routes).",
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
    plan_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait for Neo4j to plan a statement (EXPLAIN); past it the "
        "statement is refused (503, neo4j_plan_timeout) and never runs.",
    )
    home_database: str = Field(
        default="neo4j", description="The database of a Bolt statement that names none."
    )
    analysis_cache_size: int = Field(default=4096, ge=0)
    analysis_cache_ttl_s: float = Field(
        default=300.0, gt=0, description="Plans change with indexes: re-explain after this."
    )

    @field_validator("home_database")
    @classmethod
    def _as_neo4j_names_it(cls, value: str) -> str:
        """In lower case, as Neo4j names a database and a request's is read
        (``proxy.gateway.call.database_name``): the policy sees the name Neo4j runs on."""
        return value.lower()

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
