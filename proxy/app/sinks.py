"""The SIEM sinks of ``[[audit.sinks]]``, built and started beside the audit log they tail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx

from proxy.clock import Clock
from proxy.metrics import Metrics
from proxy.settings import AuditSettings, SinkSettings
from proxy.siem.cursor import Cursor, cursor_path
from proxy.siem.destinations import Destination, JSONLines
from proxy.siem.hec import HEC
from proxy.siem.sink import Pace, Sink
from proxy.siem.syslog import Syslog


@asynccontextmanager
async def open_sinks(
    audit: AuditSettings, metrics: Metrics, clock: Clock
) -> AsyncIterator[list[Sink]]:
    """Start a sink per ``[[audit.sinks]]`` entry on this process' chain; stop them at exit.

    Open the audit log first: a sink reads its file. A token that cannot be read stops the
    start-up here, naming the sink (never the token)."""
    async with AsyncExitStack() as stack:
        sinks = []
        for entry in audit.sinks:
            destination = await _destination(entry, stack)
            sink = Sink(
                entry.name,
                audit_path=audit.path,
                chain=audit.chain_id,
                cursor=Cursor(cursor_path(audit.path, entry.name), audit.chain_id),
                destination=destination,
                form=entry.format,
                pace=Pace(
                    batch=entry.batch,
                    poll_interval_s=entry.poll_interval_s,
                    retry_min_s=entry.retry_min_s,
                    retry_max_s=entry.retry_max_s,
                    timeout_s=entry.timeout_s,
                ),
                metrics=metrics,
                clock=clock,
            )
            sinks.append(await stack.enter_async_context(sink))
        yield sinks


async def _destination(entry: SinkSettings, stack: AsyncExitStack) -> Destination:
    if entry.kind == "jsonl":
        return JSONLines(entry.path)
    if entry.kind == "syslog":
        host, port = entry.syslog_address()
        return Syslog(
            host,
            port,
            transport=entry.transport,
            app_name=entry.app_name,
            timeout_s=entry.timeout_s,
        )
    if entry.url is None:  # excluded by the settings' validation
        raise ValueError(f"audit sink {entry.name} has no url")
    token = entry.read_token()
    http = await stack.enter_async_context(
        httpx.AsyncClient(timeout=entry.timeout_s, verify=entry.verify_tls)
    )
    return HEC(
        http,
        entry.url,
        token,
        source=entry.source,
        sourcetype=entry.sourcetype,
        index=entry.index,
    )
