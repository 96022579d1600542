"""The Ray Serve application: the model repository's newest (or pinned) ONNX version under ONNX Runtime,
with request batching. ``build`` is the application builder for ``serve run`` and a KubeRay RayService
(charts/inference, backend: rayserve); it answers under its route prefix:

    GET  {prefix}/metadata  -> {"name", "version", "input_name", "output_name", "size"}
    GET  {prefix}/ready     -> 200, or 503 while no servable version exists
    POST {prefix}/infer     .npy float32 1 x 3 x S x S -> .npy logits 1 x 1 x S x S, headers X-Model-Version and
                            Server-Timing (frames in its model call, how long it ran); 409 when the served
                            version expects another S

Each request carries one frame; ``@serve.batch`` stacks concurrent ones into one ONNX Runtime call.
Pre- and post-processing stay in the inference client, as for Triton, so every backend answers
/predict identically. An ``s3://`` repository (the cluster) is copied to local disk for the pinned
version at start (boto3, credentials from the environment), checked against its sha256 when given; a version not
yet published is a 503 with Retry-After, and is copied on the first request after it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from polyp_core import repository
from polyp_core.s3 import is_s3, s3_client, split_s3
from polyp_inference.backends import ModelChanged, OnnxRuntimeBackend
from polyp_inference.errors import ServingUnavailable
from polyp_inference.rayserve import DEFAULT_ROUTE, deployed_url, from_npy, to_npy

if TYPE_CHECKING:  # importing this module needs no Ray
    from ray.serve import Application, Deployment

DEPLOYMENT = "PolypSegmenter"
MAX_BATCH_SIZE = 8
BATCH_WAIT_TIMEOUT_S = 0.0  # no waiting alone: requests that queue while the model runs form the next batch


def local_repository(repo: str, model: str, version: int | None, sha256: str | None = None) -> Path:
    """The repository as a local folder: itself, or for s3:// the pinned version copied to local disk
    (ServingUnavailable while that version is not published)."""
    if not is_s3(repo):
        return Path(repo)
    if version is None:
        raise ValueError("an s3:// model repository is served pinned: give the version to serve")
    bucket, prefix = split_s3(repo)
    key = "/".join(p for p in (prefix, model, str(version), repository.MODEL_FILE) if p)
    from botocore.exceptions import ClientError

    folder = Path(tempfile.mkdtemp(prefix="polyp-serve-"))
    local = folder / model / str(version) / repository.MODEL_FILE
    local.parent.mkdir(parents=True)
    try:
        s3_client().download_file(bucket, key, str(local))
    except ClientError as error:
        shutil.rmtree(folder)
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NoSuchBucket"):
            raise
        raise ServingUnavailable(f"the pinned version {version} is not published yet (no s3://{bucket}/{key})") from None
    if sha256 and hashlib.sha256(local.read_bytes()).hexdigest() != sha256:
        raise ValueError(f"s3://{bucket}/{key} is not the pinned artifact (sha256 {sha256})")
    return local.parents[2]


def _deployment() -> Deployment:
    """The Serve deployment class, defined on first use: importing this module needs no Ray."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    class PolypSegmenter:
        def __init__(
            self,
            repo: str,
            model: str,
            version: int | None = None,
            sha256: str | None = None,
            threads: int | None = None,
            max_batch_size: int = MAX_BATCH_SIZE,
            batch_wait_timeout_s: float = BATCH_WAIT_TIMEOUT_S,
        ):
            self.source, self.threads = (repo, model, version, sha256), threads
            self._backend: OnnxRuntimeBackend | None = None
            with contextlib.suppress(ServingUnavailable):  # a pin set before its run published it: 503 until then
                self.backend()
            # Ray's typing of serve.batch leaves out the setters it attaches (and documents) on the method.
            self.run_batch.set_max_batch_size(max_batch_size)  # type: ignore[attr-defined]
            self.run_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)  # type: ignore[attr-defined]

        def backend(self) -> OnnxRuntimeBackend:
            """ONNX Runtime over the local copy, made on first use: the copy is retried on each request until the
            pinned version is published (a dev cluster syncs its pin before its first run publishes it)."""
            if self._backend is None:
                repo, model, version, sha256 = self.source
                self._backend = OnnxRuntimeBackend(local_repository(repo, model, version, sha256), model, self.threads, version)
            return self._backend

        @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_TIMEOUT_S)
        async def run_batch(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, str, str] | None]:
            """One ONNX Runtime call for the frames that fit the served version: (logits, version, Server-Timing)
            each; None for those that do not."""
            info = await self.backend().model_info()
            fits = [frame.shape[-1] == info.size for frame in frames]
            if not any(fits):
                return [None] * len(frames)
            fitting = [frame for frame, ok in zip(frames, fits, strict=True) if ok]
            started = time.perf_counter()
            logits, version = await self.backend().infer(np.concatenate(fitting), info)
            timing = f"batch;desc={len(logits)}, model;dur={(time.perf_counter() - started) * 1000:.1f}"
            rows = iter(logits)
            return [(next(rows)[None], version, timing) if ok else None for ok in fits]

        async def __call__(self, request: Request) -> Response:
            action = request.url.path.rstrip("/").rsplit("/", 1)[-1]
            try:
                if action == "metadata":
                    return JSONResponse(vars(await self.backend().model_info()))
                if action == "ready":
                    ready = await self.backend().ready()
                    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)
                if action == "infer" and request.method == "POST":
                    frame = from_npy(await request.body())
                    if frame.dtype != np.float32 or frame.ndim != 4 or frame.shape[:2] != (1, 3):
                        return JSONResponse(
                            {"detail": f"expected float32 1 x 3 x S x S, got {frame.dtype} {frame.shape}"}, status_code=422
                        )
                    answer = await self.run_batch(frame)
                    if answer is None:
                        raise ModelChanged(frame.shape)
                    logits, version, timing = answer
                    return Response(
                        to_npy(logits),
                        media_type="application/octet-stream",
                        headers={"X-Model-Version": version, "Server-Timing": timing},
                    )
            except ModelChanged:  # a newer version with another input size appeared: the client prepares again
                return JSONResponse({"detail": "the served version expects another input size"}, status_code=409)
            except ServingUnavailable as error:
                return JSONResponse({"detail": error.message}, status_code=503, headers={"Retry-After": str(error.retry_after)})
            except ValueError as error:  # a body that is not an .npy array
                return JSONResponse({"detail": f"cannot read the request body: {error}"}, status_code=422)
            return JSONResponse(
                {"detail": f"no {request.method} {action}: use GET metadata, GET ready, POST infer"}, status_code=404
            )

    # Applied by call, not as a class decorator: mypy would keep the class's own type, not the Deployment it becomes.
    return serve.deployment(name=DEPLOYMENT, max_ongoing_requests=32)(PolypSegmenter)


