"""Strict schema validation of rendered manifests with kubeconform, offline."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass

import yaml

from .schemas import DEFAULT_KUBE_VERSION, crd_schema_location, kubernetes_schema_location
from .tools import find_tool


@dataclass
class ValidationReport:
    valid: int
    invalid: int
    errors: int
    skipped: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        # A skipped object is an object nobody checked: it fails the run like an invalid one.
        return self.valid > 0 and not (self.invalid or self.errors or self.skipped)

    def summary(self) -> str:
        return f"{self.valid} valid, {self.invalid} invalid, {self.errors} errors, {self.skipped} skipped"


def kubeconform(objects: list[dict], kube_version: str = DEFAULT_KUBE_VERSION) -> ValidationReport:
    """Validate objects strictly: Kubernetes schemas for kube_version, CRD schemas, no missing schema tolerated."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as manifest:
        yaml.safe_dump_all(objects, manifest, sort_keys=False)
        manifest.flush()
        result = subprocess.run(
            [find_tool("kubeconform"), "-strict", "-summary", "-output", "json",
             "-kubernetes-version", kube_version,
             "-schema-location", kubernetes_schema_location(kube_version),
             "-schema-location", crd_schema_location(),
             manifest.name],
            capture_output=True, text=True, check=False,
        )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"kubeconform gave no JSON report: {result.stderr or result.stdout}") from exc
    counts = report["summary"]
    problems = [f"{r['kind']}/{r['name']}: {r['status']} {r.get('msg', '')}".strip() for r in report.get("resources", [])]
    return ValidationReport(counts["valid"], counts["invalid"], counts["errors"], counts["skipped"], problems)
