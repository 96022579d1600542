"""/v1/models: the newest model and the weekly average Dice, from MLflow."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from ..models import ModelVersionInfo, WeeklyDice

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("/latest", response_model=ModelVersionInfo)
async def latest(request: Request) -> ModelVersionInfo:
    try:
        found = await request.app.state.registry.latest()
    except Exception as exc:  # noqa: BLE001 - MLflow unreachable
        raise HTTPException(503, f"MLflow is not reachable: {exc}", headers={"Retry-After": "10"}) from exc
    if found is None:
        raise HTTPException(404, f"no version of {request.app.state.settings.model_name!r} is registered yet")
    return found


@router.get("/weekly-dice", response_model=list[WeeklyDice], summary="Average validation Dice per ISO week")
async def weekly(request: Request) -> list[WeeklyDice]:
    try:
        return await request.app.state.registry.weekly_dice()
    except Exception as exc:  # noqa: BLE001
        raise HTTPException(503, f"MLflow is not reachable: {exc}", headers={"Retry-After": "10"}) from exc
