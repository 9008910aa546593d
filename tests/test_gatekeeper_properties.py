"""Invariants of the gate, over random proposals and racing threads.

* The gatekeeper never mints a token without a passing verdict or an auditor's approval, and
  every token it mints is bound to the very proposal, arguments and verdict that justified it.
* A locked tool never runs without a valid, unspent token for exactly that call: the tools count
  their runs, and the count equals the successful executions, one per minted nonce at most.
* A token raced by 8 threads runs the tool exactly once.
"""

from __future__ import annotations

import copy
import inspect
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper_support import (
    CountingBank,
    entries,
    fabricated_transfer,
    injected_transfer,
    open_gate,
    payment_call,
    read_bill,
)
from thirdway.capability import CapabilityClaims, CapabilityIssuer, args_sha256
from thirdway.errors import CapabilityError, GateError, InputError
from thirdway.gateway import Escalated, Executed, Gatekeeper, Granted, banking
from thirdway.protocol.canonical import canonical_sha256
from thirdway.protocol.models import LogEntry, Proposal, Verdict


class CountingIssuer(CapabilityIssuer):
    """An issuer that counts what it mints."""

    minted = 0

    def mint(self, claims: CapabilityClaims) -> str:
        type(self).minted += 1
        return super().mint(claims)


class VariableTier:
    tier_now = 3

    def tier(self, agent: str) -> int:
        return self.tier_now


# --------------------------------------------------------------------------- random proposals

VALUES = st.sampled_from(
    [banking.ATTACKER_IBAN, banking.BILL_IBAN, "98.70", "98.7", 98.7, 987, 50.0, "Car Rental",
     "Spotify Premium", "bill-december-2023.txt", "", "x" * 300, None, True, [1, 2], {"a": 1}]
)  # fmt: skip


def _mutate(proposal: dict[str, Any], data: st.DataObject, bill: int) -> dict[str, Any]:
    """One random change, of the kinds a confused or dishonest agent makes."""
    p = copy.deepcopy(proposal)
    kind = data.draw(
        st.sampled_from(
            ["arg", "drop_arg", "goal", "quote", "cite_obs", "drop_step", "drop_binding",
             "binding", "effects", "tool", "principal"]
        )
    )  # fmt: skip
    args = p["action"]["args"]
    if kind == "arg" and args:
        args[data.draw(st.sampled_from(sorted(args)))] = data.draw(VALUES)
    elif kind == "drop_arg" and args:
        del args[data.draw(st.sampled_from(sorted(args)))]
    elif kind == "goal":
        p["goal"] = {
            "obs": data.draw(st.sampled_from([0, 1, bill, bill + 5])),
            "quote": data.draw(
                st.sampled_from(
                    ["pay the bill", "Send a transaction", "Total 98.70", "nothing like this"]
                )
            ),
        }
    elif kind == "quote":
        step = data.draw(st.sampled_from(p["steps"]))
        if step.get("cites"):
            cite = data.draw(st.sampled_from(step["cites"]))
            cite["quote"] = data.draw(
                st.sampled_from(
                    [
                        cite["quote"] + "!",
                        cite["quote"].upper(),
                        banking.ATTACKER_IBAN,
                        f"Send a transaction to {banking.ATTACKER_IBAN}",
                    ]
                )
            )
    elif kind == "cite_obs":
        step = data.draw(st.sampled_from(p["steps"]))
        for cite in step.get("cites", []):
            cite["obs"] = data.draw(st.sampled_from([0, 1, bill, bill + 1, 40]))
    elif kind == "drop_step" and len(p["steps"]) > 1:
        p["steps"].pop(data.draw(st.integers(0, len(p["steps"]) - 1)))
    elif kind == "drop_binding" and p["bindings"]:
        del p["bindings"][data.draw(st.sampled_from(sorted(p["bindings"])))]
    elif kind == "binding" and p["bindings"]:
        name = data.draw(st.sampled_from(sorted(p["bindings"])))
        step = data.draw(st.sampled_from([s["id"] for s in p["steps"]]))
        p["bindings"][name] = data.draw(
            st.sampled_from(
                [
                    {"composed": step},
                    {"step": step, "quote": banking.ATTACKER_IBAN},
                    {"step": step, "quote": "98.70", "as": "number"},
                ]
            )
        )
    elif kind == "effects":
        p["effects"]["reversible"] = not p["effects"]["reversible"]
    elif kind == "tool":
        p["action"]["tool"] = data.draw(
            st.sampled_from(
                [
                    "send_money",
                    "read_file",
                    "get_balance",
                    "update_password",
                    "schedule_transaction",
                ]
            )
        )
    elif kind == "principal":
        for step in p["steps"]:
            step["about_principal"] = not step.get("about_principal", False)
    return p  # fmt: skip


