"""The API's calls, built once and sent by either client: each is a method, a path, the JSON
body or query, and how to read the answer into a typed model."""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter

from thirdway.dialogue import Dialogue
from thirdway.gateway import Acted, Executed
from thirdway.protocol.models import Observation, Proposal, ToolCall
from thirdway.service import schemas

T = TypeVar("T")
_OUTCOME: TypeAdapter[schemas.OutcomeBody] = TypeAdapter(schemas.OutcomeBody)


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: Mapping[str, Any] = field(default_factory=dict)


@functools.cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    """Building a TypeAdapter costs milliseconds: once per answer type, not per request."""
    return TypeAdapter(kind)


def _model(kind: type[T]) -> Callable[[Any], T]:
    validate: Callable[[Any], T] = _adapter(cast(Hashable, kind)).validate_python
    return validate


def _dump(value: BaseModel | Mapping[str, Any]) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dict(value)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _page(limit: int, cursor: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    return params


def whoami() -> Call[schemas.WhoAmI]:
    return Call("GET", "/v1/whoami", _model(schemas.WhoAmI))


def health() -> Call[schemas.Health]:
    return Call("GET", "/v1/health", _model(schemas.Health))


def create_key(name: str, role: str) -> Call[schemas.KeyCreated]:
    return Call("POST", "/v1/keys", _model(schemas.KeyCreated), {"name": name, "role": role})


def list_keys() -> Call[list[schemas.KeyInfoBody]]:
    return Call("GET", "/v1/keys", _model(list[schemas.KeyInfoBody]))


def revoke_key(key_id: str) -> Call[schemas.KeyInfoBody]:
    return Call("DELETE", f"/v1/keys/{_seg(key_id)}", _model(schemas.KeyInfoBody))


def open_session(
    instruction: str, agent: str | None, session: str | None
) -> Call[schemas.SessionOpened]:
    body = {"instruction": instruction, "agent": agent, "session": session}
    body = {k: v for k, v in body.items() if v is not None}
    return Call("POST", "/v1/sessions", _model(schemas.SessionOpened), body)


def close_session(sid: str) -> Call[schemas.SessionClosed]:
    return Call("DELETE", f"/v1/sessions/{_seg(sid)}", _model(schemas.SessionClosed))


def observations(sid: str, limit: int, cursor: str | None) -> Call[schemas.Page[Observation]]:
    return Call(
        "GET",
        f"/v1/sessions/{_seg(sid)}/observations",
        _model(schemas.Page[Observation]),
        params=_page(limit, cursor),
    )


def record_observation(sid: str, body: Mapping[str, Any]) -> Call[int]:
    return Call(
        "POST",
        f"/v1/sessions/{_seg(sid)}/observations",
        lambda raw: schemas.ObservationRecorded.model_validate(raw).index,
        {k: v for k, v in body.items() if v is not None},
    )


def record_tool_result(
    sid: str, call: ToolCall | Mapping[str, Any], content: str
) -> Call[tuple[int, int]]:
    def parse(raw: Any) -> tuple[int, int]:
        got = schemas.ToolResultRecorded.model_validate(raw)
        return got.call_index, got.result_index

    body = {"call": _dump(call), "content": content}
    return Call("POST", f"/v1/sessions/{_seg(sid)}/tool-results", parse, body)


def propose(sid: str, proposal: Proposal | Mapping[str, Any]) -> Call[schemas.OutcomeBody]:
    return Call(
        "POST",
        f"/v1/sessions/{_seg(sid)}/proposals",
        _OUTCOME.validate_python,
        _dump(proposal),
    )


def execute(sid: str, token: str, call: ToolCall | Mapping[str, Any]) -> Call[Executed]:
    body = {"token": token, "call": _dump(call)}
    return Call("POST", f"/v1/sessions/{_seg(sid)}/executions", _model(Executed), body)


def act(sid: str, proposal: Proposal | Mapping[str, Any]) -> Call[Acted]:
    return Call("POST", f"/v1/sessions/{_seg(sid)}/actions", _model(Acted), _dump(proposal))


def dialogues(open_only: bool, limit: int, cursor: str | None) -> Call[schemas.Page[Dialogue]]:
    params = {**_page(limit, cursor), "open_only": str(open_only).lower()}
    return Call("GET", "/v1/dialogues", _model(schemas.Page[Dialogue]), params=params)


def dialogue(handle: str) -> Call[Dialogue]:
    return Call("GET", f"/v1/dialogues/{_seg(handle)}", _model(Dialogue))


def challenge(handle: str, kind: str, obs: int | None, text: str) -> Call[Dialogue]:
    body: dict[str, Any] = {"kind": kind, "text": text}
    if obs is not None:
        body["obs"] = obs
    return Call("POST", f"/v1/dialogues/{_seg(handle)}/challenge", _model(Dialogue), body)


def answer(handle: str, answer: Mapping[str, Any]) -> Call[Dialogue]:
    body = {"answer": _dump(answer)}
    return Call("POST", f"/v1/dialogues/{_seg(handle)}/answer", _model(Dialogue), body)


def decide(handle: str, verb: str, reason: str) -> Call[Dialogue]:
    path = f"/v1/dialogues/{_seg(handle)}/{verb}"
    return Call("POST", path, _model(Dialogue), {"reason": reason})


def resolution(handle: str) -> Call[schemas.Resolution]:
    return Call("GET", f"/v1/dialogues/{_seg(handle)}/resolution", _model(schemas.Resolution))


def trust(agent: str) -> Call[schemas.TrustBody]:
    return Call("GET", f"/v1/trust/{_seg(agent)}", _model(schemas.TrustBody))


def checkpoint() -> Call[schemas.CheckpointBody]:
    return Call("GET", "/v1/log/checkpoint", _model(schemas.CheckpointBody))


def entries(limit: int, cursor: str | None) -> Call[schemas.Page[schemas.LogEntryBody]]:
    return Call(
        "GET",
        "/v1/log/entries",
        _model(schemas.Page[schemas.LogEntryBody]),
        params=_page(limit, cursor),
    )


def inclusion(index: int, size: int | None) -> Call[schemas.InclusionProofBody]:
    params = {"index": index} if size is None else {"index": index, "size": size}
    return Call(
        "GET", "/v1/log/proofs/inclusion", _model(schemas.InclusionProofBody), params=params
    )


def consistency(first: int, second: int | None) -> Call[schemas.ConsistencyProofBody]:
    params = {"first": first} if second is None else {"first": first, "second": second}
    return Call(
        "GET", "/v1/log/proofs/consistency", _model(schemas.ConsistencyProofBody), params=params
    )


def attestation() -> Call[schemas.AttestationBody]:
    return Call("GET", "/v1/attestation", _model(schemas.AttestationBody))
