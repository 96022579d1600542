"""Every error of the control service. Routes and services raise these only; `handlers.add_exception_handlers`
maps each kind to one HTTP answer, once for the whole app (never a traceback)."""

from __future__ import annotations


class Unauthorized(Exception):
    """No valid credential: 401 with a WWW-Authenticate challenge (RFC 6750)."""

    status = 401

    def __init__(self, message: str, challenge: str = "Bearer"):
        super().__init__(message)
        self.challenge = challenge


class Forbidden(Unauthorized):
    """A valid credential without the scope the operation needs: 403."""

    status = 403

    def __init__(self, message: str):
        super().__init__(message, 'Bearer error="insufficient_scope"')


class NotFound(LookupError):
    """A named resource does not exist: 404 with this message."""


class RunNotFound(NotFound):
    pass


class ScheduleNotFound(NotFound):
    pass


class WatchNotFound(NotFound):
    pass


class ModelVersionNotFound(NotFound):
    pass


class Conflict(Exception):
    """The request conflicts with the resource's state: 409 with this message."""


class ScheduleBusy(Conflict):
    """A schedule's previous run (or its queued retry) is still active."""


class DefaultWatch(Conflict):
    """Deleting a default watch: it follows the environment's settings; pause it instead."""


class Unavailable(RuntimeError):
    """A dependency (MLflow, Ray) cannot answer right now: 503 with Retry-After."""

    def __init__(self, message: str, retry_after_s: int = 10):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SlowSubscriber(Exception):
    """Internal to alert delivery: a subscriber's queue filled up; it must reconnect and resume from the last id
    it received (the SSE route sends a `reconnect` event)."""
