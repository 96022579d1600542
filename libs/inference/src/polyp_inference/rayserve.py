"""The inference client's side of the Ray Serve backend: the wire format and the client.

The application itself (services/rayserve, ``polyp_rayserve``) answers under its route prefix:

    GET  {prefix}/metadata  -> {"name", "version", "input_name", "output_name", "size"}
    GET  {prefix}/ready     -> 200, or 503 while no servable version exists
    POST {prefix}/infer     .npy float32 1 x 3 x S x S -> .npy logits 1 x 1 x S x S, headers X-Model-Version and
                            Server-Timing (frames in its model call, how long it ran); 409 when the served
                            version expects another S

Pre- and post-processing stay in the inference client, as for Triton, so every backend answers /predict identically.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections import deque
from typing import Any

import numpy as np

from .backends import METADATA_TTL_S, ModelInfo
from .errors import ModelChanged, ServingUnavailable

DEFAULT_ROUTE = "/polyp-segmenter"


def to_npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(array), allow_pickle=False)
    return out.getvalue()


def from_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


class RayServeBackend:
    """The inference client's view of a Ray Serve application: describe the model, run one batch. With
    `version` (the environment's pin) an application answering with any other version is unavailable."""

    kind = "rayserve"

    def __init__(self, url: str, model: str, timeout_s: float = 10.0, version: int | None = None):
        self.url, self.model, self.timeout_s, self.version = url.rstrip("/"), model, timeout_s, version
        self._session: Any = None  # aiohttp.ClientSession, bound to self._loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._info: ModelInfo | None = None
        self._info_at = 0.0
        # The latest answers' Server-Timing (frames in the model call, how long it ran): bounded, a client lives long.
        self.server_timings: deque[str] = deque(maxlen=100)

    def _client(self) -> Any:  # aiohttp.ClientSession, imported on use
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:  # an aiohttp session belongs to one event loop
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
            self._loop = loop
        return self._session

    async def _request(self, method: str, action: str, body: bytes | None = None) -> tuple[bytes, Any]:
        import aiohttp

        try:
            async with self._client().request(method, f"{self.url}/{action}", data=body) as response:
                data = await response.read()
                if response.status == 409:
                    raise ModelChanged(data.decode(errors="replace"))
                if response.status != 200:
                    raise ServingUnavailable(
                        f"Ray Serve at {self.url} cannot {action}: HTTP {response.status} {data.decode(errors='replace')[:300]}"
                    )
                return data, response.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ServingUnavailable(f"Ray Serve at {self.url} is unreachable ({type(exc).__name__}: {exc})") from exc

    async def model_info(self, refresh: bool = False) -> ModelInfo:
        """Names, input size and version, cached for a few seconds (a new version is noticed; a new input
        size at once, by the 409 that makes the client refresh)."""
        if not refresh and self._info is not None and time.monotonic() - self._info_at < METADATA_TTL_S:
            return self._info
        import json

        data, _ = await self._request("GET", "metadata")
        found = json.loads(data)
        if found.get("name") != self.model:
            raise ServingUnavailable(f"Ray Serve at {self.url} serves model {found.get('name')!r}, not {self.model!r}")
        if self.version is not None and found.get("version") != str(self.version):
            raise ServingUnavailable(
                f"Ray Serve at {self.url} serves version {found.get('version')} of {self.model!r}, not the pinned {self.version}",
                retry_after=30,
            )
        self._info, self._info_at = ModelInfo(**found), time.monotonic()
        return self._info

    async def infer(self, batch: np.ndarray, info: ModelInfo) -> tuple[np.ndarray, str]:
        logits, versions = [], set()
        for frame in batch:  # one request per frame: the application batches across requests
            data, headers = await self._request("POST", "infer", to_npy(frame[None]))
            logits.append(from_npy(data))
            versions.add(headers.get("X-Model-Version", info.version))
            if self.version is not None and versions != {str(self.version)}:
                raise ServingUnavailable(
                    f"Ray Serve at {self.url} answered with version {max(versions)}, not the pinned {self.version}",
                    retry_after=30,
                )
            self.server_timings.append(headers.get("Server-Timing", ""))
        return np.concatenate(logits), max(versions, key=int)

    async def ready(self) -> bool:
        try:
            await self.model_info()  # the application answers for our model
            await self._request("GET", "ready")
        except (ServingUnavailable, ModelChanged):
            return False
        return True

    async def close(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None


def deployed_url(port: int, route: str = DEFAULT_ROUTE) -> str:
    return f"http://127.0.0.1:{port}{route}"
