"""/v1/watches: create, list, get, replace, pause, resume, delete. The store is synchronous SQLAlchemy: each call runs in
a worker thread, never on the event loop."""

from __future__ import annotations

from asyncio import to_thread

from fastapi import APIRouter, Response

from ..watches import Watch, WatchSpec
from . import responses
from .deps import READ, WRITE, WatchesDep

router = APIRouter(prefix="/v1/watches", tags=["watches"], dependencies=[READ], responses=responses.READ)
NOT_FOUND = responses.errors(404, e404="no watch with this id")


@router.post(
    "",
    response_model=Watch,
    status_code=201,
    dependencies=[WRITE],
    responses={**responses.WRITE, **responses.BODY},
    summary="Create a watch: freshness, quality or run failures of a model version (default: the served one)",
)
async def create(watches: WatchesDep, spec: WatchSpec) -> Watch:
    return await to_thread(watches.create, spec)


@router.get("", response_model=list[Watch], summary="Every watch, with its state")
async def list_watches(watches: WatchesDep) -> list[Watch]:
    return await to_thread(watches.list)


@router.get(
    "/{watch_id}",
    response_model=Watch,
    responses=NOT_FOUND,
    summary="A watch and its state: ok or firing, since, last checked, last value",
)
async def get(watches: WatchesDep, watch_id: str) -> Watch:
    return await to_thread(watches.get, watch_id)


@router.put(
    "/{watch_id}",
    response_model=Watch,
    dependencies=[WRITE],
    responses={**NOT_FOUND, **responses.WRITE, **responses.BODY},
    summary="Replace a watch's spec (a default edited here stops following the environment settings)",
)
async def replace(watches: WatchesDep, watch_id: str, spec: WatchSpec) -> Watch:
    return await to_thread(watches.replace, watch_id, spec)


@router.post("/{watch_id}/pause", response_model=Watch, dependencies=[WRITE], responses={**NOT_FOUND, **responses.WRITE})
async def pause(watches: WatchesDep, watch_id: str) -> Watch:
    return await to_thread(watches.set_paused, watch_id, True)


@router.post("/{watch_id}/resume", response_model=Watch, dependencies=[WRITE], responses={**NOT_FOUND, **responses.WRITE})
async def resume(watches: WatchesDep, watch_id: str) -> Watch:
    return await to_thread(watches.set_paused, watch_id, False)


@router.delete(
    "/{watch_id}",
    status_code=204,
    dependencies=[WRITE],
    responses={
        **NOT_FOUND,
        **responses.WRITE,
        **responses.errors(409, e409="a default watch: pause it, or take it over with PUT first"),
    },
    summary="Delete a watch; an open episode is resolved first",
)
async def delete(watches: WatchesDep, watch_id: str) -> Response:
    await watches.delete(watch_id)
    return Response(status_code=204)
