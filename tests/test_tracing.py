"""OpenTelemetry traces of the request path, in-process with fakes behind the seams and the SDK's
in-memory exporter: the caller's trace continues through the gateway's steps and into Neo4j's
transaction metadata, on both doors; spans carry no secret, token or parameter; tracing off
records nothing and allocates nothing per request. Against the real Neo4j:
tests/test_tracing_stack.py."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import neo4j
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import proxy.tracing
from proxy.api.traced import TracedRequests
from proxy.app import create_app
from proxy.gateway.call import Call, Statement
from proxy.settings import (
    Neo4jSettings,
    Settings,
    TelemetrySettings,
    load_settings,
)
from proxy.settings_errors import ConfigurationError
from proxy.tracing import NO_TRACING, OFF, OpenTelemetryTracing, tracing_from
from tests.bolt.test_server import rig
from tests.fakes import (
    FakeExecutor,
    fake_gateway,
    fake_services,
)

QUERY = "/db/neo4j/query/v2"
TOKEN = "good"  # FakeAuth's one accepted credential
STEPS = {"authenticate", "decide.preflight", "analyse", "decide", "audit.ahead", "execute"}


@dataclass
class Caller:
    """A caller's own span, as its traceparent names it."""

    trace_id: int
    span_id: int

    @classmethod
    def new(cls) -> Caller:
        return cls(secrets.randbits(128) | 1, secrets.randbits(64) | 1)

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-01"


def traceparent_of(span: ReadableSpan) -> str:
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"


