"""Training runs: submit as Ray jobs, keep their state, follow them to the end (retries, SLA, alerts)."""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from polyp_core.job import summary_from_output

from . import db, outbox
from .alerts import Alert
from .errors import RunNotFound, ScheduleBusy, Unavailable
from .jobs import Hyperparameters, RayJobs, RayTimeout, RayUnreachable, entrypoint, outside_roots, with_gate
from .leader import Lease
from .metrics import Metrics
from .outbox import Outbox
from .settings import Settings

log = logging.getLogger(__name__)
RAY_RETRY_S = 30  # Ray unreachable: a scheduled run is submitted again after this; a caller is told to retry then


def _summary(logs: str) -> dict | None:
    """The run summary polyp-train printed last, as stored with the run."""
    summary = summary_from_output(logs)
    return summary.model_dump() if summary else None


class RetryPolicy(BaseModel):
    """Stored with each run of a schedule (the schedule's policy when it fired), so any replica, after any
    restart, retries and times it out the same way."""

    max_attempts: int = 1
    backoff_s: float = 0
    sla_s: float | None = None

    def delay(self, attempt: int) -> float:
        """Wait before attempt n+1: backoff * 2^(n-1)."""
        return self.backoff_s * 2 ** (attempt - 1)


class Run(BaseModel):
    id: str
    status: str = Field(
        description="queued (a retry waiting for not_before), submitting, pending, running, succeeded, failed, cancelled"
    )
    params: dict
    schedule_id: str | None = None
    attempt: int = 1
    retry_policy: RetryPolicy | None = None
    submission_id: str | None = None
    created_at: float
    not_before: float | None = Field(None, description="a queued retry is submitted from this time on")
    deadline: float | None = Field(None, description="SLA: cancelled and alerted if still active at this time")
    started_at: float | None = None
    finished_at: float | None = None
    message: str | None = None
    result: dict | None = None


