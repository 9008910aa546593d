"""FastAPI dependencies: the process's services and the calling principal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Annotated, Any, Final, TypeVar

from fastapi import Depends, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from thirdway.errors import GateError
from thirdway.service.auth import Principal
from thirdway.service.errors import Forbidden, NotFound
from thirdway.service.state import Services

T = TypeVar("T")
JSON_TYPE: Final = "application/json"
_bearer = HTTPBearer(auto_error=False, description="An API key: 'Authorization: Bearer tw_…'")


async def services(request: Request) -> Services:
    """The process's services. ``async`` because it only reads ``app.state``: a plain ``def``
    dependency costs a worker-thread round trip on every request."""
    found: Services = request.app.state.services
    return found


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    """The caller. ``async``: a SQLite key lookup (a local WAL read, microseconds) runs on the
    event loop instead of costing a worker-thread round trip on every request; a PostgreSQL
    lookup (a network round trip) still goes to a thread."""
    svc: Services = request.app.state.services
    key = credentials.credentials if credentials else None
    if svc.keys.blocking:
        who = await in_thread(request, svc.keys.authenticate, key)
    else:
        who = svc.keys.authenticate(key)
    request.state.principal = who.name
    return who


async def in_thread(request: Request, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` on the app's gate threads (see :func:`thirdway.service.app.create_app`).
    A plain executor hand-off: cheaper per request than the anyio thread hop FastAPI uses
    for ``def`` routes, which the hot routes (open session, propose, execute) were."""
    executor: ThreadPoolExecutor = request.app.state.executor
    return await asyncio.get_running_loop().run_in_executor(executor, partial(call, *args))


def json_answer(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as the JSON FastAPI would send for ``response_model=type(model)`` (by alias,
    nothing excluded), without validating it again: the gate built it from validated parts."""
    return Response(
        model.model_dump_json(by_alias=True), status_code=status_code, media_type=JSON_TYPE
    )


Svc = Annotated[Services, Depends(services)]
Caller = Annotated[Principal, Depends(principal)]


def session_owner(svc: Services, sid: str) -> str:
    """The agent owning session ``sid``, or 404."""
    try:
        return svc.gate.session_agent(sid)
    except GateError:
        raise NotFound(f"no open session {sid[:80]!r}") from None


def check_session_access(svc: Services, who: Principal, sid: str, *, act: bool) -> str:
    """404 for an unknown session, and the same 404 for an agent's call on another agent's
    session: an agent learns nothing of other agents' sessions, not even that one exists or
    whose it is (ids may be chosen, so guessable). Acting needs the session's own agent;
    auditors and admins may read."""
    agent = session_owner(svc, sid)
    if who.role == "agent" and agent != who.name:
        raise NotFound(f"no open session {sid[:80]!r}")
    if act:
        who.require_agent(agent)
    return agent


def check_not_agent(who: Principal, what: str) -> None:
    if who.role == "agent":
        raise Forbidden(f"an agent cannot {what}")
