"""The configuration the stack's gateway runs with, and the keys and secret files it names."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from proxy.audit.checkpoint import write_keys
from proxy.devstack.state import (
    ARCHIVE_BUCKET,
    AUDIENCE,
    AUDIT_WEB_CLIENT,
    AWS_REGION,
    GATEWAY_NEO4J_USER,
    GATEWAY_SECRET,
    LEASE_PREFIX,
    SERVER_ID,
    StackState,
    role_arn,
)


def gateway_config(state: StackState, run_dir: Path, *, audit_path: Path) -> dict[str, Any]:
    """The gateway's configuration for this stack: lease mode, its password in moto's Secrets
    Manager, OPA, the provider and moto's STS, a signed audit log with the archive and the
    reviewers' page. Writes the keys and secret files it names (once per run folder)."""
    signing_key, _, hmac_key = audit_keys(run_dir)
    web_secret = write_secret(run_dir / "audit-web-client-secret", state.web_client_secret)
    session_key = run_dir / "audit-web-session-key"
    if not session_key.exists():  # kept, so sessions survive a gateway restart
        write_secret(session_key, secrets.token_urlsafe(48))
    config: dict[str, Any] = {
        "server": {
            "host": "127.0.0.1",
            "port": state.ports["gateway"],
            "bolt_port": state.ports["gateway_bolt"],
        },
        "neo4j": {
            "uri": f"bolt://127.0.0.1:{state.ports['neo4j_bolt']}",
            "user": GATEWAY_NEO4J_USER,
            "secret": {
                "source": "aws_secrets_manager",
                "secret_id": GATEWAY_SECRET,
                "endpoint_url": state.sts_url().rstrip("/"),
                "region": AWS_REGION,
                "refresh_interval_s": 5.0,
            },
            "credentials": "leases",
            "lease_user_prefix": LEASE_PREFIX,
            "lease_ttl_s": 300.0,
            "leases_path": str(run_dir / "leases.sqlite3"),
        },
        "opa": {"url": f"http://127.0.0.1:{state.ports['opa']}"},
        "auth": {
            "oidc": [{"issuer": state.issuer(), "audiences": [AUDIENCE], "dag_claim": "dag_id"}],
            "aws_iam": {"sts_endpoints": [state.sts_url()], "server_id": SERVER_ID},
            "bindings": [{"iam_role_arn": role_arn(dag), "dags": [dag]} for dag in state.dags()],
        },
        "audit": {
            "path": str(audit_path),
            "signing_key_file": str(signing_key),
            "hmac_key_file": str(hmac_key),
            "archive": {
                "bucket": ARCHIVE_BUCKET,
                "endpoint_url": state.sts_url().rstrip("/"),
                "region": AWS_REGION,
                "retention_days": 1,
            },
            "web": {
                "issuer": state.issuer(),
                "client_id": AUDIT_WEB_CLIENT,
                "client_secret_file": str(web_secret),
                "public_url": state.gateway_url(),
                "session_secret_file": str(session_key),
                # The stack serves plain HTTP on loopback.
                "secure_cookies": False,
            },
        },
    }
    return config


def audit_keys(run_dir: Path) -> tuple[Path, Path, Path]:
    """The audit signing key pair and HMAC key, made once per run folder."""
    directory = run_dir / "audit-keys"
    private, public, hmac_key = (
        directory / "audit-signing-key.pem",
        directory / "audit-signing-key.pub.pem",
        directory / "audit-hmac.key",
    )
    if not private.exists():
        return write_keys(directory)
    return private, public, hmac_key


def write_secret(path: Path, value: str) -> Path:
    """Write a secret file readable by its owner only."""
    path.write_text(value, encoding="utf-8")
    path.chmod(0o600)
    return path
