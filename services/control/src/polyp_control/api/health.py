"""/healthz, /readyz and /metrics: for the kubelet and Prometheus, so without a token (inside the cluster)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from .. import db
from .deps import BusDep, EngineDep, JobsDep, MetricsDep, RegistryDep, SettingsDep

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, dict] = Field(description="per dependency: ok, whether readiness requires it, and where it was looked for")


@router.get("/healthz", summary="Liveness: the process answers (a dependency outage never fails it)")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database and Redis (if configured) answer; MLflow and Ray are reported, not required",
    description=(
        "Ready means this replica can serve its core routes: runs, schedules, watches, alerts, the page and predict. "
        "Without MLflow or Ray only the routes that need them answer 503 with Retry-After, so they do not take the "
        "replica out of its Service."
    ),
    responses={200: {"model": Readiness}, 503: {"model": Readiness, "description": "a required dependency is unreachable"}},
)
async def readyz(bus: BusDep, registry: RegistryDep, settings: SettingsDep, jobs: JobsDep, engine: EngineDep) -> JSONResponse:
    database_ok, redis_ok, mlflow_ok, ray_ok = await asyncio.gather(
        asyncio.to_thread(db.reachable, engine), bus.ping(), registry.reachable(), jobs.reachable()
    )
    checks: dict[str, dict[str, Any]] = {
        "database": {"ok": database_ok, "required": True},
        "alerts": {"ok": redis_ok, "required": True, "via": bus.kind},
        "mlflow": {"ok": mlflow_ok, "required": False},
        "ray": {"ok": ray_ok, "required": False, "address": settings.ray_address},
    }
    ready = all(check["ok"] for check in checks.values() if check["required"])
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
