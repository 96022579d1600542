"""Serving benchmark: one model, every backend and precision behind the same /predict, one run, one machine.

    uv run python bench/serving.py [--train-minutes 10] [--requests 48] [--size 256] [--encoder resnet34]
                                   [--backends torch,torch-bf16,onnxruntime,onnxruntime-int8,triton,rayserve]

The model is trained first (the platform's pipeline, cpu-fast recipe at the given encoder and size, on the
Kvasir-SEG + CVC-ClinicDB train splits of ../shared/data for --train-minutes), so the Dice figures mean
something; --train-minutes 0 benchmarks an untrained model. Then, per backend, a FastAPI process serves
POST /predict (polyp_inference.http, the control service's router) over:

  torch             the baseline: the PyTorch module, eager, fp32, once per request (the seeds' approach)
  torch-bf16        the same with bfloat16 autocast and channels_last (this CPU has AVX-512 BF16 / AMX)
  onnxruntime       in-process ONNX Runtime, the fp32 ONNX export
  onnxruntime-int8  in-process ONNX Runtime, the INT8 model (static QDQ, calibrated on training frames)
  triton            a real tritonserver (fp32, dynamic batching) through the KServe v2 client
  rayserve          a real Ray Serve application (fp32 ONNX Runtime, @serve.batch) on a local Ray

Pre- and post-processing are identical everywhere (polyp_inference.client). A client uploads the same
real Kvasir-SEG frame at concurrency 1, 4 and 16; client, server and model share the machine's cores.
The floor is ONNX Runtime's bare session.run for one image. Dice: mean per dataset on the held-out
frames at original resolution through the serving path (polyp_train.evaluate), per precision.
Kvasir-SEG: Jha et al., MMM 2020. CVC-ClinicDB: Bernal et al., CMIG 2015. Research and education only.
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
BACKENDS = ("torch", "torch-bf16", "onnxruntime", "onnxruntime-int8", "triton", "rayserve")
LEVELS = (1, 4, 16)


class TorchEagerBackend:
    """The baseline: the PyTorch module itself, called once per request (bf16: autocast + channels_last)."""

    def __init__(self, weights: Path, encoder: str, size: int, bf16: bool = False):
        import torch

        from polyp_inference.backends import ModelInfo
        from polyp_train.model import ModelSpec, build_model

        torch.set_num_threads(os.cpu_count() or 1)
        self.model = build_model(ModelSpec("Unet", encoder, size)).eval()
        self.model.load_state_dict(torch.load(weights, weights_only=True))
        self.bf16 = bf16
        if bf16:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.info = ModelInfo(MODEL, "1", "image", "logits", size)
        self.kind = "torch-bf16" if bf16 else "torch"

    def run(self, outputs, feeds: dict) -> list[np.ndarray]:
        """onnxruntime.InferenceSession.run's shape, so polyp_train.evaluate can score this model too."""
        import torch

        batch = torch.from_numpy(next(iter(feeds.values())))
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            if self.bf16:
                batch = batch.contiguous(memory_format=torch.channels_last)
            return [self.model(batch).float().numpy()]

    async def model_info(self, refresh=False):
        return self.info

    async def infer(self, batch, info):
        return (await asyncio.to_thread(self.run, None, {"image": batch}))[0], "1"

    async def ready(self):
        return True

    async def close(self):
        pass


