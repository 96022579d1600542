"""Start and stop nvidia-pytriton's tritonserver over a mirrored model repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from polyp_core import repository

from ..net import ServerDidNotStart, free_port, stop_process, wait_for_http

MODEL_PY = Path(__file__).with_name("onnx_model.py")


def _python_backend_config(config: str) -> str:
    return re.sub(r'backend:\s*"onnxruntime"', 'backend: "python"', config)


def mirror_repository(source: Path, target: Path) -> list[tuple[str, int]]:
    """Copy models and versions missing from target, each version appearing whole (a rename). Returns what was added."""
    added = []
    for model_dir in sorted(p for p in Path(source).iterdir() if (p / repository.CONFIG_FILE).is_file()):
        out = Path(target) / model_dir.name
        out.mkdir(parents=True, exist_ok=True)
        config = _python_backend_config((model_dir / repository.CONFIG_FILE).read_text())
        (out / repository.CONFIG_FILE).write_text(config)
        for pinned in sorted((model_dir / repository.CONFIGS_DIR).glob("*.pbtxt")):
            (out / repository.CONFIGS_DIR).mkdir(exist_ok=True)
            (out / repository.CONFIGS_DIR / pinned.name).write_text(_python_backend_config(pinned.read_text()))
        for version in repository.published_versions(source, model_dir.name):
            if (out / str(version)).exists():
                continue
            staging = out / f".staging-{version}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            shutil.copy2(repository.model_file(source, model_dir.name, version), staging / repository.MODEL_FILE)
            shutil.copy2(MODEL_PY, staging / "model.py")
            os.rename(staging, out / str(version))
            added.append((model_dir.name, version))
    return added


def _distribution() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


class TritonServer:
    """``with TritonServer(repo) as server: server.url`` — Triton polling ``repo`` every second, on loopback.

    ``config_name`` selects each model's custom configuration (``--model-config-name``), e.g. a pin."""

    def __init__(
        self, repo: Path, poll_s: int = 1, log: Path | None = None, start_timeout_s: float = 120, config_name: str | None = None
    ):
        self.repo, self.poll_s, self.start_timeout_s = Path(repo), poll_s, start_timeout_s
        self.config_name = config_name
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self._log_path = log
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None

    def _install(self, root: Path) -> Path:
        """tritonserver plus the Python backend stub built for this interpreter, as pytriton itself lays them out."""
        dist = root / "tritonserver"
        shutil.copytree(_distribution(), dist, ignore=shutil.ignore_patterns("python_backend_stubs"))
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        shutil.copy(
            _distribution() / "python_backend_stubs" / version / "triton_python_backend_stub",
            dist / "backends" / "python" / "triton_python_backend_stub",
        )
        return dist

    def _environment(self) -> dict:
        env = dict(os.environ)
        # The stub loads libpython from the system and imports numpy/onnxruntime from this environment.
        # tritonserver's own shared libraries are vendored beside the package (auditwheel layout).
        libs = [sysconfig.get_config_var("LIBDIR"), str(_distribution().parents[1] / "nvidia_pytriton.libs")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [*libs, env.get("LD_LIBRARY_PATH")]))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [sysconfig.get_paths()["purelib"], env.get("PYTHONPATH")]))
        return env

    def start(self) -> TritonServer:
        self._tmp = tempfile.TemporaryDirectory(prefix="polyp-triton-")
        dist = self._install(Path(self._tmp.name))
        log = open(self._log_path or Path(self._tmp.name) / "tritonserver.log", "w")  # noqa: SIM115 (closed in stop)
        self._log = log
        self._proc = subprocess.Popen(
            [
                str(dist / "bin" / "tritonserver"),
                f"--model-repository={self.repo}",
                f"--backend-directory={dist / 'backends'}",
                f"--cache-directory={dist / 'caches'}",
                f"--http-port={self.http_port}",
                "--http-address=127.0.0.1",
                "--allow-grpc=false",
                "--allow-metrics=false",
                "--model-control-mode=poll",
                f"--repository-poll-secs={self.poll_s}",
                "--strict-readiness=false",
                "--exit-on-error=false",
                "--log-verbose=0",
                *([f"--model-config-name={self.config_name}"] if self.config_name else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._environment(),
        )
        try:
            wait_for_http(f"{self.url}/v2/health/live", self._proc, self.start_timeout_s, "tritonserver")
        except ServerDidNotStart as exc:
            tail = self.log_tail()
            self.stop()
            raise ServerDidNotStart(f"{exc}: {tail}") from exc
        return self

    def wait_for_version(self, model: str, version: int, timeout_s: float = 60) -> None:
        """Block until Triton reports the model version READY (after its next repository poll)."""
        if self._proc is None:
            raise RuntimeError("tritonserver is not running: start() it first")
        try:
            wait_for_http(
                f"{self.url}/v2/models/{model}/versions/{version}/ready",
                self._proc,
                timeout_s,
                f"{model} version {version} on tritonserver",
            )
        except ServerDidNotStart as exc:
            raise TimeoutError(f"{exc}: {self.log_tail()}") from exc

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return Path(self._log.name).read_text()[-chars:]

    def stop(self) -> None:
        stop_process(self._proc)
        if getattr(self, "_log", None):
            self._log.close()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
