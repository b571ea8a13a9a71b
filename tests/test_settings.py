"""Configuration fails fast on unsafe values."""

from __future__ import annotations

import json
import os
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ValidationError

from proxy.audit.checkpoint import write_keys
from proxy.cli import main
from proxy.cli.config import check_config, file_problems
from proxy.settings import (
    AuditSettings,
    AuditWebSettings,
    AuthSettings,
    BindingSettings,
    OIDCIssuerSettings,
    Settings,
    load_settings,
)
from proxy.settings_errors import ConfigurationError
from tests.audit.test_checkpoint import write as write_signed


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
    with pytest.raises(ConfigurationError, match="placeholder"):
        load_settings(config)


@pytest.mark.parametrize("algorithm", ["none", "HS256"])
def test_symmetric_and_none_algorithms_are_refused(algorithm: str) -> None:
    with pytest.raises(ValidationError):
        OIDCIssuerSettings(issuer="https://i", audiences=["a"], algorithms=[algorithm])


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sts::111122223333:assumed-role/etl/worker",  # a session's, not a role's
        "arn:aws:iam::1:role/etl",  # STS names an account with 12 digits
        "arn:aws:iam::111122223333:group/etl",
        "etl",
    ],
)
def test_a_binding_no_iam_identity_can_match_is_refused(arn: str) -> None:
    with pytest.raises(ValidationError, match="iam_role_arn"):
        BindingSettings(iam_role_arn=arn, dags=["etl"])


@pytest.mark.parametrize(
    ("arn", "bound"),
    [
        ("arn:aws:iam::111122223333:role/service-role/etl", "arn:aws:iam::111122223333:role/etl"),
        ("arn:aws:iam::111122223333:role/etl", "arn:aws:iam::111122223333:role/etl"),
        ("arn:aws:iam::111122223333:user/ops/alice", "arn:aws:iam::111122223333:user/ops/alice"),
    ],
)
def test_a_role_is_bound_as_sts_names_it(arn: str, bound: str) -> None:
    assert BindingSettings(iam_role_arn=arn, dags=["etl"]).iam_role_arn == bound


@pytest.mark.parametrize(
    "dag", ["demo_writer ", " demo_writer", "", "demo/writer", "d\u00e9mo", "demo\x00", "d" * 251]
)
def test_a_binding_to_a_dag_no_dag_id_can_be_is_refused(dag: str) -> None:
    """A DAG outside the dag_ids the gateway takes (a trailing space, a slash, a look-alike
    letter, NUL, too long) would be acted as only by a caller naming it so, never by the DAG it
    was meant for: a typo refused at start-up, as an issuer's DAG claim of that kind is."""
    with pytest.raises(ValidationError, match="dag_id"):
        BindingSettings(oidc_issuer="https://issuer.test", client_id="etl", dags=[dag])
    good = BindingSettings(oidc_issuer="https://issuer.test", client_id="etl", dags=["a.b-c_1"])
    assert good.dags == ["a.b-c_1"]


def test_a_binding_of_an_issuer_or_method_not_configured_is_refused() -> None:
    """Found by review: a binding whose issuer differs from the configured one (a trailing
    slash) or names an IAM role with IAM off matched no identity, silently."""
    issuer = OIDCIssuerSettings(issuer="https://login.example.com/realms/airflow", audiences=["a"])
    slashed = BindingSettings(oidc_issuer=issuer.issuer + "/", client_id="etl", dags=["etl"])
    role = BindingSettings(iam_role_arn="arn:aws:iam::111122223333:role/etl", dags=["etl"])
    with pytest.raises(ValidationError, match="oidc_issuer"):
        AuthSettings(oidc=[issuer], bindings=[slashed])
    with pytest.raises(ValidationError, match=r"auth\.aws_iam"):
        AuthSettings(oidc=[issuer], bindings=[role])
    matching = BindingSettings(oidc_issuer=issuer.issuer, client_id="etl", dags=["etl"])
    assert AuthSettings(oidc=[issuer], bindings=[matching]).bindings == [matching]


