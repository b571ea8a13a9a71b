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
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.audit.checkpoint import DIGEST_PREFIX, ParameterDigester, write_keys
from proxy.audit.reader import AuditReader
from proxy.audit.record import ChainProblem
from proxy.audit.sqlite import SQLiteAuditLog
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
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER records_no_delete")
        db.execute("DELETE FROM records WHERE seq > 18")
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
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER checkpoints_no_update")
        db.execute("UPDATE checkpoints SET record_seq = 9 WHERE record_seq = 10")
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
