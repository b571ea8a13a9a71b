"""The caller-side helpers: credentials that refresh themselves, and the context headers."""

from __future__ import annotations

import os
from pathlib import Path

import boto3

from proxy.client import CallContext, IAMProof, Result, TokenFile


def test_token_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-token\n")
    credential = TokenFile(path)
    assert credential() == "Bearer first-token"
    path.write_text("second-token-rotated\n")
    os.utime(path, (1_800_000_000, 1_800_000_000))  # a new mtime, as the kubelet's swap gives
    assert credential() == "Bearer second-token-rotated"


def test_iam_proof_is_reused_within_its_window() -> None:
    session = boto3.Session(
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="not-a-secret",
        region_name="eu-west-1",
    )
    proof = IAMProof(server_id="gw", session=session, reuse_s=60)
    first = proof()
    assert first.startswith("CypherGate-AWS-IAM ")
    assert proof() == first  # the same proof, so the gateway answers from its cache


def test_context_headers_name_only_what_is_known() -> None:
    assert CallContext(dag="etl", try_number=2).headers() == {
        "X-CypherGate-DAG": "etl",
        "X-CypherGate-Try": "2",
    }
    assert CallContext().headers() == {}


def test_rows_pair_fields_with_values() -> None:
    result = Result(fields=["a", "b"], values=[[1, 2], [3, 4]], counters={})
    assert result.rows == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
