"""Offline JSON schemas for kubeconform.

Core Kubernetes schemas come from the PyPI package kubernetes-validate (a dependency, pinned in the
lock). Its files point at a
shared ``_definitions.json`` through absolute ``$id``-relative refs that only its own resolver
understands, so each kind's schema is rewritten once into a standalone file (its reachable
definitions copied in) in the layout kubeconform reads. CRD schemas come from a directory laid
out as ``<group>/<kind>_<version>.json``, named by CRD_SCHEMA_LOCATION (``make validate`` points it at
the pinned fixtures: the public CRDs catalog at a pinned commit plus schemas converted from the charts' CRDs).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from .errors import SchemasUnavailable  # raised here, and importable from here
from .repo import INSTALL_ROOT

DEFAULT_KUBE_VERSION = "1.34.0"
REF_PREFIX = "/api/_definitions.json#/$defs/"  # in a kind's file
LOCAL_PREFIX = "#/$defs/"  # inside _definitions.json


def crd_schema_location() -> str:
    """kubeconform template for CRD schemas: CRD_SCHEMA_LOCATION, a path or URL template such as
    ``/schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json``."""
    configured = os.environ.get("CRD_SCHEMA_LOCATION")
    if not configured:
        raise SchemasUnavailable(
            "set CRD_SCHEMA_LOCATION to a kubeconform template of CRD schemas, e.g. "
            "DIR/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json (`make validate` does)"
        )
    return configured


def _source_dir(kube_version: str) -> Path:
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or spec.origin is None:
        raise SchemasUnavailable("the Python package kubernetes-validate is not installed (uv sync installs the lock's)")
    base = Path(spec.origin).parent / "kubernetes-json-schema"
    source = base / f"v{kube_version}-local-strict"
    if not source.is_dir():
        known = sorted(p.name for p in base.iterdir() if p.name.endswith("-local-strict"))
        raise SchemasUnavailable(f"kubernetes-validate has no schemas for Kubernetes {kube_version}; it has {known}")
    return source


def _refs(node: object, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            for prefix in (REF_PREFIX, LOCAL_PREFIX):
                if ref.startswith(prefix):
                    found.add(ref[len(prefix) :])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _standalone(schema: dict, definitions: dict) -> dict:
    needed: set[str] = set()
    _refs(schema, needed)
    pending = list(needed)
    while pending:
        inner: set[str] = set()
        _refs(definitions[pending.pop()], inner)
        pending.extend(inner - needed)
        needed |= inner
    schema = dict(schema)
    schema.pop("$id", None)
    schema["$defs"] = {name: definitions[name] for name in sorted(needed)}
    text = json.dumps(schema).replace(f'"{REF_PREFIX}', f'"{LOCAL_PREFIX}')
    return json.loads(text)


def kubernetes_schema_location(kube_version: str = DEFAULT_KUBE_VERSION, cache: Path | None = None) -> str:
    """Write standalone strict schemas for one Kubernetes version (once) and return kubeconform's template."""
    cache = cache or INSTALL_ROOT / "build" / "k8s-schemas"
    target = cache / f"v{kube_version}-standalone-strict"
    marker = target / ".complete"
    if not marker.exists():
        source = _source_dir(kube_version)
        definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
        target.mkdir(parents=True, exist_ok=True)
        for path in source.glob("*.json"):
            if path.name.startswith("_"):
                continue
            schema = _standalone(json.loads(path.read_text()), definitions)
            (target / path.name).write_text(json.dumps(schema))
        marker.touch()
    return str(cache) + "/{{.NormalizedKubernetesVersion}}-standalone{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json"
