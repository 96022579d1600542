"""Export an already registered model version (by number or alias) into a Triton repository."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from polyp_core.home import polyp_home
from polyp_core.preprocess import normalize

from . import data as datasets
from .errors import ExportError
from .export import check_parity, export_onnx, publish, record_published, triton_config
from .model import ModelSpec
from .tracking import connect


@dataclass
class ExportSummary:
    model_name: str
    version: str
    published: str
    parity_max_abs_diff: float

    def json(self) -> str:
        return json.dumps(asdict(self))


def export_registered(
    model_name: str, version: str | None, alias: str | None, repo: str, data: str | None = None, cache_dir: str | None = None
) -> ExportSummary:
    import mlflow
    from mlflow.exceptions import MlflowException

    which = version or alias
    if not which:
        raise ExportError(f"which version of {model_name}? give a version number or an alias")
    client, _ = connect("polyp-segmentation")
    try:
        found = client.get_model_version(model_name, version) if version else client.get_model_version_by_alias(model_name, which)
    except MlflowException as exc:
        raise ExportError(f"no model version {model_name} {version or '@' + which}: {exc.message}") from exc
    spec = ModelSpec(
        **json.loads(
            Path(mlflow.artifacts.download_artifacts(run_id=found.run_id, artifact_path="model_spec/model_spec.json")).read_text()
        )
    )
    model = mlflow.pytorch.load_model(f"models:/{model_name}/{found.version}", map_location="cpu")

    if data:
        samples = datasets.discover(datasets.materialize(data, Path(cache_dir) if cache_dir else polyp_home() / "cache"))
        inputs = np.stack([normalize(datasets.load_pair(s, spec.size)[0]) for s in samples[:8]])
    else:
        inputs = np.random.default_rng(0).normal(size=(4, 3, spec.size, spec.size)).astype(np.float32)
    onnx_bytes = export_onnx(model, spec)
    parity = check_parity(model, onnx_bytes, inputs)
    published = publish(repo, model_name, int(found.version), onnx_bytes, triton_config(model_name, spec))
    record_published(client, model_name, found.version, published, onnx_bytes, "fp32")
    return ExportSummary(model_name, str(found.version), published, parity.max_abs_diff)
