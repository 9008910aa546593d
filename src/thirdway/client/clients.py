"""Sync and async Python clients of the gateway service (httpx).

Every method mirrors one endpoint and returns the typed model the service answers with; an
error answer raises the matching :mod:`thirdway.client.errors` type (also a
``thirdway.errors`` type) with the server's message. Both clients send the same requests,
built once in :mod:`thirdway.client.calls`, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from thirdway.client import calls
from thirdway.client.errors import ApiError, error_for
from thirdway.dialogue import Dialogue
from thirdway.gateway import Acted, Executed, Outcome
from thirdway.protocol.models import Observation, Proposal, ToolCall
from thirdway.service import schemas

T = TypeVar("T")
DEFAULT_TIMEOUT = 30.0


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}


def _result(call: calls.Call[T], answer: httpx.Response) -> T:
    if answer.status_code >= 400:
        try:
            body: Any = answer.json()
        except ValueError:
            body = None
        raise error_for(answer.status_code, body, answer.text[:500])
    try:
        if answer.status_code == 204 or not answer.content:
            return call.parse(None)
        return call.parse(answer.json())
    except ValueError as exc:  # not JSON, or not the promised model (ValidationError)
        raise _bad_answer(call, answer, exc) from exc


def _bad_answer(call: calls.Call[Any], answer: httpx.Response, exc: ValueError) -> ApiError:
    """A success status whose body is not the API's answer (a proxy's page, another service):
    an :class:`ApiError` like any other failure, never a bare parsing exception."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ApiError(
        answer.status_code,
        "bad_answer",
        f"the answer to {call.method} {call.path} (HTTP {answer.status_code}) is not the "
        f"thirdway API's: {first[:200]}",
    )


def _network_error(exc: httpx.HTTPError) -> ApiError:
    return ApiError(0, "network", f"cannot reach the thirdway service: {exc}")