def test_an_issuer_configured_twice_is_refused() -> None:
    """Found by review: the authenticator keeps one issuer's settings per URL, so a second
    [[auth.oidc]] for the same issuer (another audience, say) silently replaced the first,
    whose audience's tokens were then refused."""
    first = OIDCIssuerSettings(issuer="https://login.example.com", audiences=["gateway"])
    second = OIDCIssuerSettings(issuer="https://login.example.com", audiences=["reviews"])
    with pytest.raises(ValidationError, match="more than once"):
        AuthSettings(oidc=[first, second])


def test_unknown_settings_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[neo4j]\npassword = "a-long-secret"\n[nope]\nx = 1\n')
    with pytest.raises(ConfigurationError, match="unknown key 'nope' in the top level"):
        load_settings(config)


@pytest.mark.parametrize(
    "section", ['[faults]\ncrash_at = "password_altered"\n', "[faults]\n"], ids=["set", "empty"]
)
def test_a_faults_section_is_refused(tmp_path: Path, section: str) -> None:
    """Crash injection is an object the crash tests pass in; no configuration can ask for it."""
    config = tmp_path / "gateway.toml"
    config.write_text('[neo4j]\npassword = "a-long-secret"\n' + section)
    with pytest.raises(ConfigurationError, match="faults"):
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


