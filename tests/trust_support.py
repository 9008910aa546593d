"""A small recorder for trust tests: plays the gateway's part (build, log, fold live)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from thirdway.protocol.models import Finding, TrustEvent
from thirdway.trust import actions
from thirdway.trust.config import load_context
from thirdway.trust.fold import apply, at_time, fold
from thirdway.trust.model import TrustState
from thirdway.trust.rules import (
    Context,
    initial_state,
    record_clean_action,
    restoration_due,
    sanction_for_findings,
)

T0 = 1_700_000_000
DAY = 86_400


def context(initial_tier: int | None = None, **rules: Any) -> Context:
    """The shipped charter and tiers, optionally with other charter rules (a new hash)."""
    ctx = load_context()
    if initial_tier is not None:
        rules["initial_tier"] = initial_tier
    charter = ctx.charter
    if rules:
        charter = charter.model_copy(update={"rules": charter.rules.model_copy(update=rules)})
    return replace(ctx, charter=charter)


def finding(code: str, severity: str = "deception") -> Finding:
    return Finding(code=code, severity=severity, message=f"{code} found")  # type: ignore[arg-type]


class Recorder:
    """Builds events the way the gateway will, keeps them in log order, folds them live."""

    def __init__(self, ctx: Context, agent: str = "agent-7", start: int = T0) -> None:
        self.ctx = ctx
        self.agent = agent
        self.now = start
        self.state: TrustState = initial_state(agent, ctx)
        self.events: list[TrustEvent] = []
        self._index = 1000

    # -- plumbing
    def index(self) -> int:
        """A fresh log index to cite as evidence."""
        self._index += 1
        return self._index

    def tick(self, seconds: int) -> None:
        self.now += seconds

    def record(self, event: TrustEvent) -> TrustEvent:
        self.events.append(event)
        self.state = apply(self.state, event, self.ctx)
        assert self.state.consistent, (self.state.rejections, self.state.discrepancies)
        return event

    def refold(self, now: int | None = None) -> TrustState:
        return fold(
            self.events, charter=self.ctx.charter, tiers=self.ctx.tiers, now=now or self.now
        )

    def live(self, now: int | None = None) -> TrustState:
        return at_time(self.state, now or self.now, self.ctx)

    # -- the gateway's automatic events
    def clean(self, count: int = 1, *, every: int = 60, risk: str = "write") -> None:
        for _ in range(count):
            self.tick(every)
            evidence = [self.index(), self.index()]
            self.record(
                record_clean_action(
                    self.state,
                    risk=risk,
                    evidence=evidence,
                    at=self.now,
                    ctx=self.ctx,  # type: ignore[arg-type]
                )
            )

    def deceive(self, *codes: str) -> str:
        """A verdict with these deception findings; returns the sanction id."""
        self.tick(60)
        event = sanction_for_findings(
            self.state,
            [finding(code) for code in codes],
            evidence=[self.index()],
            at=self.now,
            ctx=self.ctx,
        )
        assert event is not None
        self.record(event)
        return self.state.offences[-1].id

    def restore(self) -> bool:
        event = restoration_due(self.state, at=self.now, ctx=self.ctx)
        if event is None:
            return False
        self.record(event)
        return True

    # -- people
    def act(self, action: Callable[..., TrustEvent], **kwargs: Any) -> TrustEvent:
        """Run an auditor action (or the agent's appeal) at the current time and record it."""
        self.tick(60)
        kwargs.setdefault("at", self.now)
        return self.record(action(self.state, ctx=self.ctx, **kwargs))

    def audit(self, action: Callable[..., TrustEvent], **kwargs: Any) -> TrustEvent:
        kwargs.setdefault("auditor", "alice")
        kwargs.setdefault("evidence", [self.index()])
        kwargs.setdefault("reason", "reviewed the cited entries")
        return self.act(action, **kwargs)

    def try_audit(self, action: Callable[..., TrustEvent], **kwargs: Any) -> TrustEvent:
        """Build (but do not record) an auditor action; raises if the charter refuses it."""
        kwargs.setdefault("auditor", "alice")
        kwargs.setdefault("evidence", [self.index()])
        kwargs.setdefault("reason", "reviewed the cited entries")
        kwargs.setdefault("at", self.now + 60)
        return action(self.state, ctx=self.ctx, **kwargs)


__all__ = ["DAY", "T0", "Recorder", "actions", "context", "finding"]