class Client:
    """Blocking client. ``Client(base_url, api_key)``; use as a context manager or ``close()``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, call: calls.Call[T]) -> T:
        try:
            answer = self._http.request(
                call.method, call.path, json=call.json, params=dict(call.params) or None
            )
        except httpx.HTTPError as exc:
            raise _network_error(exc) from exc
        return _result(call, answer)

    def health(self) -> schemas.Health:
        """Liveness and the log's size."""
        return self._send(calls.health())

    def whoami(self) -> schemas.WhoAmI:
        """The principal this client's key belongs to."""
        return self._send(calls.whoami())

    def create_key(self, name: str, role: str) -> schemas.KeyCreated:
        """Create an API key (admin)."""
        return self._send(calls.create_key(name, role))

    def list_keys(self) -> list[schemas.KeyInfoBody]:
        """Every key's id, principal and role (admin)."""
        return self._send(calls.list_keys())

    def revoke_key(self, key_id: str) -> schemas.KeyInfoBody:
        """Revoke a key by id (admin)."""
        return self._send(calls.revoke_key(key_id))

    def open_session(
        self, instruction: str, *, agent: str | None = None, session: str | None = None
    ) -> str:
        """Open a session with the principal's instruction; returns its id."""
        return (self._send(calls.open_session(instruction, agent, session))).session

    def close_session(self, session: str) -> None:
        """End a session."""
        self._send(calls.close_session(session))

    def observations(
        self, session: str, *, limit: int = 100, cursor: str | None = None
    ) -> schemas.Page[Observation]:
        """One page of the session's record."""
        return self._send(calls.observations(session, limit, cursor))

    def record_observation(
        self,
        session: str,
        *,
        channel: str,
        content: str | None = None,
        call: Mapping[str, Any] | None = None,
        produced_by: int | None = None,
    ) -> int:
        """Record an observation; returns its index."""
        return self._send(
            calls.record_observation(
                session,
                {"channel": channel, "content": content, "call": call, "produced_by": produced_by},
            )
        )

    def record_tool_result(
        self, session: str, call: ToolCall | Mapping[str, Any], content: str
    ) -> tuple[int, int]:
        """Record a call made elsewhere and its result; their indices."""
        return self._send(calls.record_tool_result(session, call, content))

    def propose(self, session: str, proposal: Proposal | Mapping[str, Any]) -> Outcome:
        """Granted, Denied or Escalated (a denial is an answer, not an error)."""
        return self._send(calls.propose(session, proposal))

    def execute(self, session: str, token: str, call: ToolCall | Mapping[str, Any]) -> Executed:
        """Run a hosted tool with a capability for exactly this call."""
        return self._send(calls.execute(session, token, call))

    def act(self, session: str, proposal: Proposal | Mapping[str, Any]) -> Acted:
        """Propose and, when granted, run the hosted tool in one request: ``outcome`` is what
        :meth:`propose` answers, ``executed`` what :meth:`execute` would (only when granted)."""
        return self._send(calls.act(session, proposal))

    def dialogues(
        self, *, open_only: bool = False, limit: int = 100, cursor: str | None = None
    ) -> schemas.Page[Dialogue]:
        """One page of dialogues (an agent sees its own)."""
        return self._send(calls.dialogues(open_only, limit, cursor))

    def dialogue(self, handle: str) -> Dialogue:
        """One dialogue."""
        return self._send(calls.dialogue(handle))

    def challenge(
        self, handle: str, kind: str, *, obs: int | None = None, text: str = ""
    ) -> Dialogue:
        """Ask the agent a question (auditor)."""
        return self._send(calls.challenge(handle, kind, obs, text))

    def answer(self, handle: str, answer: Mapping[str, Any]) -> Dialogue:
        """Answer the pending challenge (the dialogue's agent)."""
        return self._send(calls.answer(handle, answer))

    def approve(self, handle: str, reason: str) -> Dialogue:
        """Approve with a reason (auditor)."""
        return self._send(calls.decide(handle, "approve", reason))

    def deny(self, handle: str, reason: str) -> Dialogue:
        """Deny with a reason (auditor)."""
        return self._send(calls.decide(handle, "deny", reason))

    def resolution(self, handle: str) -> schemas.Resolution:
        """What the agent learns about its dialogue (the token once granted)."""
        return self._send(calls.resolution(handle))

    def trust(self, agent: str) -> schemas.TrustBody:
        """An agent's trust state, recomputed from the log."""
        return self._send(calls.trust(agent))

    def checkpoint(self) -> schemas.CheckpointBody:
        """The log's signed checkpoint."""
        return self._send(calls.checkpoint())

    def entries(
        self, *, limit: int = 100, cursor: str | None = None
    ) -> schemas.Page[schemas.LogEntryBody]:
        """One page of log entries."""
        return self._send(calls.entries(limit, cursor))

    def inclusion_proof(self, index: int, size: int | None = None) -> schemas.InclusionProofBody:
        """Inclusion proof of entry ``index``."""
        return self._send(calls.inclusion(index, size))

    def consistency_proof(
        self, first: int, second: int | None = None
    ) -> schemas.ConsistencyProofBody:
        """Consistency proof between two tree sizes."""
        return self._send(calls.consistency(first, second))

    def attestation(self) -> schemas.AttestationBody:
        """The verifier's attestation (if it runs in the enclave)."""
        return self._send(calls.attestation())


