"""The WORM archive in moto's S3 with Object Lock: shipped, verified, and not rewritable."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import boto3
import botocore.exceptions
import httpx
import pytest

from proxy.audit.archive import ArchiveInconsistent, ship, verify_archive
from proxy.audit.checkpoint import load_public_key
from proxy.audit.reader import AuditReader
from proxy.audit.record import GENESIS_HASH, canonical, digest
from proxy.devstack.stack import DevStack
from proxy.devstack.state import ARCHIVE_BUCKET, AWS_REGION, StackState

pytestmark = pytest.mark.integration


def archiver_env(stack: DevStack) -> dict[str, str]:
    keys = StackState.load(stack.state_file).archiver_keys
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": keys["id"],
        "AWS_SECRET_ACCESS_KEY": keys["secret"],
        "AWS_DEFAULT_REGION": AWS_REGION,
    }


def cli(stack: DevStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "audit", *args, "--config", str(stack.gateway_config_path)],
        env=archiver_env(stack),
        capture_output=True,
        text=True,
        check=False,
    )


def resealed_copy(source: Path, target: Path, change_seq: int) -> None:
    """A self-consistent copy of the log with one record's statement changed (no checkpoints)."""
    with sqlite3.connect(source) as src:
        rows = src.execute("SELECT * FROM records ORDER BY seq").fetchall()
        schema = [r[0] for r in src.execute("SELECT sql FROM sqlite_master WHERE sql NOT NULL")]
    with sqlite3.connect(target) as dst:
        for statement in schema:
            dst.execute(statement)
        prev = GENESIS_HASH
        for row in rows:
            document = json.loads(row[7])
            if row[0] == change_seq:
                document["statement"] = "MATCH (n) DETACH DELETE n"
            document["prev_hash"] = prev
            body = canonical(document)
            prev = digest(body)
            dst.execute(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row[:7], body, prev)
            )


