"""``thirdway trust show``, ``verify`` and ``appeal``: an agent's standing, from the log.

``show`` prints what the gateway would: tier, score with its evidence counts, offence history and
the path back up. ``verify`` is the agent's side of mutual verification: it checks the log's
Merkle tree and signed checkpoints, recomputes the agent's standing from the log and the charter
alone, requires every recorded trust event to agree with that recomputation, and (with
``--expect``) compares it with what the gateway reported. Exit 0: verified; 1: a mismatch or a
tampered log; 2: the input could not be read. ``appeal`` records the agent's appeal of a
sanction in the log (checked against the charter first), for the dialogue service to open.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ConfigDict, JsonValue, TypeAdapter, ValidationError
from rich.table import Table

from thirdway.charter.enforce import SYSTEM
from thirdway.cli.common import console, fail, friendly_errors, read_input
from thirdway.errors import InputError, LogError
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.models import LogEntry, TrustEvent
from thirdway.protocol.parse import describe
from thirdway.trust import actions
from thirdway.trust.config import load_context
from thirdway.trust.events import to_log_entry
from thirdway.trust.fold import apply, fold, replay_from_log
from thirdway.trust.model import Discrepancy, TrustState
from thirdway.trust.rules import Context, initial_state
from thirdway.trust.score import describe as describe_score
from thirdway.trust.text import describe_path, iso, tier_label

app = typer.Typer(help="An agent's trust tier: show it, verify it from the log, appeal a sanction.")

MAX_EXPECT_BYTES = 1 << 20

AgentArg = Annotated[str, typer.Argument(help="The agent id.", show_default=False)]
CharterOption = Annotated[
    Path | None,
    typer.Option(
        "--charter",
        help="Charter YAML to run under (default: the shipped charter). Events citing it, or"
        " any charter shipped with thirdway (e.g. 1.0), are judged under the charter they cite.",
    ),
]
TiersOption = Annotated[
    Path | None, typer.Option("--tiers", help="Tiers YAML (default: the shipped tiers).")
]
NowOption = Annotated[
    int | None,
    typer.Option("--now", min=0, help="Unix time to evaluate at (default: the clock)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def register(root: typer.Typer) -> None:
    """Attach ``thirdway trust show`` and ``thirdway trust verify``."""
    root.add_typer(app, name="trust")


# --------------------------------------------------------------------------- reading the log


def _read_entries(log: TransparencyLog) -> list[LogEntry]:
    """Every entry of the log as a ``thirdway/1`` envelope; anything else is refused."""
    entries = []
    for index in range(log.size()):
        try:
            entries.append(LogEntry.model_validate_json(log.entry(index)))
        except ValidationError as exc:
            raise LogError(f"log entry {index}: {describe(exc, 'thirdway/1 log entry')}") from None
    return entries


@dataclass(frozen=True)
class Step:
    """One trust event of the agent, where it sits in the log, and the tier it left."""

    index: int
    event: TrustEvent
    tier: int

    def point(self) -> dict[str, JsonValue]:
        """As the service's tier history lists it (``GET /v1/trust/{agent}``, ``tiers``)."""
        return {"index": self.index, "at": self.event.at or 0, "kind": self.event.kind,
                "tier": self.tier}  # fmt: skip


def _standing(
    db: Path, agent: str, ctx: Context, now: int | None
) -> tuple[TrustState, int, list[Step]]:
    """The agent's state from the log, the number of entries, and its trust events in order."""
    if not db.exists():
        raise InputError(f"log file not found: {db}")
    with TransparencyLog.open(db, create=False) as log:
        entries = _read_entries(log)
    if not any(entry.agent == agent for entry in entries):
        # A mistyped id would otherwise "verify" as a newcomer at the initial tier.
        raise InputError(
            f"agent {agent!r} appears in none of the {len(entries)} entries of {db}; "
            f"an agent with no history would hold {tier_label(ctx.rules.initial_tier, ctx.tiers)}"
        )
    events = replay_from_log(entries, agent)
    when = int(time.time()) if now is None else now
    state = fold(events, charter=ctx.charter, tiers=ctx.tiers, now=when, agent=agent)
    indices = [i for i, e in enumerate(entries) if e.type == "trust" and e.agent == agent]
    steps: list[Step] = []
    running = initial_state(agent, ctx)
    for index, event in zip(indices, events, strict=True):
        running = apply(running, event, ctx)
        steps.append(Step(index=index, event=event, tier=running.tier))
    return state, len(entries), steps


