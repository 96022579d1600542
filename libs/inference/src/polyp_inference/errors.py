"""Every error of the inference client. Those a caller can show to a user carry the HTTP status the /predict
router answers with (`polyp_inference.http.add_exception_handlers` maps them, once, for the whole app)."""

from __future__ import annotations


class InferenceError(Exception):
    status = 500
    retry_after: int | None = None  # seconds, sent as Retry-After

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UnsupportedMediaType(InferenceError):
    status = 415


class ImageTooLarge(InferenceError):
    status = 413


class UndecodableImage(InferenceError):
    status = 422


class Overloaded(InferenceError):
    """This replica already runs its limit of predictions: retry shortly, rather than queue without bound."""

    status = 429
    retry_after = 1


class ServingUnavailable(InferenceError):
    """The inference server is down or the model is not ready: try again later."""

    status = 503

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after


class ModelChanged(Exception):
    """The version that would answer expects another input size than the request was prepared for (internal:
    the client prepares the image again)."""


class SmokeFailure(Exception):
    """polyp-smoke: the served model answered, but not as a working model would."""
