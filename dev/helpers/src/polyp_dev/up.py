"""`make up`: the whole loop on a laptop on embedded defaults.

A local Ray head (job submission on 127.0.0.1:8265), MLflow on a SQLite file, a local Triton
model repository served in-process by ONNX Runtime (or, with INFERENCE_BACKEND=rayserve, by a Ray Serve
application on that Ray head), alerts in-process (or Redis when REDIS_URL
is set), a synthetic dataset when none is configured, and the control service with the alert
page on :8000. Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

from polyp_control.jobs import default_data_roots
from polyp_core.home import polyp_home

from .local_ray import LocalRayHead

# Enough synthetic frames for the default recipe (polyp_core.job) to pass the quality gate in its first run.
SYNTHETIC_FRAMES = 160


def ensure_dataset(home: Path) -> str:
    configured = os.environ.get("TRAINING_DATA")
    if configured:
        return configured
    data = home / "data" / "synthetic"
    if len(list(data.glob("images/*.jpg"))) < SYNTHETIC_FRAMES:  # none yet, or an older, smaller set
        from polyp_train.synthetic import make_dataset

        print(f"creating a synthetic dataset in {data} (set TRAINING_DATA to use your own)", flush=True)
        make_dataset(data, n=SYNTHETIC_FRAMES, size=192, seed=0)
    return str(data)


def local_secret(path: Path) -> str:
    """A token generated once per laptop into a file only its owner reads; never a default."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def main() -> None:
    home = polyp_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["POLYP_HOME"] = str(home)  # the service and the training jobs it starts use the same home
    port = int(os.environ.get("PORT", "8000"))
    ray_port = int(os.environ.get("RAY_DASHBOARD_PORT", "8265"))
    os.environ["TRAINING_DATA"] = ensure_dataset(home)
    # A run's `data` may name any dataset in the local data folder, besides those TRAINING_DATA names.
    os.environ.setdefault("DATA_ROOTS", " ".join([str(home / "data"), *default_data_roots(os.environ["TRAINING_DATA"])]))
    os.environ.setdefault("MODEL_REPO", str(home / "model-repo"))
    os.environ.setdefault("RAY_ADDRESS", f"http://127.0.0.1:{ray_port}")
    os.environ.setdefault("STATIC_DIR", str(Path(__file__).resolve().parents[4] / "services" / "frontend" / "static"))
    os.environ.setdefault("WATCH_INTERVAL_S", "10")
    os.environ.setdefault("POLYP_CHECKPOINT_URI", str(home / "ray-results"))
    token_file = home / "api-token"
    os.environ["API_TOKEN"] = os.environ.get("API_TOKEN") or local_secret(token_file)
    os.environ["API_READ_TOKEN"] = os.environ.get("API_READ_TOKEN") or local_secret(home / "api-read-token")
    # Ray's job API runs any code it is sent: the local head takes jobs only with this token, like the cluster's.
    os.environ["RAY_AUTH_TOKEN"] = os.environ.get("RAY_AUTH_TOKEN") or local_secret(home / "ray-token")
    os.environ["RAY_AUTH_MODE"] = "token"  # this process's Ray clients (Ray Serve's driver) send it too

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    ray_head = LocalRayHead(ray_port, log=home / "ray-head.log", token=os.environ["RAY_AUTH_TOKEN"])
    try:
        print("starting a local Ray head ...", flush=True)
        ray_head.start()
        with ray_serve_if_asked(ray_head, home):
            serve(port, ray_port, token_file)
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass  # Ctrl-C is how make up is meant to end: no traceback
    finally:
        print("stopping Ray ...", flush=True)
        ray_head.stop()


@contextlib.contextmanager
def ray_serve_if_asked(ray_head: LocalRayHead, home: Path) -> Iterator[None]:
    """INFERENCE_BACKEND=rayserve without an INFERENCE_URL: deploy the Ray Serve application on the local head."""
    if os.environ.get("INFERENCE_BACKEND") != "rayserve" or os.environ.get("INFERENCE_URL"):
        yield
        return
    from polyp_core.repository import DEFAULT_MODEL_NAME

    from .local_rayserve import LocalRayServe

    print("deploying the Ray Serve application ...", flush=True)
    with LocalRayServe(
        os.environ["MODEL_REPO"],
        os.environ.get("MODEL_NAME", DEFAULT_MODEL_NAME),
        version=int(os.environ["MODEL_VERSION"]) if os.environ.get("MODEL_VERSION") else None,
        address=ray_head.gcs_address,
        log=home / "ray-serve.log",
    ) as application:
        os.environ["INFERENCE_URL"] = application.url
        yield


def serve(port: int, ray_port: int, token_file: Path) -> None:
    import uvicorn

    from polyp_control.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app()
    print(
        f"""
  alert page  http://127.0.0.1:{port}/ui/#token={os.environ["API_TOKEN"]}
  Swagger     http://127.0.0.1:{port}/docs   (Authorize with the write token in {token_file}
                                               or the read token in {token_file.with_name("api-read-token")})
  Ray         http://127.0.0.1:{ray_port}   (token in {token_file.with_name("ray-token")})
  MLflow      uv run mlflow ui --backend-store-uri sqlite:///{Path(os.environ["POLYP_HOME"]) / "mlflow.db"}
  data        {os.environ["TRAINING_DATA"]}   models {os.environ["MODEL_REPO"]}
  serving     {os.environ.get("INFERENCE_BACKEND") or "onnxruntime"} {os.environ.get("INFERENCE_URL") or "(in-process)"}
  Ctrl-C stops everything.
""",
        flush=True,
    )
    # timeout_graceful_shutdown: open SSE streams must not hold Ctrl-C up.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
