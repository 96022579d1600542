"""Training runs as Ray jobs through the Ray Job Submission API (the KubeRay head, or a local Ray)."""

from __future__ import annotations

import asyncio
import posixpath
import shlex
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pydantic import ConfigDict, Field

from polyp_core.job import TrainingParameters, parse_source, train_command

# Ray's job states -> the run states this API reports.
RAY_STATUS = {"PENDING": "pending", "RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed", "STOPPED": "cancelled"}
CONNECT_TIMEOUT_S = 3.0  # a Ray head that is there accepts at once
RAY_THREADS = 4  # Ray's calls wait in their own threads, never in the pool database calls and the API share

T = TypeVar("T")


class RayTimeout(TimeoutError):
    """Ray's job API did not answer in time: a hung head, a half-open connection, a full queue of such calls."""


class RayUnreachable(ConnectionError):
    """No connection to Ray's job API could be made (refused, no route, no such host, connect timeout), so the call
    cannot have reached it: nothing was submitted, and trying again later cannot start a job twice."""


def never_reached_ray(exc: BaseException) -> bool:
    """True only when the request cannot have reached Ray. A connection lost mid-request is not such a case: Ray may
    have taken the job."""
    import requests
    import urllib3

    if type(exc) is ConnectionError:  # the SDK's version check at construction, before any job call
        return True
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError) and exc.args:
        return isinstance(getattr(exc.args[0], "reason", None), urllib3.exceptions.NewConnectionError)
    return False


class Hyperparameters(TrainingParameters):
    """A run's parameters as the API takes them: the training-job contract plus an optional dataset.

    Strict: JSON types as the schema states them (no "3" for 3, no false for 0.0)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    data: str | None = Field(
        None,
        pattern=r"^([a-z0-9_-]+=)?(s3://|/)[^\s;|&$`]+$",
        description="one dataset, [NAME=]folder or s3:// prefix (default: the service's TRAINING_DATA)",
    )
    # None: the service's DICE_FLOOR, filled in (with_gate) before the run starts; the contract's field is a float.
    dice_threshold: float | None = Field(  # type: ignore[assignment]
        None,
        ge=0,
        le=1,
        description="quality gate: minimum validation Dice (default: the service's quality floor, "
        "DICE_FLOOR, below which its quality watch alerts)",
    )


def with_gate(params: Hyperparameters, floor: float) -> Hyperparameters:
    """A run that names no gate is gated at the quality floor: one setting decides both which model
    becomes champion and when the quality watch alerts, so a promoted model never starts an alert."""
    return params if params.dice_threshold is not None else params.model_copy(update={"dice_threshold": floor})


def default_data_roots(training_data: str) -> list[str]:
    """Where a run may read from when DATA_ROOTS is unset: the bucket of each TRAINING_DATA source
    (s3://datasets/), or a local source's folder itself (never its parent: that may be a home folder)."""
    roots = []
    for source in shlex.split(training_data):
        location = parse_source(source).uri
        if location.startswith("s3://"):
            roots.append("s3://" + location[len("s3://") :].split("/", 1)[0] + "/")
        else:
            roots.append(posixpath.normpath(location).rstrip("/") + "/")
    return sorted(set(roots))


def outside_roots(data: str, roots: list[str]) -> str | None:
    """Why a run's `data` may not be read (None when it may): it must be a location under one of `roots`,
    written plainly: no `..`, `.` or empty segments that could point somewhere else."""
    location = parse_source(data).uri  # as training will read it
    path = location[len("s3://") :] if location.startswith("s3://") else location
    if any(part in ("", ".", "..") for part in path.strip("/").split("/")) or "//" in path:
        return "data must be a plain location: no '..', '.' or empty path segments"
    if not any(location.startswith(root) and len(location) > len(root) for root in roots):
        return f"data must be under one of the configured dataset locations: {', '.join(roots)}"
    return None


def entrypoint(params: Hyperparameters, data: str, model_repo: str, run_id: str) -> str:
    """`data` is TRAINING_DATA: one source or several separated by spaces (`kvasir=s3://… clinicdb=s3://…`)."""
    contract = TrainingParameters.model_validate(params.model_dump(exclude={"data"}))
    return train_command(contract, params.data or shlex.split(data), model_repo, f"run-{run_id}")


def _client_with_timeouts(address: str, headers: dict[str, str], timeout_s: float) -> Any:
    """A JobSubmissionClient whose every request (its version check at construction included) has a connect and a
    read timeout: the SDK passes none to `requests`, so a head that accepts and never answers held a call forever."""
    from ray.job_submission import JobSubmissionClient

    class Client(JobSubmissionClient):
        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", (CONNECT_TIMEOUT_S, timeout_s))
            return super()._do_request(method, endpoint, **kwargs)

    return Client(address, headers=dict(headers))


class RayJobs:
    """Async wrapper over ray.job_submission.JobSubmissionClient (its calls block).

    `token`: Ray's auth token (RAY_AUTH_TOKEN; the RayCluster runs RAY_AUTH_MODE=token), sent as a bearer
    header on every call, so a job is submitted only by who holds it. Every call runs in this wrapper's own
    threads and ends within `timeout_s` (RayTimeout), so a hung Ray slows only what needs Ray."""

    def __init__(self, address: str, token: str | None = None, timeout_s: float = 10.0):
        self.address = address
        self.timeout_s = timeout_s
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client: Any = None  # made on first use
        self._threads = ThreadPoolExecutor(RAY_THREADS, thread_name_prefix="ray-jobs")

    def _connect(self) -> Any:
        if self._client is None:
            self._client = _client_with_timeouts(self.address, self.headers, self.timeout_s)
        return self._client

    async def _call(self, call: Callable[[], T]) -> T:
        """call() in Ray's threads, given up after timeout_s whether it was running or still waiting for a thread
        (its thread ends at the request's own timeout)."""
        future = asyncio.get_running_loop().run_in_executor(self._threads, call)
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            raise RayTimeout(f"Ray at {self.address} did not answer within {self.timeout_s:g} s") from None
        except OSError as exc:
            if never_reached_ray(exc):
                self._client = None  # its version check is made again on the next connection
                raise RayUnreachable(f"Ray at {self.address} is not reachable") from exc
            raise

    async def submit(self, submission_id: str, command: str, env: dict[str, str]) -> str:
        return await self._call(
            lambda: self._connect().submit_job(
                entrypoint=command, submission_id=submission_id, runtime_env={"env_vars": env}, metadata={"app": "polyp-control"}
            )
        )

    async def status(self, submission_id: str) -> str:
        status = await self._call(lambda: self._connect().get_job_status(submission_id))
        return RAY_STATUS.get(str(getattr(status, "value", status)), "pending")

    async def info_message(self, submission_id: str) -> str | None:
        info = await self._call(lambda: self._connect().get_job_info(submission_id))
        return info.message

    async def logs(self, submission_id: str) -> str:
        return await self._call(lambda: self._connect().get_job_logs(submission_id))

    async def stop(self, submission_id: str) -> bool:
        return await self._call(lambda: self._connect().stop_job(submission_id))

    async def reachable(self) -> bool:
        import urllib.request

        def check():  # /api/version needs the token: a wrong one reads as unreachable, which it is for jobs
            request = urllib.request.Request(f"{self.address.rstrip('/')}/api/version", headers=self.headers)
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200

        try:
            return await self._call(check)
        except (OSError, RayTimeout):
            return False

    def close(self) -> None:
        """Stop taking calls; threads still waiting on Ray end at their request timeout."""
        self._threads.shutdown(wait=False, cancel_futures=True)
