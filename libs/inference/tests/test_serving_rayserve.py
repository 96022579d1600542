"""Ray Serve as a backend, against a real local Ray Serve: the same answers as ONNX Runtime and Triton,
batching across concurrent requests, the newest version without a restart, a pin, and its failures."""

from __future__ import annotations

import asyncio
import io
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from serving_helpers import MODEL, SIZE, export_version, raw_answers

from polyp_dev.local_rayserve import LocalRayServe
from polyp_inference.backends import ModelInfo, OnnxRuntimeBackend
from polyp_inference.client import InferenceClient
from polyp_inference.errors import ModelChanged, ServingUnavailable
from polyp_inference.postprocess import DEFAULT_MIN_AREA
from polyp_inference.rayserve import RayServeBackend
from polyp_rayserve import build

pytestmark = pytest.mark.ray


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def served(exported, tmp_path_factory):
    """Ray Serve (its own local Ray) over a copy of the exported repository, which tests may publish into."""
    repo = shutil.copytree(exported, tmp_path_factory.mktemp("rayserve") / "repo")
    with LocalRayServe(repo, MODEL, log=tmp_path_factory.mktemp("rayserve-log") / "serve.log") as server:
        server.repo_path = repo
        yield server


def test_ray_serve_and_onnxruntime_give_the_same_logits(served, exported):
    batch = np.random.default_rng(0).normal(size=(3, 3, SIZE, SIZE)).astype(np.float32)

    answers = raw_answers([RayServeBackend(served.url, MODEL), OnnxRuntimeBackend(exported, MODEL)], batch)
    (ray_logits, ray_version), (ort_logits, ort_version) = run(answers)
    assert ray_logits.shape == ort_logits.shape == (3, 1, SIZE, SIZE)
    assert np.abs(ray_logits - ort_logits).max() < 1e-4
    assert ray_version == ort_version == "1"


def test_real_frames_match_onnxruntime_at_their_original_size(served, exported, real_frames):
    async def predict_all(backend):
        client = InferenceClient(backend)
        try:  # concurrently, so the application batches them
            return await asyncio.gather(*(client.predict(data, "image/jpeg") for _, data, _ in real_frames))
        finally:
            await client.close()

    by_ray = run(predict_all(RayServeBackend(served.url, MODEL)))
    by_ort = run(predict_all(OnnxRuntimeBackend(exported, MODEL)))
    for (stem, _, size), a, b in zip(real_frames, by_ray, by_ort, strict=True):
        mask_a, mask_b = (np.asarray(Image.open(io.BytesIO(p.mask_png))) for p in (a, b))
        assert mask_a.shape[::-1] == size == (a.width, a.height), stem
        assert (mask_a != mask_b).mean() < 1e-3 and a.version == "1"
        assert all(box.area_fraction >= DEFAULT_MIN_AREA for box in a.boxes)


def test_concurrent_requests_are_answered_in_batches(served):
    """@serve.batch: 16 requests at once share model calls, and each caller still gets its own frame's answer."""
    frames = np.random.default_rng(1).normal(size=(16, 1, 3, SIZE, SIZE)).astype(np.float32)

    async def concurrently():
        backend = RayServeBackend(served.url, MODEL)
        info = await backend.model_info()
        answers = await asyncio.gather(*(backend.infer(frame, info) for frame in frames))
        await backend.close()
        return answers, backend.server_timings

    answers, timings = run(concurrently())
    batch_sizes = [int(re.match(r"batch;desc=(\d+), model;dur=[\d.]+$", timing).group(1)) for timing in timings]
    assert len(batch_sizes) == 16 and max(batch_sizes) > 1, timings
    reference = OnnxRuntimeBackend(served.repo_path, MODEL)
    expected, _ = run(reference.infer(frames[:, 0], run(reference.model_info())))
    for (logits, _), want in zip(answers, expected, strict=True):  # each caller gets its own frame's answer
        assert np.abs(logits[0] - want).max() < 1e-4


def test_a_newer_version_with_another_input_size_is_served_without_restart(served, real_frames):
    """Publishes version 2 into the module's repository: the tests after this one see it."""
    client = InferenceClient(RayServeBackend(served.url, MODEL))
    first = run(client.predict(real_frames[0][1], "image/jpeg"))
    export_version(served.repo_path, 2, seed=2, size=64)
    stale = RayServeBackend(served.url, MODEL)
    with pytest.raises(ModelChanged):  # a request prepared for the old size is refused (409), not misread
        run(stale.infer(np.zeros((1, 3, SIZE, SIZE), np.float32), ModelInfo(MODEL, "1", "image", "logits", SIZE)))
    run(stale.close())
    second = run(client.predict(real_frames[0][1], "image/jpeg"))
    assert (first.version, second.version) == ("1", "2") and second.mask_png != first.mask_png
    run(client.close())


def test_a_pinned_application_serves_exactly_its_version_after_a_newer_one_is_published(model_repo, tmp_path, real_frames):
    with LocalRayServe(model_repo, MODEL, version=1, log=tmp_path / "serve.log") as server:
        export_version(model_repo, 2, seed=2)
        client = InferenceClient(RayServeBackend(server.url, MODEL))
        versions = {run(client.predict(real_frames[0][1], "image/jpeg")).version for _ in range(3)}
        run(client.close())
        expecting_2 = InferenceClient(RayServeBackend(server.url, MODEL, version=2))  # the control service's MODEL_VERSION
        with pytest.raises(ServingUnavailable, match=r"serves version 1 .* not the pinned 2"):
            run(expecting_2.predict(real_frames[0][1], "image/jpeg"))
        run(expecting_2.close())
    assert versions == {"1"}


def test_unreachable_or_unknown_is_unavailable_not_a_crash(served):
    from polyp_dev.net import free_port

    for backend, message in (
        (RayServeBackend(f"http://127.0.0.1:{free_port()}/polyp-segmenter", MODEL), "unreachable"),
        (RayServeBackend(served.url, "another-model"), "serves model 'polyp-segmenter'"),
        (RayServeBackend(served.url.replace("polyp-segmenter", "nothing-here"), MODEL), "HTTP 404"),
    ):
        with pytest.raises(ServingUnavailable, match=message):
            run(InferenceClient(backend).predict(real_frames_png(), "image/png"))
        assert run(backend.ready()) is False
        run(backend.close())


def test_the_application_builder_checks_its_arguments():
    with pytest.raises(ValueError, match="repo and model required"):
        build({"model": MODEL})
    with pytest.raises(ValueError, match="got \\['colour', 'model', 'repo'\\]"):
        build({"repo": "/models", "model": MODEL, "colour": "blue"})


def real_frames_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (30, 20), (200, 90, 80)).save(out, format="PNG")
    return out.getvalue()
