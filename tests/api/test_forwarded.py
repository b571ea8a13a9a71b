"""Who the caller is: the peer, unless a configured front proxy names it in X-Forwarded-For;
and odd header values are the caller's mistake (400), never the gateway's (500)."""

from __future__ import annotations

import ipaddress
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from proxy.api.state import forwarded_client
from proxy.app import create_app
from proxy.devstack.stack import DevStack
from proxy.settings import Neo4jSettings, RateLimitSettings, RateSettings, ServerSettings, Settings
from proxy.settings_errors import ConfigurationError
from tests.fakes import FakeAudit, fake_services
from tests.second_gateway import SecondGateway

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("10.1.2.3", None, "10.1.2.3:4000"),  # no header: the peer
        ("192.0.2.9", "203.0.113.7", "192.0.2.9:4000"),  # an untrusted peer's header is ignored
        ("10.1.2.3", "203.0.113.7", "203.0.113.7"),
        ("10.1.2.3", "198.51.100.1, 203.0.113.7, 10.9.9.9", "203.0.113.7"),  # right to left
        ("::1", "2001:db8::5", "2001:db8::5"),
        ("10.1.2.3", "not-an-address", "10.1.2.3:4000"),  # text is never recorded
        ("10.1.2.3", "\x1b[31mred", "10.1.2.3:4000"),
        ("10.1.2.3", "203.0.113.7:8080", "10.1.2.3:4000"),  # host:port is not an address
        ("10.1.2.3", "", "10.1.2.3:4000"),
        ("10.1.2.3", "10.4.4.4, 10.5.5.5", "10.4.4.4"),  # all proxies: the leftmost
    ],
)
def test_forwarded_for_is_read_only_from_trusted_proxies(
    peer: str, header: str | None, client: str
) -> None:
    assert forwarded_client(peer, 4000, header, PROXIES) == client


def test_nothing_is_trusted_by_default() -> None:
    server = ServerSettings()
    assert server.forwarded_allow_ips == []
    trusted = tuple(server.forwarded_allow_ips)
    assert forwarded_client("127.0.0.1", 4000, "203.0.113.7", trusted) == ("127.0.0.1:4000")


def test_every_line_of_the_header_is_read_as_one_list() -> None:
    """Found by review: only the first X-Forwarded-For line was read. A front proxy that adds a
    line of its own (HAProxy's ``option forwardfor``) after the caller's left the caller's
    forged address as the client on the record and as the key of ``per_client``: 6 of 6
    requests went through a limit of 3, and a caller with no credential could spend a chosen
    victim's quota."""
    services = fake_services()
    assert isinstance(services.audit, FakeAudit)
    server = ServerSettings(
        forwarded_allow_ips=[ipaddress.ip_network("10.0.0.0/8")],
        rate_limits=RateLimitSettings(per_client=RateSettings(requests=3, window_s=60)),
    )
    settings = Settings(neo4j=Neo4jSettings(password="a-long-password"), server=server)
    app = create_app(settings, services)
    with TestClient(app, client=("10.1.2.3", 4000)) as http:

        def post(*forwarded: str, credential: str = "Bearer good") -> int:
            lines = [("X-Forwarded-For", line) for line in forwarded]
            answer = http.post(
                "/db/neo4j/query/v2",
                json={"statement": "RETURN 1"},
                headers=[("Authorization", credential), *lines],
            )
            return answer.status_code

        # The caller's line first, then the proxy's: the proxy's names the client.
        forged = [post(f"198.51.100.{i}", "203.0.113.7") for i in range(4)]
        assert forged == [202, 202, 202, 429]
        assert {e.client for e in services.audit.events} == {"203.0.113.7"}
        # A victim's address written first spends nobody's quota but the sender's.
        for _ in range(3):
            assert post("192.0.2.55", "198.51.100.200", credential="Bearer bad") == 401
        assert post("192.0.2.55") == 202
        # A trusted proxy's own line is passed over, whichever line it is on.
        assert post("192.0.2.66", "203.0.113.8", "10.9.9.9") == 202
        assert services.audit.events[-1].client == "203.0.113.8"