# --------------------------------------------------------------------------- show


def _print_state(state: TrustState, ctx: Context, steps: Sequence[Step]) -> None:
    tiers = ctx.tiers
    spec = tiers.spec(state.tier)
    head = Table.grid(padding=(0, 2))
    head.add_row("agent", state.agent)
    retired = f"  [red]retired {iso(state.retired_at)}[/]" if state.retired_at is not None else ""
    head.add_row("tier", f"{tier_label(state.tier, tiers)}: {spec.description}{retired}")
    head.add_row("spot audits", f"{spec.spot_audit_percent:g} % of actions")
    head.add_row("score", describe_score(state.score, state.evidence))
    head.add_row("charter", f"{ctx.charter.charter} {ctx.charter.version} ({state.charter_sha256})")
    head.add_row("events", f"{state.events} ({state.applied} applied)")
    console.print(head)
    if state.probation is not None and state.path is not None:
        due = "  [green](due now)[/]" if state.restoration_due else ""
        console.print(f"[bold]path back up[/]: {describe_path(state.path, tiers)}{due}")
    _print_tier_changes(ctx, steps)
    if state.offences:
        console.print("[bold]offence history[/] (never erased):")
    for offence in state.offences:
        status = []
        if offence.cosigned_by:
            status.append(f"co-signed by {offence.cosigned_by}")
        if offence.appeal != "none":
            status.append(f"appeal {offence.appeal}")
        if offence.reversed_by:
            status.append(f"reversed by {offence.reversed_by}")
        applied = "" if offence.applied_rule == offence.rule else f" as {offence.applied_rule}"
        console.print(
            f"  {iso(offence.at)}  {offence.rule}{applied}: tier {offence.tier_before} → "
            f"{offence.tier_after} (the rule's target: {offence.target_tier}); evidence "
            + ", ".join(str(i) for i in offence.evidence)
            + f"; {'; '.join(status) or 'standing'}; id {offence.id[:16]}…",
            highlight=False,
            soft_wrap=True,
        )
    for request in state.pending:
        what = (
            f"co-signature to take the agent to tier {request.target_tier}"
            if request.kind == "cosign"
            else f"appeal, dialogue {request.dialogue}"
        )
        console.print(f"[yellow]pending[/]: {what} (sanction {request.sanction[:16]}…)")
    for rejection in state.rejections:
        clause = f"{rejection.clause}: " if rejection.clause else ""
        console.print(
            f"[red]rejected[/] event #{rejection.position} ({rejection.kind}): "
            f"{clause}{rejection.message}",
            highlight=False,
        )
    for item in state.discrepancies:
        console.print(
            f"[red]discrepancy[/] event #{item.position}: {item.field} recorded "
            f"{json.dumps(item.recorded)}, rules give {json.dumps(item.recomputed)}"
            + _unknown_charter_note(item.field),
            highlight=False,
        )


def _discrepancy(item: Discrepancy) -> str:
    return (
        f"event #{item.position}: {item.field} recorded {json.dumps(item.recorded)}, "
        f"rules give {json.dumps(item.recomputed)}{_unknown_charter_note(item.field)}"
    )


def _unknown_charter_note(field: str) -> str:
    """What a charter_sha256 discrepancy means: the event cites a charter this replay does not
    know (events citing any charter shipped with thirdway are judged under it)."""
    if field != "charter_sha256":
        return ""
    return " (a charter neither shipped with thirdway nor given with --charter)"


