"""Serving benchmark: the same /predict endpoint and model over three backends, one run, one machine.

    uv run python bench/serving.py [--requests 48] [--size 256] [--encoder resnet34]

  (a) baseline: FastAPI running PyTorch eager per request (the seeds' approach);
  (b) onnxruntime: our in-process ONNX Runtime backend;
  (c) triton: our Triton backend to a real tritonserver with dynamic batching.

Each server runs in its own process on 127.0.0.1; a client uploads the same real Kvasir-SEG frame
at concurrency 1, 4 and 16. Pre/post-processing is identical (polyp_inference.client), so only
model execution differs. The floor is ONNX Runtime's bare session.run for one image.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import polyp_fixtures

MODEL = "polyp-segmenter"


class TorchEagerBackend:
    """The baseline: the PyTorch module itself, called once per request."""

    kind = "torch"

    def __init__(self, weights: Path, encoder: str, size: int):
        import torch

        from polyp_inference.backends import ModelInfo
        from polyp_train.model import ModelSpec, build_model

        torch.set_num_threads(os.cpu_count() or 1)
        self.model = build_model(ModelSpec("Unet", encoder, size)).eval()
        self.model.load_state_dict(torch.load(weights, weights_only=True))
        self.info = ModelInfo(MODEL, "1", "image", "logits", size)

    async def model_info(self, refresh=False):
        return self.info

    async def infer(self, batch, info):
        import torch

        def run():
            with torch.no_grad():
                return self.model(torch.from_numpy(batch)).numpy(), "1"

        return await asyncio.to_thread(run)

    async def ready(self):
        return True

    async def close(self):
        pass


def serve(kind: str, args) -> None:
    import uvicorn
    from fastapi import FastAPI

    from polyp_inference.backends import OnnxRuntimeBackend, TritonBackend
    from polyp_inference.client import InferenceClient
    from polyp_inference.http import predict_router

    backend = {"torch": lambda: TorchEagerBackend(Path(args.work) / "weights.pt", args.encoder, args.size),
               "onnxruntime": lambda: OnnxRuntimeBackend(Path(args.work) / "repo", MODEL),
               "triton": lambda: TritonBackend(args.triton_url, MODEL)}[kind]()
    app = FastAPI()
    app.include_router(predict_router(InferenceClient(backend)))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def prepare(work: Path, encoder: str, size: int) -> None:
    import torch

    from polyp_train.export import export_onnx, publish, triton_config
    from polyp_train.model import ModelSpec, build_model

    torch.manual_seed(0)
    spec = ModelSpec("Unet", encoder, size)
    model = build_model(spec).eval()
    torch.save(model.state_dict(), work / "weights.pt")
    publish(str(work / "repo"), MODEL, 1, export_onnx(model, spec), triton_config(MODEL, spec))


def floor_ms(work: Path, size: int, runs: int = 20) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(work / "repo" / MODEL / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
    session.run(None, {"image": x})
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, {"image": x})
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def load(url: str, image: bytes, concurrency: int, requests: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) for `requests` uploads, `concurrency` in flight."""
    import aiohttp

    latencies: list[float] = []
    queue = list(range(requests))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def worker():
            while queue:
                queue.pop()
                started = time.perf_counter()
                await post_frame(session, url, image)
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return requests / elapsed, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))


async def post_frame(session, url: str, image: bytes) -> None:
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("file", image, filename="frame.jpg", content_type="image/jpeg")
    async with session.post(f"{url}/predict", data=form) as response:
        response.raise_for_status()
        await response.read()


def wait_up(url: str, proc: subprocess.Popen, image: bytes, timeout_s: float = 120) -> None:
    """Until the server answers a prediction (which also warms it up)."""
    import aiohttp

    async def once():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            await post_frame(session, url, image)

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            return asyncio.run(once())
        except aiohttp.ClientError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {timeout_s} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--serve", choices=["torch", "onnxruntime", "triton"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--triton-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args)

    from polyp_dev.local_triton import TritonServer, mirror_repository
    from polyp_dev.net import free_port

    image = sorted((polyp_fixtures.path("samples/kvasir-seg") / "images").glob("*.jpg"))[0].read_bytes()
    levels = (1, 4, 16)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work, args.encoder, args.size)
        floor = floor_ms(work, args.size)
        print(f"machine: {os.cpu_count()} CPUs, no GPU; model Unet/{args.encoder} at {args.size}px; "
              f"{args.requests} requests per level; image {len(image)} bytes")
        print(f"floor: ONNX Runtime session.run, batch 1: {floor:.1f} ms (median of 20)")
        mirror_repository(work / "repo", work / "triton")
        results = {}
        with TritonServer(work / "triton") as triton:
            triton.wait_for_version(MODEL, 1)
            for kind in ("torch", "onnxruntime", "triton"):
                port = free_port()
                proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--work", str(work), "--port", str(port),
                                         "--encoder", args.encoder, "--size", str(args.size), "--triton-url", triton.url])
                url = f"http://127.0.0.1:{port}"
                try:
                    wait_up(url, proc, image)
                    for level in levels:
                        results[(kind, level)] = asyncio.run(load(url, image, level, args.requests))
                        rate, p50, p99 = results[(kind, level)]
                        print(f"{kind:12s} c={level:<3d} {rate:6.2f} req/s  p50 {p50:8.1f} ms  p99 {p99:8.1f} ms  "
                              f"overhead p50/floor {p50 / floor:5.1f}x", flush=True)
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
    print("\nthroughput ratios (same run):")
    for level in levels:
        base = results[("torch", level)][0]
        print(f"c={level:<3d} onnxruntime/baseline {results[('onnxruntime', level)][0] / base:4.2f}x   "
              f"triton/baseline {results[('triton', level)][0] / base:4.2f}x")


if __name__ == "__main__":
    main()