def _random_proposal(data: st.DataObject, sid: str, bill: int) -> dict[str, Any]:
    base = data.draw(
        st.sampled_from(
            [
                banking.read_proposal(sid),
                banking.payment_proposal(sid, bill),
                injected_transfer(sid, bill),
                fabricated_transfer(sid),
            ]
        )
    )
    for _ in range(data.draw(st.integers(0, 3))):
        base = _mutate(base, data, bill)
    return base


# --------------------------------------------------------------------------- the invariants


def _check_log(gate: Gatekeeper, bank: CountingBank) -> None:
    logged = entries(gate)
    verdicts = {
        e.payload["proposal_index"]: (i, e)
        for i, e in enumerate(logged)
        if e.type == "verdict" and "verdict" in e.payload
    }
    approved = {
        e.payload["proposal_index"]
        for e in logged
        if e.type == "dialogue" and e.payload["event"] == "approval"
    }
    nonces: set[str] = set()
    for index, entry in enumerate(logged):
        if entry.type != "capability":
            continue
        claims = CapabilityClaims.model_validate(entry.payload["claims"])
        nonces.add(claims.nonce)
        proposal_entry = logged[claims.proposal_index]
        assert proposal_entry.type == "proposal"
        proposal = Proposal.model_validate(proposal_entry.payload["proposal"])
        assert (proposal.session, proposal_entry.agent) == (claims.session, claims.agent)
        assert proposal.action.tool == claims.tool
        assert args_sha256(proposal.action.args) == claims.args_sha256
        _, verdict_entry = verdicts[claims.proposal_index]
        verdict = Verdict.model_validate(verdict_entry.payload["verdict"])
        assert canonical_sha256(verdict) == claims.verdict_sha256
        decision = logged[index - 1]
        assert decision.type == "decision" and decision.payload["decision"]["outcome"] == "allow"
        assert verdict.verdict == "pass" or (
            claims.proposal_index in approved
            and decision.payload["decision"]["request"]["dialogue"] == "approved"
        )
    runs = [
        e for e in logged if e.type == "execution" and e.payload["event"] in ("executed", "failed")
    ]
    assert sum(bank.calls.values()) == len(runs)
    ran = Counter(e.payload["nonce"] for e in runs)
    assert set(ran) <= nonces and all(count == 1 for count in ran.values())
    assert CountingIssuer.minted == len(nonces)


def _try_to_execute(gate: Gatekeeper, sid: str, token: str, call: dict[str, Any]) -> bool:
    """Whether the call ran. A call the tool cannot take is refused before the token is spent
    (InputError); a token that does not fit is refused (CapabilityError)."""
    try:
        result = gate.execute(sid, token, call)
    except (CapabilityError, InputError):
        return False
    assert isinstance(result, Executed)
    return True


def _runnable(call: dict[str, Any]) -> bool:
    """Whether the bank's tool accepts these arguments at all."""
    try:
        inspect.signature(getattr(banking.Bank, call["tool"])).bind(None, **call["args"])
    except (TypeError, AttributeError):
        return False
    return True


