"""The lineage wing of the composition root: the OpenLineage transport ``[lineage]`` names, and
the emitter that feeds it (:mod:`proxy.lineage_events`). With ``transport = "none"`` nothing is
built and the OpenLineage client is not even imported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from proxy.gateway.seams import LineageSink
from proxy.lineage import namespace_of
from proxy.metrics import Metrics
from proxy.settings import LineageSettings

if TYPE_CHECKING:
    from openlineage.client.transport import Transport


@asynccontextmanager
async def open_lineage(
    settings: LineageSettings, neo4j_uri: str, metrics: Metrics
) -> AsyncIterator[LineageSink | None]:
    """The request path's lineage sink for the block (``None`` when lineage is off); at its end,
    what is queued is sent for ``close_timeout_s`` at most, off the event loop."""
    if settings.transport == "none":
        yield None
        return
    from proxy.lineage_events import Emitter, RunEvents

    emitter = Emitter(
        RunEvents(
            namespace=settings.namespace,
            parent_namespace=settings.parent_namespace,
            dataset_namespace=namespace_of(neo4j_uri),
        ),
        transport(settings),
        metrics=metrics,
        queue_size=settings.queue_size,
        close_timeout_s=settings.close_timeout_s,
    )
    emitter.start()
    try:
        yield emitter
    finally:
        await asyncio.to_thread(emitter.close)


def transport(settings: LineageSettings) -> Transport:
    """The OpenLineage client's transport for ``settings``, configured from them alone.

    The client's ``OpenLineageClient`` is not used: it merges ``OPENLINEAGE_*`` environment
    variables and ``openlineage.yml`` files (working directory, home) over what it is given
    (``OPENLINEAGE_DISABLED`` silently turns it off; ``facets.environment_variables`` copies
    environment values into every event), while the gateway is configured by its settings only.
    Its transports and event classes are used as they are."""
    if settings.transport == "console":
        from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport

        return ConsoleTransport(ConsoleConfig())
    if settings.transport == "file":
        from openlineage.client.transport.file import FileConfig, FileTransport

        return FileTransport(FileConfig(log_file_path=str(settings.path), append=True))
    if settings.transport == "http":
        from openlineage.client.transport.http import (
            ApiKeyTokenProvider,
            HttpConfig,
            HttpTransport,
            TokenProvider,
        )

        key = settings.read_api_key()
        retries = settings.retries
        return HttpTransport(
            HttpConfig(
                url=str(settings.url),
                endpoint=settings.endpoint,
                timeout=settings.timeout_s,
                auth=ApiKeyTokenProvider({"api_key": key}) if key else TokenProvider({}),
                retry={
                    "total": retries,
                    "read": retries,
                    "connect": retries,
                    "backoff_factor": 0.3,
                    "status_forcelist": [500, 502, 503, 504],
                    "allowed_methods": ["POST"],
                },
            )
        )
    if settings.transport == "kafka":
        from openlineage.client.transport.kafka import KafkaConfig, KafkaTransport

        return KafkaTransport(
            KafkaConfig(config=dict(settings.kafka_config or {}), topic=str(settings.kafka_topic))
        )
    raise ValueError(f"no lineage transport {settings.transport!r}")
