"""The ``[telemetry]`` section: OpenTelemetry traces (proxy/tracing.py), off by default."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from proxy.settings.base import _Section

# Where an OpenTelemetry Collector beside the gateway listens, by protocol.
_DEFAULT_ENDPOINTS = {
    "http/protobuf": "http://127.0.0.1:4318/v1/traces",
    "grpc": "http://127.0.0.1:4317",
}


class TelemetrySettings(_Section):
    """Traces of the request path, exported over OTLP; with ``exporter = "none"`` nothing is
    traced and a request pays nothing for it."""

    exporter: Literal["none", "otlp"] = Field(
        default="none", description="otlp: export spans to an OTLP endpoint; none: no tracing."
    )
    protocol: Literal["http/protobuf", "grpc"] = Field(
        default="http/protobuf",
        description="OTLP over HTTP (installed with the gateway) or gRPC (the otlp-grpc extra).",
    )
    endpoint: str | None = Field(
        default=None,
        description="The OTLP endpoint; by default a collector on the loopback"
        " (http://127.0.0.1:4318/v1/traces, or :4317 for grpc).",
    )
    service_name: str = Field(
        default="cyphergate", min_length=1, description="The spans' service.name."
    )
    sampling_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of new traces kept; a caller's sampled traceparent is always followed.",
    )
    timeout_s: float = Field(default=10.0, gt=0, description="Deadline of one export.")

    @model_validator(mode="after")
    def _endpoint(self) -> TelemetrySettings:
        # Set here, so that the exporter never falls back to reading OTEL_* variables.
        if self.endpoint is None:
            self.endpoint = _DEFAULT_ENDPOINTS[self.protocol]
        return self
