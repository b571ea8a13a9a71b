"""Rate limits against the real stack: second gateways with tiny limits.

One limits each DAG to two statements a minute (HTTP and Bolt refusals: 429 with Retry-After,
a transient FAILURE, one audit record each). Another limits each client address to three
calls a minute before any credential is verified, and reaches STS (moto) through a counting
relay: a flood of well-formed IAM proofs makes three STS calls, not one each, whether it comes
through the Query API or the reviewers' API.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import neo4j
import pytest
from neo4j.exceptions import TransientError

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.auth.aws_iam import SCHEME as IAM_SCHEME
from proxy.devstack.stack import DevStack
from proxy.devstack.state import role_arn
from proxy.ports import free_ports
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

QUERY = "/db/neo4j/query/v2"
TOO_MANY = "Neo.TransientError.Request.TooManyRequests"


def records(audit: Path, request_id: str) -> list[dict[str, Any]]:
    with AuditReader(audit) as log:
        return [r for r in log.query(RecordFilter()) if r["request_id"] == request_id]


@pytest.fixture(scope="module")
def per_dag(
    stack: DevStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SecondGateway, str]]:
    (bolt_port,) = free_ports(1)

    def configure(config: dict[str, Any]) -> None:
        config["server"]["bolt_port"] = bolt_port
        config["server"]["rate_limits"] = {"per_dag": {"requests": 2, "window_s": 60}}

    gateway = SecondGateway(stack, tmp_path_factory.mktemp("perdag"), "perdag", configure)
    gateway.start()
    try:
        yield gateway, f"bolt://127.0.0.1:{bolt_port}"
    finally:
        gateway.stop()


def test_http_beyond_a_dags_limit_gets_429_with_retry_after(
    per_dag: tuple[SecondGateway, str],
) -> None:
    gateway, _ = per_dag
    answers = [gateway.query("demo_reader", "RETURN 1 AS one") for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429], answers[-1].text
    refused = answers[-1]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["errors"][0]["code"] == TOO_MANY
    (record,) = records(gateway.audit, refused.headers["X-CypherGate-Request-ID"])
    assert record["status"] == 429
    assert record["error"] == {"code": TOO_MANY, "reason": "rate_limited:dag"}
    assert record["principal"]["dag"] == "demo_reader"
    metrics = httpx.get(gateway.url + "/metrics", timeout=10).text
    counted = re.search(r'cyphergate_denials_total\{reason="rate_limited"\} ([0-9.]+)', metrics)
    assert counted is not None
    assert float(counted.group(1)) >= 1
    # Another DAG has its own quota.
    assert gateway.query("demo_writer", "RETURN 1 AS one").status_code == 202


def test_bolt_beyond_a_dags_limit_gets_a_transient_failure(
    per_dag: tuple[SecondGateway, str],
) -> None:
    gateway, uri = per_dag
    token = gateway.stack.token("demo_labels")
    with (
        neo4j.GraphDatabase.driver(uri, auth=neo4j.bearer_auth(token)) as driver,
        driver.session(database="neo4j") as session,
    ):
        for n in (1, 2):
            assert session.run("RETURN $n AS n", n=n).single(strict=True)["n"] == n
        with pytest.raises(TransientError) as refused:
            session.run("RETURN 3 AS n").consume()
    assert refused.value.code == TOO_MANY
    found = re.search(r"\(request ([^)]+)\)", refused.value.message or "")
    assert found is not None
    (record,) = records(gateway.audit, found.group(1))
    assert record["status"] == 429
    assert record["error"]["reason"] == "rate_limited:dag"


class _CountingRelay(BaseHTTPRequestHandler):
    """Relays each POST to moto, counting it: the gateway's STS calls."""

    target = ""
    count = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        with self.lock:
            type(self).count += 1
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        answer = httpx.post(self.target, content=body, headers=headers, timeout=30)
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("content-type", "text/xml"))
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture(scope="module")
def per_client(
    stack: DevStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SecondGateway, str]]:
    _CountingRelay.target = stack.sts_url()
    relay = ThreadingHTTPServer(("127.0.0.1", 0), _CountingRelay)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    relay_url = f"http://127.0.0.1:{relay.server_address[1]}/"

    def configure(config: dict[str, Any]) -> None:
        config["server"]["rate_limits"] = {"per_client": {"requests": 3, "window_s": 60}}
        config["auth"]["aws_iam"]["sts_endpoints"] = [relay_url]

    gateway = SecondGateway(stack, tmp_path_factory.mktemp("perclient"), "perclient", configure)
    gateway.start()
    try:
        yield gateway, relay_url
    finally:
        gateway.stop()
        relay.shutdown()
        relay.server_close()


def forged(proof_header: str, url: str) -> str:
    """A well-formed proof for ``url`` with a signature nobody made: STS must be asked."""
    proof = json.loads(base64.b64decode(proof_header.split(" ", 1)[1]))
    proof["url"] = url
    proof["headers"] = {k: v for k, v in proof["headers"].items() if k.lower() != "host"}
    authorization = proof["headers"]["Authorization"]
    proof["headers"]["Authorization"] = re.sub(
        r"Signature=[0-9a-f]+", "Signature=" + secrets.token_hex(32), authorization
    )
    return f"{IAM_SCHEME} " + base64.b64encode(json.dumps(proof).encode()).decode()


def test_an_iam_flood_makes_no_sts_call_beyond_the_client_limit(
    per_client: tuple[SecondGateway, str],
) -> None:
    gateway, relay_url = per_client
    genuine = gateway.stack.iam_header(role_arn("demo_reader"))
    before = _CountingRelay.count
    answers = [
        httpx.post(
            gateway.url + QUERY,
            json={"statement": "RETURN 1"},
            headers={"Authorization": forged(genuine, relay_url)},
            timeout=60,
        )
        for _ in range(10)
    ]
    statuses = [a.status_code for a in answers]
    assert statuses == [401] * 3 + [429] * 7, statuses
    assert _CountingRelay.count - before == 3  # one STS call per call within the limit
    for answer in answers[3:]:
        assert answer.headers["Retry-After"]
        (record,) = records(gateway.audit, answer.headers["X-CypherGate-Request-ID"])
        assert record["status"] == 429
        assert record["error"] == {"code": TOO_MANY, "reason": "rate_limited:client"}
        assert "principal" not in record or record["principal"] is None
    # The reviewers' API verifies credentials too: the same address, the same limit.
    review = httpx.get(
        gateway.url + "/audit/records",
        headers={"Authorization": forged(genuine, relay_url)},
        timeout=60,
    )
    assert review.status_code == 429, review.text
    assert review.json()["errors"][0]["code"] == TOO_MANY
    assert _CountingRelay.count - before == 3
    (access,) = records(gateway.audit, review.headers["X-CypherGate-Request-ID"])
    assert (access["event"], access["status"]) == ("access", 429)
    assert access["error"]["reason"] == "rate_limited:client"
