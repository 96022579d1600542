"""Settings come from the environment variables the chart sets; earlier names keep working."""

from __future__ import annotations

from polyp_control.settings import Settings


def test_environment_names_and_laptop_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("POLYP_HOME", str(tmp_path))
    for name in ("DATABASE_URL", "SCHEDULER_DB_URL", "CORS_ORIGINS", "API_TOKEN", "MLFLOW_TRACKING_URI", "INSTANCE_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOSTNAME", "control-service-7d9f")
    defaults = Settings()
    assert defaults.database_url == f"sqlite:///{tmp_path / 'control.db'}"
    assert defaults.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert defaults.model_repo == str(tmp_path / "model-repo") and defaults.api_token is None
    assert defaults.instance_id == "control-service-7d9f" and defaults.model_stale_hours == 36

    monkeypatch.setenv("SCHEDULER_DB_URL", "postgresql+psycopg://old/name")
    assert Settings().database_url == "postgresql+psycopg://old/name"
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://db/control")
    monkeypatch.setenv("CORS_ORIGINS", "http://page.example, https://alerts.example ,")
    monkeypatch.setenv("API_TOKEN", "")
    monkeypatch.setenv("MODEL_STALE_HOURS", "12.5")
    configured = Settings()
    assert configured.database_url == "postgresql+psycopg://db/control"
    assert configured.cors_origins == ["http://page.example", "https://alerts.example"]
    assert configured.api_token is None and configured.model_stale_hours == 12.5
    assert configured.model_version is None
    monkeypatch.setenv("MODEL_VERSION", "3")
    assert Settings().model_version == 3
