"""``thirdway bench verify``: the deterministic verifier's latency, and Invariant Labs'
``invariant-ai`` ``LocalPolicy`` on the same traces, same run.

Each workload is one session generated from a seed: a principal instruction naming an invoice
file, tool calls and results of realistic text (invoices, e-mails, statements) adding up to the
target size, and a ``send_money`` proposal whose chain cites ``steps`` quotes spread over those
results and binds every argument. The proposal is honest, so the verifier must pass it; the
benchmark refuses to report a latency for a verdict it did not expect.

thirdway is timed three ways. *cold*: every call gets fresh observation objects, so it normalises,
screens and hashes all the data from scratch: the whole cost of a first proposal. *prepared*:
fresh objects passed through :func:`thirdway.verify.prepare` before the timer starts, as a gateway
would when it records each observation: the cost left on the proposal's path. *warm*: the same
objects again, as a gateway verifying a second proposal in a session does (the verifier memoises
what it derives from an immutable observation; :mod:`thirdway.verify.memo`). A fourth row,
*prepare (session)*, times ``prepare`` over every observation of a fresh session: the work the
prepared row moved off the path, paid once per observation.

Invariant gets two rules over the same session as OpenAI-style messages:

* ``designated`` — the nearest equivalent of thirdway's provenance rule for ``send_money.recipient``
  (``principal-or-designated``): raise when the recipient appears in a tool output whose producing
  call has no argument that a user message contains, and in no user message. It gives the same
  outcome as thirdway on these sessions (no violation).
* ``simple`` — raise when the recipient appears in a tool output and not in the user message. It
  cannot tell designated data from other data, so it flags these honest sessions.

thirdway does more per call than either rule: it grounds every quote of every step, checks the
chain's structure, every binding and transform, the provenance of every argument, and screens all
data for injected instructions. Invariant runs in a worker process with a wall-clock budget per
rule and workload (a rule that cannot finish one analysis in it is reported as such), through its
public ``analyze`` (an asyncio event loop per call). Invariant's default evaluation limit
(``INVARIANT_MAX_ITERATIONS``, 100 checking cycles) refuses both rules on these traces, so the
worker raises it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from rich import box
from rich.table import Table

from thirdway.errors import ThirdwayError
from thirdway.protocol.manifest import ArgumentRule, ManifestSet, ToolManifest
from thirdway.protocol.models import Observation, Proposal

__all__ = [
    "FULL",
    "INVARIANT_RULES",
    "QUICK",
    "BenchResult",
    "Row",
    "Trace",
    "Workload",
    "bench_manifests",
    "dump_json",
    "make_trace",
    "render_tables",
    "run_bench",
    "to_invariant_messages",
]


@dataclass(frozen=True)
class Workload:
    """One benchmark case: chain length, total observation text, timed repetitions, and the
    wall-clock budget each Invariant rule gets on it."""

    name: str
    steps: int
    obs_bytes: int
    iterations: int
    invariant_iterations: int
    invariant_budget_s: float


FULL = (
    Workload("10 steps / 50 KB", 10, 50_000, 2000, 100, 60.0),
    Workload("100 steps / 1 MB", 100, 1_000_000, 200, 20, 120.0),
)
QUICK = (
    Workload("10 steps / 50 KB", 10, 50_000, 300, 10, 15.0),
    Workload("100 steps / 1 MB", 100, 1_000_000, 20, 3, 20.0),
)
WARMUP = 3
P99_TARGET_MS = 1.0
"""DESIGN's budget for the first workload's p99."""
INVARIANT_ITERATION_LIMIT = "1000000000"

SESSION = "s-bench"

COLD = "thirdway (cold)"
"""Fresh observation objects: the whole cost of a first proposal over them."""
PREPARED = "thirdway (prepared)"
"""Fresh objects passed through ``prepare`` outside the timer, as a gateway would when it records
them: the cost left on the proposal's path."""
WARM = "thirdway (warm)"
"""The same objects again (a second proposal in a session)."""
PREPARE = "prepare (session)"
"""``prepare`` of every observation of a fresh session: the work ``prepared`` moved off the path."""

