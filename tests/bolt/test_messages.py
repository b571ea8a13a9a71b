"""How a LOGON's auth map becomes the request path's credential and context headers."""

from __future__ import annotations

import pytest

from proxy.bolt.messages import credential


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