def test_archive_ships_verifies_and_cannot_be_rewritten(
    stack: DevStack, gateway: httpx.Client, status: dict[str, Any], tmp_path: Path
) -> None:
    reader_token = {"Authorization": "Bearer " + stack.token("demo_reader")}
    for _ in range(6):  # enough for a checkpoint to seal a segment
        gateway.post("/db/neo4j/query/v2", json={"statement": "RETURN 1"}, headers=reader_token)

    shipped = cli(stack, "archive")
    assert shipped.returncode == 0, shipped.stderr
    assert "archived s3://" in shipped.stdout
    verified = cli(stack, "verify", "--archive")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # How far the archive anchors the log is said: an empty or lagging archive passes too.
    last = shipped.stdout.strip().splitlines()[-1]
    through = int(last.rsplit("-", 1)[1].removesuffix(".jsonl"))
    assert f"archive: records 1 to {through} of " in verified.stdout, verified.stdout

    # A local log rewritten consistently (its own chain intact) is caught by the archive.
    copy = tmp_path / "rewritten.sqlite3"
    resealed_copy(stack.audit_path, copy, change_seq=3)
    env = archiver_env(stack)
    s3 = boto3.client(
        "s3",
        endpoint_url=status["aws"]["sts_url"].rstrip("/"),
        region_name=AWS_REGION,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    public_key = load_public_key(Path(status["audit_public_key"]))
    # Each record is a JSON object in the segment, whose canonical form hashes to its hash.
    shipped_key = s3.list_objects_v2(Bucket=ARCHIVE_BUCKET, Prefix="cyphergate-audit/")["Contents"][
        0
    ]["Key"]
    segment = s3.get_object(Bucket=ARCHIVE_BUCKET, Key=shipped_key)["Body"].read().decode()
    for line in [json.loads(text) for text in segment.splitlines()][:-1]:
        assert isinstance(line["body"], dict)
        assert digest(canonical(line["body"])) == line["hash"]
    with AuditReader(copy) as rewritten:
        assert not [s for s in rewritten.verify() if not isinstance(s, int)]
        problem = verify_archive(
            rewritten,
            s3,
            bucket=ARCHIVE_BUCKET,
            prefix="cyphergate-audit",
            chain="gateway",
            public_key=public_key,
        )
    assert problem is not None and problem.seq == 3 and "altered locally" in problem.why

    # The archived copy itself: Object Lock refuses deletion, and an overwrite is detected.
    listing = s3.list_object_versions(Bucket=ARCHIVE_BUCKET, Prefix="cyphergate-audit/")
    first = listing["Versions"][0]
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        s3.delete_object(Bucket=ARCHIVE_BUCKET, Key=first["Key"], VersionId=first["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    s3.put_object(Bucket=ARCHIVE_BUCKET, Key=first["Key"], Body=b"{}\n")
    tampered = cli(stack, "verify", "--archive")
    assert tampered.returncode == 1
    assert "overwritten" in tampered.stdout


def archive_client(stack: DevStack, status: dict[str, Any]) -> Any:
    env = archiver_env(stack)
    return boto3.client(
        "s3",
        endpoint_url=status["aws"]["sts_url"].rstrip("/"),
        region_name=AWS_REGION,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def test_a_line_separator_a_caller_sent_does_not_split_a_segment_line(
    stack: DevStack, gateway: httpx.Client, status: dict[str, Any]
) -> None:
    """A segment is JSON Lines written with ensure_ascii=False: U+2028, U+2029 and U+0085 in a
    statement stay raw in it, and str.splitlines() breaks a line there. Any caller, even one
    refused, puts such a statement in the log, and the locked segment could then never be
    verified again (a JSONDecodeError, for the retention period)."""
    token = {"Authorization": "Bearer " + stack.token("demo_reader")}
    for separator in ("\u2028", "\u2029", "\x85") * 2:  # enough for a checkpoint to seal them
        gateway.post(
            "/db/neo4j/query/v2",
            json={"statement": f"RETURN '{separator}' AS x"},
            headers=token,
        )
    s3 = archive_client(stack, status)
    prefix = "line-separators"
    with AuditReader(stack.audit_path) as reader:
        assert ship(
            reader, s3, bucket=ARCHIVE_BUCKET, prefix=prefix, chain="gateway", retention_days=1
        )
        problem = verify_archive(
            reader,
            s3,
            bucket=ARCHIVE_BUCKET,
            prefix=prefix,
            chain="gateway",
            public_key=load_public_key(Path(status["audit_public_key"])),
        )
    assert problem is None


class FirstCheckpoints:
    """A reader whose log seems to end at its first ``count`` checkpoints (an earlier run)."""

    def __init__(self, reader: AuditReader, count: int) -> None:
        self._reader = reader
        self._count = count

    def checkpoints(self) -> list[Any]:
        return self._reader.checkpoints()[: self._count]

    def sealed_range(self, first: int, last: int) -> Any:
        return self._reader.sealed_range(first, last)


def test_a_segment_named_for_records_it_does_not_hold_is_caught(
    stack: DevStack, gateway: httpx.Client, status: dict[str, Any]
) -> None:
    """Found by review: the archiver took the last record archived from the segments' names
    and verify never compared a name with what the segment holds. A genuine stretch uploaded
    under the name segment-<first>-999999999999 (by anyone who may write the bucket: the
    archiver's credentials) passed verify --archive, and every later archive run printed
    "nothing new to archive": the archive stopped anchoring the log, with no alarm."""
    token = {"Authorization": "Bearer " + stack.token("demo_reader")}
    for _ in range(12):  # two more checkpoints at least (every 5 records in the test stack)
        gateway.post("/db/neo4j/query/v2", json={"statement": "RETURN 1"}, headers=token)
    s3 = archive_client(stack, status)
    public_key = load_public_key(Path(status["audit_public_key"]))
    place = {"bucket": ARCHIVE_BUCKET, "chain": "gateway"}
    with AuditReader(stack.audit_path) as reader:
        checkpoints = reader.checkpoints()
        assert len(checkpoints) >= 2
        earlier = cast(AuditReader, FirstCheckpoints(reader, len(checkpoints) - 1))
        assert ship(earlier, s3, prefix="renamed", retention_days=1, public_key=public_key, **place)
        staged = ship(
            reader, s3, prefix="staging", retention_days=1, public_key=public_key, **place
        )
        body = s3.get_object(Bucket=ARCHIVE_BUCKET, Key=staged[-1])["Body"].read()
        first = checkpoints[-2].record_seq + 1
        s3.put_object(
            Bucket=ARCHIVE_BUCKET,
            Key=f"renamed/gateway/segment-{first:012d}-999999999999.jsonl",
            Body=body,
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=1),
        )
        problem = verify_archive(reader, s3, prefix="renamed", public_key=public_key, **place)
        assert problem is not None and "999999999999" in problem.why
        with pytest.raises(ArchiveInconsistent, match="999999999999"):
            ship(reader, s3, prefix="renamed", retention_days=1, public_key=public_key, **place)
