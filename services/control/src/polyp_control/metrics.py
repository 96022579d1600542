"""Prometheus metrics; the names are the contract with charts/control-service's PrometheusRule and dashboard."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from .registry import ModelVersionInfo


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # one per app: tests build many apps in one process
        r = self.registry
        self.runs = Counter("polyp_training_runs", "Finished training runs by final status", ["status"], registry=r)
        self.run_duration = Histogram(
            "polyp_training_run_duration_seconds",
            "Training run wall time",
            buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 43200),
            registry=r,
        )
        self.last_success = Gauge(
            "polyp_training_last_success_timestamp_seconds", "When the last training run succeeded", registry=r
        )
        self.model_dice = Gauge("polyp_model_dice", "Validation Dice of the newest registered model", registry=r)
        self.model_registered = Gauge(
            "polyp_model_last_registered_timestamp_seconds", "When the newest model version was registered", registry=r
        )
        self.model_age = Gauge("polyp_model_age_seconds", "Age of the newest registered model", registry=r)
        self.alerts = Counter("polyp_alerts", "Alerts raised by type", ["type"], registry=r)
        self.sse_clients = Gauge("polyp_sse_clients", "Connected SSE clients", registry=r)
        self.predict_latency = Histogram(
            "polyp_predict_latency_seconds", "POST /predict latency", buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10), registry=r
        )

    def export_served_model(self, served: ModelVersionInfo) -> None:
        """Gauges of the served model (the dashboards' view of what the default watches judge), refreshed
        whenever a watch of it is evaluated."""
        self.model_registered.set(served.trained_at.timestamp())
        self.model_age.set(time.time() - served.trained_at.timestamp())
        if served.dice is not None and not math.isnan(served.dice):
            self.model_dice.set(served.dice)