def _charters_cited(ctx: Context, steps: Sequence[Step]) -> str:
    """The charters the agent's events were judged under, each as its version and hash
    (the replay's own when there are no events), e.g. ``charters 1.0 (…), 1.1 (…)``."""
    cited = [s.event.charter_sha256 for s in steps if s.event.charter_sha256 is not None]
    named = []
    for sha256 in dict.fromkeys(cited or [ctx.charter_sha256]):
        judged = ctx.cited(sha256)
        version = judged.charter.version if judged is not None else "unknown"
        named.append(f"{version} ({sha256[:16]}…)")
    return ("charter " if len(named) == 1 else "charters ") + ", ".join(named)


def _print_tier_changes(ctx: Context, steps: Sequence[Step]) -> None:
    """Every event that moved the tier, in log order: how the agent got where it is."""
    tier = ctx.rules.initial_tier
    lines = []
    for step in steps:
        if step.tier != tier:
            event = step.event
            by = f" by {event.actor}" if event.actor and event.actor != SYSTEM else ""
            rule = f" ({event.rule})" if event.rule and event.kind == "sanction" else ""
            lines.append(
                f"  {iso(event.at or 0)}  log entry {step.index}: {event.kind}{rule}{by}, "
                f"tier {tier} → {step.tier}"
            )
            tier = step.tier
    if lines:
        start = tier_label(ctx.rules.initial_tier, ctx.tiers)
        console.print(f"[bold]tier changes[/] (a new agent starts at {start}):")
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


@app.command("show")
@friendly_errors
def show(
    agent: AgentArg,
    db: Annotated[Path, typer.Option("--db", "--log", help="The log database file.")] = Path(
        "thirdway.sqlite"
    ),
    charter: CharterOption = None,
    tiers: TiersOption = None,
    now: NowOption = None,
    as_json: JsonOption = False,
) -> None:
    """Tier, score with its evidence, offence history and the path back up."""
    ctx = load_context(charter, tiers)
    state, _, steps = _standing(db, agent, ctx, now)
    if as_json:
        document = {"summary": state.summary(), "state": state.model_dump(mode="json")}
        typer.echo(json.dumps(document, indent=2))
        return
    _print_state(state, ctx, steps)


# --------------------------------------------------------------------------- verify


