"""/v1/models: the newest model and the weekly average Dice, from MLflow."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from ..registry import ModelVersionInfo, WeeklyDice
from . import errors
from .deps import READ, RegistryDep

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[READ],
                   responses={**errors.READ, **errors.errors(503, e503="MLflow cannot answer now; see Retry-After")})


@router.get("/latest", response_model=ModelVersionInfo,
            responses=errors.errors(404, e404="no version of the model is registered yet"))
async def latest(registry: RegistryDep) -> ModelVersionInfo:
    found = await registry.latest()
    if found is None:
        raise HTTPException(404, f"no version of {registry.model_name!r} is registered yet")
    return found


@router.get("/weekly-dice", response_model=list[WeeklyDice], summary="Average validation Dice per ISO week")
async def weekly(registry: RegistryDep) -> list[WeeklyDice]:
    return await registry.weekly_dice()
