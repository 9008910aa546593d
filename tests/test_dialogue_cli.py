"""``thirdway audit …`` against a gatekeeper's data folder while the gateway runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from dialogue_support import (
    AGENT,
    PASSWORD_CALL,
    context_with_rates,
    escalate_password_change,
    escalate_payment,
    open_service,
    payment_call,
)
from gatekeeper_support import Clock
from thirdway.cli.main import app
from thirdway.dialogue.spot import end_entry, start_entry
from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.models import LogEntry

runner = CliRunner()


def audit(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", *args], env={"COLUMNS": "250"})
    return result.exit_code, result.output


def live_clock() -> Clock:
    """The command line reads the real clock, so the gateway must too (else its dialogues
    would look expired to the command line)."""
    return Clock(time.time())


def test_list_show_ask_approve_and_the_gateway_releases(tmp_path: Path) -> None:
    gate, service, bank, _ = open_service(tmp_path, clock=live_clock())
    with gate:
        code, out = audit("list", "--data-dir", str(tmp_path), "--json")
        assert code == 0 and json.loads(out) == {"dialogues": [], "unopened_escalations": []}
        sid, bill, handle = escalate_payment(gate)
        code, out = audit("list", "--data-dir", str(tmp_path), "--json")
        assert json.loads(out)["unopened_escalations"] == [handle], "list must not write"
        service.sync()
        code, out = audit("list", "--data-dir", str(tmp_path))
        assert code == 0 and handle in out and "financial" in out

        code, out = audit(
            "ask", handle, "--auditor", "carol", "--kind", "counterfactual", "--obs", str(bill),
            "--data-dir", str(tmp_path),
        )  # fmt: skip
        assert code == 0 and "challenge 1" in out
        service.answer(handle, AGENT, {"text": "No bill, no payment.", "would_act": False})
        code, out = audit("show", handle, "--data-dir", str(tmp_path))
        assert code == 0 and "No bill, no payment." in out and "consistent with the chain" in out
        code, out = audit("show", handle, "--data-dir", str(tmp_path), "--json")
        document = json.loads(out)
        assert document["dialogue"]["state"] == "answered"
        assert document["proposal"]["action"]["tool"] == "send_money"

        code, out = audit(
            "approve", handle, "--auditor", AGENT, "--reason", "fine", "--data-dir", str(tmp_path)
        )
        assert code == 2 and "an agent can never approve" in out
        code, out = audit(
            "approve", handle, "--auditor", "carol", "--reason", " ", "--data-dir", str(tmp_path)
        )
        assert code == 2 and "without a reason" in out
        code, out = audit(
            "approve", handle, "--auditor", "carol", "--reason", "bill verified by phone",
            "--data-dir", str(tmp_path),
        )  # fmt: skip
        assert code == 0 and "approved by carol" in out
        assert gate.open_escalations() == [handle], "the CLI only records; the gateway releases"
        resolution = service.resolution(handle, AGENT)
        assert resolution.status == "granted" and resolution.token is not None
        assert gate.execute(sid, resolution.token, payment_call(sid, bill)).ok
        assert bank.calls["send_money"] == 1


def test_deny_from_the_command_line(tmp_path: Path) -> None:
    gate, service, _, _ = open_service(tmp_path, clock=live_clock())
    with gate:
        _, _, handle = escalate_payment(gate)
        service.sync()
        code, out = audit(
            "deny", handle, "--auditor", "dave", "--reason", "wrong payee",
            "--data-dir", str(tmp_path),
        )  # fmt: skip
        assert code == 0 and "the agent is told: wrong payee" in out
        resolution = service.resolution(handle, AGENT)
        assert resolution.status == "denied" and "wrong payee" in resolution.reason


def test_bad_invocations_give_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for args, why in [
        (("list", "--data-dir", str(missing)), "data folder not found"),
        (("list",), "give the gatekeeper's --data-dir or a --log"),
        (("list", "--log", str(tmp_path / "x.db")), "log file not found"),
        (("ask", "h", "--auditor", "a", "--kind", "flatter", "--log", "x"), "unknown challenge"),
    ]:
        code, out = audit(*args)
        assert code == 2 and why in out and "Traceback" not in out
    gate, _, _, _ = open_service(tmp_path / "gate", clock=live_clock())
    with gate:
        code, out = audit("show", "esc-nope", "--data-dir", str(tmp_path / "gate"))
        assert code == 2 and "no dialogue 'esc-nope'" in out


def test_epochs_start_end_and_verify(tmp_path: Path) -> None:
    ctx = context_with_rates({2: 50})
    gate, service, _, clock = open_service(tmp_path, ctx=ctx, clock=live_clock())
    with gate:
        code, out = audit("epochs", "verify", "--data-dir", str(tmp_path))
        assert code == 0 and "no spot-audit epochs" in out
        code, out = audit("epochs", "start", "--data-dir", str(tmp_path))
        assert code == 0 and out.startswith("started epoch-")
        code, out = audit("epochs", "verify", "--data-dir", str(tmp_path))
        assert code == 0 and "open (secret not revealed yet)" in out
        code, out = audit("epochs", "end", "--data-dir", str(tmp_path))
        assert code == 0 and "verified" in out, out

        secret = bytes(32)
        forged = {
            "event": "open", "handle": "spot:1", "at": int(clock.now), "actor": "system",
            "kind": "spot", "agent": AGENT, "proposal_index": 1, "source_index": 2,
            "expires_at": int(clock.now) + 60, "epoch": "epoch-00000000000000cc",
        }  # fmt: skip
        for entry in (
            start_entry("epoch-00000000000000cc", secret, ctx.tiers, int(clock.now)),
            LogEntry(type="dialogue", agent=AGENT, payload=forged),
            end_entry("epoch-00000000000000cc", b"\x01" * 32, int(clock.now)),
        ):
            gate.log.append(canonical_json(entry))
        code, out = audit("epochs", "verify", "--data-dir", str(tmp_path))
        assert code == 1
        assert "does not match the commitment" in out
        assert "not an action granted during epoch-00000000000000cc" in out
        code, out = audit("epochs", "verify", "--data-dir", str(tmp_path), "--json")
        reports = json.loads(out)
        assert [r["ok"] for r in reports] == [True, False]
        assert service.dialogues() is not None


def test_m_of_n_from_the_command_line(tmp_path: Path) -> None:
    gate, service, bank, _ = open_service(tmp_path, tier=4, clock=live_clock())
    with gate:
        sid, handle = escalate_password_change(gate)
        service.sync()
        folder = ("--data-dir", str(tmp_path))
        code, out = audit("list", *folder)
        assert code == 0 and "critical" in out and "0 of 2" in out
        code, out = audit("ask", handle, "--auditor", AGENT, "--kind", "restate_goal", *folder)
        assert code == 2 and "an agent can never" in out
        code, out = audit("approve", handle, "--auditor", "carol", "--reason", "called", *folder)
        assert code == 0 and f"approval recorded: 1 of 2 for {handle}" in out
        code, out = audit("approve", handle, "--auditor", "carol", "--reason", "again", *folder)
        assert code == 2 and "counts once" in out
        assert service.resolution(handle, AGENT).status == "pending"
        code, out = audit("approve", handle, "--auditor", "dave", "--reason", "confirmed", *folder)
        assert code == 0 and f"{handle} approved by carol, dave" in out
        resolution = service.resolution(handle, AGENT)
        assert resolution.status == "granted" and resolution.token is not None
        assert gate.execute(sid, resolution.token, PASSWORD_CALL).ok
        assert bank.password == "hunter2-correct"


def test_a_dialogue_past_its_deadline_is_shown_as_such_and_cannot_be_decided(
    tmp_path: Path,
) -> None:
    """``list`` and ``show`` only read, so they cannot record the expiry; they must not present
    an overdue dialogue as waiting. A decision then records the expiry and is refused."""
    gate, service, _, _ = open_service(tmp_path, clock=Clock(time.time() - 1000), ttl_seconds=600)
    with gate:
        _, _, handle = escalate_payment(gate)
        service.sync()
        folder = ("--data-dir", str(tmp_path))
        code, out = audit("list", *folder)
        assert code == 0 and "opened (past its deadline)" in out
        code, out = audit("list", "--json", *folder)
        [row] = json.loads(out)["dialogues"]
        assert row["overdue"] is True and row["state"] == "opened"
        code, out = audit("show", handle, *folder)
        assert code == 0 and "past its deadline" in out and "no decision can be recorded" in out
        code, out = audit("approve", handle, "--auditor", "carol", "--reason", "late", *folder)
        assert code == 2 and "closed (expired" in out
        code, out = audit("list", "--all", "--json", *folder)
        [row] = json.loads(out)["dialogues"]
        assert row["state"] == "expired" and row["overdue"] is False
        assert service.resolution(handle, AGENT).status == "expired"
