"""The caller-side helpers: credentials that refresh themselves, and the context headers."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl

import boto3
import httpx
import pytest

from proxy.client import (
    CallContext,
    IAMProof,
    Result,
    TokenFile,
    TokenRequestFailed,
    client_credentials_token,
)


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


def test_a_client_credentials_grant_is_one_form_post() -> None:
    sent: list[httpx.Request] = []

    def provider(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"access_token": "t0k3n", "expires_in": 300})

    with httpx.Client(transport=httpx.MockTransport(provider)) as http:
        token = client_credentials_token(
            "https://login.test/token",
            "etl",
            "s3cret",
            resource="urn:gw",
            scope="cypher",
            http=http,
        )
    assert (token.access_token, token.expires_in) == ("t0k3n", 300.0)
    assert "t0k3n" not in repr(token)
    (request,) = sent
    assert request.method == "POST" and request.url == "https://login.test/token"
    assert dict(parse_qsl(request.content.decode())) == {
        "grant_type": "client_credentials",
        "client_id": "etl",
        "client_secret": "s3cret",
        "resource": "urn:gw",
        "scope": "cypher",
    }


def test_a_refused_grant_says_why_and_not_the_secret() -> None:
    def provider(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "invalid_client"})

    with (
        httpx.Client(transport=httpx.MockTransport(provider)) as http,
        pytest.raises(TokenRequestFailed, match="invalid_client") as refused,
    ):
        client_credentials_token("https://login.test/token", "etl", "s3cret", http=http)
    assert "s3cret" not in str(refused.value)
