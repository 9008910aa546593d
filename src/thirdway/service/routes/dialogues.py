"""Dialogues: auditors review, challenge, approve and deny; agents answer their own."""

from __future__ import annotations

from fastapi import APIRouter

from thirdway.dialogue import Dialogue, DialogueError, make_challenge
from thirdway.service import schemas
from thirdway.service.auth import Principal
from thirdway.service.deps import Caller, Svc
from thirdway.service.errors import ERROR_RESPONSES, Forbidden, NotFound
from thirdway.service.limits import DEFAULT_PAGE, Cursor, Limit, next_cursor, start_of
from thirdway.service.state import Services

router = APIRouter(prefix="/v1/dialogues", tags=["dialogues"], responses=ERROR_RESPONSES)


def _find(svc: Services, who: Principal, handle: str) -> Dialogue:
    try:
        found = svc.dialogues.dialogue(handle)
    except DialogueError:
        raise NotFound(f"no dialogue {handle[:80]!r}") from None
    if who.role == "agent" and found.agent != who.name:
        raise Forbidden(f"dialogue {handle!r} belongs to another agent")
    return found


@router.get("", response_model=schemas.Page[Dialogue])
def list_dialogues(
    svc: Svc,
    who: Caller,
    open_only: bool = False,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> schemas.Page[Dialogue]:
    """Dialogues, oldest first (an agent sees only its own)."""
    found = svc.dialogues.dialogues(open_only=open_only)
    if who.role == "agent":
        found = [d for d in found if d.agent == who.name]
    start = start_of(cursor)
    items = found[start : start + limit]
    return schemas.Page(items=items, next_cursor=next_cursor(start, len(items), len(found)))


@router.get("/{handle}", response_model=Dialogue)
def show_dialogue(handle: str, svc: Svc, who: Caller) -> Dialogue:
    return _find(svc, who, handle)


@router.post("/{handle}/challenge", response_model=Dialogue)
def challenge(handle: str, body: schemas.ChallengeRequest, svc: Svc, who: Caller) -> Dialogue:
    """Ask the agent a question (auditors only)."""
    who.require("auditor")
    _find(svc, who, handle)
    asked = make_challenge(body.kind, obs=body.obs, text=body.text)
    return svc.dialogues.challenge(handle, who.name, asked)


@router.post("/{handle}/answer", response_model=Dialogue)
def answer(handle: str, body: schemas.AnswerRequest, svc: Svc, who: Caller) -> Dialogue:
    """The agent answers its pending challenge with a small chain, verified like any other."""
    found = _find(svc, who, handle)
    who.require_agent(found.agent)
    return svc.dialogues.answer(handle, who.name, body.answer)


@router.post("/{handle}/approve", response_model=Dialogue)
def approve(handle: str, body: schemas.ReasonRequest, svc: Svc, who: Caller) -> Dialogue:
    """One auditor's approval with a reason (enough of them release the capability)."""
    who.require("auditor")
    _find(svc, who, handle)
    return svc.dialogues.approve(handle, who.name, body.reason)


@router.post("/{handle}/deny", response_model=Dialogue)
def deny(handle: str, body: schemas.ReasonRequest, svc: Svc, who: Caller) -> Dialogue:
    """An auditor's denial with a reason: the dialogue closes as denied."""
    who.require("auditor")
    _find(svc, who, handle)
    return svc.dialogues.deny(handle, who.name, body.reason)


@router.get("/{handle}/resolution", response_model=schemas.Resolution)
def resolution(handle: str, svc: Svc, who: Caller) -> schemas.Resolution:
    """What the agent learns: pending, granted (with the token), denied, expired, approved."""
    found = _find(svc, who, handle)
    who.require_agent(found.agent)
    got = svc.dialogues.resolution(handle, who.name)
    return schemas.Resolution(
        status=got.status,
        reason=got.reason,
        token=got.token,
        capability_index=got.capability_index,
    )
