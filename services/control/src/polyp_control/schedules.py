"""Schedules: APScheduler with a persistent SQLAlchemy job store; only the lease holder fires.

Misfire policy: a fire missed while no replica was running is run once (coalesced) if it is at
most `MISFIRE_GRACE_S` late when the service comes back; an older miss is skipped and the
schedule continues at its next time. A schedule never has two runs at once: a fire while its
previous run (or its queued retry) is still active is skipped (logged). A run carries the schedule's
retry policy and SLA as they were when it fired (see runs.RunService).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema, field_validator, model_validator
from sqlalchemy import Engine

from .errors import ScheduleBusy, ScheduleNotFound
from .jobs import Hyperparameters
from .leader import Lease
from .runs import RetryPolicy, Run, RunService

log = logging.getLogger(__name__)
MISFIRE_GRACE_S = 600
_runs: RunService | None = None  # the process's RunService; APScheduler persists a reference to fire(), not to objects


# "Exactly one of cron or interval_seconds", as the schema says it (the validator below enforces it).
ONE_TRIGGER: list[JsonValue] = [
    {"title": "cron", "required": ["cron"], "properties": {"cron": {"type": "string"}, "interval_seconds": {"type": "null"}}},
    {
        "title": "interval",
        "required": ["interval_seconds"],
        "properties": {"interval_seconds": {"type": "integer"}, "cron": {"type": "null"}},
    },
]


class ScheduleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra={"oneOf": ONE_TRIGGER})

    name: str = Field(min_length=1, max_length=100)
    cron: Annotated[str, WithJsonSchema({"type": "string", "format": "cron"})] | None = Field(
        None, description="five-field crontab, e.g. '0 2 * * 1' (Mondays 02:00); exactly one of cron or interval_seconds"
    )
    interval_seconds: int | None = Field(None, ge=1, le=366 * 86400)
    timezone: Annotated[str, WithJsonSchema({"type": "string", "format": "iana-time-zone"})] = Field(
        "UTC", description="IANA time zone the cron expression is read in"
    )
    params: Hyperparameters = Field(default_factory=Hyperparameters)
    max_attempts: int = Field(3, ge=1, le=10, description="a failed run is retried up to this many attempts in all")
    retry_backoff_seconds: float = Field(60, ge=0, le=86400, description="wait before attempt n+1: backoff * 2^(n-1)")
    sla_minutes: float | None = Field(
        None, ge=1, le=7 * 24 * 60, description="cancel and alert a run running longer (at least a minute)"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _one_trigger(self):
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give exactly one of cron or interval_seconds")
        if self.cron is not None:
            try:
                trigger = CronTrigger.from_crontab(self.cron, timezone=ZoneInfo(self.timezone))
            except ValueError as exc:
                raise ValueError(f"invalid cron expression {self.cron!r}: {exc}") from exc
            if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:  # e.g. 0 0 30 2 *: February 30th
                raise ValueError(f"cron expression {self.cron!r} never fires: no date matches it")
        return self

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff_s=self.retry_backoff_seconds,
            sla_s=self.sla_minutes * 60 if self.sla_minutes else None,
        )

    def trigger(self):
        zone = ZoneInfo(self.timezone)
        if self.cron is not None:
            return CronTrigger.from_crontab(self.cron, timezone=zone)
        return IntervalTrigger(seconds=self.interval_seconds, timezone=zone)


class Schedule(ScheduleSpec):
    id: str
    paused: bool
    next_run_at: datetime | None


async def fire(schedule_id: str, spec: dict) -> None:
    """What a schedule does when it fires (runs on the lease holder only). Ray unreachable: the run waits, queued."""
    try:
        run = await start_run(schedule_id, ScheduleSpec(**spec), queue_if_ray_is_down=True)
    except ScheduleBusy as exc:
        log.warning("schedule %s fired: skipped, %s", schedule_id, exc)
        return
    log.info("schedule %s started run %s", schedule_id, run.id)


async def start_run(schedule_id: str, schedule: ScheduleSpec, queue_if_ray_is_down: bool = False) -> Run:
    """One run of the schedule, with its retry policy stored on the run; never two active runs at once (this check
    names the active run; the database's unique index is what guarantees it, between replicas too)."""
    if _runs is None:
        raise RuntimeError("no ScheduleService was created in this process: nothing can start a scheduled run")
    active = await _runs.active_for_schedule(schedule_id)
    if active:
        raise ScheduleBusy(f"its run {active[0].id} is still {active[0].status}")
    run, _ = await _runs.trigger(
        schedule.params, schedule_id=schedule_id, policy=schedule.retry_policy(), queue_if_ray_is_down=queue_if_ray_is_down
    )
    return run


class ScheduleService:
    def __init__(self, engine: Engine, runs: RunService, instance_id: str, lease_ttl_s: float = 15.0):
        global _runs
        _runs = runs
        self.runs = runs
        self.scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")},
            job_defaults={"coalesce": True, "misfire_grace_time": MISFIRE_GRACE_S, "max_instances": 1},
            timezone="UTC",
        )
        self.lease = Lease(engine, "scheduler", instance_id, lease_ttl_s)
        self.leader = False
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.scheduler.start(paused=True)  # fires nothing until this replica holds the lease
        self._task = asyncio.get_running_loop().create_task(self._lead())

    async def _lead(self) -> None:
        while True:
            try:
                holding = await asyncio.to_thread(self.lease.acquire)
                if holding and not self.leader:
                    log.info("this replica now fires schedules")
                    self.scheduler.resume()
                elif not holding and self.leader:
                    log.info("another replica holds the scheduler lease: not firing")
                    self.scheduler.pause()
                self.leader = holding
                if holding:
                    self.scheduler.wakeup()  # another replica may have added or changed schedules
            except Exception:
                log.exception("scheduler lease")
                if self.leader:
                    self.scheduler.pause()
                    self.leader = False
            await asyncio.sleep(self.lease.ttl_s / 3)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.leader:
            await asyncio.to_thread(self.lease.release)

    # ---- CRUD ----------------------------------------------------------------------------------
    @staticmethod
    def _as_schedule(job: Job) -> Schedule:
        return Schedule(id=job.id, paused=job.next_run_time is None, next_run_at=job.next_run_time, **job.kwargs["spec"])

    def _job(self, schedule_id: str) -> Job:
        job = self.scheduler.get_job(schedule_id)
        if job is None:
            raise ScheduleNotFound(f"no schedule {schedule_id!r}")
        return job

    def create(self, spec: ScheduleSpec) -> Schedule:
        schedule_id = uuid.uuid4().hex[:12]
        job = self.scheduler.add_job(
            fire,
            spec.trigger(),
            id=schedule_id,
            name=spec.name,
            kwargs={"schedule_id": schedule_id, "spec": spec.model_dump(mode="json")},
        )
        return self._as_schedule(self._job(job.id))

    def list(self) -> list[Schedule]:
        return [self._as_schedule(job) for job in self.scheduler.get_jobs()]

    def get(self, schedule_id: str) -> Schedule:
        return self._as_schedule(self._job(schedule_id))

    def pause(self, schedule_id: str) -> Schedule:
        self._job(schedule_id)
        self.scheduler.pause_job(schedule_id)
        return self.get(schedule_id)

    def resume(self, schedule_id: str) -> Schedule:
        self._job(schedule_id)
        self.scheduler.resume_job(schedule_id)
        return self.get(schedule_id)

    def delete(self, schedule_id: str) -> None:
        try:
            self.scheduler.remove_job(schedule_id)
        except JobLookupError as exc:
            raise ScheduleNotFound(f"no schedule {schedule_id!r}") from exc

    async def run_now(self, schedule_id: str) -> Run:
        """Fire a schedule now, outside its timetable (ScheduleBusy while its previous run is active)."""
        job = await asyncio.to_thread(self._job, schedule_id)
        return await start_run(schedule_id, ScheduleSpec(**job.kwargs["spec"]))
