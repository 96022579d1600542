"""/v1/schedules: create, list, get, pause, resume, delete. APScheduler's job store is synchronous SQLAlchemy: each
call runs in a worker thread, never on the event loop (the scheduler is thread-safe)."""

from __future__ import annotations

from asyncio import to_thread

from fastapi import APIRouter, Response

from ..runs import Run
from ..schedules import Schedule, ScheduleSpec
from . import responses
from .deps import READ, WRITE, SchedulesDep, SettingsDep, check_data

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], dependencies=[READ], responses=responses.READ)

NOT_FOUND = responses.errors(404, e404="no schedule with this id")


@router.post("", response_model=Schedule, status_code=201, dependencies=[WRITE], responses={**responses.WRITE, **responses.BODY})
async def create(schedules: SchedulesDep, settings: SettingsDep, spec: ScheduleSpec) -> Schedule:
    check_data(spec.params, settings, ("body", "params", "data"))
    return await to_thread(schedules.create, spec)


@router.get("", response_model=list[Schedule])
async def list_schedules(schedules: SchedulesDep) -> list[Schedule]:
    return await to_thread(schedules.list)


@router.get("/{schedule_id}", responses=NOT_FOUND, response_model=Schedule)
async def get(schedules: SchedulesDep, schedule_id: str) -> Schedule:
    return await to_thread(schedules.get, schedule_id)


@router.post("/{schedule_id}/pause", response_model=Schedule, dependencies=[WRITE], responses={**NOT_FOUND, **responses.WRITE})
async def pause(schedules: SchedulesDep, schedule_id: str) -> Schedule:
    return await to_thread(schedules.pause, schedule_id)


@router.post("/{schedule_id}/resume", response_model=Schedule, dependencies=[WRITE], responses={**NOT_FOUND, **responses.WRITE})
async def resume(schedules: SchedulesDep, schedule_id: str) -> Schedule:
    return await to_thread(schedules.resume, schedule_id)


@router.post(
    "/{schedule_id}/run",
    response_model=Run,
    status_code=201,
    dependencies=[WRITE],
    summary="Run a schedule now, with its retry policy and SLA (409 while its previous run is active)",
    responses={
        **NOT_FOUND,
        **responses.WRITE,
        **responses.errors(
            409, 503, e409="the schedule's previous run is still active", e503="Ray cannot be reached: nothing was started"
        ),
    },
)
async def run_now(schedules: SchedulesDep, schedule_id: str, response: Response) -> Run:
    run = await schedules.run_now(schedule_id)
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return run


@router.delete(
    "/{schedule_id}",
    status_code=204,
    dependencies=[WRITE],
    responses={**NOT_FOUND, **responses.WRITE},
    summary="Delete a schedule (the seeds' 'kill scheduled job'); its running run is not cancelled",
)
async def delete(schedules: SchedulesDep, schedule_id: str) -> Response:
    await to_thread(schedules.delete, schedule_id)
    return Response(status_code=204)
