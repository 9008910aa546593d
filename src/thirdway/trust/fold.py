"""Trust state as a pure fold over trust events: anyone holding the log recomputes any agent.

:func:`apply` takes one event to the next state and never raises on a bad event: an event the
charter forbids, or one that is malformed, is *rejected* (not applied, and listed with the clause
it breaks); a value the recorder wrote that differs from what the rules recompute (a tier, the
outcome, a time running backwards, another charter's hash) is a *discrepancy* (the recomputed
value wins, and the difference is listed). Each event is judged under the charter it cites:
the context's own, or any charter thirdway has shipped (so a log written under charter 1.0 is
judged by 1.0's clauses); one citing a charter that is neither is listed as a discrepancy naming
the hash it cites. Charters only move forward: an event citing a charter older than the
newest one an earlier event about the same agent cited (applied or rejected) is rejected, naming
both (:func:`thirdway.trust.rules.require_forward`). The fold's scope is the agent, because
every fold sees one agent's events (the gateway's ledger, the dialogue service, ``thirdway
trust verify``/``show``); a replay from a log (:func:`replay_from_log`) also holds each event to
the whole log: no event may cite a shipped charter older than one an earlier entry cites,
whichever agent that entry is about (a gatekeeper refuses to open under an older charter, so
such a log was not written by one). A state with no
rejection and no discrepancy is :attr:`TrustState.consistent`, which is what
``thirdway trust verify`` checks, together with the gateway's reported summary.

The fold has no clock: ``now`` is a parameter and only decides whether a restoration is due.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import JsonValue, ValidationError

from thirdway.charter.enforce import CharterViolation
from thirdway.charter.model import Charter
from thirdway.charter.registry import packaged_entry, version_order
from thirdway.errors import InputError, LogError
from thirdway.protocol.models import LogEntry, TrustEvent
from thirdway.protocol.parse import describe
from thirdway.trust.events import CLOCKLESS, OUTCOME, event_id
from thirdway.trust.model import Discrepancy, Rejection, TiersConfig, TrustState
from thirdway.trust.rules import Context, initial_state, newest_cited, transition


def apply(state: TrustState, event: TrustEvent, ctx: Context) -> TrustState:
    """The state after ``event``: applied, or recorded as rejected. Pure and total."""
    position = state.events
    eid = event_id(event)
    seen = state.model_copy(update={"events": position + 1})
    if event.charter_sha256 is not None:  # rejected or not, it was cited: charters move forward
        seen = newest_cited(seen, ctx.cited_charter(event.charter_sha256))
    if event.at is None:
        return _reject(seen, position, eid, event, None, "a trust event must carry its time (at)")
    found: list[Discrepancy] = []
    at = event.at
    if seen.last_at is not None and at < seen.last_at:
        found.append(_differs(position, eid, "at", event.at, seen.last_at))
        at = seen.last_at
    try:
        judge = _judge(event, ctx)
        if judge is None:  # a charter neither shipped nor given: judged under ctx's, and listed
            judge = ctx
            found.append(
                _differs(position, eid, "charter_sha256", event.charter_sha256, seen.charter_sha256)
            )
        after, outcome = transition(seen, event, at, judge)
        if event.kind == "sanction" and OUTCOME not in event.detail:
            raise CharterViolation(
                "development.1", "a sanction must state the restoration path (detail.outcome)"
            )
    except CharterViolation as exc:
        return _reject(_foreign(seen, found), position, eid, event, exc.clause, exc.message)
    except (InputError, ValueError) as exc:  # InvalidEvent, or a value the models refuse
        return _reject(_foreign(seen, found), position, eid, event, None, str(exc))
    if event.tier_before is not None and event.tier_before != seen.tier:
        found.append(_differs(position, eid, "tier_before", event.tier_before, seen.tier))
    if event.tier_after is not None and event.tier_after != after.tier:
        found.append(_differs(position, eid, "tier_after", event.tier_after, after.tier))
    recorded = event.detail.get(OUTCOME)
    if OUTCOME in event.detail and recorded != outcome:
        found.append(_differs(position, eid, "detail.outcome", recorded, outcome))
    return after.model_copy(
        update={
            "applied": after.applied + 1,
            "last_at": seen.last_at if event.kind in CLOCKLESS else at,
            "discrepancies": (*after.discrepancies, *found),
        }
    )


def _judge(event: TrustEvent, ctx: Context) -> Context | None:
    """The context an event is judged under: that of the charter it cites (ctx's own or a
    shipped one), ctx for an event citing none (which the charter then refuses,
    due-process.3), None for a charter that is neither known nor given."""
    if event.charter_sha256 is None:
        return ctx
    return ctx.cited(event.charter_sha256)


def at_time(state: TrustState, now: int, ctx: Context) -> TrustState:
    """``state`` as of ``now``: whether the restoration the agent has earned is due."""
    probation = state.probation
    need = ctx.charter.rules.restoration
    due = (
        state.retired_at is None
        and probation is not None
        and probation.run >= need.clean_actions
        and now >= probation.run_since + need.min_seconds
    )
    return state.model_copy(update={"as_of": now, "restoration_due": due})


def fold(
    events: Iterable[TrustEvent],
    *,
    charter: Charter,
    tiers: TiersConfig,
    now: int,
    agent: str | None = None,
) -> TrustState:
    """Recompute one agent's standing from its events (in log order).

    With ``agent`` given, events about other agents are skipped; without it, every event must
    be about the same agent, and there must be at least one.
    """
    ctx = Context(charter=charter, tiers=tiers)
    state: TrustState | None = initial_state(agent, ctx) if agent is not None else None
    for event in events:
        if state is None:
            state = initial_state(event.agent, ctx)
        elif event.agent != state.agent:
            if agent is not None:
                continue
            raise InputError(
                f"events about more than one agent ({state.agent!r}, {event.agent!r}); "
                "name the agent to fold"
            )
        state = apply(state, event, ctx)
    if state is None:
        raise InputError("no trust events to fold and no agent named")
    return at_time(state, now, ctx)


def fold_all(
    events: Iterable[TrustEvent], *, charter: Charter, tiers: TiersConfig, now: int
) -> dict[str, TrustState]:
    """Every agent's standing from one stream of events."""
    ctx = Context(charter=charter, tiers=tiers)
    states: dict[str, TrustState] = {}
    for event in events:
        current = states.get(event.agent) or initial_state(event.agent, ctx)
        states[event.agent] = apply(current, event, ctx)
    return {agent: at_time(state, now, ctx) for agent, state in states.items()}


