"""The FastAPI application: the services it is built from, their lifetime, and the routes.

create_app   settings -> Services -> the app (handlers.py maps errors, api/ holds the routes)
lifespan     the lease-holder loops (runs follower, watches) started and stopped with the app
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from polyp_inference.client import InferenceClient, make_backend
from polyp_inference.http import predict_router

from . import db
from .alerts import AlertBus, make_bus
from .api import alerts as alerts_api
from .api import health as health_api
from .api import models as models_api
from .api import responses as api_responses
from .api import runs as runs_api
from .api import schedules as schedules_api
from .api import watches as watches_api
from .api.deps import READ
from .auth import RedactTickets
from .gate import RequestGate
from .handlers import add_exception_handlers
from .jobs import RayJobs
from .metrics import Metrics
from .outbox import Outbox
from .registry import ModelRegistry
from .runs import RunService
from .schedules import ScheduleService
from .settings import Settings
from .watches import Watches

log = logging.getLogger("polyp_control")
RELAY_INTERVAL_S = 2.0


@dataclass
class Services:
    """Everything a replica runs, built from its settings; the routes reach them through app.state."""

    settings: Settings
    engine: Engine
    metrics: Metrics
    bus: AlertBus
    outbox: Outbox
    jobs: RayJobs
    runs: RunService
    registry: ModelRegistry
    watches: Watches
    schedules: ScheduleService
    predictor: InferenceClient

    @classmethod
    def build(cls, settings: Settings) -> Services:
        engine = db.make_engine(settings.database_url, settings.database_timeout_s)
        metrics = Metrics()
        bus = make_bus(settings.redis_url, engine, settings.alert_history_max, settings.redis_timeout_s)
        jobs = RayJobs(settings.ray_address, settings.ray_auth_token, settings.ray_timeout_s)
        outbox = Outbox(engine, bus)
        runs = RunService(engine, jobs, outbox, metrics, settings)
        registry = ModelRegistry(settings.mlflow_tracking_uri, settings.model_name)
        watches = Watches(engine, registry, outbox, metrics, settings)
        schedules = ScheduleService(engine, runs, settings.instance_id, settings.lease_ttl_s)
        backend = make_backend(
            settings.model_name,
            settings.inference_url,
            settings.model_repo,
            version=settings.model_version,
            kind=settings.inference_backend,
        )
        predictor = InferenceClient(backend, max_bytes=settings.max_upload_bytes)
        runs.on_success.append(watches.check)
        runs.lease = schedules.lease
        return cls(settings, engine, metrics, bus, outbox, jobs, runs, registry, watches, schedules, predictor)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Default watches ensured, the scheduler and the lease-holder loops running; all stopped on exit."""
        await asyncio.to_thread(self.watches.ensure_defaults)
        await self.schedules.start()
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(self.runs.follow(lambda: self.schedules.leader)),
            loop.create_task(_watch_when_leading(self.watches, self.schedules, self.settings)),
            loop.create_task(_relay_when_leading(self.outbox, self.schedules)),
        ]
        log.info(
            "control service up: alerts via %s, Ray at %s, MLflow at %s",
            self.bus.kind,
            self.settings.ray_address,
            self.settings.mlflow_tracking_uri,
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            # Awaited, so a shutdown (Ctrl-C on `make up`) ends them here instead of asyncio.run logging them.
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.schedules.stop()
            self.jobs.close()
            await self.predictor.close()
            await self.bus.close()
            self.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTickets) for f in access_log.filters):
        access_log.addFilter(RedactTickets())
    if not settings.api_token:
        raise ValueError("API_TOKEN is not set: the control service has no default token (see docs/security.md)")
    services = Services.build(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with services.running():
            yield

    app = FastAPI(
        title="Polyp control service",
        version="1",
        lifespan=lifespan,
        description="Trigger, schedule and watch polyp segmentation training; model alerts over SSE.",
    )
    for name in ("settings", "engine", "bus", "runs", "schedules", "registry", "watches", "metrics", "jobs"):
        setattr(app.state, name, getattr(services, name))
    # The last added runs first: CORS (a preflight carries no token), then the gate, then the timer.
    app.add_middleware(PredictTimer, observe=services.metrics.predict_latency.observe)
    app.add_middleware(RequestGate, settings=settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        )
    add_exception_handlers(app)
    _add_routes(app, services)
    return app


def _add_routes(app: FastAPI, services: Services) -> None:
    for module in (runs_api, schedules_api, watches_api, alerts_api, models_api, health_api):
        app.include_router(module.router)
    predict = predict_router(services.predictor, dependencies=[READ], max_concurrent=services.settings.max_concurrent_predictions)
    app.include_router(predict, prefix="/v1", responses=api_responses.READ)
    static_dir = services.settings.static_dir
    if static_dir and Path(static_dir).is_dir():
        app.mount("/ui", StaticFiles(directory=static_dir, html=True), name="ui")

        @app.get("/", include_in_schema=False)
        async def page() -> RedirectResponse:
            return RedirectResponse("/ui/")


class PredictTimer:
    """Times /v1/predict. Plain ASGI: @app.middleware("http") passes every response of every route, each SSE
    event of every alert stream included, through an extra memory stream (bench/alerts_fanout.py, 1000 clients:
    a burst went out at 15 alerts/s with it, 83 without)."""

    def __init__(self, app: ASGIApp, observe: Callable[[float], None]):
        self.app, self.observe = app, observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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


async def _relay_when_leading(outbox: Outbox, schedules: ScheduleService) -> None:
    """The lease holder publishes what a crash or a bus outage left in the alert outbox."""
    while True:
        if schedules.leader:
            try:
                await outbox.relay()
            except Exception as exc:  # noqa: BLE001 - the database away: the next round tries again
                log.warning("alert outbox relay: %s", exc)
        await asyncio.sleep(RELAY_INTERVAL_S)
