"""Domain errors, each mapped to one HTTP answer by the app's exception handlers (never a traceback)."""

from __future__ import annotations


class NotFound(LookupError):
    """A named run or schedule does not exist: 404 with this message."""


class Unavailable(RuntimeError):
    """A dependency (MLflow, Ray) cannot answer right now: 503 with Retry-After."""

    def __init__(self, message: str, retry_after_s: int = 10):
        super().__init__(message)
        self.retry_after_s = retry_after_s
