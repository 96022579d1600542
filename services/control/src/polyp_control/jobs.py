"""Training runs as Ray jobs through the Ray Job Submission API (the KubeRay head, or a local Ray)."""

from __future__ import annotations

import asyncio
import json
import shlex

from pydantic import BaseModel, Field

ARCHITECTURES = ("Unet", "UnetPlusPlus", "FPN", "Linknet", "PSPNet", "PAN", "MAnet", "DeepLabV3Plus")

# Ray's job states -> the run states this API reports.
RAY_STATUS = {"PENDING": "pending", "RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed",
              "STOPPED": "cancelled"}
ACTIVE = ("submitting", "pending", "running")


class Hyperparameters(BaseModel):
    """What a training run may be given; anything else is rejected with 422."""

    model_config = {"extra": "forbid"}

    epochs: int = Field(10, ge=1, le=500)
    workers: int = Field(2, ge=1, le=64, description="Ray Train workers")
    batch_size: int = Field(8, ge=1, le=256)
    lr: float = Field(1e-3, gt=0, le=1)
    arch: str = Field("Unet", pattern="^(" + "|".join(ARCHITECTURES) + ")$")
    encoder: str = Field("resnet34", pattern=r"^[a-z0-9_.\-]{2,64}$")
    size: int = Field(256, ge=32, le=1024, multiple_of=32, description="square letterboxed input side")
    seed: int = Field(0, ge=0)
    dice_threshold: float = Field(0.5, ge=0, le=1, description="quality gate: minimum validation Dice")
    data: str | None = Field(None, pattern=r"^(s3://|/)[^\s;|&$`]+$", description="dataset folder or s3:// prefix")


def entrypoint(params: Hyperparameters, data: str, model_repo: str, run_id: str) -> str:
    args = ["polyp-train", "train", "--data", params.data or data, "--model-repo", model_repo,
            "--epochs", params.epochs, "--workers", params.workers, "--batch-size", params.batch_size,
            "--lr", params.lr, "--arch", params.arch, "--encoder", params.encoder, "--size", params.size,
            "--seed", params.seed, "--dice-threshold", params.dice_threshold, "--name", f"run-{run_id}"]
    return shlex.join(str(a) for a in args)


class RayJobs:
    """Thin async wrapper over ray.job_submission.JobSubmissionClient (its calls block)."""

    def __init__(self, address: str):
        self.address = address
        self._client = None

    def _connect(self):
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.address)
        return self._client

    async def submit(self, submission_id: str, command: str, env: dict[str, str]) -> str:
        return await asyncio.to_thread(lambda: self._connect().submit_job(
            entrypoint=command, submission_id=submission_id, runtime_env={"env_vars": env},
            metadata={"app": "polyp-control"}))

    async def status(self, submission_id: str) -> str:
        status = await asyncio.to_thread(lambda: self._connect().get_job_status(submission_id))
        return RAY_STATUS.get(str(getattr(status, "value", status)), "pending")

    async def info_message(self, submission_id: str) -> str | None:
        info = await asyncio.to_thread(lambda: self._connect().get_job_info(submission_id))
        return info.message

    async def logs(self, submission_id: str) -> str:
        return await asyncio.to_thread(lambda: self._connect().get_job_logs(submission_id))

    async def stop(self, submission_id: str) -> bool:
        return await asyncio.to_thread(lambda: self._connect().stop_job(submission_id))

    async def reachable(self) -> bool:
        import urllib.request

        def check():
            with urllib.request.urlopen(f"{self.address.rstrip('/')}/api/version", timeout=2) as response:
                return response.status == 200

        try:
            return await asyncio.to_thread(check)
        except OSError:
            return False


def summary_from_logs(logs: str) -> dict | None:
    """polyp-train prints a JSON summary as its last line on success."""
    for line in reversed(logs.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None
