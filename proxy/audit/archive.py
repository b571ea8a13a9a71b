"""The WORM archive: sealed segments of the audit log in S3 with Object Lock (compliance mode).

A segment is everything up to one signed checkpoint that the archive does not hold yet: one
JSON Lines object ``<prefix>/<chain>/segment-<first>-<last>.jsonl`` whose lines are the records
(``{"seq", "body", "hash"}``, ``body`` the record as a JSON object, whose canonical form
(:func:`~proxy.audit.record.canonical`) is the text that hashes to ``hash``; segments written
before kept ``body`` as that text, a JSON string, and still verify) and, last, the checkpoint
(``{"checkpoint": {...}}``). It is
uploaded with ``ObjectLockMode=COMPLIANCE`` and a retain-until date, so that for the retention
period nobody, the operator included, can delete or shorten it.

S3 keeps a locked version even when someone uploads a new version over the same key; so
:func:`verify_archive` reads the *oldest* version of every segment (the one that was locked) and
reports any later version as an attempt to rewrite the archive. It then checks the archive on
its own (hashes, links from genesis, checkpoint signatures) and the local log against it.

boto3 is synchronous: callers run these functions off the event loop (the CLI does).
"""

from __future__ import annotations

import functools
import hmac
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proxy.audit.checkpoint import Checkpoint, signature_valid
from proxy.audit.reader import AuditReader
from proxy.audit.record import (
    GENESIS_HASH,
    ChainProblem,
    SealedRecord,
    canonical,
    check_link,
    verify_chain,
)


class ArchiveInconsistent(RuntimeError):
    """The archive names records the local log has not sealed, or holds an object that is not
    a segment: shipping more would trust it."""


class ArchiveUnreachable(RuntimeError):
    """S3 refused or did not serve a call (no credentials, no such bucket, access denied, no
    route): nothing past it was shipped or checked. The message is S3's (botocore's) words,
    which name the operation or endpoint, never a credential."""


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _s3_translated(call: Callable[_P, _T]) -> Callable[_P, _T]:
    """``call`` with botocore's errors raised as :class:`ArchiveUnreachable`."""

    @functools.wraps(call)
    def translated(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return call(*args, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise ArchiveUnreachable(f"the audit archive's S3 did not serve a call: {exc}") from exc

    return translated


@_s3_translated
def ship(
    reader: AuditReader,
    s3: Any,
    *,
    bucket: str,
    prefix: str,
    chain: str,
    retention_days: int,
    public_key: Ed25519PublicKey | None = None,
) -> list[str]:
    """Upload every checkpointed stretch of the log the archive lacks; returns the new keys.

    A stretch is shipped only if it proves itself: its records link from the checkpoint that
    ends the archive and reach its own checkpoint's hash, and the checkpoint names ``chain`` and,
    with ``public_key``, is signed by its key (whoever can write the file can recompute every
    hash, not a signature). Else :class:`ArchiveInconsistent`, and nothing from there is shipped:
    a lock would keep, for the retention period, records altered or removed before the archiver
    ran in place of the ones they replaced.
    """
    archived = last_archived_seq(s3, bucket, prefix, chain)
    checkpoints = reader.checkpoints()
    sealed = max((checkpoint.record_seq for checkpoint in checkpoints), default=0)
    if archived > sealed:
        raise ArchiveInconsistent(
            f"the archive names records up to {archived} in s3://{bucket}/{prefix}/{chain}/, but"
            f" the local log is sealed only up to {sealed}: run audit verify --archive"
        )
    keys = []
    # The hash the next stretch links from: that of the checkpoint ending the archive (signed,
    # where a record of the local log, rewritten since it was archived, would prove nothing).
    previous = GENESIS_HASH
    for checkpoint in checkpoints:
        if checkpoint.record_seq <= archived:
            if checkpoint.record_seq == archived:
                previous = checkpoint.record_hash
                if public_key is not None and not signature_valid(checkpoint, public_key):
                    raise ArchiveInconsistent(
                        f"record {archived}: its checkpoint, which ends the archive, has a bad"
                        " signature (run audit verify on the local log)"
                    )
            continue
        stretch = list(reader.sealed_range(archived + 1, checkpoint.record_seq))
        problem = _unprovable(stretch, archived + 1, previous, checkpoint, chain, public_key)
        if problem is not None:
            raise ArchiveInconsistent(
                f"{problem}: nothing from there is archived (run audit verify on the local log)"
            )
        lines = [
            json.dumps({"seq": seq, "body": _as_object(body), "hash": digest}, ensure_ascii=False)
            for seq, body, digest in stretch
        ]
        lines.append(json.dumps({"checkpoint": asdict(checkpoint)}))
        key = f"{prefix}/{chain}/segment-{archived + 1:012d}-{checkpoint.record_seq:012d}.jsonl"
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=("\n".join(lines) + "\n").encode("utf-8"),
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=retention_days),
        )
        keys.append(key)
        archived, previous = checkpoint.record_seq, checkpoint.record_hash
    return keys


