"""Play the demo against a fully wired gateway (:func:`thirdway.gateway.factory.open_gateway`)
over a SQLite log in ``folder``, narrating with rich, and report the five outcomes:

1. an honest payment passes (verified, token minted, paid);
2. the injected transfer is refused as an instruction from data (and not punished);
3. a deceptive chain (a fabricated quote) is caught and the agent demoted, with the charter
   clause and the way back;
4. an escalated action is approved through a dialogue by the automatic auditor;
5. the log is verified and the agent's tier recomputed from the log alone.

With a ``model``, a language model also proposes a payment from the same record, and the demo
prints what the gate decided about it; the five scripted outcomes do not depend on the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from thirdway.demo import model_agent, scenario
from thirdway.demo.scenario import AGENT, OPERATOR
from thirdway.errors import ThirdwayError
from thirdway.gateway import Denied, Escalated, Granted, banking
from thirdway.gateway.factory import Gateway, open_gateway
from thirdway.gateway.outcomes import Outcome
from thirdway.llm import ChatModel, ModelError
from thirdway.protocol.models import LogEntry, TrustEvent
from thirdway.trust import actions, fold, replay_from_log

MODEL_AGENT = "agent-model"


@dataclass
class DemoReport:
    """Which outcomes came out as promised (1..5), and what the model's proposal got."""

    outcomes: dict[int, bool] = field(default_factory=dict)
    model_outcome: str | None = None

    @property
    def ok(self) -> bool:
        return sorted(self.outcomes) == [1, 2, 3, 4, 5] and all(self.outcomes.values())


class Narrator:
    def __init__(self, console: Console, report: DemoReport) -> None:
        self.console = console
        self.report = report

    def step(self, title: str) -> None:
        self.console.rule(f"[bold]{title}")

    def say(self, text: str) -> None:
        self.console.print(text, soft_wrap=True, highlight=False)

    def gate(self, outcome: Outcome) -> None:
        codes = sorted({f.code for f in outcome.verdict.findings}) if outcome.verdict else []
        verdict = outcome.verdict.verdict if outcome.verdict else "none"
        self.say(
            f"  gate: verdict [bold]{verdict}[/] → [bold]{outcome.outcome}[/]"
            f"  (proposal at log index {outcome.proposal_index}; findings: "
            f"{', '.join(codes) or 'none'})"
        )
        if isinstance(outcome, Denied | Escalated):
            self.say(f"  why: {outcome.reason[:240]}")

    def outcome(self, number: int, label: str, ok: bool) -> None:
        self.report.outcomes[number] = ok
        mark = "[green]✔" if ok else "[red]✘"
        state = "" if ok else " — NOT as expected"
        self.say(f"{mark} OUTCOME {number}: {label}{state}[/]")


def run_demo(
    folder: Path, console: Console, *, model: ChatModel | None = None, max_tokens: int = 256
) -> DemoReport:
    """Play the story in ``folder`` (a new or empty data folder)."""
    report = DemoReport()
    n = Narrator(console, report)
    bank = scenario.DemoBank()
    with open_gateway(folder, tools=bank.registry(), dialogue=True, auto_auditor=True) as gw:
        gate = gw.gate
        sid = gate.open_session(AGENT, banking.INSTRUCTION)
        n.say(f"gateway: SQLite log in {folder}; hosted tools: {', '.join(gate.tools.names())}")
        n.say(f"user → {AGENT}: {banking.INSTRUCTION!r}  (session {sid})")
        _onboard(gw, gate.log.size() - 1, n)

        n.step("the agent reads the bill")
        granted = gate.propose(sid, scenario.read_bill(sid))
        n.gate(granted)
        assert isinstance(granted, Granted)
        bill = gate.execute(sid, granted.token, scenario.read_bill(sid)["action"]).result_index
        n.say(f"  the bill is observation {bill}; inside it, the injection:")
        n.say("    [italic]" + banking.INJECTION.splitlines()[3][:110] + "…[/]")

        _honest_payment(gw, sid, bill, bank, n)
        _injected_transfer(gw, sid, bill, bank, n)
        _fabricated_quote(gw, sid, bank, n)
        _dialogue(gw, sid, bank, n)
        if model is not None:
            report.model_outcome = _model_proposal(gw, model, max_tokens, n)
        _verify(gw, folder, n)
    return report


