"""TLS on the HTTP door (``server.tls_certificate`` and ``tls_key``) against the real stack.

A second gateway, as one process and with two workers (each serves a socket the supervisor's
port was bound for, proxy/workers.py), with a certificate made here and signed by a CA made
here: https with that CA works and the query is audited; plain http to the port does not; the
context asks TLS 1.2; a key that does not match the certificate stops the gateway at start with
one line.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from proxy.tls import server_context
from tests.command_line import cyphergate
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 it signed: (CA, certificate, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("CypherGate test CA"))
        .issuer_name(_name("CypherGate test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@pytest.fixture(scope="module", params=[1, 2], ids=["one-process", "two-workers"])
def tls_gateway(
    stack: DevStack, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[SecondGateway, ssl.SSLContext]]:
    """One process (uvicorn binds the port) or two workers (each a pre-bound socket)."""
    workers: int = request.param
    folder = tmp_path_factory.mktemp("tls")
    ca, certificate, key = make_certificates(folder)

    def configure(config: dict[str, Any]) -> None:
        config["server"].update(workers=workers, tls_certificate=str(certificate), tls_key=str(key))

    gateway = SecondGateway(stack, folder / "gateway", "tls", configure)
    gateway.url = f"https://127.0.0.1:{gateway.port}"
    gateway.verify = ssl.create_default_context(cafile=ca)
    gateway.start()
    try:
        yield gateway, gateway.verify
    finally:
        gateway.stop()


def test_https_with_the_ca_runs_and_audits_a_query(
    tls_gateway: tuple[SecondGateway, ssl.SSLContext],
) -> None:
    gateway, _ = tls_gateway
    answer = gateway.query("demo_reader", "RETURN 1 AS one")
    assert answer.status_code == 202, answer.text
    assert answer.json()["data"]["values"] == [[1]]
    request_id = answer.headers["X-CypherGate-Request-ID"]
    found = []
    for chain in gateway.folder.glob("audit*.sqlite3"):
        with AuditReader(chain) as log:
            found += [r for r in log.query(RecordFilter()) if r["request_id"] == request_id]
    # Recorded ahead, then its outcome: the request path as over plain http.
    assert [(r["event"], r["status"]) for r in found] == [("decision", None), ("outcome", 202)]


def test_plain_http_and_unknown_cas_are_refused(
    tls_gateway: tuple[SecondGateway, ssl.SSLContext],
) -> None:
    gateway, context = tls_gateway
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{gateway.port}/readyz", timeout=5)
    unverified = ssl.create_default_context()  # the system's CAs only: ours is unknown
    with pytest.raises(httpx.ConnectError):
        httpx.get(gateway.url + "/readyz", timeout=5, verify=unverified)
    assert httpx.get(gateway.url + "/readyz", timeout=5, verify=context).status_code == 200


def test_the_context_requires_tls_1_2(tmp_path: Path) -> None:
    _, certificate, key = make_certificates(tmp_path)
    assert server_context(certificate, key).minimum_version == ssl.TLSVersion.TLSv1_2


def test_a_key_that_is_not_the_certificates_stops_the_start(tmp_path: Path) -> None:
    ca, certificate, _ = make_certificates(tmp_path)
    config = {
        "neo4j": {"uri": "bolt://127.0.0.1:1", "user": "u", "password": "a-real-password"},
        "server": {"tls_certificate": str(certificate), "tls_key": str(ca)},
    }
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    ended = cyphergate("serve", "--config", str(path), timeout=60)
    assert ended.returncode == 2, ended.stderr
    assert "server.tls_certificate and tls_key do not load" in ended.stderr
    assert "Traceback" not in ended.stderr
    # cyphergate config check says so too, without starting anything.
    checked = cyphergate("config", "check", "--config", str(path), timeout=60)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "server.tls_certificate and tls_key do not load" in checked.stdout