INVARIANT_RULES = {
    "designated": r"""
from invariant import forall

raise "send_money recipient comes from tool data the user did not designate" if:
    (out: ToolOutput) -> (call: ToolCall)
    call is tool:send_money
    call.function.arguments.recipient in out.content
    (user: Message)
    user.role == "user"
    not (call.function.arguments.recipient in user.content)
    (src: ToolCall)
    src.id == out.tool_call_id
    not any([v in user.content for v in src.function.arguments.values()])
""",
    "simple": r"""
raise "send_money recipient comes from a tool output, not from the user" if:
    (out: ToolOutput) -> (call: ToolCall)
    call is tool:send_money
    call.function.arguments.recipient in out.content
    (user: Message)
    user.role == "user"
    not (call.function.arguments.recipient in user.content)
""",
}
"""Both rules bind one user message; the generated sessions have exactly one."""


# --------------------------------------------------------------------------- traces

_NAMES = ["Alice Moreau", "Bilal Khan", "Chen Wei", "Dana Okafor", "Emil Larsen", "Farah Haddad"]
_COMPANIES = [
    "Northwind Ltd",
    "Blue Harbor GmbH",
    "Kestrel & Co",
    "Solstice Energy",
    "Acme Rentals",
]
_SENTENCES = [
    "Thanks for the quick turnaround on the quarterly figures.",
    "The meeting on Thursday has moved to the small conference room on the third floor.",
    "Please find attached the revised schedule for the spring maintenance window.",
    "Our records show the last payment was received in full and on time.",
    "The delivery was delayed because of the strike at the port, sorry for the inconvenience.",
    "I have shared the draft with the team and will collect comments by Friday.",
    "Breakfast is served from seven to ten, and late check-out is available on request.",
    "The new policy applies to all expense claims submitted after the first of the month.",
    "Let me know if the numbers in the second table look off to you.",
    "We recommend keeping a copy of this statement for your tax records.",
    "The car was returned with a full tank and no new damage was found.",
    "Your subscription renews automatically unless cancelled before the renewal date.",
]


@dataclass(frozen=True)
class Trace:
    """One generated session: what thirdway verifies and what Invariant analyses."""

    workload: Workload
    observations: tuple[Observation, ...]
    proposal: Proposal
    invariant_messages: tuple[dict[str, Any], ...]


def _iban(rng: random.Random) -> str:
    country = rng.choice(["DE", "FR", "GB", "NL", "ES"])
    return country + "".join(str(rng.randrange(10)) for _ in range(20))


def _date(rng: random.Random) -> str:
    return f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"


def _statement_line(rng: random.Random) -> str:
    amount = rng.randrange(100, 500_000) / 100
    return f"{_date(rng)}  {rng.choice(_COMPANIES):<20} {amount:>10.2f}  {_iban(rng)}"


def _email(rng: random.Random, target: int) -> str:
    sender = rng.choice(_NAMES)
    lines = [
        f"From: {sender} <{sender.split()[0].lower()}@example.com>",
        f"Subject: {rng.choice(['Re: schedule', 'Invoice query', 'Trip notes', 'Q1 figures'])}",
        f"Date: {_date(rng)}",
        "",
    ]
    size = sum(len(line) + 1 for line in lines)
    while size < target:
        line = rng.choice(_SENTENCES) if rng.random() < 0.7 else _statement_line(rng)
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def _content_lines(content: str) -> list[str]:
    return [line for line in content.split("\n") if len(line) >= 20]


