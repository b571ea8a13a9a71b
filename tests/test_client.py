"""The caller-side helpers: credentials that refresh themselves, and the context headers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import boto3
import httpx
import pytest

from proxy.client import (
    AnswerLost,
    CallContext,
    ContextNotSendable,
    CypherGateClient,
    CypherGateQueryError,
    GatewayUnreachable,
    IAMProof,
    Result,
    TokenFile,
    TokenRequestFailed,
    client_credentials_token,
)
from proxy.ports import free_ports
from proxy.wire import REQUEST_ID_HEADER


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


def gateway(status: int, body: dict[str, Any], headers: dict[str, str]) -> CypherGateClient:
    """A client whose every request gets this answer."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return CypherGateClient(
        "https://gw.test", lambda: "Bearer t0k3n", transport=httpx.MockTransport(answer)
    )


def test_an_answer_names_its_request_id() -> None:
    client = gateway(
        202, {"data": {"fields": ["ok"], "values": [[1]]}}, {REQUEST_ID_HEADER: "r-202"}
    )
    assert client.run("RETURN 1 AS ok") == Result(["ok"], [[1]], {}, request_id="r-202")


def test_a_refusal_names_its_request_id_in_its_text() -> None:
    denied = {"errors": [{"code": "Neo.ClientError.Security.Forbidden", "message": "Denied."}]}
    client = gateway(403, denied, {REQUEST_ID_HEADER: "r-403"})
    with pytest.raises(CypherGateQueryError) as refused:
        client.run("CREATE (:X)")
    assert str(refused.value) == (
        "CypherGate answered 403 Neo.ClientError.Security.Forbidden: Denied. (request r-403)"
    )
    assert (refused.value.status, refused.value.request_id) == (403, "r-403")


def test_an_answer_without_a_request_id_says_it_did_not_come_from_the_gateway() -> None:
    client = gateway(413, {}, {})  # a proxy in front refused the body: nothing was sent on
    with pytest.raises(CypherGateQueryError, match=f"no {REQUEST_ID_HEADER} in the answer"):
        client.run("RETURN 1")


def test_a_gateway_that_refuses_the_connection_was_sent_nothing() -> None:
    (port,) = free_ports(1)  # nothing listens there: the connection is refused
    client = CypherGateClient(f"http://127.0.0.1:{port}", lambda: "Bearer t0k3n")
    with pytest.raises(GatewayUnreachable) as refused:
        client.run("CREATE (:X)")
    assert str(refused.value).startswith(
        f"CypherGate at http://127.0.0.1:{port} could not be reached (ConnectError"
    )
    assert str(refused.value).endswith("nothing was sent, so nothing ran")
    assert "t0k3n" not in str(refused.value)


@pytest.mark.parametrize(
    "lost",
    [
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset by peer"),
    ],
    ids=["read-timeout", "disconnected", "reset"],
)
def test_a_request_sent_whose_answer_was_lost_says_it_may_have_run(lost: Exception) -> None:
    sent: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        sent.append(request)  # the whole request reached the gateway, then its answer was lost
        raise lost

    client = CypherGateClient(
        "https://gw.test", lambda: "Bearer t0k3n", transport=httpx.MockTransport(gateway)
    )
    with pytest.raises(AnswerLost) as lost_answer:
        client.run("CREATE (:X)")
    assert len(sent) == 1
    assert not isinstance(lost_answer.value, GatewayUnreachable)
    assert str(lost_answer.value) == (
        f"the statement was sent to CypherGate at https://gw.test, but its answer was lost"
        f" ({type(lost).__name__}: {lost}): it may have run"
    )


@pytest.mark.parametrize(
    ("context", "said"),
    [
        (
            CallContext(dag="etl", task="chargé_clients"),
            "the task id 'chargé_clients' cannot be sent in X-CypherGate-Task:",
        ),
        (CallContext(dag="données"), "the DAG id 'données' cannot be sent in X-CypherGate-DAG:"),
        (
            CallContext(dag="etl", run="manual__x\r\nX-Injected: 1"),
            "the run id 'manual__x\\r\\nX-Injected: 1' cannot be sent in X-CypherGate-Run:",
        ),
    ],
    ids=["task", "dag", "line-break"],
)
def test_an_id_no_header_can_carry_is_refused_before_anything_is_sent(
    context: CallContext, said: str
) -> None:
    """Airflow takes any Unicode letter in a dag_id or task_id (its ``[\\w.-]``); the gateway
    takes Airflow ids in ASCII only, so that no look-alike letter names another DAG. httpx
    refused such a header with a bare UnicodeEncodeError."""
    sent: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"data": {"fields": [], "values": []}})

    client = CypherGateClient(
        "https://gw.test", lambda: "Bearer t0k3n", transport=httpx.MockTransport(gateway)
    )
    with pytest.raises(ContextNotSendable) as refused:
        client.run("RETURN 1", context=context)
    assert str(refused.value).startswith(said)
    assert str(refused.value).endswith(
        " CypherGate takes Airflow ids in printable ASCII only, so that no look-alike letter"
        " names another DAG: rename it"
    )
    assert sent == []


@pytest.mark.parametrize(
    ("status", "phrase"),
    [
        (500, "Internal Server Error"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (504, "Gateway Timeout"),
    ],
)
def test_a_5xx_from_a_proxy_in_front_is_an_answer_lost(status: int, phrase: str) -> None:
    """Every answer of the gateway names its request: a 5xx without the id is a proxy in front
    that failed, before sending the request on (no gateway to send it to) or after (the answer
    cut short, or too slow), and nothing in it says which. Taken as sent, so that no write runs
    twice. Before, only a 504 was; a 502 or 503 was a refusal Airflow retried."""
    client = gateway(status, {}, {})
    with pytest.raises(AnswerLost) as lost:
        client.run("CREATE (:X)")
    assert str(lost.value) == (
        "the statement was sent to CypherGate at https://gw.test, but its answer was lost"
        f" (HTTP {status} {phrase}, from something in front of the gateway): it may have run"
    )


def test_a_5xx_of_the_gateway_itself_is_its_refusal() -> None:
    """With the gateway's request id, a 503 is the gateway's own answer, its code saying what."""
    busy = {"errors": [{"code": "Neo.TransientError.General.PolicyUnavailable", "message": "x"}]}
    client = gateway(503, busy, {REQUEST_ID_HEADER: "r-503"})
    with pytest.raises(CypherGateQueryError) as refused:
        client.run("CREATE (:X)")
    assert (refused.value.status, refused.value.request_id) == (503, "r-503")