def serve(kind: str, args) -> None:
    import uvicorn
    from fastapi import FastAPI

    from polyp_inference.backends import OnnxRuntimeBackend, TritonBackend
    from polyp_inference.client import InferenceClient
    from polyp_inference.http import add_exception_handlers, predict_router
    from polyp_inference.rayserve import RayServeBackend

    work = Path(args.work)
    backend = {
        "torch": lambda: TorchEagerBackend(work / "weights.pt", args.encoder, args.size),
        "torch-bf16": lambda: TorchEagerBackend(work / "weights.pt", args.encoder, args.size, bf16=True),
        "onnxruntime": lambda: OnnxRuntimeBackend(work / "repo", MODEL),
        "onnxruntime-int8": lambda: OnnxRuntimeBackend(work / "repo-int8", MODEL),
        "triton": lambda: TritonBackend(args.backend_url, MODEL),
        "rayserve": lambda: RayServeBackend(args.backend_url, MODEL),
    }[kind]()
    app = FastAPI()
    app.include_router(predict_router(InferenceClient(backend)))
    add_exception_handlers(app)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def train_model(work: Path, args, sources: list[str]) -> None:
    """The platform's pipeline for --train-minutes; weights.pt (eager) and repo/ (the fp32 ONNX version)."""
    import torch

    os.environ["POLYP_HOME"] = str(work / "home")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from polyp_train.export import export_onnx, publish, triton_config
    from polyp_train.model import ModelSpec, build_model

    spec = ModelSpec("Unet", args.encoder, args.size)
    if args.train_minutes <= 0:
        torch.manual_seed(0)
        model = build_model(spec).eval()
        publish(str(work / "repo"), MODEL, 1, export_onnx(model, spec), triton_config(MODEL, spec))
    else:
        import mlflow

        from polyp_train.pipeline import RunOptions, train
        from polyp_train.presets import PRESETS
        from polyp_train.trainer import TrainConfig

        config = TrainConfig.from_recipe(
            PRESETS["cpu-fast"],
            sources,
            spec,
            time_budget_min=args.train_minutes,
            storage_path=str(work / "ckpt"),
            cache_dir=str(work / "cache"),
            name="bench-serving",
        )
        started = time.perf_counter()
        summary = train(config, RunOptions(model_repo=str(work / "repo"), dice_threshold=0.0, int8=False))
        print(
            f"trained Unet/{args.encoder} {args.size}px for {args.train_minutes:g} min with the cpu-fast recipe "
            f"(wall {(time.perf_counter() - started) / 60:.1f} min); version {summary.version}",
            flush=True,
        )
        model = mlflow.pytorch.load_model(f"models:/{MODEL}/{summary.version}", map_location="cpu")
        if summary.version != "1":
            raise RuntimeError(f"expected the benchmark's first version to be 1, got {summary.version}")
    torch.save(model.state_dict(), work / "weights.pt")


def int8_model(work: Path, args, prepared) -> dict:
    """Quantize the fp32 export as training does; publish it as repo-int8/ version 1; Dice of both."""
    from polyp_core.repository import model_file
    from polyp_train.export import publish
    from polyp_train.quantize import quantized_candidate

    fp32 = model_file(work / "repo", MODEL, 1).read_bytes()
    candidate = quantized_candidate(fp32, args.size, prepared.train, prepared.val)
    config = (work / "repo" / MODEL / "config.pbtxt").read_text()
    publish(str(work / "repo-int8"), MODEL, 1, candidate.onnx, config)
    return {
        "fp32": candidate.dice_fp32,
        "int8": candidate.dice_int8,
        "verdict": candidate.verdict(),
        "accepted": candidate.accepted,
    }


def bf16_dice(work: Path, args, prepared) -> dict[str, float]:
    from polyp_train.evaluate import per_dataset, score

    model = TorchEagerBackend(work / "weights.pt", args.encoder, args.size, bf16=True)
    return {name: found["mean_dice"] for name, found in per_dataset([score(model, args.size, s) for s in prepared.val]).items()}


def floor_ms(onnx: Path, size: int, runs: int = 20) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
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


def wait_up(url: str, proc: subprocess.Popen, image: bytes, timeout_s: float = 180) -> None:
    """Until the server answers a prediction (which also warms it up)."""
    import aiohttp

    async def once():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            for _ in range(3):
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