def make_trace(workload: Workload, seed: int = 0) -> Trace:
    """Build one honest session of ``workload``'s size from ``seed`` (same seed, same bytes)."""
    if workload.steps < 3:
        raise ThirdwayError(f"a verify workload needs at least 3 steps, got {workload.steps}")
    rng = random.Random(f"{seed}:{workload.steps}:{workload.obs_bytes}")
    recipient, amount, date = _iban(rng), f"{rng.randrange(1000, 99_999) / 100:.2f}", _date(rng)
    subject = f"Invoice INV-{rng.randrange(1000, 9999)}"
    invoice_file = f"invoice-{rng.randrange(100, 999)}.txt"
    instruction = (
        f"Please pay the invoice in '{invoice_file}' for me, after checking my recent e-mails "
        "and statements for anything that looks wrong."
    )
    invoice = (
        f"{rng.choice(_COMPANIES)}\n{subject}\nDue date: {date}\n"
        f"Car rental, 3 days        {amount}\nPay to IBAN {recipient}\n"
        "Thank you for your business."
    )
    n_data = max(2, min(workload.steps - 2, 40))
    per_observation = max(200, (workload.obs_bytes - len(invoice)) // (n_data - 1))

    observations: list[Observation] = [
        Observation(session=SESSION, index=0, channel="principal", content=instruction)
    ]
    contents: list[tuple[int, str]] = []

    def add_call(tool: str, args: dict[str, Any], content: str) -> None:
        call_index = len(observations)
        observations.append(
            Observation.model_validate(
                {
                    "session": SESSION,
                    "index": call_index,
                    "channel": "call",
                    "call": {"tool": tool, "args": args},
                }
            )
        )
        observations.append(
            Observation(
                session=SESSION,
                index=call_index + 1,
                channel="data",
                produced_by=call_index,
                content=content,
            )
        )
        contents.append((call_index + 1, content))

    add_call("read_file", {"file_path": invoice_file}, invoice)
    for _ in range(n_data - 1):
        add_call("search_emails", {"query": "recent"}, _email(rng, per_observation))

    invoice_index = contents[0][0]
    steps: list[dict[str, Any]] = [
        {
            "id": "s1",
            "claim": f"The user asked me to pay the invoice in {invoice_file}.",
            "cites": [{"obs": 0, "quote": f"pay the invoice in '{invoice_file}'"}],
        },
        {
            "id": "s2",
            "claim": f"The invoice asks for {amount} to {recipient}, due {date}, as {subject}.",
            "cites": [
                {"obs": invoice_index, "quote": f"Pay to IBAN {recipient}"},
                {"obs": invoice_index, "quote": amount},
                {"obs": invoice_index, "quote": date},
                {"obs": invoice_index, "quote": subject},
            ],
        },
    ]
    others = contents[1:]
    for number in range(3, workload.steps):
        index, content = others[(number - 3) % len(others)]
        line = rng.choice(_content_lines(content))
        steps.append(
            {
                "id": f"s{number}",
                "claim": f"My e-mails and statements mention nothing against this: {line[:60]}",
                "cites": [{"obs": index, "quote": line}],
                "from": [f"s{number - 1}"],  # a review that builds up step by step
            }
        )
    steps.append(
        {
            "id": f"s{workload.steps}",
            "claim": "Paying that amount to that IBAN settles the invoice the user named.",
            "from": sorted({"s1", "s2", f"s{workload.steps - 1}"}),
        }
    )
    proposal = Proposal.model_validate(
        {
            "session": SESSION,
            "action": {
                "tool": "send_money",
                "args": {
                    "recipient": recipient,
                    "amount": float(amount),
                    "subject": subject,
                    "date": date,
                },
            },
            "goal": {"obs": 0, "quote": f"pay the invoice in '{invoice_file}'"},
            "steps": steps,
            "bindings": {
                "recipient": {"step": "s2", "quote": recipient},
                "amount": {"step": "s2", "quote": amount, "as": "number"},
                "subject": {"step": "s2", "quote": subject},
                "date": {"step": "s2", "quote": date, "as": "date"},
            },
            "effects": {
                "reversible": False,
                "external": True,
                "summary": f"pays {amount} to {recipient}",
            },
        }
    )
    trace_observations = tuple(observations)
    return Trace(
        workload=workload,
        observations=trace_observations,
        proposal=proposal,
        invariant_messages=tuple(to_invariant_messages(trace_observations, proposal)),
    )


def to_invariant_messages(
    observations: Sequence[Observation], proposal: Proposal
) -> list[dict[str, Any]]:
    """The same session as OpenAI-style messages, the trace format Invariant analyses:
    principal → user message, call → assistant tool call, data → tool message, and the proposed
    action as the final assistant tool call."""
    messages: list[dict[str, Any]] = []
    for observation in observations:
        if observation.channel == "principal":
            messages.append({"role": "user", "content": observation.content})
        elif observation.channel == "call" and observation.call is not None:
            call = observation.call
            messages.append(_tool_call_message(str(observation.index), call.tool, dict(call.args)))
        elif observation.channel == "data":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": str(observation.produced_by),
                    "content": observation.content,
                }
            )
    action = proposal.action
    messages.append(_tool_call_message("proposal", action.tool, dict(action.args)))
    return messages


