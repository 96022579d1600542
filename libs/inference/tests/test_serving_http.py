"""POST /predict over HTTP: the status codes and messages a user sees, and polyp-smoke."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from serving_helpers import MODEL

from polyp_inference import smoke
from polyp_inference.backends import OnnxRuntimeBackend, TritonBackend
from polyp_inference.client import InferenceClient
from polyp_inference.http import add_exception_handlers, predict_router


def app_for(backend, max_bytes=1_000_000) -> TestClient:
    app = FastAPI()
    app.include_router(predict_router(InferenceClient(backend, max_bytes=max_bytes)))
    add_exception_handlers(app)
    return TestClient(app)


def jpeg(size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (180, 80, 70)).save(out, format="JPEG")
    return out.getvalue()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_predict_returns_mask_area_boxes_and_version(exported):
    response = app_for(OnnxRuntimeBackend(exported, MODEL)).post("/predict", files={"file": ("frame.jpg", jpeg(), "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == "1" and (body["width"], body["height"]) == (64, 48)
    import base64

    assert Image.open(io.BytesIO(base64.b64decode(body["mask_png_base64"]))).size == (64, 48)


def test_the_image_work_of_a_prediction_runs_off_the_event_loop(exported, monkeypatch):
    """Decoding, resizing, labelling and PNG encoding are CPU work: on the event loop, one large upload stalled every
    other request of the replica (alert streams included). Each stage records the thread it ran in."""
    import polyp_inference.client as client_module

    threads: dict[str, int] = {}

    def recorded(name, stage):
        def run(*args, **kwargs):
            threads[name] = threading.get_ident()
            return stage(*args, **kwargs)

        return run

    for name in ("open_upload", "load", "preprocess", "segment"):
        monkeypatch.setattr(client_module, name, recorded(name, getattr(client_module, name)))

    async def predict() -> int:
        await InferenceClient(OnnxRuntimeBackend(exported, MODEL)).predict(jpeg(), "image/jpeg")
        return threading.get_ident()

    loop_thread = asyncio.run(predict())
    assert set(threads) == {"open_upload", "load", "preprocess", "segment"}
    assert loop_thread not in threads.values(), threads


def test_a_client_gets_only_the_outputs_it_asks_for(exported):
    client = app_for(OnnxRuntimeBackend(exported, MODEL))
    upload = {"file": ("frame.jpg", jpeg(), "image/jpeg")}
    boxes_only = client.post("/predict", params={"outputs": "boxes"}, files=upload).json()
    assert boxes_only["mask_png_base64"] is None and isinstance(boxes_only["boxes"], list)
    mask_only = client.post("/predict", params={"outputs": "mask"}, files=upload).json()
    assert mask_only["boxes"] is None and mask_only["mask_png_base64"]
    both = client.post("/predict", params=[("outputs", "mask"), ("outputs", "boxes")], files=upload).json()
    assert both["mask_png_base64"] == mask_only["mask_png_base64"] and both["area_fraction"] == mask_only["area_fraction"]


@pytest.mark.parametrize(
    "params, field", [({"outputs": "heatmap"}, "outputs"), ({"min_area": 2}, "min_area"), ({"min_area": -0.1}, "min_area")]
)
def test_bad_output_options_are_422_naming_the_parameter(exported, params, field):
    response = app_for(OnnxRuntimeBackend(exported, MODEL)).post(
        "/predict", params=params, files={"file": ("frame.jpg", jpeg(), "image/jpeg")}
    )
    assert response.status_code == 422 and field in response.text


@pytest.mark.parametrize(
    "upload, status, message",
    [
        (("a.gif", b"GIF89a....", "image/gif"), 415, "unsupported media type 'image/gif'"),
        (("a.jpg", b"\xff\xd8garbage", "image/jpeg"), 422, "cannot decode the upload as image/jpeg"),
        (("a.jpg", jpeg((1200, 1200)) + b"\0" * 2_000_000, "image/jpeg"), 413, "larger than the limit of 1000000 bytes"),
    ],
)
def test_bad_uploads_get_a_clear_4xx(exported, upload, status, message):
    response = app_for(OnnxRuntimeBackend(exported, MODEL)).post("/predict", files={"file": upload})
    assert response.status_code == status and message in response.json()["detail"]


def test_missing_file_is_422(exported):
    response = app_for(OnnxRuntimeBackend(exported, MODEL)).post("/predict")
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "file"]


def test_inference_server_down_is_503_with_retry_after():
    client = app_for(TritonBackend(closed_port_url(), MODEL, timeout_s=1, retries=1, backoff_s=0.01))
    response = client.post("/predict", files={"file": ("frame.jpg", jpeg(), "image/jpeg")})
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert "unreachable" in response.json()["detail"]


def test_no_model_yet_is_503(tmp_path):
    response = app_for(OnnxRuntimeBackend(tmp_path, MODEL)).post("/predict", files={"file": ("frame.jpg", jpeg(), "image/jpeg")})
    assert response.status_code == 503 and "train one first" in response.json()["detail"]


@pytest.mark.triton
def test_smoke_passes_against_a_serving_triton(triton, capsys):
    assert smoke.main(["--url", triton.url]) == 0
    out = capsys.readouterr().out
    assert "ok  model polyp-segmenter ready" in out and "version 1" in out and "polyp-smoke: passed" in out


@pytest.mark.triton
@pytest.mark.parametrize(
    "args, reason",
    [
        (["--model", "absent-model"], "absent-model"),
        (["--timeout", "1"], None),
    ],
)
def test_smoke_fails_with_the_reason(triton, capsys, args, reason):
    url = triton.url if reason else closed_port_url()
    assert smoke.main(["--url", url, *args]) == 1
    err = capsys.readouterr().err
    assert "polyp-smoke: FAILED" in err and (reason or "unreachable") in err


class HeldBackend(OnnxRuntimeBackend):
    """The real ONNX Runtime backend, held before inference until the test lets it go (to fill the limit)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.entered, self.release = threading.Event(), threading.Event()

    async def infer(self, batch, info):
        self.entered.set()
        await asyncio.to_thread(self.release.wait, 30)
        return await super().infer(batch, info)


def test_predictions_beyond_the_per_replica_limit_get_429_not_a_queue(exported):
    backend = HeldBackend(exported, MODEL)
    app = FastAPI()
    app.include_router(predict_router(InferenceClient(backend), max_concurrent=1))
    add_exception_handlers(app)
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:

        def upload():
            return client.post("/predict", files={"file": ("frame.jpg", jpeg(), "image/jpeg")})

        first = pool.submit(upload)
        assert backend.entered.wait(30)
        second = upload()
        backend.release.set()
        first = first.result(timeout=60)
        third = upload()  # the slot is free again once the first is done
    assert second.status_code == 429 and second.headers["Retry-After"] == "1"
    assert "limit 1" in second.json()["detail"]
    assert first.status_code == 200 and third.status_code == 200
