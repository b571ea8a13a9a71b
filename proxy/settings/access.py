"""The ``[opa]`` and ``[auth]`` sections: who may call, and who decides."""

from __future__ import annotations

import re

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from proxy.settings.base import (
    ASYMMETRIC_ALGORITHMS,
    _Section,
)


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


# The IAM identities STS proves (proxy/auth/aws_iam.py): a role, named as STS names the role of
# an assumed-role session, without its path (a role's name is unique in its account), or a user,
# with its path, as STS names it.
_ROLE_ARN = re.compile(r"(arn:aws[a-z\-]*:iam::\d{12}:role/)(?:[\w+=,.@\-]+/)*([\w+=,.@\-]+)")
_USER_ARN = re.compile(r"arn:aws[a-z\-]*:iam::\d{12}:user/[\w+=,.@\-/]+")


# The dag_ids the gateway takes: Airflow's rule (letters, digits, dashes, dots, underscores, 250
# at most), in ASCII only, so that no look-alike letter names another DAG.
DAG_ID = re.compile(r"[A-Za-z0-9_.\-]{1,250}")


class BindingSettings(_Section):
    """Which DAGs one verified identity may act as. Name exactly one kind of identity."""

    dags: list[str] = Field(min_length=1)
    oidc_issuer: str | None = Field(default=None, description="With subject, client_id or SA.")
    subject: str | None = None
    client_id: str | None = None
    service_account: str | None = Field(
        default=None, description="A Kubernetes service account as 'namespace:name'."
    )
    iam_role_arn: str | None = Field(
        default=None,
        description="arn:aws:iam::ACCOUNT:role/NAME (a path before NAME is dropped), or a user's",
    )

    @field_validator("dags")
    @classmethod
    def _airflow_dag_ids(cls, value: list[str]) -> list[str]:
        """Each a dag_id as :data:`DAG_ID` takes it (an issuer's DAG claim is held to the same):
        one with a trailing space or a look-alike letter would be acted as only by a caller
        naming it so, never by the DAG it was meant for."""
        bad = [dag for dag in value if DAG_ID.fullmatch(dag) is None]
        if bad:
            raise ValueError(f"dags must be dag_ids ([A-Za-z0-9_.-], 250 at most): {bad!r}")
        return value

    @field_validator("iam_role_arn")
    @classmethod
    def _as_sts_names_it(cls, value: str | None) -> str | None:
        """The ARN as a verified identity's: one no identity can have (an assumed-role session's,
        say) is refused, not left to match nothing."""
        if value is None or _USER_ARN.fullmatch(value) is not None:
            return value
        role = _ROLE_ARN.fullmatch(value)
        if role is None:
            raise ValueError(
                "iam_role_arn must be a role's ARN, arn:aws:iam::ACCOUNT:role/NAME, or a user's"
                " (an assumed-role ARN names a session, which no binding can)"
            )
        return role.group(1) + role.group(2)

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

    @model_validator(mode="after")
    def _bindings_can_match(self) -> AuthSettings:
        """Each issuer once, and a binding names an issuer or method that is configured: one
        that cannot match any verified identity (an issuer written with a trailing slash its
        tokens do not have) is refused, not left to refuse its DAG's callers."""
        issuers = {issuer.issuer for issuer in self.oidc}
        if len(issuers) != len(self.oidc):  # one would silently replace the other
            raise ValueError("an [[auth.oidc]] issuer is configured more than once")
        for binding in self.bindings:
            if binding.oidc_issuer is not None and binding.oidc_issuer not in issuers:
                raise ValueError("a binding's oidc_issuer is none of the [[auth.oidc]] issuers")
            if binding.iam_role_arn is not None and self.aws_iam is None:
                raise ValueError("a binding names an IAM identity, but [auth.aws_iam] is not set")
        return self
