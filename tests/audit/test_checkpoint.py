"""Signed checkpoints: truncation and wholesale forgery are caught by anyone with the public key."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.audit.chainfile import ChainFile
from proxy.audit.checkpoint import DIGEST_PREFIX, ParameterDigester, verify_proof, write_keys
from proxy.audit.reader import AuditReader
from proxy.audit.record import ChainProblem
from proxy.audit.sqlite import SQLiteAuditLog
from proxy.cli import main
from proxy.values import to_plain
from tests.audit.test_record import JSON_VALUES, TEXT, event


def write(path: Path, key: Ed25519PrivateKey, count: int, *, every: int = 5) -> None:
    async def go() -> None:
        log = SQLiteAuditLog(path, signing_key=key, checkpoint_every=every, max_batch=1)
        await log.open()
        try:
            for n in range(count):
                await log.append(event(n % 60))
        finally:
            await log.close()  # writes a final checkpoint

    asyncio.run(go())


def problem(path: Path, key: Ed25519PrivateKey | None) -> ChainProblem | None:
    with AuditReader(path) as reader:
        public = key.public_key() if key is not None else None
        return next((s for s in reader.verify(public) if isinstance(s, ChainProblem)), None)


def tamper(path: Path, *statements: str) -> None:
    """Run ``statements`` on the log as whoever can write its file can: triggers dropped."""
    with sqlite3.connect(path) as db:
        triggers = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        for (name,) in triggers:
            db.execute(f"DROP TRIGGER {name}")
        for statement in statements:
            db.execute(statement)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_checkpoints_are_written_and_verify(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, key, 23)
    with AuditReader(path) as reader:
        assert [c.record_seq for c in reader.checkpoints()] == [5, 10, 15, 20, 23]
    assert problem(path, key) is None


def test_truncated_tail_is_caught(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, key, 23)
    tamper(path, "DELETE FROM records WHERE seq > 18")
    found = problem(path, key)
    assert found is not None and found.seq == 19 and "cut short" in found.why


def test_forged_chain_with_its_own_checkpoints_is_caught(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    genuine = tmp_path / "audit.sqlite3"
    write(genuine, key, 12)
    forged = tmp_path / "forged.sqlite3"
    write(forged, Ed25519PrivateKey.generate(), 12)  # self-consistent, signed by another key
    shutil.copy(forged, genuine)
    assert problem(genuine, None) is None  # the chain alone cannot tell
    found = problem(genuine, key)
    assert found is not None and "no valid signature" in found.why


def test_altered_checkpoint_is_caught(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, key, 12)
    tamper(path, "UPDATE checkpoints SET record_seq = 9 WHERE record_seq = 10")
    found = problem(path, key)
    assert found is not None and "checkpoint 2 has no valid signature" in found.why


def test_parameter_digests_correlate_without_revealing(tmp_path: Path) -> None:
    _, _, hmac_path = write_keys(tmp_path / "keys")
    digester = ParameterDigester.from_file(hmac_path)
    first = digester.digests({"password": "hunter2", "n": 1})
    again = digester.digests({"password": "hunter2", "n": 2})
    assert first["password"] == again["password"] and first["n"] != again["n"]
    assert first["password"] is not None and first["password"].startswith("hmac-sha256:")
    assert "hunter2" not in str(first)
    other = ParameterDigester.from_file(write_keys(tmp_path / "other")[2])
    assert other.digests({"password": "hunter2"})["password"] != first["password"]
    assert ParameterDigester(None).digests({"x": 1}) == {"x": None}


KEY = b"k" * 32
PARAMETERS = (
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
        max_leaves=24,
    )
    | JSON_VALUES
)


@settings(max_examples=1000, deadline=None)
@given(PARAMETERS)
def test_a_digest_is_the_hmac_of_the_standard_librarys_canonical_json(value: Any) -> None:
    """Whichever encoder writes it: a value's digest stays what it always was, so equal values
    still correlate with records written before (floats, NaN and the infinities included)."""
    standard = json.dumps(
        to_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    expected = DIGEST_PREFIX + hmac.new(KEY, standard, hashlib.sha256).hexdigest()
    assert ParameterDigester(KEY).digests({"p": value}) == {"p": expected}


NOW = "2026-06-01T00:00:00.000000Z"  # after every record `event` makes


def sealed_problem(path: Path, key: Ed25519PrivateKey, chain: str | None = None) -> str | None:
    with AuditReader(path) as reader:
        steps = reader.verify(key.public_key(), chain=chain, sealed_before=NOW)
        found = next((s for s in steps if isinstance(s, ChainProblem)), None)
    return None if found is None else found.why


def test_a_self_consistent_log_with_no_checkpoint_proves_nothing(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    """A forger without the key writes a chain with no checkpoint at all: the chain verifies,
    but records that old should be sealed by a signed checkpoint."""
    genuine, forged = tmp_path / "audit.sqlite3", tmp_path / "forged.sqlite3"
    write(genuine, key, 12)
    asyncio.run(_unsigned(forged, 3))
    shutil.copy(forged, genuine)
    assert problem(genuine, None) is None  # the chain alone cannot tell
    why = sealed_problem(genuine, key)
    assert why is not None and why.startswith("not sealed")
    # Nor can the key, with no checkpoint to check and no window given: not a pass.
    found = problem(genuine, key)
    assert found is not None and found.why.startswith("no signed checkpoint")


def test_a_chain_nothing_was_written_to_verifies_as_holding_nothing(
    tmp_path: Path, key: Ed25519PrivateKey, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker's chain that has served nothing yet verifies, with a key and a window too, and
    says it held nothing (found by review: a round made it FAILED, so a healthy replica's verify
    failed). A log emptied of every record and checkpoint looks the same: the line says so."""
    path = tmp_path / "audit.sqlite3"
    writer = ChainFile(path, signing_key=key, checkpoint_every=100)
    writer.open()
    writer.close()
    for public in (key, None):
        assert problem(path, public) is None
    assert sealed_problem(path, key) is None
    pem = tmp_path / "key.pub.pem"
    pem.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    assert main(["audit", "verify", "--log", str(path), "--public-key", str(pem)]) == 0
    said = capsys.readouterr().out
    assert said.startswith("OK: 0 records: nothing written to this chain yet"), said
    assert "emptied looks the same" in said


