"""Sessions, observations, proposals and executions: the agent's side of the gate."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from thirdway.errors import GateError
from thirdway.gateway import Acted, Executed, Outcome
from thirdway.protocol.models import Observation, Proposal
from thirdway.service import schemas
from thirdway.service.auth import Principal
from thirdway.service.deps import Caller, Svc, check_session_access, in_thread, json_answer
from thirdway.service.errors import ERROR_RESPONSES, Conflict, Forbidden
from thirdway.service.limits import DEFAULT_PAGE, Cursor, Limit, next_cursor, start_of
from thirdway.service.state import Services

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], responses=ERROR_RESPONSES)


@router.post("", response_model=schemas.SessionOpened, status_code=201)
async def open_session(
    body: schemas.SessionRequest, svc: Svc, who: Caller, request: Request
) -> Response:
    """Open a session for the calling agent with the principal's instruction (observation 0)."""
    who.require_agent(body.agent or who.name)
    return json_answer(await in_thread(request, open_as, svc, who, body), 201)


@router.delete("/{sid}", response_model=schemas.SessionClosed)
def close_session(sid: str, svc: Svc, who: Caller) -> schemas.SessionClosed:
    """End the session (its tokens stop working; its record stays in the log)."""
    return close_as(svc, who, sid)


@router.get("/{sid}/observations", response_model=schemas.Page[Observation])
def list_observations(
    sid: str, svc: Svc, who: Caller, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None
) -> schemas.Page[Observation]:
    """The session's record, as the gateway saw it (the owner agent, auditors, admins)."""
    check_session_access(svc, who, sid, act=False)
    record = svc.gate.observations(sid)
    start = start_of(cursor)
    items = list(record[start : start + limit])
    return schemas.Page(items=items, next_cursor=next_cursor(start, len(items), len(record)))


@router.post("/{sid}/observations", response_model=schemas.ObservationRecorded, status_code=201)
def record_observation(
    sid: str, body: schemas.ObservationRequest, svc: Svc, who: Caller
) -> schemas.ObservationRecorded:
    """Record one observation that reached the agent from elsewhere."""
    agent = check_session_access(svc, who, sid, act=True)
    index = svc.gate.record_observation(
        sid,
        channel=body.channel,
        content=body.content,
        call=body.call,
        produced_by=body.produced_by,
        agent=agent,
    )
    return schemas.ObservationRecorded(index=index)


@router.post("/{sid}/tool-results", response_model=schemas.ToolResultRecorded, status_code=201)
def record_tool_result(
    sid: str, body: schemas.ToolResultRequest, svc: Svc, who: Caller
) -> schemas.ToolResultRecorded:
    """Record a tool call made outside the gateway and its result, together."""
    agent = check_session_access(svc, who, sid, act=True)
    call, result = svc.gate.record_tool_result(sid, body.call, body.content, agent=agent)
    return schemas.ToolResultRecorded(call_index=call, result_index=result)


@router.post("/{sid}/proposals", response_model=schemas.OutcomeBody)
async def propose(
    sid: str, proposal: Proposal, svc: Svc, who: Caller, request: Request
) -> Response:
    """Verify, authorize and (if both allow) mint a capability for the proposed action.

    A refusal by the verifier or the policy is a normal answer (200, ``outcome: denied`` with
    the reason and findings); so is an escalation (``outcome: escalated`` with the dialogue
    handle). Only requests the gate cannot act on are errors."""

    return json_answer(await in_thread(request, propose_as, svc, who, sid, proposal))


@router.post("/{sid}/executions", response_model=Executed)
async def execute(
    sid: str, body: schemas.ExecuteRequest, svc: Svc, who: Caller, request: Request
) -> Response:
    """Run a gateway-hosted tool with a capability for exactly this call (single use)."""

    return json_answer(await in_thread(request, execute_as, svc, who, sid, body))


@router.post("/{sid}/actions", response_model=Acted)
async def act(sid: str, proposal: Proposal, svc: Svc, who: Caller, request: Request) -> Response:
    """Propose and, when granted, run the gateway-hosted tool at once (MCP's ``tools/call``
    for the gateway's own tools): one request instead of a proposal and an execution.

    The log gets exactly the entries of the two requests. ``outcome`` is what a proposal
    answers; ``executed`` is present exactly when it is ``granted`` (the token in the grant is
    then already spent). A denial or an escalation runs nothing (the escalation's handle works
    as ever, and its token is then used with ``/executions``). A tool this gateway does not
    host is a 400 before anything is logged."""

    return json_answer(await in_thread(request, act_as, svc, who, sid, proposal))


# The gate calls of the hot routes, shared with their raw ASGI fast path
# (:mod:`thirdway.service.hot`): blocking, run on the gate threads.


def open_as(svc: Services, who: Principal, body: schemas.SessionRequest) -> schemas.SessionOpened:
    agent = body.agent or who.name
    who.require_agent(agent)
    try:
        sid = svc.gate.open_session(agent, body.instruction, session_id=body.session)
    except GateError as exc:
        if body.session is not None and "already exists" in str(exc):
            raise Conflict(str(exc)) from None
        raise
    return schemas.SessionOpened(session=sid, agent=agent)


def close_as(svc: Services, who: Principal, sid: str) -> schemas.SessionClosed:
    agent = check_session_access(svc, who, sid, act=True)
    svc.gate.close_session(sid, agent=agent)
    return schemas.SessionClosed(session=sid)


def _proposing_agent(svc: Services, who: Principal, sid: str, proposal: Proposal) -> str:
    agent = check_session_access(svc, who, sid, act=True)
    if proposal.agent is not None and proposal.agent != agent:
        raise Forbidden(f"agent {agent!r} cannot propose as agent {proposal.agent!r}")
    return agent


def propose_as(svc: Services, who: Principal, sid: str, proposal: Proposal) -> Outcome:
    agent = _proposing_agent(svc, who, sid, proposal)
    return svc.gate.propose(sid, proposal, agent=agent)


def execute_as(svc: Services, who: Principal, sid: str, body: schemas.ExecuteRequest) -> Executed:
    agent = check_session_access(svc, who, sid, act=True)
    return svc.gate.execute(sid, body.token, body.call, agent=agent)


def act_as(svc: Services, who: Principal, sid: str, proposal: Proposal) -> Acted:
    agent = _proposing_agent(svc, who, sid, proposal)
    return svc.gate.act(sid, proposal, agent=agent)
