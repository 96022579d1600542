"""Both backends against real servers: parity, newest-version switch, real frames, failures."""

from __future__ import annotations

import asyncio
import io
import json
import socket

import numpy as np
import pytest
from PIL import Image
from serving_helpers import MODEL, SIZE, export_version, raw_answers

from polyp_core.repository import pin_config_name
from polyp_dev.local_triton import TritonServer, mirror_repository
from polyp_inference.backends import OnnxRuntimeBackend, TritonBackend
from polyp_inference.client import InferenceClient
from polyp_inference.errors import ServingUnavailable
from polyp_inference.postprocess import DEFAULT_MIN_AREA


def run(coroutine):
    return asyncio.run(coroutine)


async def predict_all(backend, frames):
    client = InferenceClient(backend)
    try:
        return [await client.predict(data, "image/jpeg") for _, data, _ in frames]
    finally:
        await client.close()


@pytest.mark.triton
def test_triton_and_onnxruntime_agree_on_the_same_inputs(triton, exported):
    batch = np.random.default_rng(0).normal(size=(3, 3, SIZE, SIZE)).astype(np.float32)

    answers = raw_answers([TritonBackend(triton.url, MODEL), OnnxRuntimeBackend(exported, MODEL)], batch)
    (triton_logits, triton_version), (ort_logits, ort_version) = run(answers)
    assert triton_logits.shape == ort_logits.shape == (3, 1, SIZE, SIZE)
    assert np.abs(triton_logits - ort_logits).max() < 1e-4
    assert triton_version == ort_version == "1"


@pytest.mark.triton
@pytest.mark.parametrize("kind", ["triton", "onnxruntime"])
def test_real_frames_come_back_at_their_original_size(kind, triton, exported, real_frames):
    backend = TritonBackend(triton.url, MODEL) if kind == "triton" else OnnxRuntimeBackend(exported, MODEL)
    predictions = run(predict_all(backend, real_frames))
    for (stem, _, size), prediction in zip(real_frames, predictions, strict=True):
        mask = Image.open(io.BytesIO(prediction.mask_png))
        assert mask.size == size == (prediction.width, prediction.height), stem
        assert 0.0 <= prediction.area_fraction <= 1.0 and prediction.version == "1"
        assert sum(b.area_fraction for b in prediction.boxes) <= prediction.area_fraction + 1e-9
        assert all(b.area_fraction >= DEFAULT_MIN_AREA for b in prediction.boxes), "speckle gets no box"


@pytest.mark.triton
def test_triton_and_onnxruntime_masks_match_on_real_frames(triton, exported, real_frames):
    by_triton = run(predict_all(TritonBackend(triton.url, MODEL), real_frames))
    by_ort = run(predict_all(OnnxRuntimeBackend(exported, MODEL), real_frames))
    for a, b in zip(by_triton, by_ort, strict=True):
        mask_a, mask_b = (np.asarray(Image.open(io.BytesIO(p.mask_png))) for p in (a, b))
        assert (mask_a != mask_b).mean() < 1e-3  # identical up to pixels sitting exactly on the threshold


def test_onnxruntime_serves_a_newer_version_without_restart(model_repo, real_frames):
    backend = OnnxRuntimeBackend(model_repo, MODEL)
    client = InferenceClient(backend)
    first = run(client.predict(real_frames[0][1], "image/jpeg"))
    export_version(model_repo, 2, seed=2, size=64)  # a new version may even change the input size
    second = run(client.predict(real_frames[0][1], "image/jpeg"))
    assert (first.version, second.version) == ("1", "2")
    assert second.mask_png != first.mask_png and (second.width, second.height) == real_frames[0][2]


@pytest.mark.triton
def test_triton_serves_a_newer_version_after_its_repository_poll(model_repo, tmp_path, real_frames):
    mirror = tmp_path / "mirror"
    mirror_repository(model_repo, mirror)
    with TritonServer(mirror) as server:
        server.wait_for_version(MODEL, 1)
        client = InferenceClient(TritonBackend(server.url, MODEL))
        first = run(client.predict(real_frames[0][1], "image/jpeg"))
        export_version(model_repo, 2, seed=2)
        assert mirror_repository(model_repo, mirror) == [(MODEL, 2)]
        server.wait_for_version(MODEL, 2)

        async def until_version_2():
            for _ in range(50):
                prediction = await client.predict(real_frames[0][1], "image/jpeg")
                if prediction.version == "2":
                    return prediction
                await asyncio.sleep(0.2)
            raise AssertionError("Triton kept answering with version 1")

        second = run(until_version_2())
        run(client.close())
    assert first.version == "1" and second.mask_png != first.mask_png


@pytest.mark.triton
def test_a_pinned_triton_serves_exactly_its_version_after_a_newer_one_is_published(model_repo, real_frames, tmp_path):
    """The environment's pin (charts/inference: --model-config-name=pin-N): a newer version never answers."""
    mirror = tmp_path / "mirror"
    mirror_repository(model_repo, mirror)
    with TritonServer(mirror, config_name=pin_config_name(1)) as server:
        server.wait_for_version(MODEL, 1)
        export_version(model_repo, 2, seed=2)
        assert mirror_repository(model_repo, mirror) == [(MODEL, 2)]
        unpinned_client = InferenceClient(TritonBackend(server.url, MODEL))  # names no version: the policy decides

        async def answers_for(seconds: float) -> set[str]:
            versions = set()
            for _ in range(int(seconds / 0.25)):  # Triton polls the repository every second
                versions.add((await unpinned_client.predict(real_frames[0][1], "image/jpeg")).version)
                await asyncio.sleep(0.25)
            return versions

        assert run(answers_for(4)) == {"1"}
        with pytest.raises(ServingUnavailable, match=r"version 2|unavailable|not found"):
            run(InferenceClient(TritonBackend(server.url, MODEL, version=2)).predict(real_frames[0][1], "image/jpeg"))
        run(unpinned_client.close())


