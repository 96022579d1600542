"""Training runs: submit as Ray jobs, keep their state, follow them to the end (retries, SLA, alerts)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from pydantic import BaseModel
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from polyp_core.job import summary_from_output

from . import db
from .alerts import Alert
from .errors import NotFound, Unavailable
from .jobs import ACTIVE, Hyperparameters, RayJobs, entrypoint, with_gate

log = logging.getLogger(__name__)


def _summary(logs: str) -> dict | None:
    """The run summary polyp-train printed last, as stored with the run."""
    summary = summary_from_output(logs)
    return summary.model_dump() if summary else None


class Run(BaseModel):
    id: str
    status: str
    params: dict
    schedule_id: str | None = None
    attempt: int = 1
    submission_id: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    message: str | None = None
    result: dict | None = None


class RunNotFound(NotFound):
    pass


class RunService:
    def __init__(self, engine, jobs: RayJobs, bus, metrics, settings):
        self.engine, self.jobs, self.bus, self.metrics, self.settings = engine, jobs, bus, metrics, settings
        self.on_success = []  # callbacks after a run succeeds (the watches re-check at once)
        self.retry_policy: dict[str, tuple[int, float, float | None]] = {}  # schedule -> (max attempts, backoff s, SLA s)

    # ---- storage ---------------------------------------------------------------------------
    def _row(self, run_id: str) -> Run:
        with self.engine.connect() as conn:
            row = conn.execute(select(db.runs).where(db.runs.c.id == run_id)).mappings().first()
        if row is None:
            raise RunNotFound(f"no training run {run_id!r}")
        return Run(**row)

    def _update(self, run_id: str, **values) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(db.runs).where(db.runs.c.id == run_id).values(**values))

    async def get(self, run_id: str) -> Run:
        return await asyncio.to_thread(self._row, run_id)

    async def list(self, status: str | None = None, schedule_id: str | None = None, limit: int | None = 100,
                   statuses: tuple[str, ...] | None = None) -> list[Run]:
        def query():
            q = select(db.runs).order_by(db.runs.c.created_at.desc()).limit(limit)
            if status:
                q = q.where(db.runs.c.status == status)
            if statuses:
                q = q.where(db.runs.c.status.in_(statuses))
            if schedule_id:
                q = q.where(db.runs.c.schedule_id == schedule_id)
            with self.engine.connect() as conn:
                return [Run(**row) for row in conn.execute(q).mappings()]
        return await asyncio.to_thread(query)

    async def active_for_schedule(self, schedule_id: str) -> list[Run]:
        return await self.list(schedule_id=schedule_id, statuses=ACTIVE, limit=None)

    # ---- lifecycle ---------------------------------------------------------------------------
    async def trigger(self, params: Hyperparameters, idempotency_key: str | None = None,
                      schedule_id: str | None = None, attempt: int = 1) -> tuple[Run, bool]:
        """Record and submit a run. Returns (run, created); a repeated Idempotency-Key returns the first run."""
        run_id = uuid.uuid4().hex[:16]
        params = with_gate(params, self.settings.dice_floor)
        row = {"id": run_id, "status": "submitting", "params": params.model_dump(), "schedule_id": schedule_id,
               "attempt": attempt, "idempotency_key": idempotency_key, "created_at": time.time()}

        def record():
            with self.engine.begin() as conn:
                conn.execute(insert(db.runs).values(**row))

        try:
            await asyncio.to_thread(record)
        except IntegrityError:
            with self.engine.connect() as conn:
                existing = conn.execute(select(db.runs.c.id).where(db.runs.c.idempotency_key == idempotency_key)).scalar()
            return await self.get(existing), False
        submission_id = f"polyp-{run_id}-{attempt}"
        command = entrypoint(params, self.settings.training_data, self.settings.model_repo, run_id)
        try:
            await self.jobs.submit(submission_id, command, self.settings.job_env)
        except Exception as exc:  # noqa: BLE001 - Ray unreachable or refusing: the run failed, say why
            await self._finish(run_id, "failed", f"cannot submit to Ray at {self.jobs.address}: {exc}")
            return await self.get(run_id), True
        await asyncio.to_thread(self._update, run_id, status="pending", submission_id=submission_id)
        log.info("run %s submitted as Ray job %s", run_id, submission_id)
        return await self.get(run_id), True

    async def cancel(self, run_id: str, reason: str = "cancelled by request") -> Run:
        run = await self.get(run_id)
        if run.status not in ACTIVE:
            return run
        if run.submission_id:
            try:
                await self.jobs.stop(run.submission_id)
            except Exception as exc:  # noqa: BLE001
                log.warning("stopping Ray job %s: %s", run.submission_id, exc)
        await self._finish(run_id, "cancelled", reason)
        return await self.get(run_id)

    async def logs(self, run_id: str) -> str:
        run = await self.get(run_id)
        if not run.submission_id:
            return run.message or ""
        try:
            return await self.jobs.logs(run.submission_id)
        except Exception as exc:  # noqa: BLE001 - Ray unreachable, or the job's logs are gone
            raise Unavailable(f"logs are not available from Ray right now: {exc}") from exc

    def _close(self, run_id: str, **values) -> bool:
        """Move an active run to a final state; False if another replica (or call) already did."""
        with self.engine.begin() as conn:
            changed = conn.execute(update(db.runs).where(db.runs.c.id == run_id, db.runs.c.status.in_(ACTIVE))
                                   .values(**values)).rowcount
        return changed == 1

    async def _finish(self, run_id: str, status: str, message: str | None = None, result: dict | None = None) -> None:
        run = await self.get(run_id)
        now = time.time()
        if not await asyncio.to_thread(self._close, run_id, status=status, finished_at=now, message=message, result=result):
            return
        self.metrics.runs.labels(status).inc()
        self.metrics.run_duration.observe(now - (run.started_at or run.created_at))
        if status == "succeeded":
            self.metrics.last_success.set(now)
            for callback in self.on_success:
                await callback()
        elif status == "failed":
            await self._alert("training_failed", "critical", f"training run {run_id} failed: {message}", run_id=run_id,
                              schedule_id=run.schedule_id, attempt=run.attempt)
            await self._retry(run)

    async def _alert(self, kind: str, severity: str, message: str, **details) -> None:
        await self.bus.publish(Alert(type=kind, severity=severity, message=message, details=details))
        self.metrics.alerts.labels(kind).inc()

    async def _retry(self, run: Run) -> None:
        """A scheduled run that failed is tried again with exponential backoff, up to the schedule's max attempts."""
        if not run.schedule_id or run.schedule_id not in self.retry_policy:
            return
        max_attempts, backoff_s, _ = self.retry_policy[run.schedule_id]
        if run.attempt >= max_attempts:
            return
        delay = backoff_s * 2 ** (run.attempt - 1)
        log.info("retrying schedule %s (attempt %d) in %.0f s", run.schedule_id, run.attempt + 1, delay)

        async def later():
            await asyncio.sleep(delay)
            await self.trigger(Hyperparameters(**run.params), schedule_id=run.schedule_id, attempt=run.attempt + 1)

        asyncio.get_running_loop().create_task(later())

    async def poll_once(self) -> None:
        """Bring every submitted, unfinished run's state up to date with Ray, however old it is."""
        for run in await self.list(statuses=("pending", "running"), limit=None):
            if not run.submission_id:
                continue
            try:
                status = await self.jobs.status(run.submission_id)
            except Exception as exc:  # noqa: BLE001 - Ray briefly unreachable: try again next poll
                log.warning("status of %s: %s", run.submission_id, exc)
                continue
            if status == "running" and run.status != "running":
                await asyncio.to_thread(self._update, run.id, status="running", started_at=time.time())
            elif status in ("succeeded", "failed", "cancelled"):
                logs = await self.jobs.logs(run.submission_id) if status != "cancelled" else ""
                message = None if status == "succeeded" else (await self.jobs.info_message(run.submission_id))
                await self._finish(run.id, status, message, _summary(logs) if status == "succeeded" else None)
            sla = self.retry_policy.get(run.schedule_id or "", (0, 0, None))[2]
            if status in ("pending", "running") and sla and time.time() - run.created_at > sla:
                await self.cancel(run.id, f"SLA of {sla / 60:.0f} min exceeded")
                await self._alert("training_sla_missed", "warning",
                                  f"run {run.id} of schedule {run.schedule_id} exceeded its SLA and was cancelled",
                                  run_id=run.id, schedule_id=run.schedule_id)

    async def follow(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - never let the follower die
                log.exception("polling runs")
            await asyncio.sleep(self.settings.run_poll_interval_s)
