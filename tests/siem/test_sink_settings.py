"""``[[audit.sinks]]``: each kind takes its own keys, and a mistake is named, never a token."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.chains import worker_settings
from proxy.cli.config import check_config
from proxy.settings import load_settings
from proxy.settings_errors import ConfigurationError
from proxy.siem.cursor import cursor_path

BASE = '[neo4j]\npassword = "a-long-secret-4711"\n[audit]\npath = "{audit}"\n'


def config(tmp_path: Path, sinks: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(BASE.format(audit=tmp_path / "audit.sqlite3") + sinks, encoding="utf-8")
    return path


def test_the_three_kinds_of_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "hec-token"
    token.write_text("tok-from-file\n")
    monkeypatch.setenv("SPLUNK_HEC_TOKEN", "tok-from-env")
    settings = load_settings(
        config(
            tmp_path,
            f'[[audit.sinks]]\nname = "shipper"\nkind = "jsonl"\npath = "{tmp_path / "a.jsonl"}"\n'
            '[[audit.sinks]]\nname = "stdout"\nkind = "jsonl"\nformat = "ocsf"\n'
            '[[audit.sinks]]\nname = "syslog"\nkind = "syslog"\naddress = "[::1]:6514"\n'
            'transport = "tcp"\n'
            '[[audit.sinks]]\nname = "splunk"\nkind = "hec"\nurl = "https://hec:8088"\n'
            f'token_file = "{token}"\nformat = "ocsf"\n'
            '[[audit.sinks]]\nname = "splunk2"\nkind = "hec"\nurl = "http://127.0.0.1:1"\n'
            'token_env = "SPLUNK_HEC_TOKEN"\n',
        )
    )
    sinks = {sink.name: sink for sink in settings.audit.sinks}
    assert sinks["stdout"].path is None and sinks["stdout"].format == "ocsf"
    assert sinks["syslog"].syslog_address() == ("::1", 6514)
    assert sinks["splunk"].read_token() == "tok-from-file"
    assert sinks["splunk2"].read_token() == "tok-from-env"
    assert "tok-from" not in repr(settings)


@pytest.mark.parametrize(
    ("sinks", "named"),
    [
        ('[[audit.sinks]]\nname = "a"\nkind = "kafka"\n', "audit.sinks[0].kind"),
        ('[[audit.sinks]]\nname = "a"\nkind = "jsonl"\nadress = "x:1"\n', "unknown key 'adress'"),
        (
            '[[audit.sinks]]\nname = "a"\nkind = "jsonl"\naddress = "h:1"\n',
            "not a key of a jsonl sink: address",
        ),
        ('[[audit.sinks]]\nname = "a"\nkind = "syslog"\n', "needs address = 'host:port'"),
        ('[[audit.sinks]]\nname = "a"\nkind = "syslog"\naddress = "h:0"\n', "port must be"),
        ('[[audit.sinks]]\nname = "a"\nkind = "hec"\ntoken_env = "T"\n', "needs url"),
        (
            '[[audit.sinks]]\nname = "a"\nkind = "hec"\nurl = "http://h"\n',
            "exactly one of token_file and token_env",
        ),
        ('[[audit.sinks]]\nname = "a"\nkind = "hec"\nurl = "ftp://h"\n', "audit.sinks[0].url"),
        ('[[audit.sinks]]\nname = "A b"\nkind = "jsonl"\n', "audit.sinks[0].name"),
        (
            '[[audit.sinks]]\nname = "a"\nkind = "jsonl"\n[[audit.sinks]]\nname = "a"\n'
            'kind = "jsonl"\n',
            "a name of its own",
        ),
        ('[[audit.sinks]]\nname = "a"\nkind = "jsonl"\nbatch = 0\n', "audit.sinks[0].batch"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, sinks: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(config(tmp_path, sinks))
    assert named in str(raised.value)


def test_a_log_in_memory_has_no_file_to_tail(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[neo4j]\npassword = "a-long-secret-4711"\n[audit]\npath = ":memory:"\n'
        '[[audit.sinks]]\nname = "a"\nkind = "jsonl"\n'
    )
    with pytest.raises(ConfigurationError, match="cannot be :memory:"):
        load_settings(path)


def test_a_token_variable_unset_is_named_not_guessed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    settings = load_settings(
        config(
            tmp_path,
            '[[audit.sinks]]\nname = "s"\nkind = "hec"\nurl = "http://h"\n'
            'token_env = "NO_SUCH_TOKEN"\n',
        )
    )
    with pytest.raises(ValueError, match=r"audit sink s: \$NO_SUCH_TOKEN is not set"):
        settings.audit.sinks[0].read_token()


def test_config_check_treats_a_sink_file_as_written(tmp_path: Path) -> None:
    out = tmp_path / "siem" / "audit.jsonl"
    _, problems = check_config(
        config(tmp_path, f'[[audit.sinks]]\nname = "a"\nkind = "jsonl"\npath = "{out}"\n')
    )
    assert problems == [f"audit.sinks[0].path = '{out}': its folder '{out.parent}' does not exist"]
    out.parent.mkdir()
    assert (
        check_config(
            config(tmp_path, f'[[audit.sinks]]\nname = "a"\nkind = "jsonl"\npath = "{out}"\n')
        )[1]
        == []
    )


def test_each_worker_streams_its_own_chain_to_its_own_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        "[server]\nworkers = 2\n"
        + BASE.format(audit=tmp_path / "audit.sqlite3")
        + f'[[audit.sinks]]\nname = "f"\nkind = "jsonl"\npath = "{tmp_path / "audit.jsonl"}"\n'
        '[[audit.sinks]]\nname = "s"\nkind = "syslog"\naddress = "127.0.0.1:514"\n',
        encoding="utf-8",
    )
    settings = load_settings(path)
    second = worker_settings(settings, 2).audit
    assert second.chain_id == "gateway-w2"
    assert second.sinks[0].path == tmp_path / "audit-w2.jsonl"
    assert second.sinks[1].address == "127.0.0.1:514"
    assert cursor_path(second.path, "f") == tmp_path / "audit-w2.sqlite3.sink-f.cursor"
    assert worker_settings(settings, 1).audit.sinks[0].path == tmp_path / "audit-w1.jsonl"
