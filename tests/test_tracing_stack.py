"""Traces against the real services: a gateway in-process on the devstack's Neo4j, OPA and
identity provider (an in-memory exporter cannot be shared with a second process), and Neo4j's own
``SHOW TRANSACTIONS`` showing the gateway's span as the transaction's ``traceparent``."""

from __future__ import annotations

import secrets
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from neo4j import Driver
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from proxy.app import create_app
from proxy.devstack.stack import DevStack
from proxy.settings import Settings
from proxy.tracing import OpenTelemetryTracing

pytestmark = pytest.mark.integration

TX = "/db/neo4j/query/v2/tx"


def traced_app(
    stack: DevStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[FastAPI, InMemorySpanExporter]:
    """A gateway in-process on the devstack, its spans kept in memory."""
    for name, value in stack.gateway_aws_env().items():
        monkeypatch.setenv(name, value)
    config: dict[str, Any] = tomllib.loads(stack.gateway_config_path.read_text(encoding="utf-8"))
    config["audit"] = {"path": str(tmp_path / "audit.sqlite3")}
    config["server"].pop("bolt_port", None)  # the session gateway's
    config["neo4j"].update(lease_user_prefix="cg_traced_", leases_path=str(tmp_path / "l.sqlite3"))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return create_app(Settings(**config), tracing=OpenTelemetryTracing(provider)), exporter


def test_neo4j_sees_the_gateways_span_of_the_callers_trace(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, exporter = traced_app(stack, tmp_path, monkeypatch)
    trace_id, caller_span = secrets.randbits(128) | 1, secrets.randbits(64) | 1
    traceparent = f"00-{trace_id:032x}-{caller_span:016x}-01"
    token = stack.token("demo_writer")
    label = "Traced" + uuid.uuid4().hex[:12]
    headers = {"Authorization": f"Bearer {token}", "traceparent": traceparent}
    with TestClient(app) as http:
        opened = http.post(TX, json={"statement": f"CREATE (:`{label}`)"}, headers=headers)
        assert opened.status_code == 202, opened.text
        request_id = opened.headers["X-CypherGate-Request-ID"]
        records, _, _ = neo4j_admin.execute_query(
            "SHOW TRANSACTIONS YIELD metaData WHERE metaData.request_id = $id RETURN metaData",
            id=request_id,
        )
        path = f"{TX}/{opened.json()['transaction']['id']}"
        rollback = {"Authorization": f"Bearer {token}"}  # a trace of its own
        assert http.delete(path, headers=rollback).status_code == 200
    (seen,) = records
    spans = exporter.get_finished_spans()
    (request,) = [s for s in spans if s.parent is not None and s.parent.span_id == caller_span]
    assert request.context.trace_id == trace_id
    assert seen["metaData"]["traceparent"] == (
        f"00-{trace_id:032x}-{request.context.span_id:016x}-01"
    )
    assert seen["metaData"]["dag_id"] == "demo_writer"
    steps = {s.name for s in spans if s.parent and s.parent.span_id == request.context.span_id}
    assert {"authenticate", "analyse", "decide", "audit.ahead", "execute"} <= steps
    analyse = next(s for s in spans if s.name == "analyse" and s.context.trace_id == trace_id)
    assert (analyse.attributes or {}).get("cyphergate.analysis.cached") is False
    assert token not in repr([dict(s.attributes or {}) for s in spans])


# A LOAD CSV source as a pre-signed or basic-auth URL carries a credential; the policy names the
# source it refuses (load_csv_not_granted:<source>), for the caller and the audit log.
CREDENTIALED_SOURCE = (
    "https://etl:pw-{secret}@data.example.com/x.csv?X-Amz-Signature=sig-{secret}#frag-{secret}"
)


@pytest.mark.parametrize(
    ("template", "shown"),
    [
        (CREDENTIALED_SOURCE, "https://data.example.com/x.csv"),
        # Found by review: a password with a "#", "/" or "?" in it, written as it is, ended the
        # URL's host for a URL parser, and the user and (part of) the password stayed.
        ("https://etl:pw#{secret}@data.example.com/x.csv", "https://data.example.com/x.csv"),
        ("https://etl:pw/{secret}@data.example.com/x.csv", "https://data.example.com/x.csv"),
        ("https://etl:{secret}?@data.example.com/x.csv", "https://data.example.com/x.csv"),
        # and a query without "://" before it
        ("file:/import/x.csv?token={secret}", "file:/import/x.csv"),
    ],
)
def test_a_refused_load_csv_sources_credentials_stay_out_of_the_span(
    stack: DevStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: str, shown: str
) -> None:
    app, exporter = traced_app(stack, tmp_path, monkeypatch)
    secret = secrets.token_hex(8)
    source = template.format(secret=secret)
    statement = f"LOAD CSV FROM '{source}' AS row RETURN row"
    with TestClient(app) as http:
        refused = http.post(
            "/db/neo4j/query/v2",
            json={"statement": statement},
            headers={"Authorization": stack.auth_header("demo_reader")},
        )
    assert refused.status_code == 403, refused.text
    # The caller is told its own source, its password hidden (as the audit log records it).
    hidden = source.replace(f"pw-{secret}", "******")
    assert f"load_csv_not_granted:{hidden}" in refused.text
    spans = exporter.get_finished_spans()
    (request,) = [s for s in spans if s.name.startswith("POST")]
    reasons = (request.attributes or {})["cyphergate.reasons"]
    assert reasons == (f"load_csv_not_granted:{shown}",)
    assert secret not in repr([(s.name, s.status, dict(s.attributes or {})) for s in spans])