class RunService:
    """Every step of a run's life is a row change, so a restart, or another replica, carries on from the table:
    a retry is a `queued` row with its not-before time; submitting is claimed by a conditional write
    (one replica submits), and a run left in `submitting` by a crash is recovered after `submit_timeout_s`
    (Ray refuses a second job with the same submission id, so re-submitting never starts it twice)."""

    def __init__(self, engine: Engine, jobs: RayJobs, outbox: Outbox, metrics: Metrics, settings: Settings):
        self.engine, self.jobs, self.outbox, self.metrics, self.settings = engine, jobs, outbox, metrics, settings
        self.on_success: list[Callable[[], Awaitable[object]]] = []  # after a run succeeds (the watches re-check at once)
        self.lease: Lease | None = None  # the scheduler's lease, which fences what the follower does as leader

    # ---- storage ---------------------------------------------------------------------------
    def _row(self, run_id: str) -> Run:
        with self.engine.connect() as conn:
            row = conn.execute(select(db.runs).where(db.runs.c.id == run_id)).mappings().first()
        if row is None:
            raise RunNotFound(f"no training run {run_id!r}")
        return Run(**row)

    def _update(self, run_id: str, *conditions: ColumnElement[bool], **values: Any) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(update(db.runs).where(db.runs.c.id == run_id, *conditions).values(**values)).rowcount == 1

    def _by_idempotency_key(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(db.runs.c.id).where(db.runs.c.idempotency_key == key)).scalar()

    async def get(self, run_id: str) -> Run:
        return await asyncio.to_thread(self._row, run_id)

    async def list(
        self,
        status: str | None = None,
        schedule_id: str | None = None,
        limit: int | None = 100,
        statuses: tuple[str, ...] | None = None,
    ) -> list[Run]:
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

    async def active_for_schedule(self, schedule_id: str) -> builtins.list[Run]:
        return await self.list(schedule_id=schedule_id, statuses=db.ACTIVE, limit=None)

    # ---- lifecycle ---------------------------------------------------------------------------
    async def trigger(
        self,
        params: Hyperparameters,
        idempotency_key: str | None = None,
        schedule_id: str | None = None,
        policy: RetryPolicy | None = None,
        queue_if_ray_is_down: bool = False,
    ) -> tuple[Run, bool]:
        """Record and submit a run. Returns (run, created); a repeated Idempotency-Key returns the first run.

        Ray unreachable: a caller gets Unavailable and nothing is kept (it may try again, with the same key), or, for a
        schedule's fire (`queue_if_ray_is_down`), the run waits `queued` and is submitted when Ray is back. Neither is a
        failed run: an outage is not the model's failure, and it raises no training alert."""
        now = time.time()
        row = {
            "id": uuid.uuid4().hex[:16],
            "status": "submitting",
            "schedule_id": schedule_id,
            "attempt": 1,
            "params": with_gate(params, self.settings.dice_floor).model_dump(),
            "idempotency_key": idempotency_key,
            "retry_policy": policy.model_dump() if policy else None,
            "created_at": now,
            "claimed_at": now,
        }

        def record():
            with self.engine.begin() as conn:
                conn.execute(insert(db.runs).values(**row))

        try:
            await asyncio.to_thread(record)
        except IntegrityError as exc:
            if idempotency_key is not None and (existing := await asyncio.to_thread(self._by_idempotency_key, idempotency_key)):
                return await self.get(existing), False
            if schedule_id:  # the one-active-run index: a concurrent call (on any replica) started it first
                raise ScheduleBusy(
                    f"another run of schedule {schedule_id} is still active (started by a concurrent call)"
                ) from exc
            raise
        try:
            await self._submit(Run(**row), queue_if_ray_is_down)
        except RayUnreachable as exc:
            await asyncio.to_thread(self._forget_unsubmitted, str(row["id"]))
            raise Unavailable(f"{exc}: the run was not started; try again shortly", RAY_RETRY_S) from exc
        return await self.get(str(row["id"])), True

    def _forget_unsubmitted(self, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(db.runs).where(db.runs.c.id == run_id, db.runs.c.status == "submitting"))

    async def _submit(self, run: Run, queue_if_ray_is_down: bool = True) -> None:
        """Hand a run this replica has claimed (status `submitting`) to Ray. Ray unreachable: the run is queued again
        for RAY_RETRY_S, or RayUnreachable is raised (queue_if_ray_is_down=False)."""
        submission_id = f"polyp-{run.id}-{run.attempt}"
        try:
            params = with_gate(Hyperparameters(**run.params), self.settings.dice_floor)
            if params.data and (outside := outside_roots(params.data, self.settings.readable_roots())):
                raise ValueError(outside)  # a schedule saved before the roots were checked, or since narrowed
            command = entrypoint(params, self.settings.training_data, self.settings.model_repo, run.id)
        except ValueError as exc:  # a row no longer valid for this version's contract: fail it, do not retry forever
            await self._finish(run.id, "failed", f"cannot build the training command: {exc}")
            return
        try:
            await self.jobs.submit(submission_id, command, self.settings.job_env)
        except RayUnreachable as exc:  # nothing reached Ray: not a failure of the run
            if not queue_if_ray_is_down:
                raise
            retry_at = time.time() + RAY_RETRY_S
            note = f"{exc}; submitting again at {time.strftime('%H:%M:%S', time.gmtime(retry_at))} UTC"
            queued = {"status": "queued", "not_before": retry_at, "message": note}
            await asyncio.to_thread(self._update, run.id, db.runs.c.status == "submitting", **queued)
            log.warning("run %s: %s", run.id, note)
            return
        except RayTimeout as exc:  # Ray may have taken the job: never fail it (a retry would start a second one)
            note = f"{exc}; submitting again under the same id after {self.settings.submit_timeout_s:g} s"
            await asyncio.to_thread(self._update, run.id, db.runs.c.status == "submitting", message=note)
            log.warning("run %s: %s", run.id, note)
            return
        except Exception as exc:  # noqa: BLE001 - Ray unreachable or refusing: the run failed, say why
            if "already exists" not in str(exc):  # else: submitted before a crash lost the row's update
                await self._finish(run.id, "failed", f"cannot submit to Ray at {self.jobs.address}: {exc}")
                return
        sla_s = run.retry_policy.sla_s if run.retry_policy else None
        submitted = await asyncio.to_thread(
            self._update,
            run.id,
            db.runs.c.status == "submitting",
            status="pending",
            submission_id=submission_id,
            deadline=time.time() + sla_s if sla_s else None,
        )
        if submitted:
            log.info("run %s submitted as Ray job %s", run.id, submission_id)
        else:  # cancelled while being submitted
            await self._stop_job(submission_id)

    def _stuck(self, claimed_before: float) -> builtins.list[tuple[str, float | None]]:
        """Runs in `submitting` since before then (a row from before claimed_at existed: by its creation)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.runs.c.id, db.runs.c.claimed_at).where(
                    db.runs.c.status == "submitting", func.coalesce(db.runs.c.claimed_at, db.runs.c.created_at) < claimed_before
                )
            ).all()
        return [(row.id, row.claimed_at) for row in rows]

    def _claim(self, run_id: str, *conditions: ColumnElement[bool]) -> bool:
        """Take a due run to submit it; fenced: only while this replica still holds the lease."""
        fence = [self.lease.held()] if self.lease else []
        return self._update(run_id, *conditions, *fence, status="submitting", claimed_at=time.time())

    async def submit_due(self) -> None:
        """Submit the retries that are due, and recover runs a crash left in `submitting` (lease holder only)."""
        now = time.time()
        for run in await self.list(status="queued", limit=None):
            if (
                run.not_before is not None
                and run.not_before <= now
                and await asyncio.to_thread(self._claim, run.id, db.runs.c.status == "queued")
            ):
                log.info("submitting retry %s (attempt %d of schedule %s)", run.id, run.attempt, run.schedule_id)
                await self._submit(run)  # as listed: the claim changed only its status
        for run_id, claimed_at in await asyncio.to_thread(self._stuck, now - self.settings.submit_timeout_s):
            same_claim = db.runs.c.claimed_at.is_(None) if claimed_at is None else db.runs.c.claimed_at == claimed_at
            if await asyncio.to_thread(self._claim, run_id, db.runs.c.status == "submitting", same_claim):
                log.warning("run %s was left in submitting: submitting again", run_id)
                await self._submit(await self.get(run_id))

    async def cancel(self, run_id: str, reason: str = "cancelled by request") -> Run:
        run = await self.get(run_id)
        if run.status not in db.ACTIVE:
            return run
        if run.submission_id:
            await self._stop_job(run.submission_id)
        await self._finish(run_id, "cancelled", reason)
        return await self.get(run_id)

    async def _stop_job(self, submission_id: str) -> None:
        try:
            await self.jobs.stop(submission_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("stopping Ray job %s: %s", submission_id, exc)

    async def logs(self, run_id: str) -> str:
        run = await self.get(run_id)
        if not run.submission_id:
            return run.message or ""
        try:
            return await self.jobs.logs(run.submission_id)
        except Exception as exc:
            raise Unavailable(f"logs are not available from Ray right now: {exc}") from exc

    def _close(self, run: Run, values: dict[str, Any], retry: dict, alerts: builtins.list[Alert]) -> bool:
        """Move an active run to a final state, and queue its retry and stage its alerts in the same transaction (a
        crash cannot close a run and lose its retry or its alert). False if another replica (or call) closed it first."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(db.runs).where(db.runs.c.id == run.id, db.runs.c.status.in_(db.ACTIVE)).values(**values)
            ).rowcount
            if changed != 1:
                return False
            if retry:
                conn.execute(insert(db.runs).values(**retry))
            for alert in alerts:
                outbox.stage(conn, alert)
        return True

    @staticmethod
    def _retry_row(run: Run, now: float) -> dict:
        """A failed run of a schedule is tried again after a backoff, up to the schedule's max attempts."""
        policy = run.retry_policy
        if policy is None or run.attempt >= policy.max_attempts:
            return {}
        return {
            "id": uuid.uuid4().hex[:16],
            "status": "queued",
            "params": run.params,
            "schedule_id": run.schedule_id,
            "attempt": run.attempt + 1,
            "retry_policy": policy.model_dump(),
            "created_at": now,
            "not_before": now + policy.delay(run.attempt),
        }

    async def _finish(
        self, run_id: str, status: str, message: str | None = None, result: dict | None = None, alert: Alert | None = None
    ) -> bool:
        """Close a run; True if this call closed it (and so publishes its alerts: each transition once). A failed run
        alerts `training_failed`; `alert` is another to send with the change (an SLA miss)."""
        run = await self.get(run_id)
        now = time.time()
        retry = self._retry_row(run, now) if status == "failed" else {}
        alerts = [alert] if alert else []
        if status == "failed":
            alerts.append(self._failure_alert(run, message, retry))
        values = {"status": status, "finished_at": now, "message": message, "result": result}
        if not await asyncio.to_thread(self._close, run, values, retry, alerts):
            return False
        self.metrics.runs.labels(status).inc()
        self.metrics.run_duration.observe(now - (run.started_at or run.created_at))
        for each in alerts:
            self.metrics.alerts.labels(each.type).inc()
            await self.outbox.send(each)
        if status == "succeeded":
            self.metrics.last_success.set(now)
            for callback in self.on_success:
                await callback()
        if retry:
            log.info("retrying schedule %s: attempt %d at %.0f", run.schedule_id, retry["attempt"], retry["not_before"])
        return True

    @staticmethod
    def _failure_alert(run: Run, message: str | None, retry: dict) -> Alert:
        then = (
            f"; attempt {retry['attempt']} at {time.strftime('%H:%M:%S', time.gmtime(retry['not_before']))} UTC" if retry else ""
        )
        details = {
            "run_id": run.id,
            "schedule_id": run.schedule_id,
            "attempt": run.attempt,
            "retry_run_id": retry.get("id"),
            "retry_at": retry.get("not_before"),
        }
        return Alert(
            type="training_failed", severity="critical", message=f"training run {run.id} failed: {message}{then}", details=details
        )

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
                try:
                    logs = await self.jobs.logs(run.submission_id) if status != "cancelled" else ""
                    message = None if status == "succeeded" else (await self.jobs.info_message(run.submission_id))
                except Exception as exc:  # noqa: BLE001 - the result lives in the logs: close the run on a later poll
                    log.warning("result of %s: %s", run.submission_id, exc)
                    continue
                await self._finish(run.id, status, message, _summary(logs) if status == "succeeded" else None)
            if status in ("pending", "running") and run.deadline and time.time() > run.deadline:
                await self._stop_job(run.submission_id)
                sla_min = run.retry_policy.sla_s / 60 if run.retry_policy and run.retry_policy.sla_s else 0
                missed = Alert(
                    type="training_sla_missed",
                    severity="warning",
                    message=f"run {run.id} of schedule {run.schedule_id} exceeded its SLA and was cancelled",
                    details={"run_id": run.id, "schedule_id": run.schedule_id},
                )
                await self._finish(run.id, "cancelled", f"SLA of {sla_min:.0f} min exceeded", alert=missed)

    async def follow(self, leading: Callable[[], bool]) -> None:
        """While `leading()` (this replica holds the scheduler lease): submit due retries, follow runs in Ray."""
        while True:
            if leading():
                try:
                    await self.submit_due()
                    await self.poll_once()
                except Exception:
                    log.exception("following runs")
            await asyncio.sleep(self.settings.run_poll_interval_s)