def replay_from_log(entries: Iterable[LogEntry], agent: str) -> list[TrustEvent]:
    """The trust events about ``agent`` in a log whose entries are given in index order.

    A trust entry whose payload is not a valid trust event, whose envelope names a different
    agent, or whose evidence cites an entry that is not earlier in the log makes the log
    unusable for verification: :class:`LogError`, naming the index. So does an event that cites
    a shipped charter older than one an earlier entry (any agent's trust event or verdict)
    cites: charters only move forward in a log (see the module docstring).
    """
    events: list[TrustEvent] = []
    newest: _Cited | None = None
    for index, entry in enumerate(entries):
        cited = _cited_in(entry, index)
        if entry.type != "trust" or entry.agent != agent:
            newest = _newer(newest, cited)
            continue
        try:
            event = TrustEvent.model_validate(entry.payload)
        except ValidationError as exc:
            raise LogError(f"log entry {index}: {describe(exc, 'trust event')}") from None
        if event.agent != entry.agent:
            raise LogError(
                f"log entry {index}: envelope names agent {entry.agent!r} but the event is "
                f"about {event.agent!r}"
            )
        later = [i for i in event.evidence if i >= index]
        if later:
            raise LogError(
                f"log entry {index}: evidence cites entries at or after itself: "
                + ", ".join(str(i) for i in later)
            )
        if cited is not None and newest is not None and cited.order < newest.order:
            raise LogError(
                f"log entry {index}: the trust event cites charter {cited}, older than charter "
                f"{newest} that log entry {newest.index} cites: charters only move forward in a "
                "log"
            )
        newest = _newer(newest, cited)
        events.append(event)
    return events


class _Cited:
    """A shipped charter an entry cites, where it stands, and the entry's index."""

    def __init__(self, sha256: str, version: str, order: tuple[int, ...], index: int) -> None:
        self.sha256, self.version, self.order, self.index = sha256, version, order, index

    def __str__(self) -> str:
        return f"{self.version} ({self.sha256[:16]}…)"


def _cited_in(entry: LogEntry, index: int) -> _Cited | None:
    """The shipped charter a trust event or a verdict entry cites (None for any other entry,
    and for a charter thirdway never shipped: the log holds only its hash, which orders
    nothing; the fold names such a charter as a discrepancy)."""
    payload = entry.payload if isinstance(entry.payload, dict) else {}
    verdict = payload.get("verdict")
    if entry.type == "trust":
        sha = payload.get("charter_sha256")
    elif entry.type == "verdict" and isinstance(verdict, dict):
        sha = verdict.get("charter_sha256")
    else:
        return None
    shipped = packaged_entry(sha) if isinstance(sha, str) else None
    order = version_order(shipped.version) if shipped is not None else None
    if shipped is None or order is None:
        return None
    return _Cited(shipped.sha256, shipped.version, order, index)


def _newer(newest: _Cited | None, cited: _Cited | None) -> _Cited | None:
    if cited is None or (newest is not None and cited.order <= newest.order):
        return newest
    return cited


def _reject(
    state: TrustState,
    position: int,
    eid: str,
    event: TrustEvent,
    clause: str | None,
    message: str,
) -> TrustState:
    rejection = Rejection(
        position=position, event=eid, kind=event.kind, clause=clause, message=message[:4096]
    )
    return state.model_copy(update={"rejections": (*state.rejections, rejection)})


def _foreign(state: TrustState, found: list[Discrepancy]) -> TrustState:
    """``state`` listing an unknown charter the rejected event cites: the rejection is under
    the replay's charter, and the hash the event cites is the first thing to look at."""
    cited = [item for item in found if item.field == "charter_sha256"]
    if not cited:
        return state
    return state.model_copy(update={"discrepancies": (*state.discrepancies, *cited)})


def _differs(
    position: int, eid: str, field: str, recorded: JsonValue, recomputed: JsonValue
) -> Discrepancy:
    return Discrepancy(
        position=position, event=eid, field=field, recorded=recorded, recomputed=recomputed
    )