def test_a_pinned_onnxruntime_backend_keeps_its_version_and_waits_for_an_unpublished_one(model_repo, real_frames):
    pinned = InferenceClient(OnnxRuntimeBackend(model_repo, MODEL, version=1))
    export_version(model_repo, 2, seed=2)
    assert run(pinned.predict(real_frames[0][1], "image/jpeg")).version == "1"
    assert run(InferenceClient(OnnxRuntimeBackend(model_repo, MODEL)).predict(real_frames[0][1], "image/jpeg")).version == "2"
    ahead = OnnxRuntimeBackend(model_repo, MODEL, version=3)
    assert run(ahead.ready()) is False
    with pytest.raises(ServingUnavailable, match=r"pinned version 3 .* is not published"):
        run(ahead.model_info())


def test_the_backend_setting_picks_the_backend_and_names_what_is_missing(tmp_path):
    from polyp_inference.client import make_backend
    from polyp_inference.rayserve import RayServeBackend

    assert isinstance(make_backend(MODEL, None, tmp_path), OnnxRuntimeBackend)
    assert isinstance(make_backend(MODEL, "http://triton:8080", tmp_path), TritonBackend)
    pinned = make_backend(MODEL, "http://serve:8000/polyp-segmenter", tmp_path, kind="rayserve", version=3)
    assert isinstance(pinned, RayServeBackend) and pinned.version == 3
    with pytest.raises(ValueError, match="the rayserve backend needs its URL"):
        make_backend(MODEL, None, tmp_path, kind="rayserve")
    with pytest.raises(ValueError, match="unknown inference backend 'torchserve'"):
        make_backend(MODEL, None, tmp_path, kind="torchserve")


def test_a_pinned_version_is_copied_from_s3_and_checked_against_its_digest(s3_server, exported):
    """What a Ray Serve replica does in the cluster (charts/inference backend: rayserve), on a real S3 server."""
    import hashlib

    import boto3

    from polyp_core.repository import model_file
    from polyp_rayserve import local_repository

    data = model_file(exported, MODEL, 1).read_bytes()
    s3 = boto3.client("s3")
    # A bucket of its own: the S3 server is shared by the session, and training's tests publish to s3://models.
    s3.create_bucket(Bucket="serving-models")
    s3.put_object(Bucket="serving-models", Key=f"triton/{MODEL}/1/model.onnx", Body=data)
    digest = hashlib.sha256(data).hexdigest()

    local = local_repository("s3://serving-models/triton", MODEL, 1, sha256=digest)
    assert model_file(local, MODEL, 1).read_bytes() == data
    assert run(OnnxRuntimeBackend(local, MODEL, version=1).model_info()).version == "1"
    with pytest.raises(ValueError, match="is not the pinned artifact"):
        local_repository("s3://serving-models/triton", MODEL, 1, sha256="0" * 64)
    with pytest.raises(ValueError, match="served pinned"):
        local_repository("s3://serving-models/triton", MODEL, None)


def test_a_replica_pinned_before_its_version_is_published_answers_503_then_serves_it(s3_server, exported):
    """dev syncs its pin (version 1) before the first training run publishes it: the Ray Serve replica starts anyway,
    says 503 with Retry-After until the version is in S3, then serves it without a restart. (The replica class, called
    directly as Serve would call it; the Serve route itself is test_serving_rayserve's.)"""
    import boto3
    from starlette.requests import Request

    from polyp_core.repository import model_file
    from polyp_rayserve.app import _deployment

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="pinned-early")
    replica = _deployment().func_or_class(repo="s3://pinned-early/triton", model=MODEL, version=1)

    def ask(action: str):
        scope = {"type": "http", "method": "GET", "scheme": "http", "server": ("127.0.0.1", 8000), "path": f"/{MODEL}/{action}"}
        return run(replica(Request({**scope, "headers": [], "query_string": b""})))

    waiting = ask("ready")
    assert waiting.status_code == 503 and int(waiting.headers["Retry-After"]) > 0
    assert b"version 1 is not published yet" in waiting.body
    data = model_file(exported, MODEL, 1).read_bytes()
    s3.put_object(Bucket="pinned-early", Key=f"triton/{MODEL}/1/model.onnx", Body=data)
    assert ask("ready").status_code == 200
    assert json.loads(ask("metadata").body)["version"] == "1"


def test_onnxruntime_without_any_published_version_is_unavailable(tmp_path):
    with pytest.raises(ServingUnavailable, match="has no published version") as caught:
        run(OnnxRuntimeBackend(tmp_path / "empty", MODEL).model_info())
    assert caught.value.status == 503 and caught.value.retry_after > 0


def test_triton_down_is_unavailable_after_bounded_retries():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = TritonBackend(f"http://127.0.0.1:{port}", MODEL, timeout_s=2, retries=2, backoff_s=0.01)
    with pytest.raises(ServingUnavailable, match=r"unreachable .* after 3 attempts"):
        run(InferenceClient(backend).predict(real_png(), "image/png"))
    run(backend.close())


@pytest.mark.triton
def test_unknown_model_on_triton_is_unavailable_not_a_crash(triton):
    backend = TritonBackend(triton.url, "no-such-model")
    with pytest.raises(ServingUnavailable, match="no-such-model"):
        run(InferenceClient(backend).predict(real_png(), "image/png"))
    assert run(backend.ready()) is False
    run(backend.close())


def real_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (30, 20), (200, 90, 80)).save(out, format="PNG")
    return out.getvalue()