def test_a_fresh_writers_records_within_the_window_verify_before_its_first_checkpoint(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    path = tmp_path / "audit.sqlite3"
    writer = ChainFile(path, signing_key=key, checkpoint_every=100)
    writer.open()
    writer.write([event(1), event(2)])
    with AuditReader(path) as reader:
        steps = reader.verify(key.public_key(), sealed_before="2026-01-01T00:00:00.000000Z")
        assert list(steps) == [1, 2]  # its writer signs them within the window
    writer.close()


def test_a_rolled_back_and_rewritten_tail_proves_nothing(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, key, 23)
    tamper(
        path, "DELETE FROM checkpoints WHERE record_seq > 10", "DELETE FROM records WHERE seq > 10"
    )
    forged = ChainFile(path)  # the forger's own writer: no key
    forged.open()
    forged.write([event(n) for n in range(30, 43)])
    forged.close()
    assert problem(path, key) is None
    why = sealed_problem(path, key)
    assert why is not None and "no signed checkpoint covers it or any record after 10" in why


def test_another_chains_log_in_its_place_is_caught(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, key, 12)  # chain "gateway"
    assert sealed_problem(path, key, chain="gateway") is None
    why = sealed_problem(path, key, chain="replica-b")
    assert why is not None and "seals chain 'gateway', not 'replica-b'" in why


def test_checkpoints_of_two_chains_in_one_log_are_caught(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, key, 12)
    tamper(path, "UPDATE checkpoints SET chain = 'other' WHERE record_seq = 10")
    assert "seals chain 'other', not 'gateway'" in str(problem(path, None))


def test_a_checkpoint_of_a_record_the_log_lacks_is_a_problem_not_a_crash(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, key, 3)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO checkpoints (chain, record_seq, record_hash, time, signature)"
            " VALUES ('gateway', 0, 'x', 't', '')"
        )
    found = problem(path, None)
    assert found is not None and "does not match checkpoint 2" in found.why


