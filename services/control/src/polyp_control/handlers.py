"""The HTTP answer of each error kind, registered once for the app (kserve's `_add_exception_handlers` pattern)."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from polyp_inference import http as inference_http

from .errors import Conflict, NotFound, Unauthorized, Unavailable

log = logging.getLogger("polyp_control")
DEPENDENCY_RETRY_AFTER_S = 5  # the database or Redis restarting: a pod is back within seconds


def refusal(exc: Unauthorized) -> JSONResponse:
    """401 or 403 with the RFC 6750 challenge: from a route's token dependency, or from the gate before routing."""
    return JSONResponse(status_code=exc.status, content={"detail": str(exc)}, headers={"WWW-Authenticate": exc.challenge})


def add_exception_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code != 405:
            return await http_exception_handler(request, exc)
        # Starlette's 405 names only the first route matching the path; Allow must list every method the path has.
        methods = allowed_methods(app, request.scope)
        return JSONResponse(
            {"detail": f"{request.method} is not supported here; use {', '.join(sorted(methods))}"},
            status_code=405,
            headers={"Allow": ", ".join(sorted(methods))},
        )

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's own answer, but a rejected NaN or Infinity (Python's json accepts them) is echoed as text:
        # a float that JSON cannot carry would turn the 422 into a 500.
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(status_code=422, content={"detail": _finite(jsonable_encoder(exc.errors()))})

    async def unauthorized(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Unauthorized)
        return refusal(exc)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    async def conflict(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Unavailable)
        return unavailable_answer(str(exc), exc.retry_after_s)

    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        # Unreachable, restarting, or over its statement timeout: the client may try again (never a 500).
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, str(exc).splitlines()[0])
        return unavailable_answer("the database cannot answer right now; try again shortly", DEPENDENCY_RETRY_AFTER_S)

    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis unavailable on %s %s: %s", request.method, request.url.path, exc)
        return unavailable_answer("the alert store (Redis) cannot answer right now; try again shortly", DEPENDENCY_RETRY_AFTER_S)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # a message, never a traceback
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": f"internal error ({type(exc).__name__})"})

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Unauthorized, unauthorized)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(Unavailable, unavailable)
    for database_error in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(database_error, database_down)
    for redis_error in (RedisConnectionError, RedisTimeout):
        app.add_exception_handler(redis_error, redis_down)
    inference_http.add_exception_handlers(app)  # /v1/predict's errors: 413, 415, 422, 429, 503
    app.add_exception_handler(Exception, unexpected)


def unavailable_answer(detail: str, retry_after_s: int) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": detail}, headers={"Retry-After": str(retry_after_s)})


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def allowed_methods(app: FastAPI, scope: Scope) -> set[str]:
    """The methods some route answers at this request's path (asked of the router, included routers too)."""
    found = set()
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in app.router.routes):
            found.add(method)
    return found
