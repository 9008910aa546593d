"""The hot routes' fast path: raw ASGI for a well-formed POST to ``/v1/sessions`` (open one) or
to ``/proposals``, ``/executions`` or ``/actions`` of a session, and a ``DELETE`` of a session
without a body (close it; every task ends with one).

Every gated action goes through these routes, and FastAPI's machinery around one (routing
through its middleware and router layers, dependency solving, body reading and content-type
parsing, exception middleware) costs the server more than the HTTP parsing does. This ASGI
middleware, the innermost of the app's own (inside the request log, the body limit and the
catch-all), answers such a request itself with the very functions the FastAPI routes call
(:func:`~thirdway.service.routes.sessions.open_as`, ``propose_as``, ``execute_as``,
``act_as``) and the same bytes:

- it handles only the plain case: ``POST``, no ``root_path``, ``Content-Type:
  application/json``, ``Authorization: Bearer <key>``, a body that parses as a JSON object, a
  key that authenticates and a body that validates as the route's model. Anything else (and
  any failure up to there) is handed to FastAPI with the body replayed, so every error before
  the gate call (400, 401, 403 of a role, …) is FastAPI's own answer, unchanged;
- what the gate call raises is answered as the app's exception handler answers it
  (:func:`~thirdway.service.errors.classify`, :func:`~thirdway.service.errors.error_response`);
  anything else propagates to the catch-all, as from a route;
- a success is the answer's JSON by alias, as :func:`~thirdway.service.deps.json_answer`
  sends it, with the same headers.

The OpenAPI document still comes from the FastAPI routes, which also serve every request this
path hands on. ``create_app(..., fast_path=False)`` leaves it out (the tests compare both).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from functools import partial
from typing import Final

import orjson
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thirdway.errors import ThirdwayError
from thirdway.protocol.models import Proposal
from thirdway.service import schemas
from thirdway.service.errors import classify, error_response
from thirdway.service.routes.sessions import act_as, close_as, execute_as, open_as, propose_as

_PATH: Final = re.compile(r"/v1/sessions(?:/([^/]+)/(proposals|executions|actions))?")
_SESSION: Final = re.compile(r"/v1/sessions/([^/]+)")
_JSON: Final = b"application/json"
_BEARER: Final = b"Bearer "
_ROUTES: Final[dict[str | None, tuple[type[BaseModel], Callable[..., BaseModel], int]]] = {
    None: (schemas.SessionRequest, open_as, 201),
    "proposals": (Proposal, propose_as, 200),
    "executions": (schemas.ExecuteRequest, execute_as, 200),
    "actions": (Proposal, act_as, 200),
}


class HotRoutes:
    """Answers the hot routes' plain requests without FastAPI (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "DELETE" and not scope.get("root_path"):
            await self._delete(scope, receive, send)
            return
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        key = _bearer_key(scope)
        body = await _read(receive)
        if body is None:  # the client went away
            return
        replay = _replay(body, receive)
        if key is None:
            await self.app(scope, replay, send)
            return
        route = _ROUTES[match.group(2)]
        answered = await self._answer(scope, send, key, body, route, match.group(1))
        if not answered:
            await self.app(scope, replay, send)

    async def _delete(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``DELETE /v1/sessions/{sid}`` without a body: close the session."""
        match = _SESSION.fullmatch(scope["path"])
        key = _bearer_key(scope, json_body=False) if match is not None else None
        answered = False
        if match is not None and key is not None:
            answered = await self._answer(scope, send, key, None, (None, close_as, 200), match[1])
        if not answered:
            await self.app(scope, receive, send)

    async def _answer(
        self,
        scope: Scope,
        send: Send,
        key: str,
        body: bytes | None,
        route: tuple[type[BaseModel] | None, Callable[..., BaseModel], int],
        sid: str | None,
    ) -> bool:
        """Answer the request; False (nothing sent) to hand it to FastAPI instead. A route
        without a model takes no body (``body`` is None)."""
        model, call, status = route
        data = None
        if model is not None:
            try:
                data = orjson.loads(body or b"")
            except orjson.JSONDecodeError:
                return False
            if not isinstance(data, dict):
                return False
        app = scope["app"]
        svc = app.state.services
        loop = asyncio.get_running_loop()
        try:
            if svc.keys.blocking:
                who = await loop.run_in_executor(app.state.executor, svc.keys.authenticate, key)
            else:
                who = svc.keys.authenticate(key)
        except ThirdwayError:
            return False
        if model is None:
            args: tuple[object, ...] = (svc, who, sid)
        else:
            try:
                parsed = model.model_validate(data)
            except ValidationError:
                return False
            args = (svc, who, parsed) if sid is None else (svc, who, sid, parsed)
        scope.setdefault("state", {})["principal"] = who.name
        try:
            answer = await loop.run_in_executor(app.state.executor, partial(call, *args))
        except ThirdwayError as exc:
            status, code, reason = classify(exc)
            response = error_response(status, code, str(exc), reason)
            await response(scope, _no_receive, send)
            return True
        payload = answer.model_dump_json(by_alias=True).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-length", str(len(payload)).encode()),
                    (b"content-type", _JSON),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return True


def _bearer_key(scope: Scope, *, json_body: bool = True) -> str | None:
    """The API key when the request is the plain case: exactly one ``Authorization``, ``Bearer
    <key>``, and either (``json_body``) exactly one ``Content-Type``, ``application/json``, or
    (not ``json_body``) no body at all (no ``Transfer-Encoding``, ``Content-Length`` absent or
    0; any ``Content-Type``); else None."""
    content_type: list[bytes] = []
    authorization: list[bytes] = []
    length: list[bytes] = []
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type.append(value)
        elif name == b"authorization":
            authorization.append(value)
        elif name == b"content-length":
            length.append(value)
        elif name == b"transfer-encoding":
            chunked = True
    if len(authorization) != 1:
        return None
    if json_body and content_type != [_JSON]:
        return None
    if not json_body and (chunked or length not in ([], [b"0"])):
        return None
    value = authorization[0]
    if not value.startswith(_BEARER):
        return None
    key = value[len(_BEARER) :]
    if not key or not key.isascii() or any(c in key for c in b" \t"):
        return None
    return key.decode("ascii")


async def _read(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _no_receive() -> Message:  # pragma: no cover - a JSONResponse never reads
    raise RuntimeError("the response does not read the request")
