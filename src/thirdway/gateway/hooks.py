"""The gatekeeper's plug points: where tiers come from, what happens on deception, stage timing.

Each is a small Protocol so the trust layer (tiers as a fold over the log, automatic sanctions)
and the benchmarks can plug in without the gatekeeper knowing them. The defaults here are the
simplest things that keep the gate closed: a fixed tier, and a sanctioner that only records that
deception was found.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from thirdway.errors import InputError
from thirdway.protocol.manifest import RiskClass
from thirdway.protocol.models import Finding, LogEntry

DEFAULT_TIER = 2
"""DESIGN's "standard" tier: reads, reversible writes and clean external communication."""

Append = Callable[[Sequence[LogEntry]], range]
"""Appends entries to the gatekeeper's log in one durable batch; returns their indices."""


class TierSource(Protocol):
    """Where an agent's current trust tier (0 to 4) comes from."""

    def tier(self, agent: str) -> int: ...


class FixedTier:
    """Every agent has the same tier (the default until the trust fold is plugged in)."""

    def __init__(self, tier: int = DEFAULT_TIER) -> None:
        if isinstance(tier, bool) or not isinstance(tier, int) or not 0 <= tier <= 4:
            raise InputError(f"a trust tier is an integer from 0 to 4, not {tier!r}")
        self._tier = tier

    def tier(self, agent: str) -> int:
        return self._tier


class Sanctioner(Protocol):
    """Told about every verdict with deception findings, after the verdict is durable.

    ``evidence`` holds the log indices of the proposal and its verdict. Whatever the sanctioner
    records goes through ``append``, so it lands in the same log after the evidence it cites."""

    def on_deception(
        self,
        *,
        agent: str,
        session: str,
        findings: Sequence[Finding],
        evidence: Sequence[int],
        at: int,
        append: Append,
    ) -> None: ...


class RecordOnlySanctioner:
    """The default: sanction nothing, but record that deception was found and left unsanctioned.

    The record is a ``note`` entry, not a ``trust`` entry: every ``trust`` entry must be a trust
    event the trust fold accepts (``thirdway trust verify`` recomputes them all), and "found but
    not sanctioned" is not one of its kinds. The verdict entry already carries the findings;
    this note makes the missing sanction visible to an auditor reading the log."""

    def on_deception(
        self,
        *,
        agent: str,
        session: str,
        findings: Sequence[Finding],
        evidence: Sequence[int],
        at: int,
        append: Append,
    ) -> None:
        codes = sorted({finding.code for finding in findings if finding.severity == "deception"})
        append(
            [
                LogEntry(
                    type="note",
                    session=session,
                    agent=agent,
                    payload={
                        "event": "deception_unsanctioned",
                        "codes": list(codes),
                        "evidence": list(evidence),
                        "at": at,
                    },
                )
            ]
        )


class ExecutionListener(Protocol):
    """Told about every locked tool that ran without raising, after its execution entry is
    durable: the trust layer counts clean verified actions as evidence.

    ``evidence`` holds the log indices of the action's verdict and of its execution entry;
    whatever the listener records goes through ``append``, after that evidence."""

    def on_executed(
        self,
        *,
        agent: str,
        session: str,
        tool: str,
        risk: RiskClass,
        evidence: Sequence[int],
        at: int,
        append: Append,
    ) -> None: ...


class StageTimer(Protocol):
    """Receives the time spent in each stage of an action (for ``thirdway bench gate``)."""

    def add(self, stage: str, nanoseconds: int) -> None: ...


STAGES = ("log", "verify", "authorize", "mint", "token", "tool")
"""Stage names reported to a :class:`StageTimer`: log appends (entries built, hashed and made
durable), the verifier, the Cedar decision, minting, token verify + spend, the tool itself."""
