"""AgentDojo behind thirdway: a pipeline element that gates every tool call the model makes.

Place :class:`ThirdwayGate` right before AgentDojo's ``ToolsExecutor`` inside the tool loop::

    gate = VerifierGate(load_manifests(None))        # or GatekeeperGate(...), the full gateway
    pipeline = AgentPipeline([
        SystemMessage(...), InitQuery(), llm,
        ToolsExecutionLoop([ThirdwayGate(gate), ToolsExecutor(), llm]),
        ThirdwayReplyGate(),
    ])

For each tool call of the model's last message the element asks the gate, and hands the
``ToolsExecutor`` a :class:`GatedRuntime` that runs exactly the granted calls (through the gate,
so their results are recorded as data observations) and answers every other call with a tool
error the model sees: the gate's reason and its findings. Both gates verify with the verifier
followed by deterministic judges (:func:`default_judges`: the instruction-endorsement judge of
:mod:`thirdway.gateway.endorsement`), which can only make a verdict stricter.

:class:`ThirdwayReplyGate`, after the tool loop, screens the model's final answer against the
session's record (:mod:`thirdway.gateway.reply`): sentences that repeat an injection found in
tool data are withheld from the principal, and the screening is logged.

**Chains.** Live models do not emit ``thirdway/1`` chains yet. Unless a ``chains`` source is
given, each call gets the chain the gateway's own record supports
(:func:`thirdway.adapters.chains.provenance_chain`: the principal's instruction as goal, each
argument bound to where the record says its value came from, composed values marked as such),
exactly as the replay benchmark builds it. So what the element enforces today is the gateway's
provenance rules and injection screen, not the honesty of a model's stated reasoning.

**Record.** The session opens with the user's query (the first user message) as the principal
instruction; the system prompt is not recorded. Results of granted calls are recorded by the
gate as it runs them, as the text the model reads (``formatter`` must be the ``ToolsExecutor``'s
output formatter, YAML by default). Tool exchanges that reached the messages without passing the
gate (an element placed after the first round) are recorded when the session opens.

The gate itself is behind the small :class:`Gate` / :class:`GateSession` interface:
:class:`VerifierGate` is the pure verifier with the default decision (pass → run, escalate →
auditor, deny → refuse); :class:`GatekeeperGate` is the in-process Gatekeeper (verify,
authorize, mint, redeem, log).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
from ast import literal_eval
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from thirdway.adapters.chains import ChainBuilder
from thirdway.errors import InputError, ThirdwayError
from thirdway.gateway import Denied, Escalated, FixedTier, Gatekeeper, Granted, ToolRegistry
from thirdway.gateway.endorsement import InstructionEndorsementJudge, JudgedVerifier
from thirdway.gateway.reply import ReplyScreen, screen_reply
from thirdway.gateway.verifiers import InProcessVerifier
from thirdway.judges import Judge, apply_judges
from thirdway.protocol.manifest import ManifestSet
from thirdway.protocol.models import Decision, Finding, LogEntry, Observation, Proposal, ToolCall
from thirdway.protocol.parse import describe
from thirdway.verify import VerifyPolicy, verify

try:
    from agentdojo.agent_pipeline.base_pipeline_element import BasePipelineElement
    from agentdojo.agent_pipeline.tool_execution import is_string_list, tool_result_to_str
    from agentdojo.functions_runtime import EmptyEnv, Env, FunctionCall, FunctionsRuntime
    from agentdojo.types import (
        ChatMessage,
        get_text_content_as_str,
        text_content_block_from_string,
    )
except ImportError:  # pragma: no cover - agentdojo is in the dev extra
    raise InputError(
        "AgentDojo is not installed; install the dev extra (pip install -e '.[dev]')"
    ) from None

__all__ = [
    "SESSION_KEY",
    "Gate",
    "GateDecision",
    "GateSession",
    "GatedRuntime",
    "GatekeeperGate",
    "ThirdwayGate",
    "ThirdwayReplyGate",
    "VerifierGate",
    "default_judges",
    "gate_reply",
    "refusal_message",
]

Outcome = Literal["granted", "denied", "escalated"]
Stage = Literal["verifier", "policy", "gate"]
SESSION_KEY = "thirdway_session"
"""Where the element keeps its gate session in AgentDojo's ``extra_args``."""
MAX_REFUSAL_FINDINGS = 8


