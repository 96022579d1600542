"""MLflow: local SQLite + local artifacts by default, a tracking server when MLFLOW_TRACKING_URI is set.

Runs carry params, per-epoch metrics, the dataset fingerprint and git commit, plots, and the
model; the model is registered and the quality gate decides whether it becomes ``champion``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from polyp_core.home import polyp_home

from .errors import TrackingUnavailable

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

CHAMPION = "champion"


def tracking_uri() -> str:
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    home = polyp_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def _artifact_location(uri: str) -> str | None:
    """Local runs keep artifacts beside the SQLite file; a server decides for itself."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    return None


def connect(experiment: str) -> tuple[MlflowClient, str]:
    """An MlflowClient on a reachable tracking store and the experiment's id, or TrackingUnavailable."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri)
    try:
        found = client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id if found else client.create_experiment(experiment, artifact_location=_artifact_location(uri))
        )
    except (MlflowException, OSError) as exc:
        raise TrackingUnavailable(f"MLflow tracking at {uri} is unreachable: {str(exc).splitlines()[0]}") from exc
    return client, experiment_id


def git_commit() -> str:
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@dataclass
class GateDecision:
    promoted: bool
    reason: str


def quality_gate(client: MlflowClient, model_name: str, version: str, dice: float, threshold: float) -> GateDecision:
    """Alias `champion` only if Dice >= threshold and >= the current champion's; else record why on the version."""
    from mlflow.exceptions import MlflowException

    client.set_model_version_tag(model_name, version, "val_dice", f"{dice:.6f}")
    try:
        champion = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        champion = None
    champion_dice = float(champion.tags.get("val_dice", "nan")) if champion else None
    if dice < threshold:
        decision = GateDecision(False, f"val_dice {dice:.4f} is below the threshold {threshold:.4f}")
    elif champion is not None and champion_dice is not None and str(champion.version) != str(version) and dice < champion_dice:
        decision = GateDecision(False, f"val_dice {dice:.4f} is below champion version {champion.version} ({champion_dice:.4f})")
    else:
        decision = GateDecision(
            True,
            f"val_dice {dice:.4f} >= threshold {threshold:.4f}"
            + (f" and >= champion version {champion.version} ({champion_dice:.4f})" if champion else ""),
        )
    client.set_model_version_tag(model_name, version, "quality_gate", "passed" if decision.promoted else "rejected")
    client.set_model_version_tag(model_name, version, "quality_gate_reason", decision.reason)
    if decision.promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    return decision
