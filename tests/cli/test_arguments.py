"""Numbers and times on the command line: refused while parsing, with exit 2 and the option's
name, before any log is opened (``proxy/cli/arguments.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli import main
from tests.audit.test_query import write
from tests.audit.test_record import event

REFUSED = {
    "negative limit": (["audit", "query", "--limit", "-1"], "--limit"),
    "fractional limit": (["audit", "query", "--limit", "2.5"], "--limit"),
    # Found by review: SQLite takes no number past 64 bits (OverflowError, a traceback).
    "limit past 64 bits": (["audit", "query", "--limit", str(2**63)], "--limit"),
    "negative sealed window": (["audit", "verify", "--sealed-within", "-60"], "--sealed-within"),
    "nan sealed window": (["audit", "verify", "--sealed-within", "nan"], "--sealed-within"),
    "inf sealed window": (["audit", "verify", "--sealed-within", "inf"], "--sealed-within"),
    "huge sealed window": (["audit", "verify", "--sealed-within", "1e300"], "--sealed-within"),
    "negative unanswered": (["audit", "verify", "--unanswered-after", "-5"], "--unanswered-after"),
    "zero unanswered": (["audit", "verify", "--unanswered-after", "0"], "--unanswered-after"),
    "nan unanswered": (["audit", "verify", "--unanswered-after", "NaN"], "--unanswered-after"),
    "inf unanswered": (["audit", "verify", "--unanswered-after", "inf"], "--unanswered-after"),
    "not a time": (["audit", "query", "--since", "last tuesday"], "--since"),
    "empty window": (
        ["audit", "query", "--since", "2026-11-30T10:00:00Z", "--until", "2026-11-30T11:00+01:00"],
        "--until",
    ),
    "negative window": (
        ["audit", "export", "--out", "x.jsonl", "--since", "2026-12-01", "--until", "2026-11-01"],
        "--until",
    ),
    "negative replay window": (
        ["policy", "replay", "--policies", "p", "--since", "2026-12-01", "--until", "2026-11-01"],
        "--until",
    ),
}


@pytest.mark.parametrize(("words", "option"), REFUSED.values(), ids=REFUSED.keys())
def test_a_bad_number_or_time_is_refused_while_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], words: list[str], option: str
) -> None:
    # A log that does not exist: parsing must refuse before anything looks for it.
    (command, action), rest = words[:2], words[2:]
    with pytest.raises(SystemExit) as refused:
        main([command, action, "--log", str(tmp_path / "absent.sqlite3"), *rest])
    assert refused.value.code == 2
    error = capsys.readouterr().err
    last = error.splitlines()[-1]
    assert last.startswith("cyphergate") and ": error: " in last and option in last, error
    assert "Traceback" not in error


def test_the_bounds_themselves_are_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.sqlite3"
    write(log, [event(1), event(2)])
    assert main(["audit", "query", "--log", str(log), "--limit", "0", "--format", "json"]) == 0
    assert capsys.readouterr().out == ""
    largest = str(2**63 - 1)
    assert main(["audit", "query", "--log", str(log), "--limit", largest, "--format", "json"]) == 0
    assert capsys.readouterr().out.count('"seq"') == 2
    # 0: "do not check", as --sealed-within's help says; the smallest wait reports everything.
    verify = ["audit", "verify", "--log", str(log), "--sealed-within", "0"]
    assert main([*verify, "--unanswered-after", "0.01"]) == 0
    assert "2 decision(s) written ahead of execution" in capsys.readouterr().out
    window = ["--since", "2026-01-01T00:00:01Z", "--until", "2026-01-01T00:00:02Z"]
    assert main(["audit", "query", "--log", str(log), *window, "--format", "json"]) == 0
    assert '"seq": 1' in capsys.readouterr().out


@pytest.mark.parametrize("port", ["99999", "65536", "-5"])
def test_a_port_override_outside_a_ports_range_is_refused_while_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    """Found by review: ``server.port`` is bounded, its override ``--port`` was not: 99999 was
    served on 34463 (modulo 65536, "Uvicorn running on http://127.0.0.1:99999"), and -5
    started the application before failing with exit 3."""
    for command in (["serve", "--config", str(tmp_path / "absent.toml")], ["policy", "serve"]):
        with pytest.raises(SystemExit) as refused:
            main([*command, "--port", port])
        assert refused.value.code == 2
        last = capsys.readouterr().err.splitlines()[-1]
        assert last.startswith(f"cyphergate {' '.join(command[:2]).removesuffix(' --config')}")
        assert ": error: argument --port: " in last and "0 to 65535" in last