class AsyncClient:
    """Asyncio client with the same methods as :class:`Client`, each awaitable."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=_headers(api_key),
            timeout=timeout,
            transport=transport,
            limits=limits or httpx.Limits(),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(self, call: calls.Call[T]) -> T:
        try:
            answer = await self._http.request(
                call.method, call.path, json=call.json, params=dict(call.params) or None
            )
        except httpx.HTTPError as exc:
            raise _network_error(exc) from exc
        return _result(call, answer)

    async def health(self) -> schemas.Health:
        """Liveness and the log's size."""
        return await self._send(calls.health())

    async def whoami(self) -> schemas.WhoAmI:
        """The principal this client's key belongs to."""
        return await self._send(calls.whoami())

    async def create_key(self, name: str, role: str) -> schemas.KeyCreated:
        """Create an API key (admin)."""
        return await self._send(calls.create_key(name, role))

    async def list_keys(self) -> list[schemas.KeyInfoBody]:
        """Every key's id, principal and role (admin)."""
        return await self._send(calls.list_keys())

    async def revoke_key(self, key_id: str) -> schemas.KeyInfoBody:
        """Revoke a key by id (admin)."""
        return await self._send(calls.revoke_key(key_id))

    async def open_session(
        self, instruction: str, *, agent: str | None = None, session: str | None = None
    ) -> str:
        """Open a session with the principal's instruction; returns its id."""
        return (await self._send(calls.open_session(instruction, agent, session))).session

    async def close_session(self, session: str) -> None:
        """End a session."""
        await self._send(calls.close_session(session))

    async def observations(
        self, session: str, *, limit: int = 100, cursor: str | None = None
    ) -> schemas.Page[Observation]:
        """One page of the session's record."""
        return await self._send(calls.observations(session, limit, cursor))

    async def record_observation(
        self,
        session: str,
        *,
        channel: str,
        content: str | None = None,
        call: Mapping[str, Any] | None = None,
        produced_by: int | None = None,
    ) -> int:
        """Record an observation; returns its index."""
        return await self._send(
            calls.record_observation(
                session,
                {"channel": channel, "content": content, "call": call, "produced_by": produced_by},
            )
        )

    async def record_tool_result(
        self, session: str, call: ToolCall | Mapping[str, Any], content: str
    ) -> tuple[int, int]:
        """Record a call made elsewhere and its result; their indices."""
        return await self._send(calls.record_tool_result(session, call, content))

    async def propose(self, session: str, proposal: Proposal | Mapping[str, Any]) -> Outcome:
        """Granted, Denied or Escalated (a denial is an answer, not an error)."""
        return await self._send(calls.propose(session, proposal))

    async def execute(
        self, session: str, token: str, call: ToolCall | Mapping[str, Any]
    ) -> Executed:
        """Run a hosted tool with a capability for exactly this call."""
        return await self._send(calls.execute(session, token, call))

    async def act(self, session: str, proposal: Proposal | Mapping[str, Any]) -> Acted:
        """Propose and, when granted, run the hosted tool in one request (see
        :meth:`Client.act`)."""
        return await self._send(calls.act(session, proposal))

    async def dialogues(
        self, *, open_only: bool = False, limit: int = 100, cursor: str | None = None
    ) -> schemas.Page[Dialogue]:
        """One page of dialogues (an agent sees its own)."""
        return await self._send(calls.dialogues(open_only, limit, cursor))

    async def dialogue(self, handle: str) -> Dialogue:
        """One dialogue."""
        return await self._send(calls.dialogue(handle))

    async def challenge(
        self, handle: str, kind: str, *, obs: int | None = None, text: str = ""
    ) -> Dialogue:
        """Ask the agent a question (auditor)."""
        return await self._send(calls.challenge(handle, kind, obs, text))

    async def answer(self, handle: str, answer: Mapping[str, Any]) -> Dialogue:
        """Answer the pending challenge (the dialogue's agent)."""
        return await self._send(calls.answer(handle, answer))

    async def approve(self, handle: str, reason: str) -> Dialogue:
        """Approve with a reason (auditor)."""
        return await self._send(calls.decide(handle, "approve", reason))

    async def deny(self, handle: str, reason: str) -> Dialogue:
        """Deny with a reason (auditor)."""
        return await self._send(calls.decide(handle, "deny", reason))

    async def resolution(self, handle: str) -> schemas.Resolution:
        """What the agent learns about its dialogue (the token once granted)."""
        return await self._send(calls.resolution(handle))

    async def trust(self, agent: str) -> schemas.TrustBody:
        """An agent's trust state, recomputed from the log."""
        return await self._send(calls.trust(agent))

    async def checkpoint(self) -> schemas.CheckpointBody:
        """The log's signed checkpoint."""
        return await self._send(calls.checkpoint())

    async def entries(
        self, *, limit: int = 100, cursor: str | None = None
    ) -> schemas.Page[schemas.LogEntryBody]:
        """One page of log entries."""
        return await self._send(calls.entries(limit, cursor))

    async def inclusion_proof(
        self, index: int, size: int | None = None
    ) -> schemas.InclusionProofBody:
        """Inclusion proof of entry ``index``."""
        return await self._send(calls.inclusion(index, size))

    async def consistency_proof(
        self, first: int, second: int | None = None
    ) -> schemas.ConsistencyProofBody:
        """Consistency proof between two tree sizes."""
        return await self._send(calls.consistency(first, second))

    async def attestation(self) -> schemas.AttestationBody:
        """The verifier's attestation (if it runs in the enclave)."""
        return await self._send(calls.attestation())