def test_a_proxy_that_is_no_address_is_refused(tmp_path: Path) -> None:
    from proxy.settings import load_settings

    config = tmp_path / "gateway.toml"
    config.write_text(
        '[server]\nforwarded_allow_ips = ["10.0.0.0/8", "proxy.internal"]\n'
        '[neo4j]\npassword = "a-long-secret-4711"\n'
    )
    with pytest.raises(
        ConfigurationError,
        match=r"server\.forwarded_allow_ips\[1\]: value is not a valid IPv4 or IPv6 network",
    ):
        load_settings(config)


def clients(audit: Path, request_id: str) -> set[str | None]:
    with sqlite3.connect(f"file:{audit}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT json_extract(body, '$.client') FROM records WHERE request_id = ?",
            (request_id,),
        ).fetchall()
    assert rows
    return {row[0] for row in rows}


@pytest.mark.integration
def test_the_session_gateway_records_the_peer_whatever_the_header(
    stack: DevStack, gateway: httpx.Client
) -> None:
    answer = gateway.post(
        "/db/neo4j/query/v2",
        json={"statement": "RETURN 1"},
        headers={"Authorization": stack.auth_header("demo_reader"), "X-Forwarded-For": "1.2.3.4"},
    )
    assert answer.status_code == 202, answer.text
    (client,) = clients(stack.audit_path, answer.headers["X-CypherGate-Request-ID"])
    assert client is not None and client.startswith("127.0.0.1:")


@pytest.mark.integration
@pytest.mark.parametrize(
    "headers",
    [
        # Headers travel as bytes, read as Latin-1: "²" is one byte there, and a digit to
        # str.isdigit, not to int().
        {b"X-CypherGate-Try": "\u00b2".encode("latin-1")},
        {b"X-CypherGate-Try": "\u0661".encode()},  # ARABIC-INDIC DIGIT ONE, in UTF-8
        {b"X-CypherGate-Try": b"9" * 40},
    ],
    ids=["superscript", "arabic-indic", "huge"],
)
def test_odd_context_headers_are_400s(
    stack: DevStack, gateway: httpx.Client, headers: dict[bytes, bytes]
) -> None:
    answer = gateway.post(
        "/db/neo4j/query/v2",
        json={"statement": "RETURN 1"},
        headers={b"Authorization": stack.auth_header("demo_reader").encode(), **headers},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"][0]["code"] == "Neo.ClientError.Request.Invalid"
    assert answer.headers["X-CypherGate-Request-ID"]


@pytest.mark.integration
def test_a_trusted_proxy_names_the_client_and_only_by_address(
    stack: DevStack, tmp_path: Path
) -> None:
    def behind_a_proxy(config: dict[str, Any]) -> None:
        config["server"]["forwarded_allow_ips"] = ["127.0.0.1"]

    second = SecondGateway(stack, tmp_path, "forwarded", behind_a_proxy)
    second.start()
    try:
        answers = {
            value: httpx.post(
                f"{second.url}/db/neo4j/query/v2",
                json={"statement": "RETURN 1"},
                headers={
                    "Authorization": stack.auth_header("demo_reader"),
                    "X-Forwarded-For": value,
                },
                timeout=60,
            )
            for value in ("203.0.113.7", "evil.example, <b>")
        }
        # A front proxy that adds its own line (HAProxy's option forwardfor) after the caller's.
        lines = [("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "203.0.113.9")]
        two_lines = httpx.post(
            f"{second.url}/db/neo4j/query/v2",
            json={"statement": "RETURN 1"},
            headers=[("Authorization", stack.auth_header("demo_reader")), *lines],
            timeout=60,
        )
    finally:
        second.stop()
    assert two_lines.status_code == 202, two_lines.text
    assert clients(second.audit, two_lines.headers["X-CypherGate-Request-ID"]) == {"203.0.113.9"}
    named, text = answers["203.0.113.7"], answers["evil.example, <b>"]
    assert clients(second.audit, named.headers["X-CypherGate-Request-ID"]) == {"203.0.113.7"}
    (peer,) = clients(second.audit, text.headers["X-CypherGate-Request-ID"])
    assert peer is not None and peer.startswith("127.0.0.1:")
