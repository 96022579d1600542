"""The MLflow registry adapter: the newest version of the served model, its scores, and Dice week by week."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from .errors import Unavailable


class ModelVersionInfo(BaseModel):
    name: str
    version: str
    aliases: list[str]
    dice: float | None
    iou: float | None
    trained_at: datetime
    dataset_fingerprint: str | None
    run_id: str | None
    tags: dict[str, str] = {}

    def metric(self, name: str) -> float | None:
        """A numeric tag of this version (training records val_dice, precision, ...); None when absent."""
        if name == "val_dice":
            return self.dice
        try:
            return float(self.tags[name])
        except (KeyError, ValueError):
            return None


class WeeklyDice(BaseModel):
    week_start: str  # ISO date of the Monday
    average_dice: float
    versions: int


async def _from_mlflow(query):
    try:
        return await asyncio.to_thread(query)
    except Exception as exc:
        raise Unavailable(f"MLflow is not reachable: {exc}") from exc


class ModelRegistry:
    """The MLflow model registry, as the API and the watches read it."""

    def __init__(self, tracking_uri: str, model_name: str):
        self.tracking_uri, self.model_name = tracking_uri, model_name
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        # Imported here, once: a first import racing in several worker threads fails half-initialised.
        import mlflow.tracking  # noqa: F401

    def _client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)

    def _versions(self):
        from mlflow.exceptions import MlflowException

        try:
            return self._client().search_model_versions(f"name='{self.model_name}'")
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower():
                return []
            raise

    def _info(self, version: Any) -> ModelVersionInfo:  # an mlflow ModelVersion
        tags = version.tags or {}
        iou = None
        if version.run_id:
            try:
                iou = self._client().get_run(version.run_id).data.metrics.get("best_val_iou")
            except Exception:  # noqa: BLE001 - the run may be gone; the version still stands
                iou = None
        return ModelVersionInfo(
            name=version.name,
            version=str(version.version),
            aliases=list(getattr(version, "aliases", []) or []),
            dice=float(tags["val_dice"]) if "val_dice" in tags else None,
            iou=iou,
            trained_at=datetime.fromtimestamp(version.creation_timestamp / 1000, UTC),
            dataset_fingerprint=tags.get("dataset_fingerprint"),
            run_id=version.run_id,
            tags=dict(tags),
        )

    def _latest(self) -> ModelVersionInfo | None:
        versions = self._versions()
        if not versions:
            return None
        newest = max(versions, key=lambda v: int(v.version))
        # A search result carries no aliases (MLflow fills them only when one version is read): read it whole.
        return self._info(self._client().get_model_version(self.model_name, newest.version))

    async def latest(self) -> ModelVersionInfo | None:
        return await _from_mlflow(self._latest)

    def _target(self, target: str) -> ModelVersionInfo | None:
        from mlflow.exceptions import MlflowException

        client = self._client()
        try:
            found = (
                client.get_model_version(self.model_name, target)
                if target.isdigit()
                else client.get_model_version_by_alias(self.model_name, target)
            )
        except MlflowException as exc:  # no such model, version or alias: nothing is there (yet)
            if (
                getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
                or "not found" in str(exc).lower()
                or "does not exist" in str(exc).lower()
            ):
                return None
            raise
        return self._info(found)

    async def target(self, target: str) -> ModelVersionInfo | None:
        """A version by alias (champion: the one served) or by number; None when there is none."""
        return await _from_mlflow(lambda: self._target(target))

    def _weekly(self) -> list[WeeklyDice]:
        weeks: dict[str, list[float]] = defaultdict(list)
        for version in self._versions():
            dice = (version.tags or {}).get("val_dice")
            if dice is None:
                continue
            created = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).date()
            weeks[(created - timedelta(days=created.weekday())).isoformat()].append(float(dice))
        return [WeeklyDice(week_start=week, average_dice=sum(v) / len(v), versions=len(v)) for week, v in sorted(weeks.items())]

    async def weekly_dice(self) -> list[WeeklyDice]:
        return await _from_mlflow(self._weekly)

    async def reachable(self) -> bool:
        try:
            await asyncio.to_thread(lambda: self._client().search_experiments(max_results=1))
            return True
        except Exception:  # noqa: BLE001
            return False
