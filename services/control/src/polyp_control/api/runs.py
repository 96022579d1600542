"""/v1/runs: trigger, list, status, logs, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse

from ..auth import require_token
from ..jobs import Hyperparameters
from ..runs import Run, RunNotFound

router = APIRouter(prefix="/v1/runs", tags=["training runs"])


def _runs(request: Request):
    return request.app.state.runs


async def _get(request: Request, run_id: str) -> Run:
    try:
        return await _runs(request).get(run_id)
    except RunNotFound:
        raise HTTPException(404, f"no training run {run_id!r}") from None


@router.post("", response_model=Run, status_code=201, dependencies=[Depends(require_token)],
             summary="Trigger a training run (a Ray job)", responses={200: {"description": "idempotent replay"}})
async def trigger(request: Request, response: Response, params: Hyperparameters | None = None,
                  idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> Run:
    run, created = await _runs(request).trigger(params or Hyperparameters(), idempotency_key=idempotency_key)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return run


@router.get("", response_model=list[Run], summary="List training runs, newest first")
async def list_runs(request: Request, status: str | None = None, schedule_id: str | None = None) -> list[Run]:
    return await _runs(request).list(status=status, schedule_id=schedule_id)


@router.get("/{run_id}", response_model=Run)
async def get_run(request: Request, run_id: str) -> Run:
    return await _get(request, run_id)


@router.get("/{run_id}/logs", response_class=PlainTextResponse, summary="The Ray job's driver log")
async def run_logs(request: Request, run_id: str) -> str:
    await _get(request, run_id)
    try:
        return await _runs(request).logs(run_id)
    except Exception as exc:  # noqa: BLE001 - Ray unreachable
        raise HTTPException(503, f"logs are not available from Ray right now: {exc}",
                            headers={"Retry-After": "10"}) from exc


@router.post("/{run_id}/cancel", response_model=Run, dependencies=[Depends(require_token)])
async def cancel(request: Request, run_id: str) -> Run:
    await _get(request, run_id)
    return await _runs(request).cancel(run_id)
