"""What the operator asks of the process: ``/healthz``, ``/readyz`` and ``/metrics``.

None needs a credential: none names a DAG, user, statement or secret.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from proxy.api.state import ReadinessCheck, runtime
from proxy.metrics import CONTENT_TYPE

router = APIRouter()
# Mounted when server.metrics is on (see proxy.metrics).
metrics_router = APIRouter()


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """The process is up and its vital parts run (the audit writer): 503 asks for a restart."""
    checks = await _run(runtime(request).liveness)
    alive = all(state == "ok" for state in checks.values())
    body: dict[str, object] = {"status": "ok" if alive else "failed"}
    if not alive:
        body["checks"] = checks
    return JSONResponse(body, status_code=200 if alive else 503)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Every dependency is available now; 503 naming those that are not. ``degraded`` (200):
    serving, with something to catch up on (audit records waiting to be written late)."""
    checks = await _run(runtime(request).readiness)
    if any(state == "unavailable" for state in checks.values()):
        status, code = "not ready", 503
    elif any(state != "ok" for state in checks.values()):
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    return JSONResponse({"status": status, "checks": checks}, status_code=code)


async def _run(checks: Mapping[str, ReadinessCheck]) -> dict[str, str]:
    states: dict[str, str] = {}
    for name, check in checks.items():
        try:
            states[name] = await check() or "ok"
        except Exception:
            states[name] = "unavailable"
    return states


@metrics_router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    """The gateway's counters in Prometheus' text format."""
    return Response(runtime(request).metrics.render(), media_type=CONTENT_TYPE)
