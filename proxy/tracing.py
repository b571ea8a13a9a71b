"""OpenTelemetry traces of the request path, behind a seam the core sees as three small types.

The request path (``proxy/gateway/``) and the front doors speak only to :class:`Tracing` (makes
one :class:`RequestTrace` per request, continuing the caller's W3C trace context) and to the
:class:`RequestTrace` a :class:`~proxy.gateway.call.Call` carries (its steps, its attributes,
its ``traceparent`` for Neo4j's transaction metadata). Two implementations:

- :data:`NO_TRACING` (``telemetry.exporter = "none"``, the default): every request gets the one
  shared :data:`OFF` trace, whose steps are itself and whose methods do nothing. Nothing is
  allocated per request, nothing reads a header, and the OpenTelemetry SDK is never imported.
- :class:`OpenTelemetryTracing`: spans made by an SDK ``TracerProvider`` (built here from the
  settings, with its OTLP exporter imported only when configured, or handed in by a test with
  the SDK's in-memory exporter).

Spans carry identifiers and verdicts only (request id, DAG, database, decision id, verdict,
reasons, status): never the statement, its parameters, a token or a secret. A failed step's span
says only the gateway's reason (or the exception's type), never an exception's message.
Parents are passed explicitly, never through OpenTelemetry's current-span context: a Bolt
statement's span stays open across messages, and must not become the parent of what the
connection does next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from proxy.settings import TelemetrySettings

AttributeValue = str | bool | int | float | Sequence[str]
_PROPAGATOR = TraceContextTextMapPropagator()
_SCOPE = "cyphergate"


class Step(Protocol):
    """One step of a request (a child span), open for a ``with`` block."""

    def __enter__(self) -> Step: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def set(self, key: str, value: AttributeValue) -> None: ...


class RequestTrace(Step, Protocol):
    """The span of one request (an HTTP request, a Bolt statement, BEGIN or COMMIT); as a
    ``with`` block, it ends with the block (failed if the block raised)."""

    def __enter__(self) -> RequestTrace: ...

    @property
    def recording(self) -> bool:
        """Attributes set now are kept: work to compute them is worth doing."""
        ...

    def step(self, name: str) -> Step:
        """A child span, opened now, closed when its ``with`` block ends."""
        ...

    def traceparent(self) -> str | None:
        """This span as a W3C ``traceparent`` (for Neo4j's transaction metadata)."""
        ...

    def fail(self, reason: str) -> None:
        """The request failed, for ``reason`` (the gateway's reason code)."""
        ...

    def rename(self, name: str) -> None:
        """The span's name, once known better than when it began (an HTTP route)."""
        ...

    def end(self) -> None:
        """The request is over (idempotent)."""
        ...


class Tracing(Protocol):
    """Makes the span of each request (see the module docstring)."""

    @property
    def enabled(self) -> bool: ...

    def request(self, name: str, carrier: Mapping[str, str] | None) -> RequestTrace:
        """A request's span, continuing the trace ``carrier`` names (``traceparent`` and
        ``tracestate``, as HTTP headers or Bolt transaction metadata), if it names one."""
        ...

    def close(self) -> None:
        """Export what is pending and stop."""
        ...


class _Off:
    """Tracing off: one shared object is every request's trace and every step."""

    __slots__ = ()

    recording = False
    enabled = False

    def __enter__(self) -> _Off:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def set(self, key: str, value: AttributeValue) -> None:  # noqa: ARG002 - off: nothing to do
        return None

    def step(self, name: str) -> _Off:  # noqa: ARG002 - off: nothing to do
        return self

    def traceparent(self) -> None:
        return None

    def fail(self, reason: str) -> None:  # noqa: ARG002 - off: nothing to do
        return None

    def rename(self, name: str) -> None:  # noqa: ARG002 - off: nothing to do
        return None

    def end(self) -> None:
        return None

    def request(self, name: str, carrier: Mapping[str, str] | None) -> _Off:  # noqa: ARG002 - off: nothing to do
        return self

    def close(self) -> None:
        return None


OFF: RequestTrace = _Off()
NO_TRACING: Tracing = _Off()


class _Span:
    """A step: an SDK span, ended when its block ends (failed if the block raised)."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None:
            self.fail(_reason(error))
        self.end()

    def set(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def fail(self, reason: str) -> None:
        self._span.set_status(Status(StatusCode.ERROR, reason))

    def end(self) -> None:
        self._span.end()


class _Request(_Span):
    __slots__ = ("_ended", "_tracer")

    @property
    def recording(self) -> bool:
        # False for a trace the sampler dropped: its attributes would be thrown away.
        return self._span.is_recording()

    def __init__(self, tracer: trace.Tracer, span: trace.Span) -> None:
        super().__init__(span)
        self._tracer = tracer
        self._ended = False

    def step(self, name: str) -> _Span:
        parent = trace.set_span_in_context(self._span)
        return _Span(self._tracer.start_span(name, context=parent, kind=SpanKind.INTERNAL))

    def traceparent(self) -> str | None:
        context = self._span.get_span_context()
        if not context.is_valid:
            return None
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"

    def rename(self, name: str) -> None:
        self._span.update_name(name)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._span.end()


class OpenTelemetryTracing:
    """Spans from an OpenTelemetry ``TracerProvider`` (see the module docstring)."""

    enabled = True

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer(_SCOPE)

    def request(self, name: str, carrier: Mapping[str, str] | None) -> _Request:
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        span = self._tracer.start_span(name, context=parent, kind=SpanKind.SERVER)
        return _Request(self._tracer, span)

    def close(self) -> None:
        self._provider.shutdown()


def tracing_from(
    settings: TelemetrySettings, exporter: trace_export.SpanExporter | None = None
) -> Tracing:
    """The tracing the settings ask for: :data:`NO_TRACING` unless an exporter is configured.
    The SDK and the exporter are imported only then. ``exporter``: the tests' instead of the
    configured OTLP one."""
    if settings.exporter == "none":
        return NO_TRACING
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.sampling_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter or _otlp_exporter(settings)))
    return OpenTelemetryTracing(provider)


def _otlp_exporter(settings: TelemetrySettings) -> trace_export.SpanExporter:
    timeout = settings.timeout_s
    if settings.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GRPCExporter,
            )
        except ImportError as exc:  # the optional extra
            raise RuntimeError(
                "telemetry.protocol = 'grpc' needs the otlp-grpc extra "
                "(pip install 'cyphergate[otlp-grpc]')"
            ) from exc
        exporter: trace_export.SpanExporter = GRPCExporter(
            endpoint=settings.endpoint, timeout=timeout
        )
        return exporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=settings.endpoint, timeout=timeout)


def _reason(error: BaseException) -> str:
    """What a failed span says: the gateway's reason code, else the exception's type (an
    exception's message may quote a statement or a credential)."""
    reason = getattr(error, "reason", None)
    return reason if isinstance(reason, str) else type(error).__name__


if TYPE_CHECKING:
    from opentelemetry.sdk.trace import export as trace_export
