"""The archive's segments hold each record as a JSON object, and still verify by its hash.

Run on moto's S3 in process (its Object Lock is the one the devstack's moto server runs; the
end-to-end archive test is tests/audit/test_archive.py). Segments of the first format, whose
bodies were JSON strings, must still verify.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from proxy.audit.archive import ArchiveInconsistent, ship, verify_archive
from proxy.audit.checkpoint import load_private_key, load_public_key, write_keys
from proxy.audit.reader import AuditReader
from proxy.audit.record import AuditEvent, canonical, digest, utc_timestamp
from proxy.audit.sqlite import SQLiteAuditLog
from proxy.cli import main
from tests.audit.test_checkpoint import tamper

BUCKET = "archive"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        yield client


def written_log(tmp_path: Path, count: int) -> tuple[Path, Path]:
    """A log of ``count`` records, each sealed by a checkpoint every 3, and its public key."""
    private, public, _ = write_keys(tmp_path / "keys")
    path = tmp_path / "audit.sqlite3"

    async def go() -> None:
        async with SQLiteAuditLog(
            path, signing_key=load_private_key(private), checkpoint_every=3
        ) as log:
            for number in range(count):
                await log.append(
                    AuditEvent(
                        event="decision",
                        time=utc_timestamp(1_764_000_000 + number),
                        request_id=f"r{number}",
                        statement="MATCH (n:Ünïcode {name: '\u202e'}) RETURN n",
                        decision={"allow": True, "reasons": []},
                    )
                )

    asyncio.run(go())
    return path, public


def segment_lines(s3: Any) -> list[dict[str, Any]]:
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    lines: list[dict[str, Any]] = []
    for key in keys:
        text = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode("utf-8")
        lines += [json.loads(line) for line in text.splitlines()]
    return lines


def test_segments_hold_records_as_objects_that_verify(tmp_path: Path, s3: Any) -> None:
    path, public = written_log(tmp_path, 7)
    key = load_public_key(public)
    with AuditReader(path) as reader:
        assert ship(reader, s3, bucket=BUCKET, prefix="p", chain="gateway", retention_days=1)
        records = [line for line in segment_lines(s3) if "checkpoint" not in line]
        assert records, "a checkpoint sealed records"
        for line in records:
            assert isinstance(line["body"], dict)
            assert line["body"]["seq"] == line["seq"]
            assert digest(canonical(line["body"])) == line["hash"]
        assert records[0]["body"]["statement"] == "MATCH (n:Ünïcode {name: '\u202e'}) RETURN n"
        problem = verify_archive(
            reader, s3, bucket=BUCKET, prefix="p", chain="gateway", public_key=key
        )
        assert problem is None


def test_a_changed_field_in_an_archived_object_fails_verify(tmp_path: Path, s3: Any) -> None:
    path, _ = written_log(tmp_path, 4)
    with AuditReader(path) as reader:
        # A fresh bucket per segment key: the forged segment is the one and only version.
        key = "p/gateway/segment-000000000001-000000000003.jsonl"
        lines = [
            {"seq": seq, "body": json.loads(body), "hash": hash_}
            for seq, body, hash_ in reader.sealed_range(1, 3)
        ]
        lines[1]["body"]["statement"] = "MATCH (n) DETACH DELETE n"
        checkpoint = reader.checkpoints()[0]
        text = "\n".join(
            [json.dumps(line) for line in lines] + [json.dumps({"checkpoint": asdict(checkpoint)})]
        )
        s3.put_object(
            Bucket=BUCKET,
            Key=key,
            Body=text.encode("utf-8"),
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=1),
        )
        problem = verify_archive(
            reader, s3, bucket=BUCKET, prefix="p", chain="gateway", public_key=None
        )
    assert problem is not None and problem.seq == 2
    assert "altered" in problem.why


def test_segments_of_the_first_format_still_verify(tmp_path: Path, s3: Any) -> None:
    path, public = written_log(tmp_path, 7)
    with AuditReader(path) as reader:
        # The first segment as the archive wrote segments before: each body the record's text.
        first = reader.checkpoints()[0]
        lines = [
            json.dumps({"seq": seq, "body": body, "hash": hash_})
            for seq, body, hash_ in reader.sealed_range(1, first.record_seq)
        ]
        lines.append(json.dumps({"checkpoint": asdict(first)}))
        s3.put_object(
            Bucket=BUCKET,
            Key=f"p/gateway/segment-{1:012d}-{first.record_seq:012d}.jsonl",
            Body=("\n".join(lines) + "\n").encode("utf-8"),
        )
        # The rest in the new form, continuing it.
        assert ship(reader, s3, bucket=BUCKET, prefix="p", chain="gateway", retention_days=1)
        bodies = [type(line["body"]) for line in segment_lines(s3) if "body" in line]
        assert bodies[: first.record_seq] == [str] * first.record_seq
        assert set(bodies[first.record_seq :]) == {dict}
        key = load_public_key(public)
        assert (
            verify_archive(reader, s3, bucket=BUCKET, prefix="p", chain="gateway", public_key=key)
            is None
        )


@pytest.mark.parametrize(
    ("statements", "chain", "refused"),
    [
        # record 5 rewritten: it no longer hashes to its hash
        (["UPDATE records SET body = replace(body, 'r4', 'r9') WHERE seq = 5"], "gateway", 5),
        # record 5 removed: the stretch up to checkpoint 6 lacks it
        (["DELETE FROM records WHERE seq = 5"], "gateway", 5),
        # the log of another chain archived in this one's place
        ([], "replica-b", 1),
    ],
)
def test_what_the_local_log_cannot_prove_is_never_archived(
    tmp_path: Path, s3: Any, statements: list[str], chain: str, refused: int
) -> None:
    """Found by review: audit archive shipped whatever the local log held up to each
    checkpoint, unchecked: records altered or removed before it ran (or another chain's
    checkpoints) were locked in the archive for its retention period, in place of the records
    they replaced, and nothing said so until someone ran verify --archive."""
    path, _ = written_log(tmp_path, 9)  # checkpoints at 3, 6, 9
    tamper(path, *statements)
    with AuditReader(path) as reader, pytest.raises(ArchiveInconsistent, match=f"record {refused}"):
        ship(reader, s3, bucket=BUCKET, prefix="p", chain=chain, retention_days=1)
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    shipped = sorted(item["Key"].rsplit("/", 1)[1] for item in listed)
    assert shipped == (["segment-000000000001-000000000003.jsonl"] if refused == 5 else [])


def test_a_log_rewritten_with_its_hashes_and_checkpoints_recomputed_is_never_archived(
    tmp_path: Path, s3: Any
) -> None:
    """Found by review: whoever can write the file rewrote record 5, chained 5 to 9 again and set
    the checkpoints' hashes to match; the stretch proved itself but for the signatures, which the
    archiver did not check, and the forgery was locked in the archive."""
    path, public = written_log(tmp_path, 9)  # checkpoints at 3, 6, 9
    with AuditReader(path) as reader:
        rows = list(reader.sealed_range(1, 9))
    records, checkpoints, previous = [], [], rows[3][2]
    for seq, body, _ in rows[4:]:
        document = json.loads(body)
        if seq == 5:
            document["statement"] = "MATCH (n) RETURN n"
        document["prev_hash"] = previous
        forged = canonical(document)
        previous = digest(forged)
        records.append((forged, previous, seq))
        if seq in (6, 9):
            checkpoints.append((previous, seq))
    tamper(path)  # its triggers dropped
    with sqlite3.connect(path) as db:
        db.executemany("UPDATE records SET body = ?, hash = ? WHERE seq = ?", records)
        db.executemany("UPDATE checkpoints SET record_hash = ? WHERE record_seq = ?", checkpoints)
    with AuditReader(path) as reader, pytest.raises(ArchiveInconsistent, match="record 6"):
        ship(
            reader,
            s3,
            bucket=BUCKET,
            prefix="p",
            chain="gateway",
            retention_days=1,
            public_key=load_public_key(public),
        )
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    assert [item["Key"].rsplit("/", 1)[1] for item in listed] == [
        "segment-000000000001-000000000003.jsonl"
    ]


@pytest.mark.parametrize(
    "content",
    [b"not json\n", b'{"seq": 1}\n{"checkpoint": 1}\n', b"[1]\n[2]\n", b"\xff\xfe\n"],
    ids=["not-json", "fields-missing", "arrays", "not-utf8"],
)
def test_a_segment_holding_lines_no_archiver_writes_fails_verify_in_words(
    tmp_path: Path, s3: Any, content: bytes
) -> None:
    """Found by review: an object under a segment's name whose lines were not the archiver's
    (anyone who may write the bucket can put one) made ``verify --archive`` crash with a
    traceback (JSONDecodeError, KeyError, TypeError, UnicodeDecodeError), not say FAILED."""
    path, public = written_log(tmp_path, 4)
    s3.put_object(
        Bucket=BUCKET, Key="a/gateway/segment-000000000001-000000000003.jsonl", Body=content
    )
    with AuditReader(path) as reader:
        problem = verify_archive(
            reader,
            s3,
            bucket=BUCKET,
            prefix="a",
            chain="gateway",
            public_key=load_public_key(public),
        )
    assert problem is not None and problem.seq == 1
    assert "does not hold the records its name says" in problem.why


@pytest.mark.parametrize("action", ["archive", "verify"])
def test_an_archive_s3_refuses_is_one_line_and_exit_1(
    tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    """Found by review: a bucket that is not there (or credentials S3 refuses, an endpoint
    that does not answer) made ``audit archive`` and ``audit verify --archive`` end in a
    botocore traceback."""
    del s3  # moto's S3 is on: the bucket the configuration names is not in it
    path, _ = written_log(tmp_path, 4)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[neo4j]\npassword = "a-long-secret-4711"\n[audit]\npath = "{path}"\n'
        f'signing_key_file = "{tmp_path / "keys" / "audit-signing-key.pem"}"\n'
        '[audit.archive]\nbucket = "no-such-bucket"\n'
    )
    extra = ["--archive"] if action == "verify" else []
    assert main(["audit", action, "--config", str(config), *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cyphergate: the audit archive's S3 did not serve a call: ")
    assert "NoSuchBucket" in err and len(err.splitlines()) == 1