def tracing() -> tuple[OpenTelemetryTracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OpenTelemetryTracing(provider), exporter


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[str]:
    return [
        s.name for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def attribute_texts(spans: Sequence[ReadableSpan]) -> str:
    """Every attribute (keys and values), span name and status of ``spans``, as one text."""
    parts: list[str] = []
    for span in spans:
        parts += [span.name, span.status.description or ""]
        for key, value in (span.attributes or {}).items():
            parts += [key, str(value)]
    return "\n".join(parts)


@pytest.fixture
def traced() -> Iterator[tuple[TestClient, InMemorySpanExporter, FakeExecutor]]:
    services = fake_services()
    assert isinstance(services.executor, FakeExecutor)
    traces, exporter = tracing()
    settings = Settings(neo4j=Neo4jSettings(password="a-long-password"))
    with TestClient(create_app(settings, services, tracing=traces)) as client:
        yield client, exporter, services.executor


def test_the_callers_trace_continues_through_the_steps_into_neo4j(
    traced: tuple[TestClient, InMemorySpanExporter, FakeExecutor],
) -> None:
    http, exporter, executor = traced
    caller = Caller.new()
    secret = "s3cr3t-" + secrets.token_hex(8)
    body = {"statement": "MATCH (n) WHERE n.k = $key RETURN n", "parameters": {"key": secret}}
    headers = {"Authorization": f"Bearer {TOKEN}", "traceparent": caller.traceparent}
    response = http.post(QUERY, json=body, headers=headers)
    assert response.status_code == 202, response.text
    spans = exporter.get_finished_spans()
    assert {span.context.trace_id for span in spans} == {caller.trace_id}
    (request,) = [s for s in spans if s.parent is not None and s.parent.span_id == caller.span_id]
    assert request.name == "POST /db/{database}/query/v2"
    assert set(children(spans, request)) == STEPS | {"audit.outcome"}
    assert request.attributes is not None
    assert (
        request.attributes["cyphergate.request_id"] == response.headers["X-CypherGate-Request-ID"]
    )
    assert request.attributes["cyphergate.verdict"] == "allow"
    assert request.attributes["db.namespace"] == "neo4j"
    assert request.attributes["cyphergate.dag"] == "etl"  # FakeAuth's READER
    assert request.attributes["http.response.status_code"] == 202
    # Neo4j's transaction metadata names the gateway's span, next to the audit log's ids.
    (execution,) = executor.ran
    assert execution.metadata["traceparent"] == traceparent_of(request)
    assert execution.metadata["request_id"] == response.headers["X-CypherGate-Request-ID"]
    # Neither the parameter's value, nor the statement, nor the token is in any span.
    texts = attribute_texts(spans)
    assert secret not in texts and "n.k = $key" not in texts
    assert f"Bearer {TOKEN}" not in texts


def test_the_analysis_span_says_when_it_came_from_the_cache(
    traced: tuple[TestClient, InMemorySpanExporter, FakeExecutor],
) -> None:
    http, exporter, _ = traced
    statement = {"statement": "RETURN 7 AS seven"}
    for _ in range(2):
        response = http.post(QUERY, json=statement, headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 202, response.text
    analyses = [s for s in exporter.get_finished_spans() if s.name == "analyse"]
    cached = [(s.attributes or {}).get("cyphergate.analysis.cached") for s in analyses]
    assert cached == [False, True]
    decisions = [s for s in exporter.get_finished_spans() if s.name == "decide"]
    assert all(
        isinstance((s.attributes or {}).get("cyphergate.decision.cached"), bool) for s in decisions
    )


def test_a_refusal_is_a_failed_span_with_its_reasons(
    traced: tuple[TestClient, InMemorySpanExporter, FakeExecutor],
) -> None:
    http, exporter, executor = traced
    refused = http.post(
        QUERY, json={"statement": "RETURN 1"}, headers={"Authorization": "Bearer x"}
    )
    assert refused.status_code == 401
    (request,) = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert request.status.status_code is StatusCode.ERROR
    assert request.attributes is not None
    assert request.attributes["cyphergate.verdict"] == "deny"
    assert request.attributes["cyphergate.reasons"] == ("bad_token",)
    assert request.attributes["http.response.status_code"] == 401
    (authenticate,) = [s for s in exporter.get_finished_spans() if s.name == "authenticate"]
    assert authenticate.status.status_code is StatusCode.ERROR
    assert authenticate.status.description == "bad_token"
    assert "audit.ahead" not in children(exporter.get_finished_spans(), request)
    assert not executor.ran


def test_an_http_transaction_continues_the_trace_of_each_request(
    traced: tuple[TestClient, InMemorySpanExporter, FakeExecutor],
) -> None:
    http, exporter, executor = traced
    opening, commit = Caller.new(), Caller.new()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    opened = http.post(
        QUERY + "/tx",
        json={"statement": "RETURN 1"},
        headers={**auth, "traceparent": opening.traceparent},
    )
    assert opened.status_code == 202, opened.text
    path = f"{QUERY}/tx/{opened.json()['transaction']['id']}/commit"
    committed = http.post(path, json={}, headers={**auth, "traceparent": commit.traceparent})
    assert committed.status_code == 202, committed.text
    spans = exporter.get_finished_spans()
    (first,) = [s for s in spans if s.parent is not None and s.parent.span_id == opening.span_id]
    (last,) = [s for s in spans if s.parent is not None and s.parent.span_id == commit.span_id]
    assert first.name == "POST /db/{database}/query/v2/tx"
    assert "commit" in children(spans, last)
    # The transaction's metadata is set at its begin: the first statement's span.
    (upstream,) = executor.transactions
    assert upstream.opening.metadata["traceparent"] == traceparent_of(first)


def test_operations_endpoints_make_no_spans(
    traced: tuple[TestClient, InMemorySpanExporter, FakeExecutor],
) -> None:
    http, exporter, _ = traced
    assert http.get("/readyz").status_code == 200
    assert exporter.get_finished_spans() == ()


# ---------------------------------------------------------------------------- tracing off


def test_off_by_default_nothing_is_traced_nor_sent_to_neo4j() -> None:
    settings = Settings(neo4j=Neo4jSettings(password="a-long-password"))
    assert settings.telemetry.exporter == "none"
    assert tracing_from(settings.telemetry) is NO_TRACING
    services = fake_services()
    assert isinstance(services.executor, FakeExecutor)
    caller = Caller.new()
    headers = {"Authorization": f"Bearer {TOKEN}", "traceparent": caller.traceparent}
    app = create_app(settings, services)
    installed: list[object] = [m.cls for m in app.user_middleware]
    assert TracedRequests not in installed
    with TestClient(app) as http:
        response = http.post(QUERY, json={"statement": "RETURN 1"}, headers=headers)
        assert response.status_code == 202
    (execution,) = services.executor.ran
    assert "traceparent" not in execution.metadata


def test_off_the_request_path_makes_no_tracing_object() -> None:
    """With tracing off, every call into proxy/tracing.py on the request path answers with the
    one shared no-op object or None: nothing is made per request."""
    executor = FakeExecutor()
    gateway = fake_gateway(executor=executor)
    returned: list[object] = []
    called: set[str] = set()

    def profile(frame: FrameType, event: str, value: object) -> None:
        if frame.f_code.co_filename == proxy.tracing.__file__:
            called.add(frame.f_code.co_name)
            if event == "return":
                returned.append(value)

    async def statement() -> Statement:
        return Statement(text="RETURN 1", parameters={"p": 1})

    async def scenario() -> None:
        sys.setprofile(profile)
        try:
            for number in range(3):
                call = Call(f"r{number}", "neo4j", f"Bearer {TOKEN}", None, {}, statement)
                async with gateway.run(call) as rows:
                    await rows.summary()
        finally:
            sys.setprofile(None)

    asyncio.run(scenario())
    assert {"step", "__enter__", "__exit__", "traceparent"} <= called
    assert all(value is None or value is OFF for value in returned), returned
    assert len(executor.ran) == 3


# ---------------------------------------------------------------------------- settings


def test_the_telemetry_section_refuses_unknown_keys_and_bad_ratios(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    base = '[neo4j]\npassword = "a-long-password"\n[telemetry]\nexporter = "otlp"\n'
    config.write_text(base + "sampling_rate = 0.5\n", encoding="utf-8")
    with pytest.raises(
        ConfigurationError, match=r"unknown key 'sampling_rate' in section \[telemetry\]"
    ):
        load_settings(config)
    config.write_text(base + "sampling_ratio = 1.5\n", encoding="utf-8")
    with pytest.raises(
        ConfigurationError, match=r"telemetry.*sampling_ratio|sampling_ratio.*telemetry"
    ):
        load_settings(config)
    config.write_text(base + 'protocol = "thrift"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"protocol"):
        load_settings(config)
    config.write_text(base, encoding="utf-8")
    assert load_settings(config).telemetry.exporter == "otlp"


def test_the_otlp_exporter_is_built_only_when_configured() -> None:
    configured = TelemetrySettings(exporter="otlp", service_name="gw-1", sampling_ratio=0.5)
    assert configured.endpoint == "http://127.0.0.1:4318/v1/traces"
    built = tracing_from(configured)
    try:
        assert isinstance(built, OpenTelemetryTracing) and built.enabled
    finally:
        built.close()
    grpc = TelemetrySettings(exporter="otlp", protocol="grpc")
    assert grpc.endpoint == "http://127.0.0.1:4317"


def test_the_sampling_ratio_drops_new_traces_but_follows_a_sampled_caller() -> None:
    exporter = InMemorySpanExporter()
    settings = TelemetrySettings(exporter="otlp", sampling_ratio=0.0, service_name="gw-7")
    built = tracing_from(settings, exporter)
    caller = Caller.new()
    for carrier in (None, {"traceparent": caller.traceparent}):
        with built.request("r", carrier) as trace, trace.step("s"):
            pass
    built.close()  # flushes the batch
    spans = exporter.get_finished_spans()
    assert {span.context.trace_id for span in spans} == {caller.trace_id}
    assert sorted(span.name for span in spans) == ["r", "s"]
    assert spans[0].resource.attributes["service.name"] == "gw-7"


# ---------------------------------------------------------------------------- the Bolt door


def test_over_bolt_a_traceparent_in_the_transaction_metadata_is_continued() -> None:
    traces, exporter = tracing()
    auto, explicit = Caller.new(), Caller.new()
    secret = "s3cr3t-" + secrets.token_hex(8)

    async def scenario() -> FakeExecutor:
        async with rig(rows=1, tracing=traces) as bolt:
            uri = f"bolt://127.0.0.1:{bolt.door.port}"
            auth = neo4j.bearer_auth(TOKEN)
            async with (
                neo4j.AsyncGraphDatabase.driver(uri, auth=auth) as driver,
                driver.session(database="neo4j") as session,
            ):
                query = neo4j.Query("RETURN $p AS x", metadata={"traceparent": auto.traceparent})
                await (await session.run(query, p=secret)).consume()
                metadata = {"traceparent": explicit.traceparent}
                async with await session.begin_transaction(metadata=metadata) as tx:
                    await (await tx.run("RETURN 1 AS x")).consume()
                    await (await tx.run("RETURN 2 AS x")).consume()
                    await tx.commit()
            return bolt.executor

    executor = asyncio.run(scenario())
    spans = exporter.get_finished_spans()
    by_parent: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        if span.parent is not None:
            by_parent.setdefault(span.parent.span_id, []).append(span)
    (run,) = by_parent[auto.span_id]
    assert run.name == "bolt RUN" and run.context.trace_id == auto.trace_id
    assert set(children(spans, run)) == STEPS | {"audit.outcome"}
    (execution,) = executor.ran
    assert execution.metadata["traceparent"] == traceparent_of(run)
    names = sorted(s.name for s in by_parent[explicit.span_id])
    assert names == ["bolt BEGIN", "bolt COMMIT", "bolt RUN", "bolt RUN"]
    first = min((s for s in by_parent[explicit.span_id] if s.name == "bolt RUN"), key=start)
    (upstream,) = executor.transactions
    assert upstream.opening.metadata["traceparent"] == traceparent_of(first)
    assert secret not in attribute_texts(spans)


def start(span: ReadableSpan) -> int:
    return span.start_time or 0


def test_spans_never_hold_values_of_the_kinds_a_caller_sends(
    traced: tuple[TestClient, InMemorySpanExporter, FakeExecutor],
) -> None:
    """Every attribute a span carries is one of the known, safe keys."""
    http, exporter, _ = traced
    http.post(QUERY, json={"statement": "RETURN 1"}, headers={"Authorization": f"Bearer {TOKEN}"})
    http.post(QUERY, json={"statement": "CREATE (:N)"}, headers={"Authorization": "Bearer bad"})
    allowed = {
        "http.request.method",
        "http.response.status_code",
        "http.route",
        "db.namespace",
        "cyphergate.request_id",
        "cyphergate.dag",
        "cyphergate.verdict",
        "cyphergate.reasons",
        "cyphergate.decision_id",
        "cyphergate.query_type",
        "cyphergate.access_mode",
        "cyphergate.status",
        "cyphergate.transaction_id",
        "cyphergate.analysis.cached",
        "cyphergate.decision.cached",
    }
    keys: set[Any] = set()
    for span in exporter.get_finished_spans():
        keys |= set(span.attributes or {})
    assert keys and keys <= allowed, keys - allowed