class _TierPoint(BaseModel):
    """One point of the service's tier history (``GET /v1/trust/{agent}``, ``tiers``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    index: int
    at: int
    kind: str
    tier: int


_POINTS = TypeAdapter(list[_TierPoint])
_CLOCK_FIELDS = {"as_of", "restoration_due"}
"""State fields that depend on the clock of whoever computed them, not on the log."""


@dataclass(frozen=True)
class Expectation:
    """What the gateway reported: summary fields, a whole trust state, and/or a tier history."""

    summary: dict[str, Any] | None = None
    state: TrustState | None = None
    tiers: list[dict[str, JsonValue]] | None = None


def _load_expectation(value: str) -> Expectation:
    """``--expect``: inline JSON (starting with ``{`` or ``[``) or a file (``-`` = stdin).

    Accepted: summary fields (``{"tier": 1}``), the output of ``trust show --json``, or the
    service's ``GET /v1/trust/{agent}`` body (``{"state": …, "tiers": […]}``)."""
    inline = value.lstrip().startswith(("{", "["))
    raw = value.encode() if inline else read_input(Path(value), "expect")
    if len(raw) > MAX_EXPECT_BYTES:
        raise InputError(f"--expect is {len(raw)} bytes; the limit is {MAX_EXPECT_BYTES}")
    try:
        document: object = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"--expect is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InputError('--expect must be a JSON object, e.g. {"tier": 2}')
    if "summary" not in document and "state" not in document:
        return Expectation(summary={str(key): value for key, value in document.items()})
    unknown = sorted(set(document) - {"summary", "state", "tiers"})
    if unknown:
        raise InputError(
            f"--expect has unknown field(s) {', '.join(unknown)} beside summary/state/tiers"
        )
    summary = document.get("summary")
    if summary is not None and not isinstance(summary, dict):
        raise InputError("--expect summary must be a JSON object")
    state = None
    if document.get("state") is not None:
        try:
            state = TrustState.model_validate(document["state"])
        except ValidationError as exc:
            raise InputError(describe(exc, "--expect state")) from None
    tiers = None
    if document.get("tiers") is not None:
        try:
            points = _POINTS.validate_python(document["tiers"])
        except ValidationError as exc:
            raise InputError(describe(exc, "--expect tiers")) from None
        tiers = [point.model_dump() for point in points]
    return Expectation(summary=summary, state=state, tiers=tiers)


def compare(
    expected: Expectation, state: TrustState, points: list[dict[str, JsonValue]]
) -> list[str]:
    """Differences between what the gateway reported and what the log gives."""
    problems: list[str] = []
    if expected.summary is not None:
        actual = state.summary()
        unknown = sorted(set(expected.summary) - set(actual))
        if unknown:
            raise InputError(
                f"--expect has unknown field(s) {', '.join(unknown)}; known: {', '.join(actual)}"
            )
        problems += [
            f"{key}: gateway reports {json.dumps(value)}, the log gives {json.dumps(actual[key])}"
            for key, value in expected.summary.items()
            if not _same(value, actual[key])
        ]
    if expected.state is not None:
        reported = expected.state.model_dump(mode="json", exclude=_CLOCK_FIELDS)
        recomputed = state.model_dump(mode="json", exclude=_CLOCK_FIELDS)
        problems += [
            f"state.{key}: gateway reports {_short(reported[key])}, the log gives "
            f"{_short(recomputed[key])}"
            for key in recomputed
            if reported[key] != recomputed[key]
        ]
    if expected.tiers is not None and expected.tiers != points:
        at = next(
            (i for i, (a, b) in enumerate(zip(expected.tiers, points, strict=False)) if a != b),
            min(len(expected.tiers), len(points)),
        )
        reported_point = expected.tiers[at] if at < len(expected.tiers) else "nothing"
        recomputed_point = points[at] if at < len(points) else "nothing"
        problems.append(
            f"tiers[{at}]: gateway reports {_short(reported_point)}, the log gives "
            f"{_short(recomputed_point)} ({len(expected.tiers)} points reported, "
            f"{len(points)} in the log)"
        )
    return problems


def _short(value: object, limit: int = 160) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _same(reported: Any, recomputed: JsonValue) -> bool:
    if isinstance(reported, bool) or isinstance(recomputed, bool):
        return reported is recomputed
    if isinstance(reported, int | float) and isinstance(recomputed, int | float):
        return math.isclose(reported, recomputed, rel_tol=1e-12, abs_tol=1e-12)
    return bool(reported == recomputed)


def _listed(problems: list[str]) -> str:
    """The first problem (the log's own come first), and how many more there are."""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more


@app.command("verify")
@friendly_errors
def verify(
    agent: AgentArg,
    log_path: Annotated[Path, typer.Option("--log", help="The log database file.")],
    expect: Annotated[
        str | None,
        typer.Option(
            "--expect",
            help="What the gateway reports: JSON inline or a file: summary fields (e.g."
            " '{\"tier\": 2}'), `trust show --json`, or the service's GET /v1/trust/AGENT"
            " body (whole state and tier history).",
        ),
    ] = None,
    charter: CharterOption = None,
    tiers: TiersOption = None,
    now: NowOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute an agent's standing from the log and the charter alone, and check it."""
    ctx = load_context(charter, tiers)
    expected = _load_expectation(expect) if expect is not None else None
    if not log_path.exists():
        raise InputError(f"log file not found: {log_path}")
    with TransparencyLog.open(log_path, create=False) as log:
        report = log.verify()
    problems = [] if report.ok else [f"log: {p}" for p in report.problems]
    try:
        state, size, steps = _standing(log_path, agent, ctx, now)
    except LogError as exc:  # an entry that cannot be read is a failed verification too
        problems.append(str(exc))
        raise fail(f"trust verification failed for {agent}: {_listed(problems)}", code=1) from None
    # An unknown charter first: the events citing it were judged under another one, so it is
    # the likely cause of whatever else is listed about them.
    unknown = [d for d in state.discrepancies if d.field == "charter_sha256"]
    problems += [_discrepancy(d) for d in unknown]
    problems += [
        f"event #{r.position} ({r.kind}) rejected: {r.clause + ': ' if r.clause else ''}{r.message}"
        for r in state.rejections
    ]
    problems += [_discrepancy(d) for d in state.discrepancies if d not in unknown]
    if expected is not None:
        problems += compare(expected, state, [step.point() for step in steps])
    if as_json:
        document = {"verified": not problems, "problems": problems, "summary": state.summary()}
        typer.echo(json.dumps(document, indent=2))
        if problems:
            raise typer.Exit(1)
        return
    if problems:
        raise fail(f"trust verification failed for {agent}: {_listed(problems)}", code=1)
    console.print(
        f"[green]✓[/] {agent}: {tier_label(state.tier, ctx.tiers)}, score "
        f"{describe_score(state.score, state.evidence)}; recomputed from {state.events} trust "
        f"events in {size} log entries under {_charters_cited(ctx, steps)}"
        + ("; matches the gateway's report" if expected is not None else ""),
        highlight=False,
        soft_wrap=True,
    )


# --------------------------------------------------------------------------- appeal


def _resolve_sanction(state: TrustState, given: str) -> str:
    """The full id of the agent's sanction that ``given`` (the id, or a unique prefix of at
    least 8 hex digits, as ``trust show`` prints it) names."""
    prefix = given.strip().rstrip("…").lower()
    if len(prefix) < 8 or prefix.strip("0123456789abcdef"):
        raise InputError(f"a sanction id is hex digits (at least 8 of them), not {given!r}")
    matches = [o.id for o in state.offences if o.id.startswith(prefix)]
    if not matches:
        listed = ", ".join(o.id[:16] for o in state.offences) or "none"
        raise InputError(f"{state.agent} has no sanction {prefix[:16]}… (its sanctions: {listed})")
    if len(matches) > 1:
        raise InputError(f"{prefix} names {len(matches)} sanctions; give more digits")
    return matches[0]


@app.command("appeal")
@friendly_errors
def appeal(
    agent: AgentArg,
    sanction: Annotated[
        str,
        typer.Argument(help="The sanction's id, or its first 16 digits as trust show prints it."),
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why the sanction is wrong (required).")],
    log_path: Annotated[Path, typer.Option("--log", help="The log database file.")],
    evidence: Annotated[
        list[int] | None,
        typer.Option("--evidence", min=0, help="A log index supporting the appeal (repeatable)."),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option(
            "--actor", help="An auditor appealing on the agent's behalf (default: the agent)."
        ),
    ] = None,
    charter: CharterOption = None,
    tiers: TiersOption = None,
) -> None:
    """Appeal a sanction (due-process.4): the appeal is recorded in the log, and the gateway's
    dialogue service opens the dialogue appeal:<sanction id> for the auditors, whose approval
    reverses the sanction."""
    if not reason.strip():
        raise InputError("an appeal states its reason (--reason)")
    ctx = load_context(charter, tiers)
    state, size, _ = _standing(log_path, agent, ctx, None)
    sanction_id = _resolve_sanction(state, sanction)
    cited = sorted(set(evidence or ()))
    beyond = [index for index in cited if index >= size]
    if beyond:
        raise InputError(
            f"--evidence must cite entries already in the log (0 to {size - 1}), not "
            + ", ".join(str(index) for index in beyond)
        )
    at = max(int(time.time()), state.last_at or 0)
    event = actions.appeal(
        state, sanction_id=sanction_id, reason=reason, at=at, ctx=ctx, actor=actor, evidence=cited
    )  # a second appeal, or one of a reversed sanction, is refused here naming why
    with TransparencyLog.open(log_path, create=False) as log:
        index = log.append(canonical_json(to_log_entry(event)))
    console.print(
        f"[green]✓[/] appeal of sanction {sanction_id[:16]}… recorded at log entry {index}; the "
        f"gateway's dialogue service opens dialogue appeal:{sanction_id} for the auditors",
        highlight=False,
        soft_wrap=True,
    )