def _sections(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """``model`` and every section model under it."""
    yield model
    for field in model.model_fields.values():
        for inner in typing.get_args(field.annotation) or (field.annotation,):
            for candidate in typing.get_args(inner) or (inner,):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    yield from _sections(candidate)


def test_every_section_refuses_unknown_keys() -> None:
    """A section added later without ``extra = "forbid"`` fails here, not in an operator's typo."""
    sections = set(_sections(Settings))
    assert len(sections) >= 10
    for section in sections:
        assert section.model_config.get("extra") == "forbid", section.__name__


_BASE = '[neo4j]\npassword = "a-long-secret-4711"\n'


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("bogus = 1\n" + _BASE, "unknown key 'bogus' in the top level"),
        (_BASE + "bogus_key = 1\n", "unknown key 'bogus_key' in section [neo4j]"),
        (_BASE + '[audit]\npth = "/tmp/elsewhere"\n', "unknown key 'pth' in section [audit]"),
        (_BASE + "[server]\nprot = 1\n", "unknown key 'prot' in section [server]"),
        (
            _BASE + '[[auth.oidc]]\nissuer = "https://i"\naudiences = ["a"]\naudience = "a"\n',
            "unknown key 'audience' in section [auth.oidc[0]]",
        ),
        (
            _BASE + '[audit.archive]\nbucket = "b"\nretention = 1\n',
            "unknown key 'retention' in section [audit.archive]",
        ),
    ],
)
def test_unknown_keys_are_named_with_their_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, named: str
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(extra)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config)
    assert named in caught.value.problems
    assert main(["config", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert named in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "text",
    [
        # A key-level error in the section that holds the secret.
        _BASE + "max_connection_lifetime_s = 'soon'\n",
        # A section-level check: pydantic would print the whole section as input_value.
        _BASE + 'password_file = "/run/secret"\n',
        # The secret itself is the wrong type.
        '[neo4j]\npassword = ["a-long-secret-4711"]\n',
        # A model-level check of another section holding a secret.
        _BASE + '[audit.web]\nissuer = "https://i"\nclient_id = "c"\npublic_url = "https://g"\n'
        'client_secret = "a-long-secret-4711"\nclient_secret_file = "/x"\n',
    ],
    ids=["bad-type-beside", "section-check", "secret-wrong-type", "web-section-check"],
)
def test_configuration_errors_never_print_a_value(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    text: str,
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cyphergate: configuration {config} is not valid:\n")
    assert len(err.splitlines()) <= 4
    for leak in ("a-long-secret-4711", "input_value", "Traceback", "/run/secret"):
        assert leak not in err


def test_a_secret_from_the_environment_is_not_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[neo4j]\n")
    monkeypatch.setenv("CYPHERGATE_NEO4J__PASSWORD", "neo4j")  # a placeholder: refused
    monkeypatch.setenv("CYPHERGATE_NEO4J__SECRET__VALUE", "env-secret-4711")
    assert main(["config", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "neo4j.secret.source: required, not set" in err
    assert "env-secret-4711" not in err
    assert "'neo4j'" not in err


def test_config_check_opens_the_files_a_configuration_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "neo4j-password"
    secret.write_text("a-long-secret-4711\n")
    key, _, _ = write_keys(tmp_path / "keys")  # loaded, as serve loads it
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[neo4j]\npassword_file = "{secret}"\nleases_path = "{tmp_path / "leases.sqlite3"}"\n'
        f'[audit]\npath = "{tmp_path / "audit.sqlite3"}"\nsigning_key_file = "{key}"\n'
    )
    assert main(["config", "check", "--config", str(config)]) == 0
    assert "OK" in capsys.readouterr().out
    assert not (tmp_path / "audit.sqlite3").exists()  # nothing is created

    key.chmod(0)
    missing = tmp_path / "gone" / "audit.sqlite3"
    config.write_text(
        f'[neo4j]\npassword_file = "{tmp_path / "nope"}"\n'
        f'[audit]\npath = "{missing}"\nsigning_key_file = "{key}"\n'
        f'hmac_key_file = "{tmp_path}"\n'
    )
    _, problems = check_config(config)
    assert f"neo4j.password_file = '{tmp_path / 'nope'}': no such file" in problems
    assert f"audit.path = '{missing}': its folder '{missing.parent}' does not exist" in problems
    assert f"audit.hmac_key_file = '{tmp_path}': not a regular file" in problems
    if os.geteuid() != 0:  # root reads any file
        assert any(p.startswith("audit.signing_key_file") for p in problems)
    assert main(["config", "check", "--config", str(config)]) == 2
    out = capsys.readouterr().out
    assert "no such file" in out
    assert "a-long-secret-4711" not in out


@pytest.mark.parametrize(
    ("server", "named"),
    [
        ('tls_certificate = "/c.pem"\n', "tls_certificate and tls_key go together"),
        ('tls_key = "/k.pem"\n', "tls_certificate and tls_key go together"),
        ("[server.rate_limits]\nper_dag = { requests = 0 }\n", "per_dag.requests"),
        ("[server.rate_limits]\nper_dags = { requests = 1 }\n", "unknown key 'per_dags'"),
        (
            "[server.rate_limits]\nper_client = { requests = 5, window = 1 }\n",
            "unknown key 'window'",
        ),
    ],
    ids=["certificate-alone", "key-alone", "no-requests", "misspelt-limit", "misspelt-window"],
)
def test_tls_and_rate_limit_mistakes_are_refused(tmp_path: Path, server: str, named: str) -> None:
    config = tmp_path / "gateway.toml"
    section = server if server.startswith("[") else "[server]\n" + server
    config.write_text(_BASE + section)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config)
    assert any(named in problem for problem in caught.value.problems), caught.value.problems


def test_rate_limits_are_off_unless_given(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(_BASE + "[server.rate_limits]\nper_identity = { requests = 50 }\n")
    limits = load_settings(config).server.rate_limits
    assert limits.per_client is None
    assert limits.per_dag is None
    assert limits.per_identity is not None
    assert (limits.per_identity.requests, limits.per_identity.window_s) == (50, 1)


@pytest.mark.parametrize(
    "chain", ["gateway/w1", "../gateway", "", "a\nb", "-gateway", "x" * 129, "gâteway"]
)
def test_a_chain_id_that_cannot_name_an_archive_folder_is_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], chain: str
) -> None:
    """Found by review: any chain id was taken, and the archive keeps chain C's segments under
    ``<prefix>/C/``, so a replica with chain ``gateway/w1`` put its segments inside chain
    ``gateway``'s folder, whose archiver and ``verify --archive`` then read them as its own."""
    config = tmp_path / "gateway.toml"
    config.write_text(_BASE + f"[audit]\nchain_id = {json.dumps(chain)}\n")
    assert main(["config", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cyphergate: configuration {config} is not valid:\n")
    assert len(err.splitlines()) == 2 and "  audit.chain_id: " in err
    assert "Traceback" not in err


@pytest.mark.parametrize("chain", ["gateway", "gateway-1", "prod.cyphergate_2", "x" * 128])
def test_a_chain_id_of_letters_digits_dots_dashes_is_taken(chain: str) -> None:
    assert AuditSettings(chain_id=chain).chain_id == chain


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ('[neo4j]\npassword_file = "{folder}"\n', "neo4j.password_file"),
        ("[neo4j]\n[neo4j.secret]\nsource = 'file'\npath = '{missing}'\n", None),
        (_BASE + '[audit]\npath = "{folder}"\n', "audit.path"),
        (_BASE + '[audit]\npath = "{garbage}/audit.sqlite3"\n', "audit.path"),
        (
            _BASE + 'credentials = "leases"\nleases_path = "{missing}/leases.sqlite3"\n',
            "neo4j.leases_path",
        ),
        (_BASE + '[audit]\nsigning_key_file = "{garbage}"\n', "audit.signing_key_file"),
        (_BASE + '[audit]\nhmac_key_file = "{garbage}"\n', "audit.hmac_key_file"),
    ],
    ids=[
        "password-file-a-folder",
        "secret-file-missing",
        "audit-log-a-folder",
        "audit-folder-a-file",
        "leases-folder-missing",
        "signing-key-garbage",
        "hmac-key-short",
    ],
)
def test_serve_refuses_a_file_it_cannot_use_in_one_line_naming_its_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    section: str,
    named: str | None,
) -> None:
    """Found by review: ``serve`` read these files only while starting its application, so
    each stopped it with a traceback in the log and uvicorn's exit status 3 (a key that does
    not load, a password file that is a folder: SecretStoreUnavailable, IsADirectoryError)."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("neither a key nor 32 bytes\n")
    files = {"folder": tmp_path, "missing": tmp_path / "missing", "garbage": garbage}
    config = tmp_path / "gateway.toml"
    text = section.format(**files)
    if "[audit]" not in text:
        text += f'[audit]\npath = "{tmp_path / "audit.sqlite3"}"\n'
    config.write_text(text.replace("[neo4j]\n", '[neo4j]\nuri = "bolt://127.0.0.1:9"\n', 1))
    assert main(["serve", "--config", str(config), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cyphergate: configuration {config} is not valid:\n")
    assert len(err.splitlines()) == 2, err
    assert f"  {named or 'neo4j.secret.path'} = " in err
    assert "Traceback" not in err and "a-long-secret-4711" not in err
    assert not (tmp_path / "audit.sqlite3").exists()  # nothing started


def test_serve_takes_an_audit_folder_its_log_will_make(tmp_path: Path) -> None:
    """The audit log makes its folder (the leases' record does not): serve does not refuse it,
    where ``config check`` asks for it to be there."""
    settings = Settings.model_validate(
        {
            "neo4j": {"password": "a-long-secret-4711"},
            "audit": {"path": str(tmp_path / "new" / "deeper" / "audit.sqlite3")},
        }
    )
    assert file_problems(settings, folders_made=True) == []
    assert len(file_problems(settings)) == 1
    # The leases' record is opened only with leased credentials.
    leases = {"leases_path": tmp_path / "none" / "leases.sqlite3"}
    for credentials, problems in (("service_account", 0), ("leases", 1)):
        settings.neo4j = settings.neo4j.model_copy(update={**leases, "credentials": credentials})
        assert len(file_problems(settings, folders_made=True)) == problems


@pytest.mark.parametrize(
    "variable",
    ["CYPHERGATE_SERVER__FORWARDED_ALLOW_IPS", "CYPHERGATE_AUTH__OIDC", "CYPHERGATE_AUDIT__SINKS"],
)
def test_a_list_in_the_environment_that_is_not_json_is_named_by_its_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
) -> None:
    """Found by review: the line said only 'error parsing value for field "server" from source
    "EnvSettingsSource"', leaving the operator to guess which of the section's variables."""
    config = tmp_path / "gateway.toml"
    config.write_text(_BASE)
    monkeypatch.setenv(variable, "10.0.0.0/8,secret-4711")
    monkeypatch.setenv("CYPHERGATE_SERVER__HOST", "0.0.0.0")  # noqa: S104 - a plain string, not JSON
    assert main(["config", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[1:] == [
        f"  {variable}: not valid JSON (a list or table set in the environment is JSON, such as"
        ' ["10.0.0.0/8"] or {"requests": 10})'
    ]
    assert "secret-4711" not in err


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ("[audit]\ncheckpoint_interval_s = inf\n", "audit.checkpoint_interval_s"),
        ("[opa]\ntimeout_s = inf\n", "opa.timeout_s"),
        ("[server.admission]\nmax_wait_s = inf\n", "server.admission.max_wait_s"),
        ("[server.rate_limits]\nper_dag = { requests = 5, window_s = inf }\n", "window_s"),
        ('[[audit.sinks]]\nname = "s"\nkind = "jsonl"\ntimeout_s = inf\n', "timeout_s"),
    ],
    ids=["checkpoint-interval", "opa-timeout", "admission-wait", "rate-window", "sink-timeout"],
)
def test_an_infinite_duration_is_refused_naming_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, named: str
) -> None:
    """Found by review: TOML's ``inf`` passed every ``gt=0`` bound. An OPA time-out of ``inf``
    waits on a hung OPA for ever instead of failing closed, and ``audit verify --config`` of a
    log whose checkpoint interval was ``inf`` ended in a traceback (OverflowError)."""
    config = tmp_path / "gateway.toml"
    config.write_text(_BASE + section)
    assert main(["config", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 2 and named in err and "finite" in err, err
    log = tmp_path / "audit.sqlite3"
    write_signed(log, Ed25519PrivateKey.generate(), 1)
    config.write_text(_BASE + f'[audit]\npath = "{log}"\ncheckpoint_interval_s = inf\n')
    assert main(["audit", "verify", "--config", str(config)]) == 2
    assert "audit.checkpoint_interval_s: Input should be a finite number" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("section", "named"),
    [
        (
            'credentials = "leases"\nleases_path = "{log}"\n[audit]\npath = "{log}"\n',
            "audit.path = '{log}': neo4j.leases_path writes it too",
        ),
        (
            '[audit]\npath = "{log}"\n[[audit.sinks]]\nname = "siem"\nkind = "jsonl"\n'
            'path = "{log}-wal"\n',
            "audit.sinks[0].path = '{log}-wal': audit.path writes it too",
        ),
        (
            '[audit]\npath = "{log}"\n[lineage]\ntransport = "file"\npath = "{log}"\n',
            "lineage.path = '{log}': audit.path writes it too",
        ),
    ],
    ids=["leases-in-the-log", "sink-into-the-wal", "lineage-into-the-log"],
)
def test_two_keys_writing_one_file_are_refused_before_serve_starts(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    section: str,
    named: str,
) -> None:
    """Found by review: nothing kept the files the gateway writes apart. The leases' record in
    the audit log's file stopped serve with a traceback ("kept by gateway process <its own
    pid>", exit 3); a JSON Lines sink or the lineage file pointed at the log would append
    lines to the SQLite file itself."""
    log = str(tmp_path / "audit.sqlite3")
    config = tmp_path / "gateway.toml"
    config.write_text(_BASE + 'uri = "bolt://127.0.0.1:9"\n' + section.format(log=log))
    for command in (["config", "check"], ["serve", "--port", "0"]):
        assert main([*command, "--config", str(config)]) == 2
        said = capsys.readouterr()
        lines = (said.out + said.err).splitlines()
        assert lines[1:] == [
            f"  {named.format(log=log)}: each file the gateway writes needs its own"
        ]
    assert not (tmp_path / "audit.sqlite3").exists()


@pytest.mark.parametrize(
    ("variable", "said"),
    [
        ("CYPHERGATE_AUDIT_PATH", "a key of a section takes two underscores: "),
        ("CYPHERGATE_OPA_URL", "a key of a section takes two underscores: "),
        ("CYPHERGATE_AUIDT__PATH", "there is no section 'auidt'"),
    ],
)
def test_a_misspelt_setting_in_the_environment_is_refused_naming_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    said: str,
) -> None:
    """Found by review: pydantic-settings passes over a variable it does not know, so
    ``CYPHERGATE_AUDIT_PATH=/var/lib/cyphergate/audit.sqlite3`` (one underscore) was taken in
    silence and the log written to the default path; a `[audit] pth` typo is refused."""
    config = tmp_path / "gateway.toml"
    config.write_text(_BASE)
    monkeypatch.setenv(variable, "/somewhere/secret-4711")
    monkeypatch.setenv("CYPHERGATE_CACHE", "/tmp")  # noqa: S108 - another tool's variable: left alone
    assert main(["config", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[1].startswith(f"  {variable}: not a setting ({said}")
    assert len(err.splitlines()) == 2 and "secret-4711" not in err