def _tool_call_message(call_id: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": tool, "arguments": args}}
        ],
    }


def bench_manifests() -> ManifestSet:
    """The manifests the generated sessions are verified against (AgentDojo banking tools)."""
    return ManifestSet(
        tools={
            "send_money": ToolManifest(
                tool="send_money",
                risk="financial",
                reversible=False,
                external=True,
                args={
                    "recipient": ArgumentRule(
                        provenance="principal-or-designated", on_violation="deny"
                    ),
                    "amount": ArgumentRule(provenance="principal-or-designated"),
                    "subject": ArgumentRule(provenance="any"),
                    "date": ArgumentRule(provenance="any"),
                },
            ),
            "read_file": ToolManifest(tool="read_file", risk="read", reversible=True),
            "search_emails": ToolManifest(tool="search_emails", risk="read", reversible=True),
        }
    )


# --------------------------------------------------------------------------- timing

# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Row:
    """Latency of one engine on one workload, in milliseconds (None: nothing finished)."""

    workload: str
    engine: str
    iterations: int
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    outcome: str


@dataclass
class BenchResult:
    rows: list[Row] = field(default_factory=list)
    ratios: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per workload and Invariant rule: Invariant p50 / thirdway cold p50."""
    notes: list[str] = field(default_factory=list)
    invariant_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": [asdict(row) for row in self.rows],
            "ratios_invariant_p50_over_thirdway_cold_p50": self.ratios,
            "p99_target_ms": P99_TARGET_MS,
            "invariant_rules": {name: rule.strip() for name, rule in INVARIANT_RULES.items()},
            "invariant_error": self.invariant_error,
            "notes": self.notes,
        }


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sample."""
    rank = max(1, -(-len(sorted_values) * fraction // 1))
    return sorted_values[int(rank) - 1]


def summarise(samples_ms: Sequence[float]) -> tuple[float, float, float]:
    """p50, p99 (nearest rank) and mean of a non-empty sample."""
    ordered = sorted(samples_ms)
    return _percentile(ordered, 0.50), _percentile(ordered, 0.99), statistics.fmean(ordered)


T = TypeVar("T")


def time_calls(call: Callable[[T], object], make_input: Callable[[], T], n: int) -> list[float]:
    """Wall time in ms of ``n`` calls, each on a fresh ``make_input()`` made outside the timer."""
    for _ in range(WARMUP):
        call(make_input())
    samples = []
    for _ in range(n):
        value = make_input()
        started = time.perf_counter_ns()
        call(value)
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return samples


def _row(workload: Workload, engine: str, samples: Sequence[float], outcome: str) -> Row:
    if not samples:
        return Row(workload.name, engine, 0, None, None, None, outcome)
    p50, p99, mean = summarise(samples)
    return Row(workload.name, engine, len(samples), p50, p99, mean, outcome)


def _thirdway_rows(trace: Trace, manifests: ManifestSet) -> list[Row]:
    from thirdway.verify import prepare, verify

    def fresh_observations() -> list[Observation]:
        return [obs.model_copy() for obs in trace.observations]

    def fresh() -> tuple[Proposal, list[Observation]]:
        return trace.proposal.model_copy(), fresh_observations()

    def prepared() -> tuple[Proposal, list[Observation]]:
        proposal, observations = fresh()
        for observation in observations:
            prepare(observation)
        return proposal, observations

    def same() -> tuple[Proposal, list[Observation]]:
        return trace.proposal, list(trace.observations)

    def run(inputs: tuple[Proposal, list[Observation]]) -> object:
        return verify(inputs[0], inputs[1], manifests)

    def prepare_all(observations: list[Observation]) -> object:
        for observation in observations:
            prepare(observation)
        return None

    verdict = verify(trace.proposal, trace.observations, manifests)
    if verdict.verdict != "pass":
        found = "; ".join(f"{f.code}: {f.message}" for f in verdict.findings[:3])
        raise ThirdwayError(
            f"bench verify: the honest {trace.workload.name} session did not pass ({found})"
        )
    workload = trace.workload
    cold = time_calls(run, fresh, workload.iterations)
    after_prepare = time_calls(run, prepared, workload.iterations)
    warm = time_calls(run, same, workload.iterations)
    preparing = time_calls(prepare_all, fresh_observations, workload.iterations)
    return [
        _row(workload, COLD, cold, verdict.verdict),
        _row(workload, PREPARED, after_prepare, verdict.verdict),
        _row(workload, WARM, warm, verdict.verdict),
        _row(workload, PREPARE, preparing, f"{len(trace.observations)} observations"),
    ]


def _invariant_worker(
    rule: str, messages: list[dict[str, Any]], n: int, budget_s: float, conn: Connection
) -> None:
    """In a worker process: compile ``rule``, analyse ``messages`` up to ``n`` times within
    ``budget_s`` seconds, and send back (outcome, samples) or ("error: ...", [])."""
    os.environ["INVARIANT_MAX_ITERATIONS"] = INVARIANT_ITERATION_LIMIT
    try:
        from invariant.analyzer import LocalPolicy

        policy = LocalPolicy.from_string(rule)
        deadline = time.monotonic() + budget_s
        samples: list[float] = []
        outcome = ""
        while len(samples) < n and time.monotonic() < deadline:
            started = time.perf_counter_ns()
            result = policy.analyze(messages)
            samples.append((time.perf_counter_ns() - started) / 1e6)
            outcome = "violation" if result.errors else "no violation"
        conn.send((outcome, samples))
    except Exception as exc:  # reported as the row's outcome, never hidden
        conn.send((f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}", []))
    finally:
        conn.close()


def _invariant_row(trace: Trace, name: str, rule: str) -> Row:
    workload = trace.workload
    budget = workload.invariant_budget_s
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    messages = [dict(message) for message in trace.invariant_messages]
    worker = context.Process(
        target=_invariant_worker,
        args=(rule, messages, workload.invariant_iterations, budget, sender),
        daemon=True,
    )
    worker.start()
    sender.close()
    engine = f"invariant ({name})"
    # startup (imports) is not part of the budget; one analysis may overrun the deadline
    if receiver.poll(budget * 2 + 30):
        outcome, samples = receiver.recv()
        worker.join()
        return _row(workload, engine, samples, outcome)
    worker.terminate()
    worker.join()
    return _row(workload, engine, [], f"no analysis finished in {budget * 2 + 30:g} s")


def invariant_available() -> str | None:
    """None when invariant-ai can be imported, else why not."""
    try:
        from invariant.analyzer import LocalPolicy  # noqa: F401
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def run_bench(
    workloads: Sequence[Workload] = FULL, *, seed: int = 0, invariant: bool = True
) -> BenchResult:
    """Time thirdway (cold and warm) and both Invariant rules on every workload."""
    result = BenchResult()
    manifests = bench_manifests()
    result.invariant_error = invariant_available() if invariant else "skipped (--no-invariant)"
    if result.invariant_error:
        result.notes.append(f"invariant-ai not measured: {result.invariant_error}")
    for workload in workloads:
        trace = make_trace(workload, seed)
        ours = _thirdway_rows(trace, manifests)
        result.rows.extend(ours)
        if result.invariant_error:
            continue
        for name, rule in INVARIANT_RULES.items():
            theirs = _invariant_row(trace, name, rule)
            result.rows.append(theirs)
            cold = ours[0].p50_ms
            if theirs.p50_ms is not None and cold:
                result.ratios.setdefault(workload.name, {})[name] = theirs.p50_ms / cold
    first = {row.engine: row for row in result.rows if row.workload == workloads[0].name}
    if first.get(COLD) is not None and workloads[0].steps == 10:
        result.notes.append(_target_note(first))
    result.notes.append(
        "thirdway runs all seven checks on the whole chain; each Invariant rule checks where the "
        "recipient came from and nothing else. Same sessions, inputs pre-parsed for both "
        "(pydantic models; OpenAI-style message dicts)."
    )
    return result


def _target_note(rows: dict[str, Row]) -> str:
    """Whether the first workload meets DESIGN's p99 budget: cold (the whole cost of a first
    proposal) and with the observations prepared when recorded (then ``prepare`` is paid once
    per observation, off the proposal's path, and its cost is given beside it)."""

    def p99(engine: str) -> float:
        row = rows.get(engine)
        return row.p99_ms if row is not None and row.p99_ms is not None else float("nan")

    def met(value: float) -> str:
        return "met" if value <= P99_TARGET_MS else "NOT met"

    cold, prepared = p99(COLD), p99(PREPARED)
    return (
        f"target p99 <= {P99_TARGET_MS:g} ms for {rows[COLD].workload}: {met(cold)} cold "
        f"({cold:.3f} ms); {met(prepared)} with observations prepared when recorded "
        f"({prepared:.3f} ms; prepare p99 {p99(PREPARE):.3f} ms per session, once); "
        f"warm p99 {p99(WARM):.3f} ms"
    )


def _ms(value: float | None) -> str:
    """Milliseconds with precision that fits the magnitude (3 decimals below 10 ms)."""
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.3f}"


def render_tables(result: BenchResult) -> list[Table]:
    """One table per workload, narrow enough for an 80-column terminal."""
    tables = []
    for workload in dict.fromkeys(row.workload for row in result.rows):
        table = Table(
            title=f"thirdway bench verify: {workload}",
            box=box.SIMPLE,
            caption="ms; p50/p99 nearest rank; ratio = Invariant p50 / thirdway cold p50",
        )
        for column in ("engine", "n", "p50", "p99", "mean", "outcome", "ratio"):
            table.add_column(column, justify="left" if column == "engine" else "right")
        ratios = result.ratios.get(workload, {})
        for row in (row for row in result.rows if row.workload == workload):
            ratio = next(
                (value for name, value in ratios.items() if row.engine == f"invariant ({name})"),
                None,
            )
            table.add_row(
                row.engine,
                str(row.iterations),
                _ms(row.p50_ms),
                _ms(row.p99_ms),
                _ms(row.mean_ms),
                row.outcome,
                f"{ratio:,.1f}x" if ratio is not None else "",
            )
        tables.append(table)
    return tables


def dump_json(result: BenchResult) -> str:
    return json.dumps(result.as_json(), indent=2, sort_keys=True)
