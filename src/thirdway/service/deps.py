"""FastAPI dependencies: the process's services and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from thirdway.errors import GateError
from thirdway.service.auth import Principal
from thirdway.service.errors import Forbidden, NotFound
from thirdway.service.state import Services

_bearer = HTTPBearer(auto_error=False, description="An API key: 'Authorization: Bearer tw_…'")


async def services(request: Request) -> Services:
    """The process's services. ``async`` because it only reads ``app.state``: a plain ``def``
    dependency costs a worker-thread round trip on every request."""
    found: Services = request.app.state.services
    return found


def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    svc: Services = request.app.state.services
    who = svc.keys.authenticate(credentials.credentials if credentials else None)
    request.state.principal = who.name
    return who


Svc = Annotated[Services, Depends(services)]
Caller = Annotated[Principal, Depends(principal)]


def session_owner(svc: Services, sid: str) -> str:
    """The agent owning session ``sid``, or 404."""
    try:
        return svc.gate.session_agent(sid)
    except GateError:
        raise NotFound(f"no open session {sid[:80]!r}") from None


def check_session_access(svc: Services, who: Principal, sid: str, *, act: bool) -> str:
    """404 for an unknown session; acting needs its own agent, reading also auditors/admins."""
    agent = session_owner(svc, sid)
    if act or who.role == "agent":
        who.require_agent(agent)
    return agent


def check_not_agent(who: Principal, what: str) -> None:
    if who.role == "agent":
        raise Forbidden(f"an agent cannot {what}")
