"""An HTTP event collector in Splunk HEC's shape: ``POST <url>/services/collector/event``.

The body is the batch's events, one HEC envelope each (``{"time", "host", "source",
"sourcetype", "index", "event"}``, concatenated, as HEC takes a batch); the token goes in
``Authorization: Splunk <token>``. A batch is delivered when the collector answers 2xx: HEC
acknowledges what it accepted, so nothing the sink counts as delivered is lost on the way.
The token is never logged, nor put in an error.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import httpx

from proxy.siem.destinations import DeliveryFailed
from proxy.siem.forms import Event, compact
from proxy.siem.ocsf import epoch_ms

PATH = "/services/collector/event"


class HEC:
    """Batches to one collector, over the HTTP client it is given (its TLS, its timeouts)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        token: str,
        *,
        source: str | None = None,
        sourcetype: str | None = None,
        index: str | None = None,
    ) -> None:
        self._http = http
        self._url = url.rstrip("/") + PATH
        self._headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
        self._envelope = {
            key: value
            for key, value in (
                ("host", socket.gethostname()),
                ("source", source),
                ("sourcetype", sourcetype),
                ("index", index),
            )
            if value is not None
        }

    def body(self, events: Sequence[Event]) -> bytes:
        """The request body for ``events``: each event's line spliced into its envelope."""
        parts = []
        for event in events:
            # HEC's time is seconds since the epoch, milliseconds as decimals.
            envelope = compact({"time": epoch_ms(event.time) / 1000, **self._envelope})
            parts.append(envelope[:-1] + b',"event":' + event.line + b"}")
        return b"".join(parts)

    async def deliver(self, events: Sequence[Event]) -> None:
        try:
            response = await self._http.post(
                self._url, content=self.body(events), headers=self._headers
            )
        except httpx.TimeoutException as exc:
            raise DeliveryFailed("timeout", type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise DeliveryFailed("connect", type(exc).__name__) from exc
        if not response.is_success:
            raise DeliveryFailed(f"http_{response.status_code}", response.reason_phrase)

    async def aclose(self) -> None:
        """The HTTP client is its owner's to close."""
