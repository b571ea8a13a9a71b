"""The command line as an operator meets it: a version, and help on every option."""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from proxy.audit.record import digest
from proxy.cli import _parser, main
from proxy.cli import audit as audit_cli
from proxy.devstack.install import building
from tests.audit.test_checkpoint import tamper
from tests.audit.test_checkpoint import write as write_signed
from tests.audit.test_query import write
from tests.audit.test_record import event


def parsers(
    parser: argparse.ArgumentParser, path: str = "cyphergate"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command line, with the words that reach it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{path} {name}")


def test_every_option_and_command_has_help() -> None:
    missing: list[str] = []
    count = 0
    for path, parser in parsers(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                # A command's help is what `cyphergate ACTION --help` lists beside its name.
                missing += [
                    f"{path} {choice.dest}"
                    for choice in action._choices_actions
                    if not (choice.help or "").strip()
                ]
                continue
            count += 1
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert count > 60  # the walk reached the subcommands
    assert not missing, f"options without help: {missing}"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"cyphergate {version('cyphergate')}\n"


def test_install_steps_say_what_they_do_and_how_long_they_took(tmp_path: Path) -> None:
    lines: list[str] = []
    target = tmp_path / "cache" / "tool-1.0"
    with building(target, lines.append, "tool 1.0") as work:
        assert work is not None
        (work / "bin").write_text("built")
    with building(target, lines.append, "tool 1.0") as work:
        assert work is None  # a second run only checks what is there
    assert lines[0] == f"installing tool 1.0 into {target} (this can take minutes) ..."
    assert re.fullmatch(r"installed tool 1\.0 in \d+\.\d s", lines[1])
    assert lines[2] == f"tool 1.0: installed already ({target})"
    assert (target / "bin").read_text() == "built"


def test_verify_of_a_long_log_reports_progress_with_elapsed_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.sqlite3"
    write(log, [event(n) for n in range(1, 7)])
    monkeypatch.setattr(audit_cli, "PROGRESS_EVERY", 2)  # a long log, scaled down
    assert main(["audit", "verify", "--log", str(log)]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 3
    for done, line in zip((2, 4, 6), lines, strict=True):
        assert re.fullmatch(rf"  verified {done} of 6 records \(\d+%\) in \d+\.\d s", line)
    assert captured.out.startswith("OK: 6 records, hash chain intact")


def test_the_command_line_imports_no_driver_before_serve_hides_the_data_frame_libraries() -> None:
    """`serve` keeps pyarrow, pandas and numpy out of the server (the neo4j driver imports them
    when installed: about 45 MiB); it can only if importing the command line imported none of
    them yet."""
    script = (
        "import sys; import proxy.cli; "
        "print(sorted(m for m in ('neo4j', 'pyarrow', 'pandas', 'numpy') if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


@pytest.mark.parametrize(
    "command",
    [
        ["audit", "verify", "--log", "{garbage}"],
        ["audit", "query", "--log", "{garbage}"],
        ["audit", "verify", "--log", "{missing}"],
        ["audit", "verify", "--log", "{log}", "--public-key", "{garbage}"],
        ["audit", "verify", "--log", "{log}", "--public-key", "{missing}"],
        ["audit", "verify", "--log", "{log}", "--public-key", "{folder}"],
    ],
    ids=["not-a-log", "query-not-a-log", "no-log", "not-a-key", "no-key", "key-is-a-folder"],
)
def test_a_file_that_is_missing_or_not_what_it_should_be_is_said_so_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"this is neither an audit log nor a key\n" * 200)
    log = tmp_path / "audit.sqlite3"
    write(log, [event(1)])
    folder = tmp_path / "keys"
    folder.mkdir()
    files = {"garbage": garbage, "missing": tmp_path / "missing", "log": log, "folder": folder}
    status = main([word.format(**files) for word in command])
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("cyphergate: ") and "Traceback" not in error
    named = files[command[-1].strip("{}")]
    assert str(named) in error


@pytest.mark.parametrize("action", ["verify", "query", "export"])
@pytest.mark.parametrize("kind", ["folder", "missing", "unreadable", "not-sqlite", "empty"])
def test_a_log_that_cannot_be_read_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], action: str, kind: str
) -> None:
    path = tmp_path / f"{kind}.sqlite3"
    if kind == "folder":
        path.mkdir()
    elif kind == "unreadable":
        write(path, [event(1)])
        path.chmod(0)
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reads")
    elif kind == "not-sqlite":
        path.write_bytes(b"PK\x03\x04 a zip, say\n" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    out = tmp_path / "export.jsonl"
    extra = ["--out", str(out)] if action == "export" else []
    status = main(["audit", action, "--log", str(path), *extra])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1, captured.err
    assert captured.err.startswith("cyphergate: ") and "Traceback" not in captured.err
    assert str(path) in captured.err
    assert not out.exists()
    # Nothing made, the log itself included when it was missing.
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if kind == "missing" else [path.name])


# Edits an attacker with write access to the file can make: a body that is no JSON object (its
# hash left as it was), a record rewritten with its hash recomputed (a self-consistent forgery
# whose sections are not what a writer writes), a checkpoint whose record number is not one.
# Each: the edit, the record verify names, and the reads refused for it (the others read on; a
# record that is no object has no principal, so the query by principal passes it by).
_DAMAGE = {
    "body-not-json": ("UPDATE records SET body = '{not json' WHERE seq = 4", 4, 3),
    "body-an-array": ("UPDATE records SET body = '[4]' WHERE seq = 4", 4, 2),
    "body-not-utf8": ("UPDATE records SET body = x'ff00ff' WHERE seq = 4", 4, 3),
    "forged-sections": (None, 12, 0),
    "checkpoint-seq-text": ("UPDATE checkpoints SET record_seq = 'ten' WHERE id = 2", 1, 0),
}


@pytest.mark.parametrize("damage", sorted(_DAMAGE))
def test_an_edited_log_is_named_failed_or_refused_in_one_line_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    key = Ed25519PrivateKey.generate()
    log, public = tmp_path / "audit.sqlite3", tmp_path / "audit.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    write_signed(log, key, 12)
    statement, bad_seq, refused = _DAMAGE[damage]
    if statement is None:  # record 12 rewritten, its hash made to match
        with sqlite3.connect(log) as db:
            (body,) = db.execute("SELECT body FROM records WHERE seq = 12").fetchone()
        forged = {**json.loads(body), "principal": ["d"], "decision": "allow", "error": 1}
        text = json.dumps(forged, sort_keys=True, separators=(",", ":"))
        statement = f"UPDATE records SET body = '{text}', hash = '{digest(text)}' WHERE seq = 12"  # noqa: S608 - the test's own text
    tamper(log, statement)

    status = main(["audit", "verify", "--log", str(log), "--public-key", str(public)])
    said = capsys.readouterr()
    assert status == 1, said
    assert said.out.startswith(f"FAILED: record {bad_seq}: "), said.out
    assert "Traceback" not in said.err

    out = tmp_path / "export.jsonl"
    reads = (["query"], ["export", "--out", str(out)], ["query", "--principal", "s"])
    for number, command in enumerate(reads):
        status = main(["audit", *command, "--log", str(log)])
        said = capsys.readouterr()
        if number >= refused:
            assert status == 0, said
            continue
        assert status == 2, said
        assert said.out == ""
        assert len(said.err.splitlines()) == 1, said.err
        assert said.err.startswith(f"cyphergate: {log}: ") and "altered" in said.err
        assert not out.exists()
