"""Errors a caller can show to a user; each carries the HTTP status the control service answers with."""

from __future__ import annotations


class InferenceError(Exception):
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UnsupportedMediaType(InferenceError):
    status = 415


class ImageTooLarge(InferenceError):
    status = 413


class UndecodableImage(InferenceError):
    status = 422


class ServingUnavailable(InferenceError):
    """The inference server is down or the model is not ready: try again later."""

    status = 503

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after
