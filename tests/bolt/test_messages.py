"""How a LOGON's auth map becomes the request path's credential and context headers, and a
RUN's extra map the statement's access mode, bookmarks and metadata."""

from __future__ import annotations

import asyncio

import pytest

from proxy.bolt.messages import begin, credential, principal_refusal, statement
from proxy.errors import BadRequest, CypherGateError


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
        # A login left unset (a JavaScript driver's undefined): no DAG named, as "" is.
        ({"scheme": "basic", "principal": None, "credentials": "tok"}, "Bearer tok", {}),
    ],
)
def test_credential(
    auth: dict[str, object], authorization: str | None, headers: dict[str, str]
) -> None:
    assert credential(auth) == (authorization, headers)


@pytest.mark.parametrize(
    ("auth", "refused"),
    [
        ({"scheme": "basic", "principal": ["etl"], "credentials": "t"}, True),
        ({"scheme": "basic", "principal": 7, "credentials": "t"}, True),
        ({"scheme": "basic", "principal": None, "credentials": "t"}, False),
        ({"scheme": "basic", "credentials": "t"}, False),
        ({"scheme": "bearer", "principal": 7, "credentials": "t"}, False),
    ],
)
def test_a_basic_principal_must_be_text(auth: dict[str, object], refused: bool) -> None:
    refusal = principal_refusal(auth)
    assert (refusal is not None) == refused
    assert refusal is None or refusal.reason == "malformed_principal"


def test_a_runs_metadata_is_the_statements() -> None:
    extra = {"mode": "r", "bookmarks": ["b1"], "tx_metadata": {"job": "nightly", "n": 3}}
    read = asyncio.run(statement("RETURN 1", {}, extra))
    assert read.metadata == {"job": "nightly", "n": 3}
    assert (read.access_mode, read.bookmarks) == ("READ", ("b1",))
    assert asyncio.run(statement("RETURN 1", {}, {})).metadata == {}


@pytest.mark.parametrize("metadata", [["job"], "job", 7, 0, "", [], False])
def test_a_runs_metadata_that_is_not_a_map_is_refused(metadata: object) -> None:
    with pytest.raises(BadRequest) as refused:
        asyncio.run(statement("RETURN 1", {}, {"tx_metadata": metadata}))
    assert refused.value.reason == "run_extra_invalid"
    assert "tx_metadata" in refused.value.message


@pytest.mark.parametrize("timeout", [-1, True, "1000", 1.5])
def test_a_runs_time_out_that_is_wrong_is_refused(timeout: object) -> None:
    with pytest.raises(BadRequest) as refused:
        asyncio.run(statement("RETURN 1", {}, {"tx_timeout": timeout}))
    assert refused.value.reason == "run_extra_invalid"


def test_a_runs_time_out_is_the_callers() -> None:
    assert asyncio.run(statement("RETURN 1", {}, {"tx_timeout": 1500})).timeout_s == 1.5
    assert asyncio.run(statement("RETURN 1", {}, {"tx_timeout": 0})).timeout_s is None
    assert asyncio.run(statement("RETURN 1", {}, {})).timeout_s is None


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"tx_metadata": "x"}, "begin_extra_invalid"),
        ({"tx_metadata": []}, "begin_extra_invalid"),
        ({"tx_metadata": 0}, "begin_extra_invalid"),
        ({"tx_timeout": -1}, "begin_extra_invalid"),
        ({"tx_timeout": True}, "begin_extra_invalid"),
        ({"mode": "x"}, "begin_extra_invalid"),
        ({"bookmarks": [1]}, "begin_extra_invalid"),
        ({"imp_user": "admin"}, "impersonation_refused"),
        ({"imp_user": ""}, "impersonation_refused"),
        ({"tx_metadata": {"cyphergate.lineage": "yes"}}, "bad_lineage_flag"),
    ],
)
def test_a_begins_extra_that_is_wrong_is_refused_for_the_record(
    extra: dict[str, object], reason: str
) -> None:
    """Refused as errors the session records (a FAILURE), not as a broken protocol (a closed
    connection, no record)."""
    with pytest.raises(CypherGateError) as refused:
        begin(extra)
    assert refused.value.reason == reason


def test_a_begins_extra() -> None:
    asked = begin({"tx_metadata": {"job": "n", "cyphergate.lineage": True}, "tx_timeout": 1500})
    assert (asked.metadata["job"], asked.lineage, asked.timeout_s) == ("n", True, 1.5)
    assert begin({}).metadata == {} and not begin({}).lineage


# Keys a reader of SHOW TRANSACTIONS takes for one of the gateway's (found by review: each
# reached Neo4j beside the gateway's own key).
LOOK_ALIKES = [
    "DAG_ID",
    "Request_Id",
    "dag_id\u200b",  # a zero-width space
    "\u200ddecision_id",  # a zero-width joiner
    "transaction\u00ad_id",  # a soft hyphen
    "\uff44\uff41\uff47\uff3f\uff49\uff44",  # dag_id in full-width letters
    "TRACE\u2060PARENT",  # a word joiner
    "task_id\u200e",  # a left-to-right mark
    "tas\u212a_id",  # a Kelvin sign, which folds to k
]


@pytest.mark.parametrize("key", LOOK_ALIKES)
def test_a_look_alike_of_a_gateway_metadata_key_is_refused(key: str) -> None:
    metadata = {"tx_metadata": {key: "evil", "job": "nightly"}}
    with pytest.raises(BadRequest) as ran:
        asyncio.run(statement("RETURN 1", {}, metadata))
    assert ran.value.reason == "run_extra_invalid"
    assert key not in ran.value.message  # the gateway's key is named, never the caller's
    with pytest.raises(BadRequest) as begun:
        begin(metadata)
    assert begun.value.reason == "begin_extra_invalid"


@pytest.mark.parametrize(
    "key", ["dag_id", "traceparent", "tracestate", "dag", "dag_id_of_caller", "job", "Ümlaut"]
)
def test_a_gateway_key_itself_or_another_key_is_taken(key: str) -> None:
    """The gateway's keys exactly are documented as sent and replaced (``traceparent`` carries
    the caller's trace context); other keys are the caller's own."""
    assert key in asyncio.run(statement("RETURN 1", {}, {"tx_metadata": {key: "x"}})).metadata
    assert key in begin({"tx_metadata": {key: "x"}}).metadata
