"""The ``[lineage]`` section: OpenLineage run events the gateway emits itself, off by default."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from proxy.settings.base import _read_secret, _Section

# What each transport cannot do without.
_NEEDS = {"file": ("path",), "http": ("url",), "kafka": ("kafka_topic", "kafka_config")}


class LineageSettings(_Section):
    """Where the gateway's OpenLineage run events go (one per statement it decided on); with
    ``transport = "none"`` nothing is built and a request pays nothing for it."""

    transport: Literal["none", "console", "file", "http", "kafka"] = Field(
        default="none",
        description="none: no events; console: the log (logger openlineage.client.transport."
        "console, level INFO); file: JSON Lines appended to path; http: POSTed to url (Marquez's"
        " API); kafka: produced to kafka_topic (needs the kafka extra).",
    )
    namespace: str = Field(
        default="cyphergate", min_length=1, description="The job namespace of the events."
    )
    parent_namespace: str = Field(
        default="default",
        min_length=1,
        description="The Airflow OpenLineage provider's namespace ([openlineage] namespace), for"
        " a parent run the gateway derives itself (a parent handed over names its own).",
    )
    queue_size: int = Field(
        default=10_000,
        ge=1,
        description="Events waiting for the transport; when it is full, new ones are dropped.",
    )
    close_timeout_s: float = Field(
        default=5.0, ge=0, description="At shutdown, how long queued events may still take."
    )
    path: Path | None = Field(default=None, description="file: the JSON Lines file (appended).")
    url: str | None = Field(default=None, description="http: the backend's base URL.")
    endpoint: str = Field(default="api/v1/lineage", description="http: the path under url.")
    api_key: SecretStr | None = Field(
        default=None, description="http: a bearer API key (CYPHERGATE_LINEAGE__API_KEY)."
    )
    api_key_file: Path | None = Field(default=None, description="http: a file holding it.")
    timeout_s: float = Field(default=5.0, gt=0, description="http: deadline of one POST.")
    retries: int = Field(
        default=2, ge=0, le=10, description="http: retries of a POST refused by a 5xx or unsent."
    )
    kafka_topic: str | None = Field(default=None, description="kafka: the topic.")
    kafka_config: dict[str, str] | None = Field(
        default=None,
        description="kafka: the producer's configuration (bootstrap.servers, ...).",
    )

    @model_validator(mode="after")
    def _what_the_transport_needs(self) -> LineageSettings:
        missing = [key for key in _NEEDS.get(self.transport, ()) if getattr(self, key) is None]
        if missing:
            raise ValueError(f"transport = {self.transport!r} needs {', '.join(missing)}")
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("give api_key or api_key_file, not both")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL")
        if self.transport == "kafka" and importlib.util.find_spec("confluent_kafka") is None:
            raise ValueError("transport = 'kafka' needs confluent-kafka (the kafka extra)")
        return self

    def read_api_key(self) -> str | None:
        """The HTTP transport's API key, if one is configured (a file is read now)."""
        if self.api_key is None and self.api_key_file is None:
            return None
        return _read_secret(self.api_key, self.api_key_file, "lineage API key")
