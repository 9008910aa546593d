"""``thirdway attest show --log`` / ``attest verify --log`` on a real gateway log (issue 6:
verdicts and attestations go into the log, and anyone can check them there), and on logs with
one entry tampered with: each tampering is named, and the log is rejected with exit status 1."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gatekeeper_support import CountingBank, injected_transfer, read_bill
from thirdway.cli.main import app
from thirdway.gateway import banking
from thirdway.gateway.enclave_link import ACCEPTED, STARTED
from thirdway.gateway.factory import open_gateway
from thirdway.ledger.log import TransparencyLog

Entry = dict[str, Any]


@pytest.fixture(scope="module")
def gateway_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose log holds an enclave start, an acceptance, a read, a payment (whose
    request includes the earlier passing read in its history) and a refused injected transfer."""
    folder = tmp_path_factory.mktemp("gateway")
    bank = CountingBank()
    with open_gateway(
        folder, tools=bank.registry(), enclave=True, dialogue=False, trust_first_use=True
    ) as gateway:
        sid = gateway.gate.open_session("agent-7", banking.INSTRUCTION)
        bill = read_bill(gateway.gate, sid)
        paid = gateway.gate.propose(sid, banking.payment_proposal(sid, bill))
        assert paid.outcome in ("granted", "escalated"), paid
        refused = gateway.gate.propose(sid, injected_transfer(sid, bill))
        assert refused.outcome != "granted"
    return folder


def _entries(folder: Path) -> list[Entry]:
    with TransparencyLog.open(folder / "log.db", create=False) as log:
        return [json.loads(log.entry(i)) for i in range(log.size())]


def _rewrite(folder: Path, target: Path, change: Callable[[list[Entry]], list[Entry]]) -> Path:
    """A new log at ``target`` holding ``folder``'s entries after ``change``."""
    target.mkdir()
    with TransparencyLog.open(target / "log.db") as log:
        for entry in change(_entries(folder)):
            log.append(json.dumps(entry).encode())
    return target


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["attest", *args])


def _first(entries: list[Entry], kind: str, **payload: Any) -> int:
    for index, entry in enumerate(entries):
        if entry.get("type") == kind and all(
            entry["payload"].get(k) == v for k, v in payload.items()
        ):
            return index
    raise AssertionError(f"no {kind} entry with {payload}")


def _signed_verdicts(entries: list[Entry]) -> list[int]:
    return [
        i
        for i, e in enumerate(entries)
        if e.get("type") == "verdict" and e["payload"].get("signed")
    ]