# --------------------------------------------------------------------------- the gate interface


@dataclass(frozen=True)
class GateDecision:
    """What the gate answered to one proposal."""

    outcome: Outcome
    reason: str
    findings: tuple[Finding, ...] = ()
    verdict: Decision | None = None
    """The verifier's verdict; None when the gate refused before verifying."""
    ticket: Any = field(default=None, repr=False)
    """What :meth:`GateSession.execute` or :meth:`GateSession.approve` needs (a token, a handle)."""
    stage: Stage = "verifier"
    """Who decided: the ``verifier`` (its verdict), the ``policy`` (authorization at the agent's
    tier, with a passing verdict), or the ``gate`` (refused before any verdict)."""

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(sorted({finding.code for finding in self.findings}))


class GateSession(Protocol):
    """One agent session at the gate."""

    id: str

    def observations(self) -> Sequence[Observation]:
        """The record so far (what proposals are verified against)."""
        ...

    def record(self, call: ToolCall, content: str) -> None:
        """Record a call made elsewhere and its result (the agent saw both)."""
        ...

    def propose(self, proposal: Proposal) -> GateDecision: ...

    def approve(self, decision: GateDecision, reason: str) -> GateDecision:
        """An auditor approves an escalated decision."""
        ...

    def execute(
        self, decision: GateDecision, call: ToolCall, run: Callable[[dict[str, Any]], str]
    ) -> str:
        """Run a granted call: ``run`` gets the approved arguments and returns the result text,
        which is recorded as a data observation and returned."""
        ...

    def note(self, payload: dict[str, Any]) -> None:
        """Record a gate event that is not a tool call (the reply gate's screening)."""
        ...


class Gate(Protocol):
    """Opens sessions; knows the tool manifests."""

    manifests: ManifestSet
    policy: VerifyPolicy

    def open_session(self, agent: str, instruction: str) -> GateSession: ...


# --------------------------------------------------------------------------- the verifier gate


def default_judges() -> tuple[Judge, ...]:
    """The deterministic judges both gates run behind the verifier by default: the
    instruction-endorsement judge (:mod:`thirdway.gateway.endorsement`)."""
    return (InstructionEndorsementJudge(),)


class VerifierGate:
    """The pure verifier as a gate: pass runs, escalate waits for an auditor, deny refuses.

    No trust tiers, tokens or log: this measures what the verifier (and ``judges``, by default
    :func:`default_judges`, which may only make a verdict stricter) decides. Sessions are kept
    in memory for as long as the caller holds them."""

    def __init__(
        self,
        manifests: ManifestSet,
        policy: VerifyPolicy | None = None,
        *,
        judges: Sequence[Judge] | None = None,
    ) -> None:
        self.manifests = manifests
        self.policy = policy or VerifyPolicy()
        self.judges = tuple(default_judges() if judges is None else judges)
        self._opened = 0

    def open_session(self, agent: str, instruction: str) -> _VerifierSession:
        self._opened += 1
        return _VerifierSession(self, f"s-{self._opened}", agent, instruction)