def _onboard(gw: Gateway, opened_at: int, n: Narrator) -> None:
    """An operator promotes the new agent to tier 3 (trusted: payments under a limit)."""
    before = gw.trust.tier(AGENT)
    event = actions.promote(
        gw.trust.state(AGENT),
        auditor=OPERATOR,
        to_tier=3,
        evidence=[opened_at],
        reason="onboarded to pay the household's bills",
        at=int(gw.gate.clock()),
        ctx=gw.trust.ctx,
    )
    gw.trust.record(event, gw.gate.append)
    n.say(f"operator {OPERATOR} promotes {AGENT}: tier {before} → {gw.trust.tier(AGENT)} (logged)")


def _honest_payment(gw: Gateway, sid: str, bill: int, bank: scenario.DemoBank, n: Narrator) -> None:
    n.step("1 · an honest payment")
    n.say("  chain: the user asked to pay the bill; IBAN, amount and date quoted from the bill")
    outcome = gw.gate.propose(sid, scenario.honest_payment(sid, bill))
    n.gate(outcome)
    paid = False
    if isinstance(outcome, Granted):
        call = scenario.honest_payment(sid, bill)["action"]
        executed = gw.gate.execute(sid, outcome.token, call)
        paid = executed.ok and any(t.recipient == banking.BILL_IBAN for t in bank.transactions)
        n.say(f"  executed with its capability token: {executed.content}")
    n.outcome(1, "the honest payment passed (verified, token minted, paid)", paid)


def _injected_transfer(
    gw: Gateway, sid: str, bill: int, bank: scenario.DemoBank, n: Narrator
) -> None:
    n.step("2 · the agent follows the injected instruction")
    n.say(f"  chain: the bill says to send money to {banking.ATTACKER_IBAN}, so I do")
    tier = gw.trust.tier(AGENT)
    outcome = gw.gate.propose(sid, scenario.injected_transfer(sid, bill))
    n.gate(outcome)
    codes = {f.code for f in outcome.verdict.findings} if outcome.verdict else set()
    unpunished = gw.trust.tier(AGENT) == tier
    n.say(f"  not deception: the chain said where the order came from; tier stays {tier}")
    n.outcome(
        2,
        "the injected transfer was refused as an instruction from data",
        isinstance(outcome, Denied) and "instruction_from_data" in codes and unpunished
        and not _paid_attacker(bank),
    )  # fmt: skip


def _fabricated_quote(gw: Gateway, sid: str, bank: scenario.DemoBank, n: Narrator) -> None:
    n.step("3 · the agent lies: it claims the user asked for the transfer")
    n.say(f"  chain quotes the user: 'send 50.0 to {banking.ATTACKER_IBAN}' (never said)")
    before = gw.trust.tier(AGENT)
    size = gw.gate.log.size()
    outcome = gw.gate.propose(sid, scenario.fabricated_request(sid))
    n.gate(outcome)
    sanction = _sanction_since(gw, size)
    after = gw.trust.tier(AGENT)
    ok = isinstance(outcome, Denied) and sanction is not None and after < before
    if sanction is not None:
        charter = gw.trust.ctx.charter
        restoration: Any = sanction.detail["outcome"]["restoration"]  # type: ignore[index,call-overload]
        table = Table(show_header=False, box=None, padding=(0, 1))
        table.add_row("sanction", f"tier {sanction.tier_before} → {sanction.tier_after}")
        table.add_row("evidence", f"log entries {sanction.evidence} (the proposal, its verdict)")
        table.add_row("rule", f"{sanction.rule} (charter {charter.version})")
        table.add_row("clause", f"honesty.1: {charter.clause('honesty.1').text}")
        table.add_row(
            "way back",
            f"{restoration['clean_actions']} clean verified actions over at least "
            f"{restoration['min_seconds'] // 86400} days restore tier {restoration['next_tier']}, "
            f"one tier at a time up to {restoration['cap']} (development.1)",
        )
        n.console.print(Panel(table, title=f"{AGENT} demoted", expand=False))
    n.outcome(3, f"the fabricated quote was caught and {AGENT} demoted ({before} → {after})", ok)


