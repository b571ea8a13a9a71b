"""How a LOGON's auth map becomes the request path's credential and context headers, and a
RUN's extra map the statement's access mode, bookmarks and metadata."""

from __future__ import annotations

import asyncio

import pytest

from proxy.bolt.messages import credential, statement
from proxy.errors import BadRequest


@pytest.mark.parametrize(
    ("auth", "authorization", "headers"),
    [
        ({"scheme": "bearer", "credentials": "tok"}, "Bearer tok", {}),
        ({"scheme": "bearer", "credentials": " tok "}, "Bearer tok", {}),
        (
            {"scheme": "bearer", "credentials": "CypherGate-AWS-IAM eyJ"},
            "CypherGate-AWS-IAM eyJ",
            {},
        ),
        ({"scheme": "basic", "principal": "", "credentials": "tok"}, "Bearer tok", {}),
        ({"scheme": "basic", "principal": "CypherGate", "credentials": "t"}, "Bearer t", {}),
        (
            {"scheme": "basic", "principal": "etl", "credentials": "tok"},
            "Bearer tok",
            {"x-cyphergate-dag": "etl"},
        ),
        (
            {"scheme": "basic", "principal": "etl/load/2/manual__2026/11/30", "credentials": "t"},
            "Bearer t",
            {
                "x-cyphergate-dag": "etl",
                "x-cyphergate-task": "load",
                "x-cyphergate-try": "2",
                "x-cyphergate-run": "manual__2026/11/30",
            },
        ),
        ({"scheme": "none"}, None, {}),
        ({"scheme": "kerberos", "credentials": "x"}, None, {}),
        ({"scheme": "bearer", "credentials": 7}, None, {}),
        ({"scheme": "bearer", "principal": "etl", "credentials": "tok"}, "Bearer tok", {}),
    ],
)
def test_credential(
    auth: dict[str, object], authorization: str | None, headers: dict[str, str]
) -> None:
    assert credential(auth) == (authorization, headers)


def test_a_runs_metadata_is_the_statements() -> None:
    extra = {"mode": "r", "bookmarks": ["b1"], "tx_metadata": {"job": "nightly", "n": 3}}
    read = asyncio.run(statement("RETURN 1", {}, extra))
    assert read.metadata == {"job": "nightly", "n": 3}
    assert (read.access_mode, read.bookmarks) == ("READ", ("b1",))
    assert asyncio.run(statement("RETURN 1", {}, {})).metadata == {}


@pytest.mark.parametrize("metadata", [["job"], "job", 7])
def test_a_runs_metadata_that_is_not_a_map_is_refused(metadata: object) -> None:
    with pytest.raises(BadRequest) as refused:
        asyncio.run(statement("RETURN 1", {}, {"tx_metadata": metadata}))
    assert refused.value.reason == "run_extra_invalid"
    assert "tx_metadata" in refused.value.message