def measure(kind: str, work: Path, args, image: bytes, backend_url: str | None) -> dict[int, tuple[float, float, float]]:
    from polyp_dev.net import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            kind,
            "--work",
            str(work),
            "--port",
            str(port),
            "--encoder",
            args.encoder,
            "--size",
            str(args.size),
            "--backend-url",
            backend_url or "",
        ]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, proc, image)
        rows = {}
        for level in LEVELS:
            rows[level] = asyncio.run(load(url, image, level, args.requests))
            rate, p50, p99 = rows[level]
            print(f"{kind:17s} c={level:<3d} {rate:6.2f} req/s  p50 {p50:8.1f} ms  p99 {p99:8.1f} ms", flush=True)
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    from polyp_fixtures.resolve import SHARED

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-minutes", type=float, default=10.0, help="0: an untrained model")
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--kvasir", default=str(SHARED / "data" / "kvasir-seg"))
    parser.add_argument("--clinicdb", default=str(SHARED / "data" / "cvc-clinicdb"))
    parser.add_argument("--serve", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--backend-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args)
    kinds = [k for k in args.backends.split(",") if k]
    if unknown := set(kinds) - set(BACKENDS):
        parser.error(f"unknown backends {sorted(unknown)}: choose from {', '.join(BACKENDS)}")

    from polyp_core.repository import model_file
    from polyp_dev.local_rayserve import LocalRayServe
    from polyp_dev.local_triton import TritonServer, mirror_repository
    from polyp_train.prepare import prepare

    image = sorted((polyp_fixtures.path("samples/kvasir-seg") / "images").glob("*.jpg"))[0].read_bytes()
    sources = [f"kvasir={args.kvasir}", f"clinicdb={args.clinicdb}"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_model(work, args, sources)
        prepared = prepare(sources, work / "cache", 0.2)
        dice = int8_model(work, args, prepared)
        dice["bf16"] = bf16_dice(work, args, prepared)
        floors = {
            precision: floor_ms(model_file(work / repo, MODEL, 1), args.size)
            for precision, repo in (("fp32", "repo"), ("int8", "repo-int8"))
        }
        print(
            f"\nmachine: {os.cpu_count()} CPUs, no GPU; Unet/{args.encoder} at {args.size}px; {args.requests} requests "
            f"per level; image {len(image)} bytes (622x529 Kvasir-SEG frame); held out: {prepared.summary()}"
        )
        print(
            f"floor: ONNX Runtime session.run, batch 1 (median of 20): fp32 {floors['fp32']:.1f} ms, "
            f"INT8 {floors['int8']:.1f} ms ({floors['fp32'] / floors['int8']:.2f}x)"
        )
        for precision in ("fp32", "bf16", "int8"):
            print(f"Dice {precision:4s} " + ", ".join(f"{name} {value:.4f}" for name, value in sorted(dice[precision].items())))
        print(f"INT8 verdict: {dice['verdict']} -> {'published' if dice['accepted'] else 'refused'} by the export step\n")

        results = {}
        mirror_repository(work / "repo", work / "triton")
        with TritonServer(work / "triton") as triton:
            triton.wait_for_version(MODEL, 1)
            for kind in kinds:
                if kind == "rayserve":
                    with LocalRayServe(work / "repo", MODEL, log=work / "rayserve.log") as application:
                        results[kind] = measure(kind, work, args, image, application.url)
                else:
                    results[kind] = measure(kind, work, args, image, triton.url if kind == "triton" else None)

    print("\nthroughput against the eager baseline (same run):")
    for level in LEVELS:
        base = results["torch"][level][0] if "torch" in results else None
        print(
            f"c={level:<3d} "
            + "   ".join(f"{kind} {rows[level][0] / base:4.2f}x" for kind, rows in results.items() if base and kind != "torch")
        )
    for kind, precision in (("onnxruntime", "fp32"), ("onnxruntime-int8", "int8")):
        if kind in results:
            p50 = results[kind][1][1]
            print(
                f"c=1 /predict p50 over bare session.run ({precision}): {p50:.1f} / {floors[precision]:.1f} ms = "
                f"{p50 / floors[precision]:.2f}x"
            )


if __name__ == "__main__":
    main()
