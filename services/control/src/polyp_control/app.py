"""The FastAPI application: wiring of runs, schedules, watches, alerts, predict, metrics and health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from polyp_inference.client import InferenceClient, make_backend
from polyp_inference.http import predict_router

from . import db
from .alerts import make_bus
from .api import alerts as alerts_api
from .api import errors as api_errors
from .api import models as models_api
from .api import runs as runs_api
from .api import schedules as schedules_api
from .api import watches as watches_api
from .api.deps import READ
from .errors import NotFound, Unavailable
from .jobs import RayJobs
from .metrics import Metrics
from .registry import ModelRegistry
from .runs import RunService
from .schedules import ScheduleBusy, ScheduleService
from .settings import Settings
from .watches import DefaultWatch, Watches

log = logging.getLogger("polyp_control")


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, dict] = Field(description="per dependency: ok, and where it was looked for")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    if not settings.api_token:
        raise ValueError("API_TOKEN is not set: the control service has no default token (see README, Secrets)")

    engine = db.make_engine(settings.database_url)
    metrics = Metrics()
    bus = make_bus(settings.redis_url, engine, settings.alert_history_max)
    jobs = RayJobs(settings.ray_address)
    runs = RunService(engine, jobs, bus, metrics, settings)
    registry = ModelRegistry(settings.mlflow_tracking_uri, settings.model_name)
    watches = Watches(engine, registry, bus, metrics, settings)
    schedules = ScheduleService(engine, runs, settings.instance_id, settings.lease_ttl_s)
    predictor = InferenceClient(
        make_backend(
            settings.model_name,
            settings.inference_url,
            settings.model_repo,
            version=settings.model_version,
            kind=settings.inference_backend,
        ),
        max_bytes=settings.max_upload_bytes,
    )
    runs.on_success.append(watches.check)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(watches.ensure_defaults)
        await schedules.start()
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(runs.follow(lambda: schedules.leader)),
            loop.create_task(_watch_when_leading(watches, schedules, settings)),
        ]
        log.info(
            "control service up: alerts via %s, Ray at %s, MLflow at %s",
            bus.kind,
            settings.ray_address,
            settings.mlflow_tracking_uri,
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            # Awaited, so a shutdown (Ctrl-C on `make up`) ends them here instead of asyncio.run logging them.
            await asyncio.gather(*tasks, return_exceptions=True)
            await schedules.stop()
            await predictor.close()
            await bus.close()
            engine.dispose()

    app = FastAPI(
        title="Polyp control service",
        version="1",
        lifespan=lifespan,
        description="Trigger, schedule and watch polyp segmentation training; model alerts over SSE.",
    )
    app.state.settings, app.state.bus, app.state.runs, app.state.schedules = settings, bus, runs, schedules
    app.state.registry, app.state.watches, app.state.metrics, app.state.jobs = registry, watches, metrics, jobs
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        )

    app.add_middleware(PredictTimer, observe=metrics.predict_latency.observe)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code != 405:
            return await http_exception_handler(request, exc)
        # Starlette's 405 names only the first route matching the path; Allow must list every method the path has.
        methods = {
            m
            for route in app.routes
            if isinstance(route, APIRoute) and route.path_regex.match(request.url.path)
            for m in route.methods
        } - {"HEAD"}
        return JSONResponse(
            {"detail": f"{request.method} is not supported here; use {', '.join(sorted(methods))}"},
            status_code=405,
            headers={"Allow": ", ".join(sorted(methods))},
        )

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound):
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(DefaultWatch)
    @app.exception_handler(ScheduleBusy)
    async def conflict(request: Request, exc: Exception):
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable):
        return JSONResponse(status_code=503, content={"detail": str(exc)}, headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a message, never a traceback
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": f"internal error ({type(exc).__name__})"})

    for module in (runs_api, schedules_api, watches_api, alerts_api, models_api):
        app.include_router(module.router)
    app.include_router(
        predict_router(predictor, dependencies=[READ], max_concurrent=settings.max_concurrent_predictions),
        prefix="/v1",
        responses=api_errors.READ,
    )

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Readiness: Redis (if configured), MLflow and Ray reachable",
        responses={200: {"model": Readiness}, 503: {"model": Readiness, "description": "a dependency is unreachable"}},
    )
    async def readyz() -> JSONResponse:
        redis_ok, mlflow_ok, ray_ok = await asyncio.gather(bus.ping(), registry.reachable(), jobs.reachable())
        checks = {
            "alerts": {"ok": redis_ok, "via": bus.kind},
            "mlflow": {"ok": mlflow_ok},
            "ray": {"ok": ray_ok, "address": settings.ray_address},
        }
        ready = all(check["ok"] for check in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if settings.static_dir and Path(settings.static_dir).is_dir():
        app.mount("/ui", StaticFiles(directory=settings.static_dir, html=True), name="ui")

        @app.get("/", include_in_schema=False)
        async def page() -> RedirectResponse:
            return RedirectResponse("/ui/")

    return app


class PredictTimer:
    """Times /v1/predict. Plain ASGI: @app.middleware("http") passes every response of every route, each SSE
    event of every alert stream included, through an extra memory stream (bench/alerts_fanout.py, 1000 clients:
    a burst went out at 15 alerts/s with it, 83 without)."""

    def __init__(self, app, observe):
        self.app, self.observe = app, observe

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/v1/predict":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.observe(time.perf_counter() - started)


async def _watch_when_leading(watches: Watches, schedules: ScheduleService, settings: Settings) -> None:
    """Only the replica holding the scheduler lease evaluates the watches that are due (each has its interval)."""
    tick = min(5.0, settings.watch_interval_s)
    while True:
        if schedules.leader:
            try:
                await watches.check(due_only=True)
            except Exception:
                log.exception("watches")
        await asyncio.sleep(tick if schedules.leader else 2)