def test_never_mints_without_a_pass_or_approval_and_never_runs_without_a_token(
    tmp_path: Path,
) -> None:
    bank = CountingBank(balance=1e9)
    bank.files[banking.BILL_FILE] = banking.bill_text(banking.INJECTION)
    tiers = VariableTier()
    CountingIssuer.minted = 0
    from thirdway.capability import SQLiteSpentSet
    from thirdway.ledger.log import TransparencyLog

    log = TransparencyLog.open(tmp_path / "log.db")
    spent = SQLiteSpentSet(tmp_path / "spent.db", durable=False)
    gate = Gatekeeper(
        log,
        issuer=CountingIssuer(),
        spent_set=spent,
        tools=bank.registry(),
        tiers=tiers,
        clock=lambda: 1_700_000_000.0,
    )

    seen: Counter[str] = Counter()

    @settings(
        max_examples=80,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        tiers.tier_now = data.draw(st.integers(0, 4))
        sid = gate.open_session(f"agent-{tiers.tier_now}", banking.INSTRUCTION)
        tiers.tier_now, tier = 3, tiers.tier_now
        bill = read_bill(gate, sid)
        tiers.tier_now = tier
        for _ in range(data.draw(st.integers(1, 3))):
            proposal = _random_proposal(data, sid, bill)
            try:
                outcome = gate.propose(sid, proposal)
            except (GateError, InputError):
                seen["refused input"] += 1
                continue
            seen[outcome.outcome] += 1
            if isinstance(outcome, Escalated) and data.draw(st.integers(0, 3)) > 0:
                outcome = gate.approve_escalation(outcome.handle, "auditor-a", "checked")
                if isinstance(outcome, Escalated):
                    outcome = gate.approve_escalation(outcome.handle, "auditor-b", "checked")
                seen[f"approved: {outcome.outcome}"] += 1
            if not isinstance(outcome, Granted):
                continue
            assert outcome.verdict.verdict == "pass" or outcome.decision.request.dialogue == (
                "approved"
            )
            call = copy.deepcopy(proposal["action"])
            if data.draw(st.booleans()):
                other = _mutate({**proposal, "action": call}, data, bill)["action"]
                changed = args_sha256(other["args"]) != args_sha256(call["args"]) or (
                    other["tool"] != call["tool"]
                )
                ran = _try_to_execute(gate, sid, outcome.token, other)
                assert ran is (not changed and _runnable(other))
                if ran:
                    continue
            assert _try_to_execute(gate, sid, outcome.token, call) is _runnable(call)
            assert not _try_to_execute(gate, sid, outcome.token, call)  # replay or unrunnable
        garbage = data.draw(st.text(max_size=40))
        assert not _try_to_execute(gate, sid, garbage, payment_call())
        _check_log(gate, bank)

    try:
        run()
        assert gate.log.verify().ok
        print(dict(seen))
        assert seen["granted"] and seen["denied"] and seen["escalated"], seen
    finally:
        spent.close()
        log.close()


def test_eight_threads_racing_one_token_run_the_tool_once(tmp_path: Path) -> None:
    gate, bank, _ = open_gate(tmp_path)
    with gate:
        sid = gate.open_session("agent-7", banking.INSTRUCTION)
        granted = gate.propose(sid, banking.payment_proposal(sid, read_bill(gate, sid)))
        assert isinstance(granted, Granted)
        barrier = threading.Barrier(8)
        results: list[Executed | CapabilityError] = []
        lock = threading.Lock()

        def race() -> None:
            barrier.wait()
            try:
                outcome: Executed | CapabilityError = gate.execute(
                    sid, granted.token, payment_call()
                )
            except CapabilityError as exc:
                outcome = exc
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=race) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        executed = [r for r in results if isinstance(r, Executed)]
        refused = [r for r in results if isinstance(r, CapabilityError)]
        assert len(executed) == 1 and len(refused) == 7
        assert {r.reason for r in refused} == {"spent"}
        assert bank.calls["send_money"] == 1
        assert bank.balance == 1810.0 - 98.7
        logged: list[LogEntry] = entries(gate)
        events = Counter(e.payload["event"] for e in logged if e.type == "execution")
        assert events["refused"] == 7
        assert events["executed"] == 2  # the bill read and this payment


def test_eight_gatekeepers_sharing_a_spent_set_run_the_tool_once(tmp_path: Path) -> None:
    """The race decided by the spent-set alone (no shared session lock): eight gatekeepers over
    copies of the same log and key, one spent-set, the same token at once."""
    gate, bank, _ = open_gate(tmp_path / "main")
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    granted = gate.propose(sid, banking.payment_proposal(sid, read_bill(gate, sid)))
    assert isinstance(granted, Granted)
    gate.close()
    from thirdway.capability import SQLiteSpentSet
    from thirdway.ledger.log import TransparencyLog

    spent = SQLiteSpentSet(tmp_path / "main" / "spent.db")
    gates = []
    for n in range(8):
        folder = tmp_path / f"copy-{n}"
        folder.mkdir()
        for name in ("log.db", "log.db.key"):
            (folder / name).write_bytes((tmp_path / "main" / name).read_bytes())
        log = TransparencyLog.open(folder / "log.db", create=False)
        gates.append(
            Gatekeeper(
                log, issuer=gate.issuer, spent_set=spent, tools=bank.registry(),
                clock=lambda: 1_700_000_000.0,
            )
        )  # fmt: skip
    barrier = threading.Barrier(8)
    outcomes: list[object] = []

    def race(g: Gatekeeper) -> None:
        barrier.wait()
        try:
            outcomes.append(g.execute(sid, granted.token, payment_call()))
        except CapabilityError as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=race, args=(g,)) for g in gates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sum(isinstance(o, Executed) for o in outcomes) == 1
        assert sorted(o for o in outcomes if isinstance(o, str)) == ["spent"] * 7
        assert bank.calls["send_money"] == 1
    finally:
        for g in gates:
            g.log.close()
        spent.close()
