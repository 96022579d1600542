"""Typed dependencies of the routes: the services the app was built with, and the token check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine

from ..alerts import AlertBus
from ..auth import require_read, require_write
from ..jobs import Hyperparameters, RayJobs, outside_roots
from ..metrics import Metrics
from ..registry import ModelRegistry
from ..runs import RunService
from ..schedules import ScheduleService
from ..settings import Settings
from ..watches import Watches


def _state(name: str) -> Callable[[Request], Any]:
    def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    return get


SettingsDep = Annotated[Settings, Depends(_state("settings"))]
EngineDep = Annotated[Engine, Depends(_state("engine"))]
BusDep = Annotated[AlertBus, Depends(_state("bus"))]
JobsDep = Annotated[RayJobs, Depends(_state("jobs"))]
MetricsDep = Annotated[Metrics, Depends(_state("metrics"))]
RunsDep = Annotated[RunService, Depends(_state("runs"))]
SchedulesDep = Annotated[ScheduleService, Depends(_state("schedules"))]
RegistryDep = Annotated[ModelRegistry, Depends(_state("registry"))]
WatchesDep = Annotated[Watches, Depends(_state("watches"))]
# dependencies=[READ]: 401 without a valid token; [WRITE]: also 403 for the read token.
READ = Depends(require_read)
WRITE = Depends(require_write)


def check_data(params: Hyperparameters, settings: Settings, loc: tuple[str, ...]) -> None:
    """422, in FastAPI's own shape, unless the run's `data` lies under the readable roots: a run must not read
    /var/run/secrets, another bucket, or climb out with `..`. Called by the routes that take a run's params."""
    if params.data and (reason := outside_roots(params.data, settings.readable_roots())):
        raise RequestValidationError([{"type": "value_error", "loc": loc, "msg": reason, "input": params.data}])
