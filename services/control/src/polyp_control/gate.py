"""The API's door: a request to /v1/ without a valid token is refused before its body is read, and a body
is bounded while it is read.

FastAPI parses (and for uploads spools) the whole body before a route's dependencies run, so the token check
in auth.py alone came after a 30 MB upload was received, and malformed JSON without a token got 422, not 401.
This ASGI layer sits before routing: it checks the bearer token (and for a change, the write token), then reads
the body up to the route's limit, answering 413 as soon as the declared or the received size passes it, and
hands the body on to the app. The routes keep their own token dependencies (and document them in OpenAPI);
a test keeps READ_ONLY_CHANGES equal to the routes that take a body but only the read token.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import WRITE_NEEDED, role_of
from .errors import Forbidden, Unauthorized
from .handlers import refusal
from .settings import Settings

JSON_BODY_LIMIT = 64 * 1024  # the largest JSON body a route takes is a schedule: well under 8 KiB
MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and part headers around /v1/predict's image
READ_ONLY_CHANGES = {"/v1/predict", "/v1/alerts/ticket"}  # POSTs the read token may make; every other change needs write


class RequestGate:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app, self.settings = app, settings
        self.upload_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if not self._ticketed_stream(scope):  # a stream ticket is checked by its route (EventSource sends no header)
            scheme, _, token = headers.get("authorization", "").partition(" ")
            try:
                role = role_of(self.settings, scheme, token.strip())
                if role != "write" and scope["method"] not in ("GET", "HEAD") and scope["path"] not in READ_ONLY_CHANGES:
                    raise Forbidden(WRITE_NEEDED)
            except Unauthorized as refused:  # Forbidden included
                return await refusal(refused)(scope, receive, send)
        limit = self.upload_limit if scope["path"] == "/v1/predict" else JSON_BODY_LIMIT
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await _too_large(scope, receive, send, f"the body is {declared} bytes; this route takes at most {limit}")
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                return await _too_large(scope, receive, send, f"the body is larger than {limit} bytes, this route's limit")
        await self.app(scope, _replay(bytes(body), receive), send)

    @staticmethod
    def _ticketed_stream(scope: Scope) -> bool:
        return scope["path"] == "/v1/alerts/stream" and "ticket" in QueryParams(scope.get("query_string", b""))


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body as one message, then the connection's own messages (an SSE stream waits on its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _too_large(scope: Scope, receive: Receive, send: Send, detail: str) -> None:
    await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
