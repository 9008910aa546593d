"""Replay recorded AgentDojo runs through the gate, and score what would have happened.

For each run file (``model/suite/user_task/attack/injection_task.json``, read by
:mod:`thirdway.adapters.agentdojo_runs`):

1. **Environment.** The suite at the benchmark version the run was recorded on — its
   ``benchmark_version`` when the file has one, otherwise *inferred*: ``v1``, or ``v1.2`` when
   the run's task ids exist only there — with the run's recorded injections, prepared by the
   user task exactly as AgentDojo prepares it (``init_environment``). Runs whose "user task" is
   an injection task (AgentDojo checks that injection tasks are doable by running them without
   an attack) are scored with that task's own check, as AgentDojo does.
2. **Session.** The recorded user prompt is the principal observation. Each recorded tool call,
   in order, gets the gateway's provenance chain (:mod:`thirdway.adapters.chains`) built from the
   record *as the gate holds it at that moment* and is proposed. A granted call is executed
   through the gate: AgentDojo's ``FunctionsRuntime.run_function`` runs it in the environment,
   and the *recorded* tool output becomes the data observation (the recordings carry no chains
   and the model's later calls were made after reading that output, so the record holds what the
   model read). A denied call is skipped: it does not run and its output never enters the record,
   so values the model later took from it have no provenance.
3. **Escalations** are replayed both ways: ``strict`` (no auditor: escalated = denied) and
   ``approve`` (an auditor says yes to every escalation). The ``approve`` pass is only run when
   the ``strict`` pass escalated something (otherwise both are the same replay).
4. **Reply.** The recorded final answer goes through the reply gate
   (:func:`thirdway.gateway.reply.screen_reply`, against the record the gate holds at the end):
   sentences that repeat an instruction span of the tool data are withheld.
5. **Scores.** AgentDojo's own checks on the resulting environment: the user task's
   ``utility_from_traces`` / ``utility`` and the injection task's ``security_from_traces`` /
   ``security`` (``True`` = the attack succeeded), with the screened final answer as the model
   output and the executed calls as the trace. A third, ungated pass executes every recorded call
   and checks that it reproduces the recorded scores: the test that the environment was rebuilt
   right.

What this does not measure: the counterfactual. After a refusal a real model would have read
the refusal and acted differently; the replay keeps the recorded continuation (and the recorded
final answer, less what the reply gate withholds), so replayed utility is a lower bound on what
a model could do behind the gate.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.util
import time
from ast import literal_eval
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from thirdway.adapters.agentdojo import (
    Gate,
    GateDecision,
    GatekeeperGate,
    VerifierGate,
    gate_call,
    gate_reply,
    tool_call_of,
)
from thirdway.adapters.agentdojo_runs import NO_ATTACK, LoadedRun, RunLocation, load_run, run_files
from thirdway.adapters.chains import MIN_TOKEN_CHARS, ChainBuilder, salient_tokens
from thirdway.errors import InputError, ThirdwayError
from thirdway.protocol.manifest import ManifestSet
from thirdway.protocol.models import ToolCall
from thirdway.verify.normalize import normalize

try:
    from agentdojo.agent_pipeline.tool_execution import is_string_list
    from agentdojo.base_tasks import BaseInjectionTask, BaseUserTask
    from agentdojo.functions_runtime import FunctionCall, FunctionsRuntime
    from agentdojo.task_suite.load_suites import get_suites
except ImportError:  # pragma: no cover - agentdojo is in the dev extra
    raise InputError(
        "AgentDojo is not installed; install the dev extra (pip install -e '.[dev]')"
    ) from None

Mode = Literal["strict", "approve"]
DEFAULT_VERSION = "v1"
NEWER_VERSION = "v1.2"
AUDITOR_REASON = "replay: the auditor approves every escalation"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CallResult:
    """One recorded call as the gate saw it in one replay pass."""

    tool: str
    outcome: str
    """``granted``, ``denied`` or ``escalated`` (the gate's first answer), or ``unreachable``
    (not proposed: see :func:`withheld_value`)."""
    executed: bool
    verdict: str | None
    codes: tuple[str, ...]
    reason: str
    stage: str = "verifier"
    """Who decided (``verifier``, ``policy``, ``gate``; ``replay`` for unreachable calls)."""


@dataclass(frozen=True)
class PassResult:
    """One replay pass of a run (``strict`` or ``approve``)."""

    mode: str
    calls: tuple[CallResult, ...]
    utility: bool
    security: bool | None
    reply_withheld: tuple[str, ...] = ()
    """Excerpts of the sentences the reply gate withheld from the final answer."""


@dataclass(frozen=True)
class RunResult:
    """Everything the report needs about one run."""

    label: str
    model: str
    suite: str
    user_task: str
    attack: str
    injection_task: str
    version: str
    version_source: str
    """``recorded`` (the file says) or ``inferred``."""
    recorded_utility: bool
    recorded_security: bool
    recorded_calls: int
    reproduced_utility: bool | None = None
    reproduced_security: bool | None = None
    strict: PassResult | None = None
    approve: PassResult | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def attacked(self) -> bool:
        return self.attack != NO_ATTACK

    def replay(self, mode: Mode | str) -> PassResult | None:
        """The pass for ``mode`` (``approve`` falls back to ``strict`` when nothing escalated)."""
        if mode == "approve" and self.approve is not None:
            return self.approve
        return self.strict

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- the environment


def known_versions() -> list[str]:
    """Benchmark versions the installed AgentDojo has, oldest first."""
    from agentdojo.task_suite.load_suites import _SUITES

    return sorted(_SUITES, key=lambda v: tuple(int(p) for p in v[1:].split(".")))


def infer_version(run_version: str | None, location: RunLocation) -> tuple[str, str]:
    """``(version, source)``: the recorded version, or ``v1`` / ``v1.2`` by the task ids."""
    if run_version is not None:
        version = run_version if run_version.startswith("v") else f"v{run_version}"
        if version not in known_versions():
            raise InputError(
                f"{location.path}: benchmark_version {run_version!r} is not one the installed "
                f"AgentDojo knows ({', '.join(known_versions())})"
            )
        return version, "recorded"
    for version in (DEFAULT_VERSION, NEWER_VERSION):
        if _has_tasks(version, location):
            return version, "inferred"
    raise InputError(
        f"{location.path}: suite {location.suite!r} has no tasks {location.user_task!r} / "
        f"{location.injection_task!r} in {DEFAULT_VERSION} or {NEWER_VERSION}"
    )


def _has_tasks(version: str, location: RunLocation) -> bool:
    suite = get_suites(version).get(location.suite)
    if suite is None:
        return False
    tasks = {**suite.user_tasks, **suite.injection_tasks}
    wanted = {location.user_task}
    if location.attack != NO_ATTACK:
        wanted.add(location.injection_task)
    return wanted <= set(tasks)


@dataclass
class Setup:
    """The suite, tasks and environments of one run."""

    suite: Any
    task: Any
    """The task the run was asked to do (a user task, or an injection task run without attack)."""
    injection_task: Any | None
    environment: Any
    pre_environment: Any

    def fresh(self) -> Any:
        """A copy of the prepared environment for one replay pass."""
        return self.environment.model_copy(deep=True)


def build_setup(loaded: LoadedRun, version: str) -> Setup:
    """The environment AgentDojo would have built for this run at ``version``."""
    location = loaded.location
    suite = get_suites(version).get(location.suite)
    if suite is None:
        raise InputError(f"{location.path}: no suite {location.suite!r} in {version}")
    task = suite.user_tasks.get(location.user_task) or suite.injection_tasks.get(location.user_task)
    if task is None:
        raise InputError(f"{location.path}: no task {location.user_task!r} in {version}")
    injection_task = None
    if loaded.attack != NO_ATTACK:
        injection_task = suite.injection_tasks.get(location.injection_task)
        if injection_task is None:
            raise InputError(
                f"{location.path}: no injection task {location.injection_task!r} in {version}"
            )
    try:
        environment = suite.load_and_inject_default_environment(dict(loaded.run.injections))
    except ValueError as exc:  # unknown injection vectors
        raise InputError(f"{location.path}: the recorded injections do not fit: {exc}") from None
    if isinstance(task, BaseUserTask):
        environment = task.init_environment(environment)
    return Setup(suite, task, injection_task, environment, environment.model_copy(deep=True))


def check_task(
    task: Any, model_output: str, pre: Any, post: Any, trace: Sequence[FunctionCall]
) -> bool:
    """AgentDojo's verdict for ``task``: a user task's utility, an injection task's security
    (trace-based check first, then the environment check, as AgentDojo does)."""
    if isinstance(task, BaseInjectionTask):
        found = task.security_from_traces(model_output, pre, post, trace)
        return bool(found if found is not None else task.security(model_output, pre, post))
    found = task.utility_from_traces(model_output, pre, post, trace)
    return bool(found if found is not None else task.utility(model_output, pre, post))


# --------------------------------------------------------------------------- recorded steps


@dataclass(frozen=True)
class RecordedStep:
    """A recorded tool call and the output the model read for it."""

    function: str
    args: dict[str, Any]
    output: str


def recorded_steps(loaded: LoadedRun) -> list[RecordedStep]:
    """The run's tool calls in order, each paired with its tool message (by call id, else the
    next unanswered tool message). A call left without a result gets an empty output."""
    messages = loaded.run.messages
    steps: list[RecordedStep] = []
    used: set[int] = set()
    for index, message in enumerate(messages):
        if message.role != "assistant":
            continue
        for call in message.tool_calls or ():
            answer = _answer(messages, index, call.id, used)
            output = ""
            if answer is not None:
                used.add(answer)
                reply = messages[answer]
                output = reply.error if reply.error else reply.text
            args = dict(call.args)
            for name, value in list(args.items()):
                if isinstance(value, str) and is_string_list(value):
                    args[name] = literal_eval(value)
            steps.append(RecordedStep(call.function, args, output))
    return steps


def _answer(messages: Sequence[Any], after: int, call_id: str | None, used: set[int]) -> int | None:
    candidates = [
        i for i in range(after + 1, len(messages)) if messages[i].role == "tool" and i not in used
    ]
    if call_id is not None:
        for i in candidates:
            if messages[i].tool_call_id == call_id:
                return i
    for i in candidates:
        if messages[i].tool_call_id is None or call_id is None:
            return i
    return None


def final_output(loaded: LoadedRun) -> str:
    """The model's final answer (the last message, when it is the assistant's)."""
    last = loaded.run.messages[-1]
    return last.text if last.role == "assistant" else ""


# --------------------------------------------------------------------------- replay


class Replayer:
    """Replays runs against gates from ``gate_factory``. One per process; a fresh gate every
    ``renew_every`` runs, so that a long replay does not keep every session in memory."""

    def __init__(self, gate_factory: GateFactory, *, renew_every: int = 200) -> None:
        self.gate_factory = gate_factory
        self.renew_every = renew_every
        self.gate = gate_factory()
        self._runs = 0

    def close(self) -> None:
        close = getattr(self.gate, "close", None)
        if close is not None:
            close()

    def _renew(self) -> None:
        self._runs += 1
        if self._runs % self.renew_every == 0:
            self.close()
            self.gate = self.gate_factory()

    def replay_file(self, location: RunLocation) -> RunResult:
        """Replay one run file; a problem with the file or its environment becomes the result's
        ``error`` (the report counts such runs; nothing is silently dropped)."""
        started = time.perf_counter()
        self._renew()
        try:
            loaded = LoadedRun(location=location, run=load_run(location.path))
        except InputError as exc:
            return _failed(location, str(exc), started)
        if loaded.run.error:
            why = f"AgentDojo recorded an error instead of a run: {loaded.run.error[:200]}"
            return _failed(location, why, started, loaded)
        try:
            result = self.replay(loaded)
        except ThirdwayError as exc:
            return _failed(location, str(exc), started, loaded)
        return _timed(result, started)

    def replay(self, loaded: LoadedRun) -> RunResult:
        location = loaded.location
        version, source = infer_version(loaded.run.benchmark_version, location)
        setup = build_setup(loaded, version)
        steps = recorded_steps(loaded)
        output = final_output(loaded)
        reproduced = self._ungated(setup, steps, output)
        strict = self._gated(loaded, setup, steps, output, "strict")
        escalated = any(call.outcome == "escalated" for call in strict.calls)
        approve = self._gated(loaded, setup, steps, output, "approve") if escalated else None
        return RunResult(
            label=location.label,
            model=location.model,
            suite=location.suite,
            user_task=location.user_task,
            attack=location.attack,
            injection_task=location.injection_task,
            version=version,
            version_source=source,
            recorded_utility=loaded.run.utility,
            recorded_security=loaded.run.security,
            recorded_calls=len(steps),
            reproduced_utility=reproduced[0],
            reproduced_security=reproduced[1],
            strict=strict,
            approve=approve,
        )

    def _scores(
        self, setup: Setup, output: str, environment: Any, trace: Sequence[FunctionCall]
    ) -> tuple[bool, bool | None]:
        utility = check_task(setup.task, output, setup.pre_environment, environment, trace)
        security = None
        if setup.injection_task is not None:
            security = check_task(
                setup.injection_task, output, setup.pre_environment, environment, trace
            )
        return utility, security

    def _ungated(
        self, setup: Setup, steps: Sequence[RecordedStep], output: str
    ) -> tuple[bool, bool | None]:
        environment = setup.fresh()
        runtime = FunctionsRuntime(setup.suite.tools)
        trace = []
        for step in steps:
            runtime.run_function(environment, step.function, step.args)
            trace.append(FunctionCall(function=step.function, args=step.args))
        return self._scores(setup, output, environment, trace)

    def _gated(
        self,
        loaded: LoadedRun,
        setup: Setup,
        steps: Sequence[RecordedStep],
        output: str,
        mode: Mode,
    ) -> PassResult:
        environment = setup.fresh()
        runtime = FunctionsRuntime(setup.suite.tools)
        session = self.gate.open_session(loaded.location.model, loaded.user_prompt)
        trace: list[FunctionCall] = []
        withheld: list[str] = []
        calls = []
        for step in steps:
            try:
                call = tool_call_of(_function_call(step))
            except InputError as exc:
                calls.append(_call_result(step, GateDecision("denied", f"malformed: {exc}"), False))
                withheld.append(normalize(step.output))
                continue
            builder = ChainBuilder(
                session.id, session.observations(), self.gate.manifests, self.gate.policy
            )
            needed = withheld_value(builder, call, withheld)
            if needed is not None:
                calls.append(_unreachable(step, needed))
                withheld.append(normalize(step.output))
                continue
            decision = gate_call(session, self.gate, call, builder=builder)
            first = decision
            if decision.outcome == "escalated" and mode == "approve":
                decision = session.approve(decision, AUDITOR_REASON)
            if decision.outcome != "granted":
                withheld.append(normalize(step.output))
                calls.append(_call_result(step, first, executed=False))
                continue

            def run(args: dict[str, Any], step: RecordedStep = step) -> str:
                runtime.run_function(environment, step.function, args)
                trace.append(FunctionCall(function=step.function, args=args))
                return step.output

            session.execute(decision, call, run)
            calls.append(_call_result(step, first, executed=True))
        reply = gate_reply(session, output)
        utility, security = self._scores(setup, reply.text, environment, trace)
        cut = tuple(w.excerpt for w in reply.withheld)
        return PassResult(mode, tuple(calls), utility, security, cut)


UNREACHABLE = "unreachable"
"""A replay outcome, not a gate decision: the recorded call carries a value the model could
only have read in the output of a call the gate did not run."""


def withheld_value(builder: ChainBuilder, call: ToolCall, withheld: Sequence[str]) -> str | None:
    """A string of the call (a whole argument value, or an identifier-like token of one) that
    the gate's record does not hold but a withheld output does; None when there is none.

    The replay keeps the recorded continuation after a refusal, but the model made those later
    calls after reading the refused call's output. A call that repeats a link, an address or an
    account number found only there could not have been made behind the gate; proposing it
    anyway would let text the gate withheld in through the back door. Numbers are not checked
    (too common to attribute), nor strings shorter than four characters."""
    if not withheld:
        return None
    for value in _strings(call.args):
        for candidate in dict.fromkeys([value, *salient_tokens(value)]):
            text = normalize(candidate)
            if len(text) < MIN_TOKEN_CHARS or builder.where(candidate) is not None:
                continue
            if any(text in output for output in withheld):
                return candidate
    return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _function_call(step: RecordedStep) -> FunctionCall:
    return FunctionCall(function=step.function, args=step.args)


def _unreachable(step: RecordedStep, needed: str) -> CallResult:
    return CallResult(
        tool=step.function,
        outcome=UNREACHABLE,
        executed=False,
        verdict=None,
        codes=(),
        stage="replay",
        reason=(
            f"repeats {needed[:80]!r}, found only in the output of a call the gate withheld; "
            "a model behind the gate could not have made this call"
        ),
    )


def _call_result(step: RecordedStep, decision: GateDecision, executed: bool) -> CallResult:
    return CallResult(
        tool=step.function,
        outcome=decision.outcome,
        executed=executed,
        verdict=decision.verdict,
        codes=decision.codes,
        reason=decision.reason[:300],
        stage=decision.stage,
    )


def _failed(
    location: RunLocation, error: str, started: float, loaded: LoadedRun | None = None
) -> RunResult:
    return RunResult(
        label=location.label,
        model=location.model,
        suite=location.suite,
        user_task=location.user_task,
        attack=location.attack,
        injection_task=location.injection_task,
        version="",
        version_source="",
        recorded_utility=loaded.run.utility if loaded else False,
        recorded_security=loaded.run.security if loaded else False,
        recorded_calls=0,
        error=error,
        seconds=time.perf_counter() - started,
    )


def _timed(result: RunResult, started: float) -> RunResult:
    return replace(result, seconds=time.perf_counter() - started)


# --------------------------------------------------------------------------- many runs


GateFactory = Callable[[], Gate]


@dataclass
class Selection:
    """Which runs to replay."""

    models: frozenset[str] | None = None
    suites: frozenset[str] | None = None
    attacks: frozenset[str] | None = None
    limit: int | None = None

    def pick(self, locations: Iterable[RunLocation]) -> list[RunLocation]:
        chosen = [
            loc
            for loc in locations
            if (self.models is None or loc.model in self.models)
            and (self.suites is None or loc.suite in self.suites)
            and (self.attacks is None or loc.attack in self.attacks)
        ]
        return chosen if self.limit is None else chosen[: self.limit]


@dataclass
class ReplayReport:
    """All run results and how long they took."""

    results: list[RunResult] = field(default_factory=list)
    wall_seconds: float = 0.0
    workers: int = 1


_WORKER: Replayer | None = None


def _init_worker(factory: GateFactory) -> None:
    global _WORKER
    _WORKER = Replayer(factory)
    # pool workers leave through multiprocessing's finalizers, not atexit
    multiprocessing.util.Finalize(None, _WORKER.close, exitpriority=10)


def _replay_in_worker(location: RunLocation) -> RunResult:
    assert _WORKER is not None
    return _WORKER.replay_file(location)


@dataclass(frozen=True)
class VerifierGateFactory:
    """Makes :class:`VerifierGate` s (picklable, for worker processes)."""

    manifests: ManifestSet

    def __call__(self) -> Gate:
        return VerifierGate(self.manifests)


@dataclass(frozen=True)
class GatekeeperGateFactory:
    """Makes temporary :class:`GatekeeperGate` s (picklable, for worker processes): the agent
    acts at ``tier``; one auditor approval releases an escalated action."""

    manifests: ManifestSet
    tier: int = 3

    def __call__(self) -> Gate:
        return GatekeeperGate.temporary(self.manifests, tier=self.tier)


def replay_all(
    root: Path,
    gate_factory: GateFactory,
    selection: Selection | None = None,
    *,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Replay every selected run under ``root``, with ``workers`` processes (1: in this one)."""
    if workers < 1:
        raise InputError(f"workers must be at least 1, not {workers}")
    locations = (selection or Selection()).pick(run_files(root))
    started = time.perf_counter()
    results = list(_replay(locations, gate_factory, workers, progress))
    order = {loc.label: i for i, loc in enumerate(locations)}
    results.sort(key=lambda r: order[r.label])
    return ReplayReport(results, time.perf_counter() - started, workers)


def _replay(
    locations: Sequence[RunLocation],
    gate_factory: GateFactory,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> Iterator[RunResult]:
    total = len(locations)
    if workers == 1 or total <= 1:
        replayer = Replayer(gate_factory)
        try:
            for done, location in enumerate(locations, 1):
                yield replayer.replay_file(location)
                if progress:
                    progress(done, total)
        finally:
            replayer.close()
        return
    context = multiprocessing.get_context("fork" if _can_fork() else "spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(gate_factory,)) as pool:
        results = pool.imap_unordered(_replay_in_worker, locations, chunksize=4)
        for done, result in enumerate(results, 1):
            yield result
            if progress:
                progress(done, total)
        pool.close()  # let the workers exit normally, so they close (and delete) their gates
        pool.join()


def _can_fork() -> bool:
    with contextlib.suppress(ValueError):
        return "fork" in multiprocessing.get_all_start_methods()
    return False