async def _unsigned(path: Path, count: int) -> None:
    log = SQLiteAuditLog(path, max_batch=1)
    await log.open()
    for n in range(count):
        await log.append(event(n))
    await log.close()


def test_an_idle_writer_signs_its_tail(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "audit.sqlite3"

    async def go() -> list[int]:
        log = SQLiteAuditLog(path, signing_key=key, checkpoint_interval_s=0.2)
        await log.open()
        try:
            for n in range(3):
                await log.append(event(n))
            await asyncio.sleep(0.6)  # no more records: the tail is signed all the same
            with AuditReader(path) as reader:
                return [c.record_seq for c in reader.checkpoints()]
        finally:
            await log.close()

    assert asyncio.run(go()) == [3]


def test_a_killed_writers_tail_is_signed_when_it_starts_again(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    path = tmp_path / "audit.sqlite3"
    killed = ChainFile(path, signing_key=key)
    killed.open()
    killed.write([event(n) for n in range(4)])  # and no checkpoint: its process was killed
    killed.close()
    assert sealed_problem(path, key) is not None
    again = ChainFile(path, signing_key=key)
    again.open()
    again.close()
    with AuditReader(path) as reader:
        assert [c.record_seq for c in reader.checkpoints()] == [4]
    assert sealed_problem(path, key) is None


def test_a_proof_proves_only_the_record_and_chain_it_names(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, key, 12)
    with AuditReader(path) as reader:
        proof = reader.proof(7)
    assert proof is not None
    public = key.public_key()
    assert verify_proof(proof, public) and verify_proof(proof, public, chain="gateway")
    assert not verify_proof({**proof, "seq": 3}, public)  # relabelled
    assert not verify_proof(proof, public, chain="replica-b")
    assert not verify_proof({**proof, "checkpoint": {"chain": "x"}}, public)


def test_verify_reads_records_and_checkpoints_as_of_one_moment(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    """A checkpoint the writer adds while verify reads would seem to cover records it had not
    read ("cut short"): both are read in one snapshot."""
    path = tmp_path / "audit.sqlite3"
    writer = ChainFile(path, signing_key=key, checkpoint_every=1)
    writer.open()
    writer.write([event(1)])
    with AuditReader(path) as reader:
        steps = reader.verify(key.public_key())
        assert next(steps) == 1
        writer.write([event(2), event(3)])  # and a checkpoint over them
        assert list(steps) == []
    writer.close()


def test_verify_says_which_chain_the_checkpoints_it_checked_seal(
    tmp_path: Path, key: Ed25519PrivateKey, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by review: with --log and no --chain, the chain is whichever the checkpoints name,
    and the OK line did not say which: a worker's or replica's log passed in another's place
    (signed with the same key) was "OK" with nothing to tell it apart."""
    path = tmp_path / "audit-w1.sqlite3"

    async def go() -> None:
        log = SQLiteAuditLog(path, signing_key=key, chain_id="replica-b-w2", max_batch=1)
        await log.open()
        for n in range(3):
            await log.append(event(n))
        await log.close()

    asyncio.run(go())
    pem = tmp_path / "key.pub.pem"
    pem.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    arguments = ["audit", "verify", "--log", str(path), "--public-key", str(pem)]
    assert main(arguments) == 0
    assert "of chain 'replica-b-w2'" in capsys.readouterr().out.splitlines()[0]
    assert main([*arguments, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["chain"] == "replica-b-w2"
