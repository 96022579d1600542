"""/v1/models: the newest model, a version by alias or number (champion: the served one), weekly Dice; from MLflow."""

from __future__ import annotations

from fastapi import APIRouter, Path

from ..errors import ModelVersionNotFound
from ..registry import ModelVersionInfo, WeeklyDice
from ..watches import SERVED, TARGET_PATTERN
from . import responses
from .deps import READ, RegistryDep

router = APIRouter(
    prefix="/v1/models",
    tags=["models"],
    dependencies=[READ],
    responses={**responses.READ, **responses.errors(503, e503="MLflow cannot answer now; see Retry-After")},
)


@router.get(
    "/latest", response_model=ModelVersionInfo, responses=responses.errors(404, e404="no version of the model is registered yet")
)
async def latest(registry: RegistryDep) -> ModelVersionInfo:
    found = await registry.latest()
    if found is None:
        raise ModelVersionNotFound(f"no version of {registry.model_name!r} is registered yet")
    return found


@router.get("/weekly-dice", response_model=list[WeeklyDice], summary="Average validation Dice per ISO week")
async def weekly(registry: RegistryDep) -> list[WeeklyDice]:
    return await registry.weekly_dice()


@router.get(
    "/{target}",
    response_model=ModelVersionInfo,
    summary="A version by alias or number (champion: the served one)",
    responses=responses.errors(404, e404="no version with this alias or number"),
)
async def by_target(
    registry: RegistryDep, target: str = Path(pattern=TARGET_PATTERN, examples=[SERVED, "3"])
) -> ModelVersionInfo:
    found = await registry.target(target)
    if found is None:
        raise ModelVersionNotFound(f"{registry.model_name!r} has no version {target!r}")
    return found
