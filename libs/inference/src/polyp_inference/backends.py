"""Where the model runs: Triton over HTTP (KServe v2 protocol) or in-process ONNX Runtime.

Both answer with the newest published version without a restart and say which version that was.
A backend describes the model it would answer with (names, input size S, version) and runs a
batch N x 3 x S x S float32 prepared for that description, returning (logits N x 1 x S x S, version).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyp_core import repository

from .errors import ModelChanged, ServingUnavailable

METADATA_TTL_S = 2.0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    input_name: str
    output_name: str
    size: int  # square input side


class OnnxRuntimeBackend:
    """The embedded default: ONNX Runtime over a local model repository, reloaded when a newer version
    appears; with `version`, exactly that version (a pin), whatever is published later."""

    kind = "onnxruntime"

    def __init__(self, repo: str | Path, model: str, threads: int | None = None, version: int | None = None):
        self.repo, self.model, self.threads, self.version = Path(repo), model, threads, version
        self._lock = threading.Lock()
        # One inference at a time: ONNX Runtime already spreads one over every core, and concurrent runs only
        # fight over them (bench/serving.py: fp32 17 req/s at concurrency 4-16 without this, 19.5 at 1).
        self._run_lock = threading.Lock()
        self._loaded: tuple[ModelInfo, Any] | None = None  # (description, onnxruntime.InferenceSession)

    def _served_version(self) -> int:
        if self.version is not None:
            if self.version not in repository.published_versions(self.repo, self.model):
                raise ServingUnavailable(
                    f"the pinned version {self.version} of model {self.model!r} is not published in {self.repo}", retry_after=30
                )
            return self.version
        newest = repository.newest_version(self.repo, self.model)
        if newest is None:
            raise ServingUnavailable(
                f"model {self.model!r} has no published version in {self.repo} yet: train one first", retry_after=30
            )
        return newest

    def _session(self) -> tuple[ModelInfo, Any]:
        served = self._served_version()
        with self._lock:
            if self._loaded is None or self._loaded[0].version != str(served):
                self._loaded = self._load(served)
            return self._loaded

    def _load(self, version: int) -> tuple[ModelInfo, Any]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        session = ort.InferenceSession(
            str(repository.model_file(self.repo, self.model, version)), options, providers=["CPUExecutionProvider"]
        )
        [model_input], [model_output] = session.get_inputs(), session.get_outputs()
        return ModelInfo(self.model, str(version), model_input.name, model_output.name, int(model_input.shape[-1])), session

    async def model_info(self, refresh: bool = False) -> ModelInfo:
        return (await asyncio.to_thread(self._session))[0]

    async def infer(self, batch: np.ndarray, info: ModelInfo) -> tuple[np.ndarray, str]:
        def run() -> tuple[np.ndarray, str]:
            current, session = self._session()
            if current.size != info.size:  # a newer version with another input size appeared meanwhile
                raise ModelChanged(current)
            with self._run_lock:
                return session.run([current.output_name], {current.input_name: batch})[0], current.version

        return await asyncio.to_thread(run)

    async def ready(self) -> bool:
        try:
            self._served_version()
        except ServingUnavailable:
            return False
        return True

    async def close(self) -> None:
        pass


class TritonBackend:
    """Triton / KServe v2 over HTTP through tritonclient's asyncio client, with a timeout and bounded retries.

    Without `version`, requests name none and Triton's version policy (latest 1) picks the newest it has
    loaded; with it (a pin) every request names that version, so no other version can answer.
    """

    kind = "triton"

    def __init__(
        self, url: str, model: str, timeout_s: float = 10.0, retries: int = 2, backoff_s: float = 0.2, version: int | None = None
    ):
        self.url = url.removeprefix("http://").removeprefix("https://").rstrip("/")
        self.ssl = url.startswith("https://")
        self.model, self.timeout_s, self.retries, self.backoff_s = model, timeout_s, retries, backoff_s
        self.version = "" if version is None else str(version)  # tritonclient's "any version"
        self._client: Any = None  # tritonclient.http.aio.InferenceServerClient, bound to self._loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._info: ModelInfo | None = None
        self._info_at = 0.0

    def _connection(self) -> Any:
        import tritonclient.http.aio as triton

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # an aiohttp session belongs to one event loop
            self._client = triton.InferenceServerClient(self.url, ssl=self.ssl, conn_timeout=self.timeout_s)
            self._loop = loop
        return self._client

    async def call(self, what: str, coroutine_factory: Callable[[Any], Awaitable[Any]]) -> Any:
        """Retry connection failures and timeouts; a server that answers 'not ready' is reported at once."""
        from tritonclient.utils import InferenceServerException

        for attempt in range(self.retries + 1):
            try:
                return await coroutine_factory(self._connection())
            except InferenceServerException as exc:
                if "unexpected shape" in (exc.message() or ""):
                    raise ModelChanged(exc.message()) from exc
                raise ServingUnavailable(f"Triton at {self.url} cannot {what}: {exc.message()}") from exc
            except (TimeoutError, OSError, _aiohttp_errors()) as exc:
                if attempt == self.retries:
                    raise ServingUnavailable(
                        f"Triton at {self.url} is unreachable ({type(exc).__name__}: {exc}) after {self.retries + 1} attempts"
                    ) from exc
                await asyncio.sleep(self.backoff_s * 2**attempt)

    async def model_info(self, refresh: bool = False) -> ModelInfo:
        """Names and input size from the server, cached for a few seconds so a new version is noticed."""
        if refresh or self._info is None or time.monotonic() - self._info_at > METADATA_TTL_S:
            meta = await self.call(
                f"describe model {self.model!r}", lambda c: c.get_model_metadata(self.model, model_version=self.version)
            )
            [model_input], [model_output] = meta["inputs"], meta["outputs"]
            versions = sorted(meta.get("versions") or ["0"], key=lambda v: int(v) if v.isdigit() else -1)
            self._info = ModelInfo(
                self.model, versions[-1], model_input["name"], model_output["name"], int(model_input["shape"][-1])
            )
            self._info_at = time.monotonic()
        return self._info

    async def infer(self, batch: np.ndarray, info: ModelInfo) -> tuple[np.ndarray, str]:
        import tritonclient.http.aio as triton

        request = triton.InferInput(info.input_name, list(batch.shape), "FP32")
        request.set_data_from_numpy(batch, binary_data=True)
        output = triton.InferRequestedOutput(info.output_name, binary_data=True)
        result = await self.call(
            "run inference",
            lambda c: c.infer(
                self.model, [request], model_version=self.version, outputs=[output], timeout=int(self.timeout_s * 1e6)
            ),
        )
        return result.as_numpy(info.output_name), str(result.get_response().get("model_version", info.version))

    async def ready(self) -> bool:
        try:
            return bool(await self.call("report readiness", lambda c: c.is_model_ready(self.model, self.version)))
        except ServingUnavailable:
            return False

    async def close(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.close()
        self._client = None


def _aiohttp_errors() -> type[Exception]:
    import aiohttp

    return aiohttp.ClientError