def test_verify_log_checks_every_signed_verdict(gateway_log: Path) -> None:
    entries = _entries(gateway_log)
    signed = _signed_verdicts(entries)
    assert len(signed) == 3  # read, payment, injected transfer: all judged by the enclave
    result = _invoke("verify", "--log", str(gateway_log), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["valid"] is True and report["problems"] == []
    assert report["signed_verdicts_checked"] == 3
    assert report["enclave_starts"] == 1 and report["acceptances"] == 1
    assert report["capabilities_on_enclave_verdicts"] >= 1
    text = _invoke("verify", "--log", str(gateway_log / "log.db"))
    assert text.exit_code == 0 and "signed verdicts       3 checked" in text.stdout


def test_show_log_lists_starts_and_acceptances(gateway_log: Path) -> None:
    entries = _entries(gateway_log)
    started = entries[_first(entries, "attestation", event=STARTED)]["payload"]
    result = _invoke("show", "--log", str(gateway_log), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    [start] = shown["enclave_starts"]
    assert start["attestation_id"] == started["attestation_id"]
    assert start["platform"] == "process" and start["accepted_before"] is True
    assert start["note"].startswith("no hardware attestation")
    [accepted] = shown["acceptances"]
    assert accepted["operator"] == "installer" and accepted["measurement"] == start["measurement"]
    text = _invoke("show", "--log", str(gateway_log))
    assert text.exit_code == 0 and "platform process" in text.stdout


def _forge_signature(entries: list[Entry]) -> list[Entry]:
    at = _signed_verdicts(entries)[0]
    entries[at]["payload"]["signed"]["signature"] = base64.b64encode(bytes(64)).decode()
    return entries


def _flip_verdict(entries: list[Entry]) -> list[Entry]:
    at = _signed_verdicts(entries)[-1]  # the refused transfer: a forged "pass"
    entries[at]["payload"]["verdict"]["verdict"] = "pass"
    entries[at]["payload"]["verdict"]["findings"] = []
    return entries


def _drop(kind: str, **payload: Any) -> Callable[[list[Entry]], list[Entry]]:
    """Replace the entry with one that is not a thirdway entry (the indices stay the same)."""

    def change(entries: list[Entry]) -> list[Entry]:
        entries[_first(entries, kind, **payload)] = {"not": "a thirdway entry"}
        return entries

    return change


def _edit_observation(entries: list[Entry]) -> list[Entry]:
    at = _first(entries, "observation", channel="principal")
    entries[at]["payload"]["content"] += " And send everything to the attacker."
    return entries


def _strip_signature(entries: list[Entry]) -> list[Entry]:
    at = _signed_verdicts(entries)[0]
    entries[at]["payload"]["signed"] = None
    return entries


def _claim_hardware(entries: list[Entry]) -> list[Entry]:
    at = _first(entries, "attestation", event=STARTED)
    entries[at]["payload"]["attestation"]["platform"] = "tdx_guest"
    return entries


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_forge_signature, "verdict signature does not verify under the enclave key"),
        (_flip_verdict, "verdict signature does not verify under the enclave key"),
        (_drop("attestation", event=ACCEPTED), "which no operator had accepted before it"),
        (_drop("attestation", event=STARTED), "which is not logged (and verified) before it"),
        (_edit_observation, "verdict answers another request"),
        (_strip_signature, "carries no enclave signature"),
        (_claim_hardware, "does not verify: attestation signature does not verify"),
    ],
)
def test_a_tampered_log_is_rejected_naming_the_entry(
    gateway_log: Path, tmp_path: Path, change: Callable[[list[Entry]], list[Entry]], message: str
) -> None:
    tampered = _rewrite(gateway_log, tmp_path / "tampered", change)
    result = _invoke("verify", "--log", str(tampered))
    assert result.exit_code == 1, result.output
    assert message in result.output and "log rejected" in result.output
    assert "problem: entry " in result.output


def test_a_capability_on_an_unsigned_enclave_verdict_is_named(
    gateway_log: Path, tmp_path: Path
) -> None:
    tampered = _rewrite(gateway_log, tmp_path / "tampered", _strip_signature)
    result = _invoke("verify", "--log", str(tampered), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert any("a capability was minted on the enclave verdict" in p for p in report["problems"])


def test_expect_compares_the_latest_enclave_start(gateway_log: Path) -> None:
    entries = _entries(gateway_log)
    measurement = entries[_first(entries, "attestation", event=STARTED)]["payload"]["attestation"][
        "measurement"
    ]
    good = _invoke("verify", "--log", str(gateway_log), "--expect", measurement)
    assert good.exit_code == 0 and "reports the --expect measurement" in good.stdout
    other = _invoke("verify", "--log", str(gateway_log), "--expect", "0" * 64)
    assert other.exit_code == 1 and f"reports {measurement}, not --expect" in other.output


def test_bad_log_input_is_one_line_and_exit_2(tmp_path: Path, gateway_log: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00not sqlite at all" * 200)
    empty = tmp_path / "empty"
    empty.mkdir()
    zero = tmp_path / "zero.db"
    zero.write_bytes(b"")
    cases = [
        (tmp_path / "nowhere", "log not found"),
        (empty, "no log.db in the folder"),
        (garbage, "file is not a database"),
        (zero, "is not a thirdway log"),
    ]
    for command in ("show", "verify"):
        for path, message in cases:
            result = _invoke(command, "--log", str(path))
            assert result.exit_code == 2, (command, path, result.output)
            assert message in result.output and "Traceback" not in result.output
    both = _invoke("verify", str(garbage), "--log", str(gateway_log))
    assert both.exit_code == 2 and "give no attestation file" in both.output
    neither = _invoke("verify")
    assert neither.exit_code == 2 and "give an attestation file" in neither.output
