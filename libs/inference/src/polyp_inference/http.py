"""POST /predict as a FastAPI router: the control service mounts it; the serving benchmark serves it alone.

The route raises the library's errors only; `add_exception_handlers` maps them to their answers, once per app."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .client import OUTPUTS, InferenceClient, Output
from .errors import ImageTooLarge, InferenceError, Overloaded
from .postprocess import DEFAULT_MIN_AREA


class BoxOut(BaseModel):
    x: int
    y: int
    width: int
    height: int
    area_fraction: float = Field(description="share of the whole image this polyp covers")


class PredictionOut(BaseModel):
    model: str
    version: str = Field(description="the model version that answered")
    width: int
    height: int
    area_fraction: float = Field(description="share of the image predicted as polyp (the whole mask)")
    boxes: list[BoxOut] | None = Field(
        description="one box per connected polyp region of at least min_area, largest first; null unless outputs includes boxes"
    )
    latency_ms: float
    mask_png_base64: str | None = Field(
        description="the mask at the image's original size, 0 or 255, PNG; null unless outputs includes mask"
    )


class ErrorOut(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="what was wrong: a message, or for a request that fails validation one entry per problem (loc, msg, type)"
    )


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the multipart form cannot be parsed"},
    413: {"model": ErrorOut, "description": "image larger than the upload limit"},
    415: {"model": ErrorOut, "description": "not a JPEG or PNG"},
    422: {"model": ErrorOut, "description": "the upload cannot be decoded as an image, or a parameter is invalid"},
    429: {
        "model": ErrorOut,
        "headers": RETRY_AFTER,
        "description": "this replica is already running its limit of predictions; see Retry-After",
    },
    503: {"model": ErrorOut, "headers": RETRY_AFTER, "description": "inference server down or model not ready"},
}


async def _inference_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, InferenceError)
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return JSONResponse({"detail": error.message}, status_code=error.status, headers=headers)


def add_exception_handlers(app: FastAPI) -> None:
    """Each InferenceError as its documented answer (ERRORS): status, message, Retry-After where it has one."""
    app.add_exception_handler(InferenceError, _inference_error)


# The upload's part must be a JPEG or a PNG: said in the schema (multipart encoding), not only in prose.
IMAGE_PART = {
    "requestBody": {"content": {"multipart/form-data": {"encoding": {"file": {"contentType": "image/jpeg, image/png"}}}}}
}


def predict_router(client: InferenceClient, dependencies: list | None = None, max_concurrent: int | None = None) -> APIRouter:
    """POST /predict; at most max_concurrent inferences at once (more get 429 rather than a queue that grows).
    The app that includes it registers `add_exception_handlers`."""
    router = APIRouter(tags=["predict"], dependencies=dependencies or [])
    in_flight = 0

    @router.post(
        "/predict",
        response_model=PredictionOut,
        responses=ERRORS,
        summary="Segment polyps in an endoscopy image",
        openapi_extra=IMAGE_PART,
    )
    async def predict(
        file: Annotated[UploadFile, File(description="JPEG or PNG")],
        outputs: Annotated[
            tuple[Output, ...],
            Query(description="what to return besides the area: mask, boxes or both (repeat the parameter)"),
        ] = OUTPUTS,
        min_area: Annotated[
            float,
            Query(ge=0, le=1, description="smallest region, as a share of the image, that gets a box (smaller ones are speckle)"),
        ] = DEFAULT_MIN_AREA,
    ) -> dict:
        nonlocal in_flight
        if max_concurrent and in_flight >= max_concurrent:
            raise Overloaded(f"{in_flight} predictions are running on this replica (limit {max_concurrent}); retry shortly")
        in_flight += 1
        try:
            data = await file.read(client.max_bytes + 1)  # never hold more than the limit
            if len(data) > client.max_bytes:
                raise ImageTooLarge(f"image is larger than the limit of {client.max_bytes} bytes")
            return (await client.predict(data, file.content_type, frozenset(outputs), min_area)).as_json()
        finally:
            in_flight -= 1

    return router
