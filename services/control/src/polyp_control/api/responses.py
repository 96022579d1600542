"""The error answers each operation documents: every non-2xx status a route returns, with its body."""

from __future__ import annotations

from typing import Any

from polyp_inference.http import RETRY_AFTER, ErrorOut

DESCRIPTIONS = {
    400: "the body cannot be parsed (not JSON, or a broken multipart form)",
    401: "no bearer token, or not one of this service's (see WWW-Authenticate)",
    403: "the read token on an operation that needs the write token",
    404: "no such resource",
    409: "the request conflicts with the resource's state",
    413: "the upload is larger than the limit",
    415: "the upload is not a JPEG or PNG",
    422: "the request is not valid: see detail",
    429: "too many requests in flight on this replica; see Retry-After",
    503: "a dependency (the database, Redis, MLflow, Ray, the model server) cannot answer now; see Retry-After",
}


def errors(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each code with ErrorOut and a description (another by keyword: e404="...")."""
    documented: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry = {"model": ErrorOut, "description": descriptions.get(f"e{code}", DESCRIPTIONS[code])}
        if code in (429, 503):
            entry["headers"] = RETRY_AFTER
        documented[code] = entry
    return documented


def as_json(documented: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """The same answers stated as JSON bodies, for a route whose own answer is another media type (FastAPI
    would otherwise document its errors with the route's media type)."""
    return {
        code: {
            "description": entry["description"],
            **({"headers": entry["headers"]} if "headers" in entry else {}),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
        }
        for code, entry in documented.items()
    }


# Every /v1 route (FastAPI documents its own 422 where a route takes parameters); each needs the database or Redis.
READ = errors(401, 503)
WRITE = errors(403)  # besides, on the routes that need the write token
BODY = errors(
    400, 413, e413="the body is larger than the route's limit (64 KiB of JSON)"
)  # besides, on the routes that take a body