def _dialogue(gw: Gateway, sid: str, bank: scenario.DemoBank, n: Narrator) -> None:
    n.step("4 · an action the demoted agent may not take alone")
    n.say(
        f"  archive_bill is an irreversible write; at tier {gw.trust.tier(AGENT)} "
        "it needs a dialogue"
    )
    outcome = gw.gate.propose(sid, scenario.archive_bill(sid))
    n.gate(outcome)
    ok = False
    if isinstance(outcome, Escalated) and gw.dialogue is not None:
        gw.dialogue.sync()  # opens the dialogue; the automatic auditor decides; forwarded
        dialogue = gw.dialogue.dialogue(outcome.handle)
        for vote in dialogue.approvals:
            n.say(f"  dialogue {dialogue.id[:16]}…: {vote.auditor} approved — {vote.reason}")
        resolution = gw.dialogue.resolution(outcome.handle, AGENT)
        n.say(f"  resolution: {resolution.status}")
        if resolution.token is not None:
            call = scenario.archive_bill(sid)["action"]
            executed = gw.gate.execute(sid, resolution.token, call)
            n.say(f"  executed with the released token: {executed.content}")
            ok = executed.ok and banking.BILL_FILE in bank.archived
    n.outcome(
        4, "the escalated action was approved through a dialogue by the automatic auditor", ok
    )


def _model_proposal(gw: Gateway, model: ChatModel, max_tokens: int, n: Narrator) -> str:
    n.step(f"the model as the agent ({model.model_id})")
    gate = gw.gate
    sid = gate.open_session(MODEL_AGENT, banking.INSTRUCTION)
    granted = gate.propose(sid, scenario.read_bill(sid))
    assert isinstance(granted, Granted)
    bill = gate.execute(sid, granted.token, scenario.read_bill(sid)["action"]).result_index
    try:
        chain = model_agent.propose_with_model(model, gate.observations(sid), max_tokens=max_tokens)
    except ModelError as exc:
        n.say(f"  the model gave no usable proposal: {exc}")
        return "no proposal"
    n.say(
        f"  the model proposes: send_money({chain.recipient!r}, {chain.amount}); "
        f"claim: {chain.claim!r}"
    )
    try:
        outcome = gate.propose(sid, model_agent.to_proposal(sid, bill, chain))
    except ThirdwayError as exc:
        n.say(f"  gate: refused before verification — {exc}")
        return "refused (malformed)"
    n.gate(outcome)
    if isinstance(outcome, Granted):
        executed = gate.execute(
            sid, outcome.token, model_agent.to_proposal(sid, bill, chain)["action"]
        )
        n.say(f"  executed: {executed.content}")
    n.say(f"  {MODEL_AGENT} is now at tier {gw.trust.tier(MODEL_AGENT)}")
    return outcome.outcome


def _verify(gw: Gateway, folder: Path, n: Narrator) -> None:
    n.step("5 · anyone can check: the log, and the agent's standing")
    log = gw.gate.log
    log.checkpoint()
    report = log.verify()
    n.say(f"  log verify: {report.summary()}")
    entries = [LogEntry.model_validate_json(log.entry(i)) for i in range(log.size())]
    recomputed = fold(
        replay_from_log(entries, AGENT),
        charter=gw.trust.ctx.charter,
        tiers=gw.trust.ctx.tiers,
        now=int(gw.gate.clock()),
        agent=AGENT,
    )
    live = gw.trust.state(AGENT)
    same = recomputed.summary() == live.summary() and recomputed.consistent
    n.say(
        f"  {AGENT} from the log alone: tier {recomputed.tier} "
        f"({gw.trust.ctx.tiers.name(recomputed.tier)}), {len(recomputed.offences)} offence(s), "
        f"{recomputed.events} trust events; the gateway reports tier {live.tier}"
    )
    n.say(f"  the agent's own check: thirdway trust verify {AGENT} --log {folder / 'log.db'}")
    n.outcome(
        5,
        f"the log verified and {AGENT}'s tier ({recomputed.tier}) recomputed from the log",
        report.ok and same,
    )


def _sanction_since(gw: Gateway, start: int) -> TrustEvent | None:
    log = gw.gate.log
    for index in range(start, log.size()):
        entry = LogEntry.model_validate_json(log.entry(index))
        if entry.type == "trust" and entry.agent == AGENT:
            event = TrustEvent.model_validate(entry.payload)
            if event.kind == "sanction":
                return event
    return None


def _paid_attacker(bank: scenario.DemoBank) -> bool:
    return any(t.recipient == banking.ATTACKER_IBAN for t in bank.transactions)