@_s3_translated
def verify_archive(
    reader: AuditReader,
    s3: Any,
    *,
    bucket: str,
    prefix: str,
    chain: str,
    public_key: Ed25519PublicKey | None,
) -> ChainProblem | None:
    """The first problem with the archive, or with the local log measured against it."""
    records: list[SealedRecord] = []
    for key, rewritten, lines in _segments(s3, bucket, prefix, chain):
        if rewritten:
            return ChainProblem(
                _first_seq(key), f"archive segment {key} was overwritten (a newer version exists)"
            )
        named = _SEGMENT.fullmatch(key.rsplit("/", 1)[1])
        if named is None:
            return ChainProblem(records[-1].seq + 1 if records else 1, f"{key} is no segment")
        try:
            checkpoint = Checkpoint(**json.loads(lines[-1])["checkpoint"])
            segment = [_sealed(json.loads(line)) for line in lines[:-1]]
        except (ValueError, TypeError, KeyError):  # lines no archiver writes: not a segment
            checkpoint, segment = None, []
        if (
            checkpoint is None
            or not segment
            or (segment[0].seq, checkpoint.record_seq) != tuple(map(int, named.groups()))
        ):
            return ChainProblem(
                int(named[1]), f"archive segment {key} does not hold the records its name says"
            )
        if public_key is not None and not signature_valid(checkpoint, public_key):
            return ChainProblem(checkpoint.record_seq, f"archive segment {key}: bad signature")
        if segment[-1].seq != checkpoint.record_seq or not hmac.compare_digest(
            segment[-1].hash, checkpoint.record_hash
        ):  # a segment is never empty: its name's check above says so
            return ChainProblem(checkpoint.record_seq, f"archive segment {key} is inconsistent")
        records.extend(segment)
    for step in verify_chain(records):
        if isinstance(step, ChainProblem):
            return ChainProblem(step.seq, f"in the archive: {step.why}")
    if not records:
        return None
    local = {seq: digest for seq, _, digest in reader.sealed_range(1, records[-1].seq)}
    for record in records:
        here = local.get(record.seq)
        if here is None:
            return ChainProblem(record.seq, "missing locally but present in the archive")
        if not hmac.compare_digest(here, record.hash):
            return ChainProblem(record.seq, "differs from the archived copy (altered locally)")
    return None


def _unprovable(
    stretch: list[tuple[int, str, str]],
    first: int,
    previous: str,
    checkpoint: Checkpoint,
    chain: str,
    public_key: Ed25519PublicKey | None,
) -> ChainProblem | None:
    """What keeps records ``first`` on (``stretch``) from proving themselves up to
    ``checkpoint`` of ``chain``, signed by ``public_key`` if given, after the record hashed
    ``previous``."""
    if checkpoint.chain != chain:
        return ChainProblem(first, f"checkpoint seals chain {checkpoint.chain!r}, not {chain!r}")
    if public_key is not None and not signature_valid(checkpoint, public_key):
        return ChainProblem(checkpoint.record_seq, "its checkpoint has a bad signature")
    expected = first
    for seq, body, digest in stretch:
        problem = check_link(SealedRecord(seq, body, digest), expected, previous)
        if problem is not None:
            return problem
        expected, previous = seq + 1, digest
    if expected != checkpoint.record_seq + 1:
        return ChainProblem(expected, "missing (the log ends before its checkpoint)")
    if not hmac.compare_digest(previous, checkpoint.record_hash):
        return ChainProblem(checkpoint.record_seq, "does not match its checkpoint")
    return None


def _as_object(body: str) -> dict[str, Any] | str:
    """A record's body as the JSON object it is, for a reader of the archive; the text itself
    in the (never expected) case its object does not give the same canonical text back, so
    that what was hashed is always what the archive can reproduce."""
    document = json.loads(body)
    if isinstance(document, dict) and canonical(document) == body:
        return document
    return body


def _sealed(line: dict[str, Any]) -> SealedRecord:
    """A segment's line as the chain's record: the body's canonical text, from its object (or,
    in a segment of the first format, the text it holds)."""
    body, seq, digest = line["body"], line["seq"], line["hash"]
    if type(seq) is not int or not isinstance(digest, str) or not isinstance(body, str | dict):
        raise ValueError("not a line an archiver writes")
    text = body if isinstance(body, str) else canonical(body)
    return SealedRecord(seq=seq, body=text, hash=digest)


def _segments(
    s3: Any, bucket: str, prefix: str, chain: str
) -> Iterator[tuple[str, bool, list[str]]]:
    """Each segment's key, whether it was overwritten, and the lines of its oldest version."""
    versions: dict[str, list[dict[str, Any]]] = {}
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/{chain}/"):
        for version in page.get("Versions", []):
            versions.setdefault(version["Key"], []).append(version)
    for key in sorted(versions):
        oldest = min(versions[key], key=lambda v: v["LastModified"])
        body = s3.get_object(Bucket=bucket, Key=key, VersionId=oldest["VersionId"])["Body"]
        # Lines end at "\n" only: records hold U+2028 or U+0085 raw (ensure_ascii=False),
        # where str.splitlines() would also break them.
        text = body.read().decode("utf-8", errors="replace")  # not UTF-8: fails as a segment
        yield key, len(versions[key]) > 1, text.removesuffix("\n").split("\n")


@_s3_translated
def last_archived_seq(s3: Any, bucket: str, prefix: str, chain: str) -> int:
    """The last record the chain's archived segments seal (0: none yet), from their names."""
    last = 0
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/{chain}/"):
        for item in page.get("Contents", []):
            named = _SEGMENT.fullmatch(item["Key"].rsplit("/", 1)[1])
            if named is None:
                raise ArchiveInconsistent(f"s3://{bucket}/{item['Key']} is no segment")
            last = max(last, int(named[2]))
    return last


# A segment's name: its first record and the record its checkpoint seals.
_SEGMENT = re.compile(r"segment-([0-9]{12,})-([0-9]{12,})\.jsonl")


def _first_seq(key: str) -> int:
    named = _SEGMENT.fullmatch(key.rsplit("/", 1)[1])
    return 1 if named is None else int(named[1])