class _VerifierSession:
    def __init__(self, gate: VerifierGate, session: str, agent: str, instruction: str) -> None:
        self.gate = gate
        self.id = session
        self.agent = agent
        self._record: list[Observation] = []
        self._history: list[Proposal] = []
        self.notes: list[dict[str, Any]] = []
        self._add(channel="principal", content=instruction)

    def observations(self) -> Sequence[Observation]:
        return tuple(self._record)

    def _add(self, **fields: Any) -> int:
        index = len(self._record)
        try:
            obs = Observation.model_validate({"session": self.id, "index": index, **fields})
        except ValidationError as exc:
            raise InputError(describe(exc, "observation")) from None
        self._record.append(obs)
        return index

    def record(self, call: ToolCall, content: str) -> None:
        produced_by = self._add(channel="call", call=call)
        self._add(channel="data", content=content, produced_by=produced_by)

    def propose(self, proposal: Proposal) -> GateDecision:
        verdict = verify(
            proposal, self._record, self.gate.manifests, self.gate.policy, self._history
        )
        verdict = apply_judges(
            verdict, self.gate.judges, proposal=proposal, observations=self._record
        )
        findings = tuple(verdict.findings)
        if verdict.verdict == "pass":
            self._history.append(proposal)
            return GateDecision(
                "granted", "the verifier passed the chain", findings, "pass", proposal
            )
        reason = summary(verdict.verdict, findings)
        outcome: Outcome = "escalated" if verdict.verdict == "escalate" else "denied"
        return GateDecision(outcome, reason, findings, verdict.verdict, proposal)

    def approve(self, decision: GateDecision, reason: str) -> GateDecision:
        if decision.outcome != "escalated":
            return decision
        return GateDecision(
            "granted", f"an auditor approved: {reason}", decision.findings, decision.verdict,
            decision.ticket,
        )  # fmt: skip

    def execute(
        self, decision: GateDecision, call: ToolCall, run: Callable[[dict[str, Any]], str]
    ) -> str:
        proposal = decision.ticket
        if decision.outcome != "granted" or not isinstance(proposal, Proposal):
            raise InputError("only a granted decision can be executed")
        if proposal.action != call:
            raise InputError(f"the decision was for another call than {call.tool!r}")
        content = run(dict(call.args))
        self.record(call, content)
        return content

    def note(self, payload: dict[str, Any]) -> None:
        self.notes.append(payload)


def summary(verdict: str, findings: Sequence[Finding]) -> str:
    """One line: the verdict and the finding codes behind it."""
    codes = ", ".join(sorted({f.code for f in findings})) or "no findings"
    return f"the verifier's verdict is {verdict} ({codes})"


# --------------------------------------------------------------------------- the gatekeeper gate

AUDITOR = "agentdojo-auditor"
"""The auditor id :class:`GatekeeperGate` answers escalations as (never an agent's id)."""


class _Dispatch:
    """The hosted tools of a :class:`GatekeeperGate`: each runs whatever the session executing
    it asked to run (the AgentDojo runtime, in its environment). The gatekeeper only ever calls
    them after redeeming a token for exactly those arguments."""

    def __init__(self) -> None:
        self._local = threading.local()

    def tool(self, name: str) -> Callable[..., str]:
        def hosted(**args: Any) -> str:
            run: Callable[[dict[str, Any]], str] | None = getattr(self._local, "run", None)
            if run is None:
                raise RuntimeError(f"{name} was called outside an execution")
            return run(args)

        hosted.__name__ = name
        return hosted

    @contextlib.contextmanager
    def running(self, run: Callable[[dict[str, Any]], str]) -> Iterator[None]:
        self._local.run = run
        try:
            yield
        finally:
            self._local.run = None


class GatekeeperGate:
    """The in-process :class:`~thirdway.gateway.Gatekeeper` as a gate: verify, authorize (Cedar,
    at the agent's trust tier), mint a capability token, redeem it at execution, log every step.

    Every tool with a manifest is hosted by a dispatcher that runs the execution's own callable,
    so AgentDojo's runtime executes a call only through a redeemed token. Escalations are
    answered by :data:`AUDITOR`; with ``required_approvals=1`` one approval releases an action."""

    def __init__(self, gatekeeper: Gatekeeper, dispatch: _Dispatch) -> None:
        self.gatekeeper = gatekeeper
        self.manifests = gatekeeper.manifests
        self.policy = getattr(gatekeeper.verifier, "policy", None) or VerifyPolicy()
        self._dispatch = dispatch
        self._temporary: Path | None = None

    @classmethod
    def open(
        cls,
        data_dir: Path,
        manifests: ManifestSet,
        *,
        tier: int = 3,
        required_approvals: int = 1,
        judges: Sequence[Judge] | None = None,
    ) -> GatekeeperGate:
        """A gatekeeper over ``data_dir`` hosting every tool of ``manifests``, verifying with the
        in-process verifier followed by ``judges`` (default :func:`default_judges`; ``()`` for
        none)."""
        dispatch = _Dispatch()
        registry = ToolRegistry()
        for name in sorted(manifests.tools):
            registry.register(dispatch.tool(name), manifests.tools[name])
        merged = registry.merged_manifests(manifests)
        verifier = JudgedVerifier(
            InProcessVerifier(merged), default_judges() if judges is None else judges
        )
        gatekeeper = Gatekeeper.open(
            data_dir,
            manifests=manifests,
            tools=registry,
            tiers=FixedTier(tier),
            required_approvals=required_approvals,
            auditors=[AUDITOR],
            verifier=verifier,
        )
        return cls(gatekeeper, dispatch)

    @classmethod
    def temporary(cls, manifests: ManifestSet, **options: Any) -> GatekeeperGate:
        """A gatekeeper in a fresh temporary folder (in memory where ``/dev/shm`` exists), which
        :meth:`close` deletes: for benchmarks, whose logs are not kept."""
        shm = Path("/dev/shm")
        folder = Path(tempfile.mkdtemp(prefix="thirdway-gate-", dir=shm if shm.is_dir() else None))
        try:
            gate = cls.open(folder, manifests, **options)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        gate._temporary = folder
        return gate

    def close(self) -> None:
        """Close the gatekeeper (and delete its folder if it was :meth:`temporary`)."""
        self.gatekeeper.close()
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None

    def open_session(self, agent: str, instruction: str) -> _GatekeeperSession:
        return _GatekeeperSession(self, self.gatekeeper.open_session(agent, instruction))


