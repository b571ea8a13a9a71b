"""The gateway's log lines: JSON when asked, and every line of a request names its id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from proxy.api.state import RequestIds, start_request
from proxy.devstack.stack import DevStack
from proxy.gateway.call import new_request_id
from proxy.logs import configure_logging
from tests.second_gateway import SecondGateway

log = logging.getLogger("tests.logs")


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_concurrent_requests_keep_their_own_ids(json_lines: io.StringIO) -> None:
    async def serve(n: int) -> str:
        request_id = new_request_id()
        for step in range(3):
            log.info("request %d step %d", n, step)
            await asyncio.sleep(0)
        await asyncio.to_thread(log.info, "request %d in a worker thread", n)
        return request_id

    async def main() -> list[str]:
        return await asyncio.gather(*(serve(n) for n in range(4)))

    ids = asyncio.run(main())
    logged = lines(json_lines)
    assert len(logged) == 16
    for line in logged:
        n = int(line["message"].split()[1])
        assert line["request_id"] == ids[n]
        assert line["level"] == "INFO" and line["logger"] == "tests.logs"
        assert line["time"].endswith("+00:00")


def test_the_middleware_names_the_request_before_any_route_runs(json_lines: io.StringIO) -> None:
    async def route(request: Request) -> PlainTextResponse:
        log.info("in the route")
        return PlainTextResponse(start_request(request))

    app = RequestIds(Starlette(routes=[Route("/", route)]))

    async def two() -> list[str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [(await client.get("/")).text for _ in range(2)]

    first, second = asyncio.run(two())
    assert first != second
    ours = [line for line in lines(json_lines) if line["logger"] == "tests.logs"]
    assert [line["request_id"] for line in ours] == [first, second]


@pytest.mark.integration
def test_a_gateway_with_json_logs_names_the_request_on_every_line(
    stack: DevStack, tmp_path: Path
) -> None:
    def json_logs(config: dict[str, Any]) -> None:
        config["server"]["log_format"] = "json"

    second = SecondGateway(stack, tmp_path, "jsonlogs", json_logs)
    second.start()
    try:
        started = len(second.log_text().splitlines())
        answers = [
            second.query("demo_reader", "RETURN 1 AS one"),
            second.query("demo_reader", "CREATE (:Nope)"),  # denied by the policy
            httpx.post(f"{second.url}/db/neo4j/query/v2", content=b"{", timeout=30),
        ]
    finally:
        second.stop()
    assert [a.status_code for a in answers] == [202, 403, 401]
    ids = {a.headers["X-CypherGate-Request-ID"] for a in answers}
    logged = [json.loads(line) for line in second.log_text().splitlines()]
    during = logged[started:]
    access = [line for line in during if line["logger"] == "uvicorn.access"]
    assert len(access) == 3
    assert {line["request_id"] for line in access} == ids
    # Every line logged while a request was served names it; none names another.
    assert {line["request_id"] for line in during if line["request_id"]} <= ids
    assert all(line["request_id"] for line in during if "POST /db/" in line["message"])


@pytest.mark.integration
def test_access_lines_name_the_path_and_never_the_query(stack: DevStack, tmp_path: Path) -> None:
    """A query string can hold a credential: the reviewers' page's sign-in comes back as
    ``/audit/callback?code=<authorization code>&state=...``, and a caller may put a token in
    one by mistake. uvicorn's access line would print it whole."""
    code, state, token = (secrets.token_urlsafe(16) for _ in range(3))
    second = SecondGateway(stack, tmp_path, "accesslines", lambda config: None)
    second.start()
    try:
        started = len(second.log_text().splitlines())
        callback = httpx.get(f"{second.url}/audit/callback?code={code}&state={state}", timeout=30)
        query = httpx.post(
            f"{second.url}/db/neo4j/query/v2?access_token={token}",
            json={"statement": "RETURN 1 AS one"},
            headers={"Authorization": stack.auth_header("demo_reader")},
            timeout=30,
        )
    finally:
        second.stop()
    assert query.status_code == 202, query.text
    during = "\n".join(second.log_text().splitlines()[started:])
    assert f'"GET /audit/callback HTTP/1.1" {callback.status_code}' in during
    assert '"POST /db/neo4j/query/v2 HTTP/1.1" 202' in during
    assert not any(secret in during for secret in (code, state, token)), during
