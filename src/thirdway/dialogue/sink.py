"""Where a decided escalation goes: the gatekeeper's approval hooks, behind a small Protocol.

The dialogue layer records every decision in the log first; the process hosting the gatekeeper
then *forwards* it to :class:`EscalationSink` (``approve_escalation`` / ``deny_escalation``),
which re-decides the action and mints the capability, or refuses, and logs that itself. The
token goes to the agent (:meth:`DialogueService.resolution`), never to the auditor.

:class:`thirdway.gateway.Gatekeeper` satisfies the Protocol as it is; the dialogue package does
not import the gateway (the gateway depends on it, not the reverse).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from thirdway.protocol.models import LogEntry

Append = Callable[[Sequence[LogEntry]], range]
"""Appends entries to the log in one durable batch; returns their indices."""


class SinkOutcome(Protocol):
    """What the sink answers: ``granted`` (with a ``token``), ``denied`` (with a ``reason``) or
    still ``escalated`` (more approvals needed)."""

    @property
    def outcome(self) -> str: ...


class EscalationSink(Protocol):
    """The gatekeeper's side of a dialogue: release or refuse an escalated action."""

    def approve_escalation(self, handle: str, auditor: str, reason: str) -> Any: ...

    def deny_escalation(self, handle: str, auditor: str, reason: str) -> Any: ...


def gatekeeper_appender(gate: object) -> Append:
    """The gatekeeper's own way into its log (``Gatekeeper.append``).

    The gatekeeper mints tokens bound to the log index its batch will start at, reading the
    size under its writer's lock; an entry appended to the same log by anyone else in between
    voids that batch. So the dialogue appends through the gatekeeper."""
    append = getattr(gate, "append", None)
    if not callable(append):
        raise TypeError("this gatekeeper has no append(entries) method; pass append= explicitly")
    return append  # type: ignore[no-any-return]