class _GatekeeperSession:
    def __init__(self, gate: GatekeeperGate, session: str) -> None:
        self.gate = gate
        self.id = session

    def observations(self) -> Sequence[Observation]:
        return self.gate.gatekeeper.observations(self.id)

    def record(self, call: ToolCall, content: str) -> None:
        self.gate.gatekeeper.record_tool_result(self.id, call, content)

    def propose(self, proposal: Proposal) -> GateDecision:
        return _decision(self.gate.gatekeeper.propose(self.id, proposal))

    def approve(self, decision: GateDecision, reason: str) -> GateDecision:
        if decision.outcome != "escalated":
            return decision
        return _decision(self.gate.gatekeeper.approve_escalation(decision.ticket, AUDITOR, reason))

    def execute(
        self, decision: GateDecision, call: ToolCall, run: Callable[[dict[str, Any]], str]
    ) -> str:
        if decision.outcome != "granted":
            raise InputError("only a granted decision can be executed")
        with self.gate._dispatch.running(run):
            executed = self.gate.gatekeeper.execute(self.id, decision.ticket, call)
        return executed.content

    def note(self, payload: dict[str, Any]) -> None:
        """A ``note`` entry in the gatekeeper's log, for this session and its agent."""
        agent = self.gate.gatekeeper.session_agent(self.id)
        entry = LogEntry(type="note", session=self.id, agent=agent, payload=payload)
        self.gate.gatekeeper.append([entry])


def _decision(outcome: Granted | Denied | Escalated) -> GateDecision:
    """The gatekeeper's outcome as a :class:`GateDecision` (``stage``: who decided)."""
    verdict = outcome.verdict
    findings = tuple(verdict.findings) if verdict is not None else ()
    if isinstance(outcome, Denied) and verdict is None:
        return GateDecision("denied", outcome.reason, tuple(outcome.findings), None, None, "gate")
    decided = verdict.verdict if verdict is not None else None
    if isinstance(outcome, Granted):
        return GateDecision("granted", "granted", findings, decided, outcome.token, "policy")
    stage: Stage = "verifier" if decided in ("deny", "escalate") else "policy"
    if isinstance(outcome, Escalated):
        return GateDecision("escalated", outcome.reason, findings, decided, outcome.handle, stage)
    return GateDecision("denied", outcome.reason, findings, decided, None, stage)


# --------------------------------------------------------------------------- the pipeline element


ChainSource = Callable[[GateSession, ToolCall], Proposal | None]
"""Supplies the agent's own chain for a call (None: use the gateway's provenance chain)."""
Auditor = Callable[[GateSession, ToolCall, GateDecision], bool]
"""Answers an escalation: True approves. Without one, escalated calls are refused."""


def tool_call_of(call: FunctionCall) -> ToolCall:
    """AgentDojo's FunctionCall as a thirdway ToolCall (InputError when it cannot be one)."""
    try:
        return ToolCall.model_validate({"tool": call.function, "args": dict(call.args)})
    except ValidationError as exc:
        raise InputError(describe(exc, "tool call")) from None


