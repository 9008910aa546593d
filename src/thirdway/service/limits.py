"""Request size limit and pagination.

The size limit is a pure ASGI middleware that buffers at most ``max_bytes`` of a body before
the app sees it: a declared or actual body over the limit gets a 413 naming the limit, and the
handler never runs.
"""

from __future__ import annotations

import json
from typing import Annotated, Final

from fastapi import Query
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thirdway.service.config import MAX_PAGE
from thirdway.service.errors import ServiceError

DEFAULT_PAGE: Final = 100


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a 413 (JSON error contract)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(send)
                return
            more = message.get("more_body", False)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        message = f"the request body is over the limit of {self.max_bytes} bytes (max_body_bytes)"
        payload = json.dumps({"error": {"code": PayloadTooLarge.code, "message": message}})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": payload.encode()})


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"items per page (1 to {MAX_PAGE})")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=20,
        pattern=r"^[0-9]+$",
        description="opaque position from the previous page's next_cursor",
    ),
]


def start_of(cursor: str | None) -> int:
    return int(cursor) if cursor else 0


def next_cursor(start: int, returned: int, total: int) -> str | None:
    end = start + returned
    return str(end) if end < total else None
