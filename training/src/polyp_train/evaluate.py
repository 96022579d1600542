"""polyp-train evaluate: mean Dice and IoU per dataset, the way the literature reports them (the mean
over images of each image's score), at each frame's original resolution and through exactly what
serving does (letterbox, ONNX Runtime, sigmoid, restore to the original size, threshold 0.5);
then a model card.

The model is a Triton repository (its newest version, or ``--version``), a version folder or
``model.onnx``, or an MLflow registry version (``models:/NAME/VERSION``, ``models:/NAME@ALIAS``):
its published ONNX file when reachable, else its PyTorch model exported on the fly.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from polyp_core.preprocess import binary_mask, preprocess, reduce_on_decode, restore_mask
from polyp_core.repository import INPUT_NAME, MODEL_FILE, newest_version

from .data import Sample
from .errors import DatasetError, ExportError
from .hardware import describe as hardware
from .prepare import DEFAULT_VAL_FRACTION, PreparedData

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

CITATIONS = {  # by a word in the dataset's source (its name or path)
    ("kvasir",): 'Jha D. et al. "Kvasir-SEG: A Segmented Polyp Dataset." MMM 2020, LNCS 11962, pp. 451-462. '
    "doi:10.1007/978-3-030-37734-2_37 (research and educational use only)",
    ("cvc", "clinicdb"): 'Bernal J. et al. "WM-DOVA maps for accurate polyp highlighting in colonoscopy: Validation vs. saliency '
    'maps from physicians." Computerized Medical Imaging and Graphics 43:99-111, 2015 (research and educational use only)',
}


@dataclass
class ImageScore:
    dataset: str
    stem: str
    width: int
    height: int
    dice: float
    iou: float


@dataclass
class ModelUnderTest:
    onnx: Path
    name: str
    version: str | None = None
    run_id: str | None = None
    details: dict = field(default_factory=dict)


def dice_iou(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Per-image scores of two boolean masks; an empty prediction of an empty truth scores 1."""
    intersection = float(np.logical_and(predicted, truth).sum())
    total = float(predicted.sum() + truth.sum())
    union = total - intersection
    if total == 0:
        return 1.0, 1.0
    return 2 * intersection / total, intersection / union


def score(session: InferenceSession, size: int, sample: Sample) -> ImageScore:
    with Image.open(sample.image) as image, Image.open(sample.mask) as mask:
        original = image.size
        reduce_on_decode(image, size)  # as serving decodes an upload
        pixels, box = preprocess(image, size, original)
        truth = np.asarray(binary_mask(mask)) > 0
    logits = session.run(None, {INPUT_NAME: pixels[None]})[0][0, 0].astype(np.float32)
    predicted = restore_mask(1 / (1 + np.exp(-logits)), box) > 0
    return ImageScore(sample.dataset, sample.stem, box.original_width, box.original_height, *dice_iou(predicted, truth))


def per_dataset(scores: list[ImageScore]) -> dict[str, dict]:
    found: dict[str, list[ImageScore]] = {}
    for item in scores:
        found.setdefault(item.dataset, []).append(item)
    return {
        name: {
            "images": len(items),
            "mean_dice": round(float(np.mean([s.dice for s in items])), 4),
            "mean_iou": round(float(np.mean([s.iou for s in items])), 4),
        }
        for name, items in found.items()
    }