def convert_string_lists(call: FunctionCall) -> None:
    """What ``ToolsExecutor`` does to a call before running it (a list sent as its Python
    literal becomes the list), done first so that the gate judges the call that will run."""
    for name, value in list(call.args.items()):
        if isinstance(value, str) and is_string_list(value):
            call.args[name] = literal_eval(value)


def refusal_message(decision: GateDecision) -> str:
    """The tool error the model sees for a refused call: the reason and the findings."""
    lines = [f"thirdway refused this call ({decision.outcome}): {decision.reason}"]
    for finding in decision.findings[:MAX_REFUSAL_FINDINGS]:
        lines.append(f"- {finding.code} ({finding.severity}): {finding.message}")
    more = len(decision.findings) - MAX_REFUSAL_FINDINGS
    if more > 0:
        lines.append(f"- … and {more} more finding(s)")
    return "\n".join(lines)


def gate_call(
    session: GateSession,
    gate: Gate,
    call: ToolCall,
    *,
    chains: ChainSource | None = None,
    builder: ChainBuilder | None = None,
) -> GateDecision:
    """Propose ``call`` with the agent's chain, or the gateway's provenance chain (``builder``:
    one already made over the session's current record)."""
    proposal = chains(session, call) if chains is not None else None
    if proposal is None:
        if builder is None:
            builder = ChainBuilder(session.id, session.observations(), gate.manifests, gate.policy)
        proposal = builder.proposal(call)
    try:
        return session.propose(proposal)
    except ThirdwayError as exc:  # refused before a verdict (unknown tool, bad input): fail closed
        return GateDecision("denied", str(exc), stage="gate")


@dataclass
class _Pending:
    call: FunctionCall
    decision: GateDecision


class GatedRuntime(FunctionsRuntime):  # type: ignore[misc]  # AgentDojo ships no types
    """The runtime the ``ToolsExecutor`` gets: runs the gate's granted calls through the gate,
    refuses everything else with the gate's reason. Calls are matched in order, by tool and
    exact arguments; a call the gate never saw is refused (fail closed)."""

    def __init__(
        self,
        base: FunctionsRuntime,
        session: GateSession,
        pending: Sequence[_Pending],
        formatter: Callable[[Any], str],
    ) -> None:
        super().__init__([])
        self.functions = base.functions
        self.base = base
        self.session = session
        self._pending = list(pending)
        self._formatter = formatter

    def run_function(
        self,
        env: Any,
        function: str,
        kwargs: Mapping[str, Any],
        raise_on_error: bool = False,
    ) -> tuple[Any, str | None]:
        pending = self._pending.pop(0) if self._pending else None
        if (
            pending is None
            or pending.call.function != function
            or _json(pending.call.args) != _json(kwargs)
        ):
            return self._refuse("thirdway refused this call: it was not proposed to the gate")
        if pending.decision.outcome != "granted":
            return self._refuse(refusal_message(pending.decision))
        outcome: dict[str, Any] = {}

        def run(args: dict[str, Any]) -> str:
            result, error = self.base.run_function(env, function, args, raise_on_error)
            outcome["result"], outcome["error"] = result, error
            return error if error is not None else self._formatter(result)

        try:
            self.session.execute(pending.decision, tool_call_of(pending.call), run)
        except ThirdwayError as exc:
            return self._refuse(f"thirdway refused this call: {exc}")
        return outcome.get("result", ""), outcome.get("error")

    def _refuse(self, message: str) -> tuple[Any, str | None]:
        return "", message


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class ThirdwayGate(BasePipelineElement):  # type: ignore[misc]  # AgentDojo ships no types
    """The AgentDojo pipeline element (see the module docstring)."""

    name = "thirdway"

    def __init__(
        self,
        gate: Gate,
        *,
        agent: str = "agentdojo-agent",
        chains: ChainSource | None = None,
        auditor: Auditor | None = None,
        formatter: Callable[[Any], str] = tool_result_to_str,
    ) -> None:
        self.gate = gate
        self.agent = agent
        self.chains = chains
        self.auditor = auditor
        self.formatter = formatter

    def query(
        self,
        query: str,
        runtime: FunctionsRuntime,
        env: Env = EmptyEnv(),  # noqa: B008 - AgentDojo's own signature
        messages: Sequence[ChatMessage] = (),
        extra_args: dict[str, Any] = {},  # noqa: B006 - never mutated; AgentDojo's signature
    ) -> tuple[str, FunctionsRuntime, Env, Sequence[ChatMessage], dict[str, Any]]:
        base = runtime.base if isinstance(runtime, GatedRuntime) else runtime
        last = messages[-1] if messages else None
        if last is None or last["role"] != "assistant" or not last["tool_calls"]:
            return query, base, env, messages, extra_args
        session = extra_args.get(SESSION_KEY)
        if session is None:
            session = self._open(messages)
        pending = []
        for call in last["tool_calls"]:
            convert_string_lists(call)
            pending.append(_Pending(call, self._decide(session, call)))
        gated = GatedRuntime(base, session, pending, self.formatter)
        return query, gated, env, messages, {**extra_args, SESSION_KEY: session}

    def _open(self, messages: Sequence[ChatMessage]) -> GateSession:
        """A session whose principal instruction is the first user message; earlier tool
        exchanges (if any reached the messages without the gate) are recorded as seen."""
        users = [m for m in messages if m["role"] == "user"]
        if not users:
            raise InputError("the conversation has no user message to act on")
        session = self.gate.open_session(self.agent, _text(users[0]))
        for message in messages[:-1]:
            if message["role"] == "tool":
                session.record(tool_call_of(message["tool_call"]), _tool_text(message))
        return session

    def _decide(self, session: GateSession, call: FunctionCall) -> GateDecision:
        try:
            tool_call = tool_call_of(call)
        except InputError as exc:
            return GateDecision("denied", str(exc), stage="gate")
        decision = gate_call(session, self.gate, tool_call, chains=self.chains)
        approved = (
            decision.outcome == "escalated"
            and self.auditor is not None
            and self.auditor(session, tool_call, decision)
        )
        if approved:
            return session.approve(decision, "approved by the pipeline's auditor")
        return decision


