"""What a watch is, as the API takes and shows it: its target, its check, its state; and a check's verdict."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..settings import Settings

Severity = Literal["info", "warning", "critical"]
SERVED = "champion"  # the alias training moves to a version that passed the gate and was published
TARGET_PATTERN = r"^([1-9][0-9]{0,8}|[A-Za-z][A-Za-z0-9_-]{0,63})$"


class Freshness(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    kind: Literal["freshness"]
    max_age_hours: float = Field(gt=0, le=24 * 366, description="fires when the target version is older")


class Quality(BaseModel):
    # "A floor, a ceiling or both", in the schema too; floor < ceiling is a rule between two fields JSON Schema
    # cannot state (the validator says it).
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={
            "anyOf": [
                {"required": ["floor"], "properties": {"floor": {"type": "number"}}},
                {"required": ["ceiling"], "properties": {"ceiling": {"type": "number"}}},
            ]
        },
    )
    kind: Literal["quality"]
    metric: str = Field(
        "val_dice",
        pattern=r"^[A-Za-z0-9_.-]{1,100}$",
        description="a numeric tag of the model version (training records val_dice)",
    )
    floor: float | None = Field(None, ge=0, le=1, description="fires below this")
    ceiling: float | None = Field(None, ge=0, le=1, description="fires above this (leakage, a broken split)")

    @model_validator(mode="after")
    def _a_bound(self):
        if self.floor is None and self.ceiling is None:
            raise ValueError("a quality check needs a floor, a ceiling or both")
        if self.floor is not None and self.ceiling is not None and self.floor >= self.ceiling:
            raise ValueError(f"floor {self.floor} must be below ceiling {self.ceiling}")
        return self


class RunFailures(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    kind: Literal["run_failures"]
    count: int = Field(ge=1, le=10_000, description="fires when at least this many runs failed ...")
    window_hours: float = Field(gt=0, le=24 * 366, description="... within this many hours")


Check = Annotated[Freshness | Quality | RunFailures, Field(discriminator="kind")]


class WatchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    description: str = Field("", max_length=500)
    target: str = Field(
        SERVED,
        pattern=TARGET_PATTERN,
        description="model version alias (champion: the served one) or version number; run_failures ignores it",
    )
    check: Check
    interval_s: float = Field(60, ge=5, le=86400, description="how often the watch is evaluated")
    severity: Severity = "warning"

    @field_validator("target", mode="before")
    @classmethod
    def _version_number_as_text(cls, value):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class WatchState(BaseModel):
    status: Literal["pending", "ok", "firing"] = Field(description="pending: not evaluated yet")
    since: float | None = Field(None, description="unix time the current status began")
    last_checked: float | None = None
    last_value: float | None = Field(None, description="age in hours, metric value or failed runs")
    message: str | None = None


class Watch(WatchSpec):
    id: str
    paused: bool
    managed_by: Literal["settings", "api"] = Field(
        description="settings: a default following the environment settings (MODEL_STALE_HOURS, DICE_FLOOR, DICE_CEILING)"
    )
    created_at: float
    updated_at: float
    state: WatchState


def default_specs(settings: Settings) -> dict[str, tuple[WatchSpec, str]]:
    """The environment's watches, by id, with the alert type the earlier fixed watches used (state migrates)."""
    every = max(5.0, min(settings.watch_interval_s, 86400))

    def served(description: str, check: Freshness | Quality, severity: Severity = "warning") -> WatchSpec:
        return WatchSpec(description=description, check=check, interval_s=every, severity=severity)

    fresh = Freshness(kind="freshness", max_age_hours=settings.model_stale_hours)
    floor, ceiling = Quality(kind="quality", floor=settings.dice_floor), Quality(kind="quality", ceiling=settings.dice_ceiling)
    return {
        "model-freshness": (served("the served model is fresh", fresh), "model_stale"),
        "model-quality-floor": (
            served("the served model's validation Dice is above the floor", floor, "critical"),
            "model_quality_low",
        ),
        "model-quality-ceiling": (
            served("the served model's validation Dice is not suspiciously high", ceiling),
            "model_quality_suspicious",
        ),
    }


class Verdict(BaseModel):
    firing: bool
    alert_type: str
    message: str
    value: float | None = None
