"""/v1/schedules: create, list, get, pause, resume, delete."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from ..auth import require_token
from ..schedules import Schedule, ScheduleNotFound, ScheduleSpec

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])


def _service(request: Request):
    return request.app.state.schedules


def _on(request: Request, action: str, schedule_id: str):
    """Run one ScheduleService action on a schedule; an unknown id is a 404."""
    try:
        return getattr(_service(request), action)(schedule_id)
    except ScheduleNotFound:
        raise HTTPException(404, f"no schedule {schedule_id!r}") from None


@router.post("", response_model=Schedule, status_code=201, dependencies=[Depends(require_token)])
async def create(request: Request, spec: ScheduleSpec) -> Schedule:
    return _service(request).create(spec)


@router.get("", response_model=list[Schedule])
async def list_schedules(request: Request) -> list[Schedule]:
    return _service(request).list()


@router.get("/{schedule_id}", response_model=Schedule)
async def get(request: Request, schedule_id: str) -> Schedule:
    return _on(request, "get", schedule_id)


@router.post("/{schedule_id}/pause", response_model=Schedule, dependencies=[Depends(require_token)])
async def pause(request: Request, schedule_id: str) -> Schedule:
    return _on(request, "pause", schedule_id)


@router.post("/{schedule_id}/resume", response_model=Schedule, dependencies=[Depends(require_token)])
async def resume(request: Request, schedule_id: str) -> Schedule:
    return _on(request, "resume", schedule_id)


@router.delete("/{schedule_id}", status_code=204, dependencies=[Depends(require_token)],
               summary="Delete a schedule (the seeds' 'kill scheduled job'); its running run is not cancelled")
async def delete(request: Request, schedule_id: str) -> Response:
    _on(request, "delete", schedule_id)
    return Response(status_code=204)
