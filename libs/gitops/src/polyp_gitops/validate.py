"""Strict schema validation of rendered manifests with kubeconform, offline."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

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
    statuses: list[str] = field(default_factory=list)  # one per object, in the order given
    details: list[str] = field(default_factory=list)  # one per object: "" when valid, else what is wrong

    @property
    def ok(self) -> bool:
        # A skipped object is an object nobody checked: it fails the run like an invalid one.
        return self.valid > 0 and not (self.invalid or self.errors or self.skipped)

    def summary(self) -> str:
        return f"{self.valid} valid, {self.invalid} invalid, {self.errors} errors, {self.skipped} skipped"

    @classmethod
    def of(cls, statuses: list[str], details: list[str]) -> ValidationReport:
        counts = Counter(statuses)
        return cls(
            counts["valid"], counts["invalid"], counts["error"], counts["skipped"], [d for d in details if d], statuses, details
        )


def kubeconform(objects: list[dict], kube_version: str = DEFAULT_KUBE_VERSION) -> ValidationReport:
    """Validate objects strictly: Kubernetes schemas for kube_version, CRD schemas, no missing schema tolerated.

    Each object goes into a file of its own, so every verdict maps back to its object.
    """
    with tempfile.TemporaryDirectory() as folder:
        for i, obj in enumerate(objects):
            (Path(folder) / f"{i:06d}.yaml").write_text(yaml.safe_dump(obj, sort_keys=False))
        result = subprocess.run(
            [
                find_tool("kubeconform"),
                "-strict",
                "-summary",
                "-verbose",
                "-output",
                "json",
                "-kubernetes-version",
                kube_version,
                "-schema-location",
                kubernetes_schema_location(kube_version),
                "-schema-location",
                crd_schema_location(),
                folder,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"kubeconform gave no JSON report: {result.stderr or result.stdout}") from exc
    statuses, details = ["error"] * len(objects), ["no verdict from kubeconform"] * len(objects)
    for resource in report.get("resources", []):
        index = int(Path(resource["filename"]).stem)
        statuses[index] = resource["status"].removeprefix("status").lower()
        details[index] = (
            ""
            if statuses[index] == "valid"
            else f"{resource['kind']}/{resource['name']}: {statuses[index]} {resource.get('msg', '')}".strip()
        )
    return ValidationReport.of(statuses, details)


def validate_groups(groups: dict[str, list[dict]]) -> dict[str, ValidationReport]:
    """One report per named group of objects; an object that several groups share is validated once."""
    unique: dict[str, dict] = {}
    keys = {name: [json.dumps(o, sort_keys=True) for o in objects] for name, objects in groups.items()}
    for name, objects in groups.items():
        unique.update(zip(keys[name], objects, strict=True))
    verdict = kubeconform(list(unique.values())) if unique else ValidationReport.of([], [])
    index = {key: i for i, key in enumerate(unique)}
    return {
        name: ValidationReport.of(
            [verdict.statuses[index[k]] for k in keys[name]], [verdict.details[index[k]] for k in keys[name]]
        )
        for name in groups
    }