def gate_reply(session: GateSession, reply: str) -> ReplyScreen:
    """Screen the agent's reply to its principal against the session's record
    (:func:`thirdway.gateway.reply.screen_reply`) and log the screening as a note: what the
    principal receives is the screened ``text``."""
    screen = screen_reply(reply, session.observations(), session=session.id)
    session.note(screen.to_log())
    return screen


class ThirdwayReplyGate(BasePipelineElement):  # type: ignore[misc]  # AgentDojo ships no types
    """The reply gate: place it after the ``ToolsExecutionLoop``. When the conversation ends on
    an assistant message without tool calls and :class:`ThirdwayGate` opened a session, the
    message's text is screened (:func:`gate_reply`) and the withheld sentences are replaced in
    the message the principal gets. Without a session (the model called no tool) the record
    holds only the principal's words, so there is nothing to screen."""

    name = "thirdway-reply"

    def query(
        self,
        query: str,
        runtime: FunctionsRuntime,
        env: Env = EmptyEnv(),  # noqa: B008 - AgentDojo's own signature
        messages: Sequence[ChatMessage] = (),
        extra_args: dict[str, Any] = {},  # noqa: B006 - never mutated; AgentDojo's signature
    ) -> tuple[str, FunctionsRuntime, Env, Sequence[ChatMessage], dict[str, Any]]:
        session = extra_args.get(SESSION_KEY)
        last = messages[-1] if messages else None
        if session is None or last is None or last["role"] != "assistant" or last["tool_calls"]:
            return query, runtime, env, messages, extra_args
        screen = gate_reply(session, _text(last))
        if not screen.changed:
            return query, runtime, env, messages, extra_args
        gated = {**last, "content": [text_content_block_from_string(screen.text)]}
        return query, runtime, env, [*messages[:-1], gated], extra_args


def _text(message: ChatMessage) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    text: str = get_text_content_as_str(list(content))
    return text


def _tool_text(message: ChatMessage) -> str:
    error = message.get("error")
    return error if isinstance(error, str) and error else _text(message)