def build(args: dict[str, Any]) -> Application:
    """Application builder (``serve run polyp_rayserve:build repo=… model=…``; a RayService's
    ``import_path`` with ``args``): repo, model, and optionally version (a pin), sha256, threads,
    max_batch_size, batch_wait_timeout_s. Replicas and autoscaling come from the deployment options
    (the RayService's serveConfigV2, or ``application(...)`` below)."""
    known = {"repo", "model", "version", "sha256", "threads", "max_batch_size", "batch_wait_timeout_s"}
    unknown = set(args) - known
    if unknown or not {"repo", "model"} <= set(args):
        raise ValueError(f"arguments {sorted(known)} (repo and model required); got {sorted(args)}")
    typed = {
        k: (int(v) if k in ("version", "threads", "max_batch_size") else float(v) if k == "batch_wait_timeout_s" else str(v))
        for k, v in args.items()
        if v not in (None, "")
    }
    return _deployment().bind(**typed)


def application(
    repo: str | Path,
    model: str,
    version: int | None = None,
    threads: int | None = None,
    num_replicas: int | str = 1,
    autoscaling: dict | None = None,
    num_cpus: float = 1.0,
    **options: Any,
) -> Application:
    """The application with its replica settings, for serve.run (make up, tests, the benchmark)."""
    settings: dict[str, Any] = {"autoscaling_config": autoscaling} if autoscaling else {"num_replicas": num_replicas}
    deployment = _deployment().options(ray_actor_options={"num_cpus": num_cpus}, **settings)
    return deployment.bind(str(repo), model, version, None, threads, **options)


def serve_locally(
    repo: str | Path, model: str, port: int, version: int | None = None, route: str = DEFAULT_ROUTE, **app_options: Any
) -> str:
    """Deploy the application on the Ray this process is connected to (ray.init first), HTTP on loopback."""
    from ray import serve

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        application(repo, model, version, threads=app_options.pop("threads", os.cpu_count()), **app_options),
        name="polyp-segmenter",
        route_prefix=route,
    )
    return deployed_url(port, route)


def main(argv: list[str] | None = None) -> None:
    """Serve a repository through Ray Serve until SIGTERM: on a new local Ray, or on --address's cluster."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m polyp_rayserve", description=main.__doc__)
    parser.add_argument("--repo", required=True, help="model repository folder (or s3:// with --version)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True, help="Serve's HTTP port on 127.0.0.1")
    parser.add_argument("--version", type=int, help="serve exactly this version (a pin); default: the newest")
    parser.add_argument("--address", help="a running Ray (make up's head); default: start a local one")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="ONNX Runtime threads per replica")
    parser.add_argument("--max-batch-size", type=int, default=MAX_BATCH_SIZE)
    args = parser.parse_args(argv)

    import ray
    from ray import serve

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        url = serve_locally(
            args.repo,
            args.model,
            args.port,
            args.version,
            threads=args.threads,
            num_replicas=args.replicas,
            max_batch_size=args.max_batch_size,
        )
        print(f"serving {args.model} at {url}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
