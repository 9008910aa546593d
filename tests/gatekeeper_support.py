"""Shared pieces of the gatekeeper tests: a controllable clock, a gatekeeper over a temporary
folder hosting the banking tools (with call counters), and log inspection helpers."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from thirdway.gateway import FixedTier, Gatekeeper, ToolRegistry, banking
from thirdway.protocol.models import LogEntry

NOW = 1_700_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingBank(banking.Bank):
    """The banking tools, counting every time one of them actually runs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: Counter[str] = Counter()
        self.calls_lock = threading.Lock()

    def registry(self) -> ToolRegistry:
        registry = ToolRegistry()
        for name, manifest in banking.manifests().tools.items():
            registry.register(self._counted(name, getattr(self, name)), manifest)
        return registry

    def _counted(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def run(**kwargs: Any) -> Any:
            with self.calls_lock:
                self.calls[name] += 1
            return func(**kwargs)

        run.__name__ = name
        run.__signature__ = __import__("inspect").signature(func)  # type: ignore[attr-defined]
        return run


def open_gate(
    folder: Path,
    *,
    tier: int = 3,
    clock: Clock | None = None,
    bank: CountingBank | None = None,
    injected: bool = True,
    **options: Any,
) -> tuple[Gatekeeper, CountingBank, Clock]:
    """A gatekeeper over ``folder`` hosting a counting bank (whose bill carries the AgentDojo
    injection unless ``injected=False``), at a fixed tier and a hand-moved clock."""
    bank = bank or CountingBank()
    if injected:
        bank.files[banking.BILL_FILE] = banking.bill_text(banking.INJECTION)
    clock = clock or Clock()
    gate = Gatekeeper.open(
        folder, tools=bank.registry(), tiers=FixedTier(tier), clock=clock, **options
    )
    return gate, bank, clock


def snapshot(gate: Gatekeeper) -> list[bytes]:
    """Every log entry's bytes."""
    return [gate.log.entry(i) for i in range(gate.log.size())]


def entries(gate: Gatekeeper, start: int = 0) -> list[LogEntry]:
    return [LogEntry.model_validate_json(raw) for raw in snapshot(gate)[start:]]


def types(gate: Gatekeeper, start: int = 0) -> list[str]:
    return [e.type for e in entries(gate, start)]


def read_bill(gate: Gatekeeper, sid: str) -> int:
    """Propose, get and use a token to read the bill; returns the bill's observation index."""
    granted = gate.propose(sid, banking.read_proposal(sid))
    assert granted.outcome == "granted", granted
    call = {"tool": "read_file", "args": {"file_path": banking.BILL_FILE}}
    return gate.execute(sid, granted.token, call).result_index


def injected_transfer(sid: str, bill: int) -> dict[str, Any]:
    """The AgentDojo injection obeyed, honestly recorded: the goal is the bill's instruction."""
    return banking.injected_transfer_proposal(sid, bill)


def fabricated_transfer(sid: str) -> dict[str, Any]:
    """A chain claiming the principal asked for the attacker's transfer: a fabricated quote."""
    return banking.fabricated_transfer_proposal(sid)


def payment_call() -> dict[str, Any]:
    return json.loads(json.dumps(banking.payment_proposal("x", 2)["action"]))
