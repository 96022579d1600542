"""Configuration from the environment (the names charts/control-service sets), with laptop defaults.

Every field is read from the upper-case environment variable of its name (``ray_address`` from
``RAY_ADDRESS``); local state defaults to ``POLYP_HOME`` (see polyp_core.home).
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from polyp_core.home import polyp_home
from polyp_core.repository import DEFAULT_MODEL_NAME
from polyp_inference.image import MAX_BYTES

from .jobs import default_data_roots

# Passed on to every training job. Never credentials: a job's runtime_env is visible in the Ray
# dashboard, and the RayCluster pods get S3 credentials from their own Secret (charts/training).
JOB_ENV = ("MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "POLYP_HOME", "POLYP_CHECKPOINT_URI")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    api_token: str | None = None  # the write token: everything
    api_read_token: str | None = None  # the read token: alerts, runs, logs, models, predict
    redis_url: str | None = None
    ray_address: str = "http://127.0.0.1:8265"
    ray_auth_token: str | None = None  # RAY_AUTH_TOKEN: what the RayCluster's job API demands (its KubeRay Secret)
    ray_timeout_s: float = Field(10, gt=0, description="the most one call to Ray's job API may take")
    # The service's own tables (runs, schedules and their job store, watch state, lease, local alerts).
    # SCHEDULER_DB_URL is its earlier name, still read.
    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{polyp_home() / 'control.db'}",
        validation_alias=AliasChoices("DATABASE_URL", "SCHEDULER_DB_URL"),
    )
    database_timeout_s: float = Field(5, gt=0, description="the most a database connect or statement may take")
    redis_timeout_s: float = Field(5, gt=0, description="the most a Redis connect or command may take")
    mlflow_tracking_uri: str = Field(default_factory=lambda: f"sqlite:///{polyp_home() / 'mlflow.db'}")
    inference_url: str | None = None  # Triton / KServe v2 or a Ray Serve application; unset: in-process ONNX Runtime
    inference_backend: Literal["onnxruntime", "triton", "rayserve"] | None = Field(
        None, description="default: triton when inference_url is set, else onnxruntime over model_repo"
    )
    max_upload_bytes: int = MAX_BYTES
    max_concurrent_predictions: int = Field(4, ge=1, description="per replica; more at once get 429")
    model_name: str = DEFAULT_MODEL_NAME
    model_version: int | None = Field(None, ge=1, description="serve exactly this version (a pin); unset: the newest")
    cors_origins: Annotated[list[str], NoDecode] = []  # CORS_ORIGINS: comma-separated
    # Watches
    model_stale_hours: float = 36
    dice_floor: float = 0.70
    dice_ceiling: float = 0.99
    watch_interval_s: float = 60
    # Runs
    run_poll_interval_s: float = 5
    submit_timeout_s: float = Field(120, description="a run still `submitting` this long after a crash is submitted again")
    lease_ttl_s: float = Field(15, description="a replica that dies hands the scheduler lease on after this long")
    training_data: str = Field(default_factory=lambda: str(polyp_home() / "data" / "synthetic"))
    data_roots: Annotated[list[str], NoDecode] = Field(
        [], description="DATA_ROOTS, space-separated: where a run's `data` may point; unset: TRAINING_DATA's buckets and folders"
    )
    model_repo: str = Field(default_factory=lambda: str(polyp_home() / "model-repo"))
    job_env: dict[str, str] = Field(default_factory=lambda: {k: v for k, v in os.environ.items() if k in JOB_ENV}, exclude=True)
    alert_history_max: int = 10000
    sse_heartbeat_s: float = 15
    static_dir: str | None = None
    instance_id: str = Field(
        default_factory=lambda: f"local-{os.getpid()}", validation_alias=AliasChoices("INSTANCE_ID", "HOSTNAME")
    )

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value):
        return value.split() if isinstance(value, str) else value

    @field_validator("data_roots")
    @classmethod
    def _folders_not_everything(cls, roots: list[str]) -> list[str]:
        if wide := [r for r in roots if r.rstrip("/") in ("", "s3:")]:
            raise ValueError(f"DATA_ROOTS {wide} would admit every path: name folders or buckets")
        return [r.rstrip("/") + "/" for r in roots]  # s3://datasets must not admit s3://datasets-other

    def readable_roots(self) -> list[str]:
        """Where a run's `data` may point (DATA_ROOTS, else derived from TRAINING_DATA)."""
        return self.data_roots or default_data_roots(self.training_data)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value):
        return [o.strip() for o in value.split(",") if o.strip()] if isinstance(value, str) else value

    @field_validator(
        "api_token",
        "api_read_token",
        "ray_auth_token",
        "redis_url",
        "inference_url",
        "inference_backend",
        "static_dir",
        "model_version",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value):
        return value or None
