"""/healthz, /readyz and /metrics: for the kubelet and Prometheus, so without a token (inside the cluster)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from .deps import BusDep, JobsDep, MetricsDep, RegistryDep, SettingsDep

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, dict] = Field(description="per dependency: ok, and where it was looked for")


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis (if configured), MLflow and Ray reachable",
    responses={200: {"model": Readiness}, 503: {"model": Readiness, "description": "a dependency is unreachable"}},
)
async def readyz(bus: BusDep, registry: RegistryDep, settings: SettingsDep, jobs: JobsDep) -> JSONResponse:
    redis_ok, mlflow_ok, ray_ok = await asyncio.gather(bus.ping(), registry.reachable(), jobs.reachable())
    checks: dict[str, dict[str, Any]] = {
        "alerts": {"ok": redis_ok, "via": bus.kind},
        "mlflow": {"ok": mlflow_ok},
        "ray": {"ok": ray_ok, "address": settings.ray_address},
    }
    ready = all(check["ok"] for check in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
