"""Configuration fails fast on unsafe values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from proxy.settings import AuditWebSettings, OIDCIssuerSettings, load_settings


def test_config_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[neo4j]\npassword = "a-long-secret"\n[opa]\nurl = "http://127.0.0.1:1"\n')
    monkeypatch.setenv("CYPHERGATE_OPA__URL", "http://127.0.0.1:2")
    settings = load_settings(config)
    assert settings.opa.url == "http://127.0.0.1:2"  # the environment wins over the file
    assert settings.neo4j.read_password() == "a-long-secret"
    assert "a-long-secret" not in repr(settings)


@pytest.mark.parametrize("password", ["neo4j", "password", "short"])
def test_placeholder_passwords_are_refused(tmp_path: Path, password: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[neo4j]\npassword = "{password}"\n')
    with pytest.raises(ValidationError):
        load_settings(config)


@pytest.mark.parametrize("algorithm", ["none", "HS256"])
def test_symmetric_and_none_algorithms_are_refused(algorithm: str) -> None:
    with pytest.raises(ValidationError):
        OIDCIssuerSettings(issuer="https://i", audiences=["a"], algorithms=[algorithm])


def test_unknown_settings_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[neo4j]\npassword = "a-long-secret"\n[nope]\nx = 1\n')
    with pytest.raises(ValidationError):
        load_settings(config)


@pytest.mark.parametrize(
    "section", ['[faults]\ncrash_at = "password_altered"\n', "[faults]\n"], ids=["set", "empty"]
)
def test_a_faults_section_is_refused(tmp_path: Path, section: str) -> None:
    """Crash injection is an object the crash tests pass in; no configuration can ask for it."""
    config = tmp_path / "gateway.toml"
    config.write_text('[neo4j]\npassword = "a-long-secret"\n' + section)
    with pytest.raises(ValidationError, match="faults"):
        load_settings(config)


def test_audit_page_needs_exactly_one_client_secret(tmp_path: Path) -> None:
    common = {"issuer": "https://i", "client_id": "web", "public_url": "https://gw/"}
    with pytest.raises(ValidationError, match="exactly one"):
        AuditWebSettings(**common)
    secret = tmp_path / "secret"
    secret.write_text("s3cret-from-a-file\n")
    with pytest.raises(ValidationError, match="exactly one"):
        AuditWebSettings(**common, client_secret="inline", client_secret_file=secret)
    web = AuditWebSettings(**common, client_secret_file=secret)
    assert web.read_client_secret() == "s3cret-from-a-file"
    assert web.redirect_uri == "https://gw/audit/callback"
    assert web.secure_cookies is True  # cookies stay on HTTPS unless a deployment says otherwise
