"""Configuration from the environment (the names charts/control-service sets), with laptop defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from polyp_inference.image import MAX_BYTES


def _home() -> Path:
    return Path(os.environ.get("POLYP_HOME", ".local")).resolve()


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass
class Settings:
    api_token: str | None = field(default_factory=lambda: os.environ.get("API_TOKEN") or None)
    redis_url: str | None = field(default_factory=lambda: os.environ.get("REDIS_URL") or None)
    ray_address: str = field(default_factory=lambda: os.environ.get("RAY_ADDRESS", "http://127.0.0.1:8265"))
    scheduler_db_url: str = field(default_factory=lambda: os.environ.get(
        "SCHEDULER_DB_URL", f"sqlite:///{_home() / 'control.db'}"))
    mlflow_tracking_uri: str = field(default_factory=lambda: os.environ.get(
        "MLFLOW_TRACKING_URI", f"sqlite:///{_home() / 'mlflow.db'}"))
    inference_url: str | None = field(default_factory=lambda: os.environ.get("INFERENCE_URL") or None)  # Triton/KServe
    max_upload_bytes: int = field(default_factory=lambda: int(os.environ.get("MAX_UPLOAD_BYTES", MAX_BYTES)))
    model_name: str = field(default_factory=lambda: os.environ.get("MODEL_NAME", "polyp-segmenter"))
    cors_origins: list[str] = field(default_factory=lambda: [
        o.strip() for o in os.environ.get("CORS_ORIGINS", "").split(",") if o.strip()])
    # Watches
    model_stale_hours: float = field(default_factory=lambda: _float("MODEL_STALE_HOURS", 36))
    dice_floor: float = field(default_factory=lambda: _float("DICE_FLOOR", 0.70))
    dice_ceiling: float = field(default_factory=lambda: _float("DICE_CEILING", 0.99))
    watch_interval_s: float = field(default_factory=lambda: _float("WATCH_INTERVAL_S", 60))
    # Runs
    run_poll_interval_s: float = field(default_factory=lambda: _float("RUN_POLL_INTERVAL_S", 5))
    training_data: str = field(default_factory=lambda: os.environ.get("TRAINING_DATA", str(_home() / "data" / "synthetic")))
    model_repo: str = field(default_factory=lambda: os.environ.get("MODEL_REPO", str(_home() / "model-repo")))
    # Passed to every training job. Never credentials: the job's runtime_env is visible in the Ray
    # dashboard, and the RayCluster pods get S3 credentials from their own Secret (charts/training).
    job_env: dict[str, str] = field(default_factory=lambda: {
        k: v for k, v in os.environ.items()
        if k in {"MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "POLYP_HOME", "POLYP_CHECKPOINT_URI"}})
    alert_history_max: int = field(default_factory=lambda: int(os.environ.get("ALERT_HISTORY_MAX", "10000")))
    sse_heartbeat_s: float = field(default_factory=lambda: _float("SSE_HEARTBEAT_S", 15))
    static_dir: str | None = field(default_factory=lambda: os.environ.get("STATIC_DIR") or None)
    instance_id: str = field(default_factory=lambda: os.environ.get("HOSTNAME") or f"local-{os.getpid()}")