def evaluate(model: ModelUnderTest, samples: list[Sample]) -> tuple[dict[str, dict], list[ImageScore], float]:
    import onnxruntime as ort

    if not samples:
        raise DatasetError("nothing to evaluate: the split is empty")
    session = ort.InferenceSession(str(model.onnx), providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[-1]
    started = time.perf_counter()
    scores = [score(session, size, sample) for sample in samples]
    return per_dataset(scores), scores, time.perf_counter() - started


def resolve_model(model: str, model_name: str, version: str | None, workdir: Path) -> ModelUnderTest:
    if model.startswith("models:/"):
        return _from_registry(model.removeprefix("models:/"), workdir)
    path = Path(model)
    if path.is_file():
        return ModelUnderTest(path, path.parent.parent.name, path.parent.name if path.parent.name.isdigit() else None)
    if (path / MODEL_FILE).is_file():
        return ModelUnderTest(path / MODEL_FILE, path.parent.name, path.name)
    chosen = version or newest_version(path, model_name)
    if chosen is None or not (path / model_name / str(chosen) / MODEL_FILE).is_file():
        raise ExportError(
            f"{model}: no published {model_name} version {version or ''} there (give a model "
            "repository, a version folder, a model.onnx or models:/NAME/VERSION)"
        )
    return ModelUnderTest(path / model_name / str(chosen) / MODEL_FILE, model_name, str(chosen))


def _from_registry(reference: str, workdir: Path) -> ModelUnderTest:
    import mlflow
    from mlflow.exceptions import MlflowException

    from .export import export_onnx
    from .model import ModelSpec
    from .tracking import connect

    client, _ = connect("polyp-segmentation")
    name, _, which = reference.partition("@") if "@" in reference else reference.partition("/")
    try:
        found = client.get_model_version_by_alias(name, which) if "@" in reference else client.get_model_version(name, which)
    except MlflowException as exc:
        raise ExportError(f"no model version models:/{reference}: {exc.message}") from exc
    if not found.run_id:
        raise ExportError(f"model version models:/{reference} has no MLflow run to take its spec and card from")
    published = Path(found.tags.get("triton_repository", "")) / MODEL_FILE
    run = client.get_run(found.run_id)
    details = {
        "training_seconds": round((run.info.end_time - run.info.start_time) / 1000) if run.info.end_time else None,
        **{
            key: run.data.params.get(key)
            for key in (
                "arch",
                "encoder",
                "input_size",
                "epochs",
                "workers",
                "dataset",
                "dataset_fingerprint",
                "val_fraction",
                "hardware",
            )
        },
        "best_val_dice": run.data.metrics.get("best_val_dice"),
    }
    if not published.is_file():
        spec = ModelSpec(
            **json.loads(
                Path(
                    mlflow.artifacts.download_artifacts(run_id=found.run_id, artifact_path="model_spec/model_spec.json")
                ).read_text()
            )
        )
        network = mlflow.pytorch.load_model(f"models:/{name}/{found.version}", map_location="cpu")
        published = workdir / MODEL_FILE
        published.write_bytes(export_onnx(network, spec))
    return ModelUnderTest(published, name, str(found.version), found.run_id, details)


def model_card(
    model: ModelUnderTest, prepared: PreparedData, split: str, metrics: dict[str, dict], seconds: float, sources: list[str]
) -> dict:
    citations = sorted(
        {text for words, text in CITATIONS.items() for source in sources if any(word in source.lower() for word in words)}
    )
    return {
        "model": {"name": model.name, "version": model.version, "file": str(model.onnx), "mlflow_run": model.run_id},
        "training": model.details,
        "data": {
            "sources": sources,
            "fingerprint": prepared.fingerprint,
            "splits": prepared.summary(),
            "left_out": prepared.problems,
        },
        "evaluation": {
            "split": split,
            "metrics": metrics,
            "resolution": "original",
            "threshold": 0.5,
            "score": "mean over images of per-image Dice and IoU",
            "seconds": round(seconds, 1),
            "hardware": hardware(),
            "python": platform.python_version(),
        },
        "citations": citations,
    }


def card_markdown(card: dict) -> str:
    model, evaluation = card["model"], card["evaluation"]
    lines = [
        f"# Model card: {model['name']} version {model['version'] or '(unversioned)'}",
        "",
        f"Evaluated on the **{evaluation['split']}** split at original resolution through the serving "
        f"preprocessing ({evaluation['score']}; threshold {evaluation['threshold']}), "
        f"in {evaluation['seconds']} s on {evaluation['hardware']}.",
        "",
        "| dataset | images | mean Dice | mean IoU | split |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, metrics in evaluation["metrics"].items():
        split = card["data"]["splits"].get(name, {})
        lines.append(
            f"| {name} | {metrics['images']} | {metrics['mean_dice']:.4f} | {metrics['mean_iou']:.4f} | "
            f"{split.get('split', '')} |"
        )
    lines += ["", f"Data fingerprint `{card['data']['fingerprint']}`; sources: {', '.join(card['data']['sources'])}."]
    if card["training"]:
        lines += ["", "Training: " + ", ".join(f"{k} {v}" for k, v in card["training"].items() if v is not None) + "."]
    if card["data"]["left_out"]:
        lines += ["", f"Left out as bad pairs: {len(card['data']['left_out'])} (see model_card.json)."]
    if card["citations"]:
        lines += ["", "Datasets (cite them with any result reported on them):"] + [f"- {c}" for c in card["citations"]]
    return "\n".join(lines) + "\n"


def write_card(card: dict, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_card.json").write_text(json.dumps(card, indent=1))
    (folder / "model_card.md").write_text(card_markdown(card))
    return folder / "model_card.json", folder / "model_card.md"


def run_evaluation(
    model: str,
    sources: list[str],
    model_name: str,
    version: str | None,
    split: str,
    val_fraction: float | None,
    cache_dir: Path,
    out: Path | None,
    skip_bad: bool = False,
) -> dict:
    """The whole command: resolve, split like training did, score, write (and log) the card."""
    from .prepare import prepare

    with tempfile.TemporaryDirectory() as tmp:
        under_test = resolve_model(model, model_name, version, Path(tmp))
        fraction = val_fraction or float(under_test.details.get("val_fraction") or DEFAULT_VAL_FRACTION)
        prepared = prepare(sources, cache_dir, fraction, skip_bad)
        samples = prepared.val if split == "val" else prepared.train + prepared.val
        metrics, scores, seconds = evaluate(under_test, samples)
        card = model_card(under_test, prepared, split, metrics, seconds, sources)
        card["images"] = [asdict(s) for s in scores]
        folder = out or Path(tmp) / "card"
        write_card(card, folder)
        if under_test.run_id:
            _log_card(under_test, folder, metrics)
    return card


def _log_card(model: ModelUnderTest, folder: Path, metrics: dict[str, dict]) -> None:
    from .tracking import connect

    client, _ = connect("polyp-segmentation")
    for name in ("model_card.json", "model_card.md"):
        client.log_artifact(model.run_id, str(folder / name), "model_card")
    for dataset, values in metrics.items():
        client.set_model_version_tag(model.name, model.version, f"eval.{dataset}.mean_dice", f"{values['mean_dice']:.4f}")
