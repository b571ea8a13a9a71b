"""What the operator asks of the process: ``/healthz``, ``/readyz`` and ``/metrics``.

None needs a credential: none names a DAG, user, statement or secret.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from proxy.api.state import runtime
from proxy.metrics import CONTENT_TYPE

router = APIRouter()
# Mounted when server.metrics is on (see proxy.metrics).
metrics_router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Every dependency is available now; 503 naming those that are not."""
    checks: dict[str, str] = {}
    for name, check in runtime(request).readiness.items():
        try:
            await check()
            checks[name] = "ok"
        except Exception:
            checks[name] = "unavailable"
    ready = all(state == "ok" for state in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@metrics_router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    """The gateway's counters in Prometheus' text format."""
    return Response(runtime(request).metrics.render(), media_type=CONTENT_TYPE)
