"""/v1/runs: trigger, list, status, logs, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import PlainTextResponse

from ..jobs import Hyperparameters
from ..runs import Run
from . import responses
from .deps import READ, WRITE, RunsDep, SettingsDep, check_data

router = APIRouter(prefix="/v1/runs", tags=["training runs"], dependencies=[READ], responses=responses.READ)
NOT_FOUND = responses.errors(404, e404="no training run with this id")


@router.post(
    "",
    response_model=Run,
    status_code=201,
    dependencies=[WRITE],
    summary="Trigger a training run (a Ray job)",
    responses={
        200: {"model": Run, "description": "idempotent replay: the run this Idempotency-Key created"},
        **responses.WRITE,
        **responses.BODY,
        **responses.errors(503, e503="Ray (or the database) cannot be reached: nothing was started; see Retry-After"),
    },
)
async def trigger(
    runs: RunsDep,
    settings: SettingsDep,
    response: Response,
    params: Hyperparameters | None = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Run:
    params = params or Hyperparameters()
    check_data(params, settings, ("body", "data"))
    run, created = await runs.trigger(params, idempotency_key=idempotency_key)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return run


@router.get("", response_model=list[Run], summary="List training runs, newest first")
async def list_runs(runs: RunsDep, status: str | None = None, schedule_id: str | None = None) -> list[Run]:
    return await runs.list(status=status, schedule_id=schedule_id)


@router.get("/{run_id}", response_model=Run, responses=NOT_FOUND)
async def get_run(runs: RunsDep, run_id: str) -> Run:
    return await runs.get(run_id)


@router.get(
    "/{run_id}/logs",
    response_class=PlainTextResponse,
    summary="The Ray job's driver log",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **responses.as_json(
            {**responses.READ, **NOT_FOUND, **responses.errors(503, e503="Ray cannot give the log now; see Retry-After")}
        ),
    },
)
async def run_logs(runs: RunsDep, run_id: str) -> str:
    return await runs.logs(run_id)


@router.post("/{run_id}/cancel", response_model=Run, dependencies=[WRITE], responses={**NOT_FOUND, **responses.WRITE})
async def cancel(runs: RunsDep, run_id: str) -> Run:
    await runs.get(run_id)
    return await runs.cancel(run_id)
