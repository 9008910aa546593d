"""The gatekeeper wired to the attested verifier enclave (issue 6's integration): a forged or
mismatched signature, an unaccepted measurement or a dead enclave mints nothing; every enclave
start and every operator acceptance is in the log; service resumes after a restart."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from enclave_support import fault_command
from gatekeeper_support import CountingBank, entries
from thirdway.cli.main import app
from thirdway.gateway import Denied, banking
from thirdway.gateway.enclave_link import ACCEPTED, STARTED, allowlist_path
from thirdway.gateway.factory import Gateway, open_gateway
from thirdway.protocol.models import LogEntry

AGENT = "agent-7"
SRC = Path(__file__).resolve().parents[1] / "src"


def _open(folder: Path, **options: Any) -> tuple[Gateway, CountingBank]:
    bank = CountingBank()
    options.setdefault("trust_first_use", True)
    gateway = open_gateway(folder, tools=bank.registry(), enclave=True, dialogue=False, **options)
    return gateway, bank


def _attestations(gateway: Gateway, event: str) -> list[LogEntry]:
    return [
        e
        for e in entries(gateway.gate)
        if e.type == "attestation" and isinstance(e.payload, dict) and e.payload["event"] == event
    ]


def _read(gateway: Gateway) -> tuple[str, Any]:
    sid = gateway.gate.open_session(AGENT, banking.INSTRUCTION)
    return sid, gateway.gate.propose(sid, banking.read_proposal(sid))


def _no_capability_after(gateway: Gateway, outcome: Any) -> None:
    assert isinstance(outcome, Denied)
    later = entries(gateway.gate, outcome.proposal_index)
    assert [e.type for e in later[:2]] == ["proposal", "verdict"]
    assert "capability" not in [e.type for e in later]


def test_an_attested_enclave_serves_and_its_start_and_acceptance_are_logged(
    tmp_path: Path,
) -> None:
    gateway, bank = _open(tmp_path)
    with gateway:
        assert gateway.enclave is not None
        accepted = _attestations(gateway, ACCEPTED)
        started = _attestations(gateway, STARTED)
        assert len(accepted) == 1 and len(started) == 1
        assert accepted[0].payload["measurement"] == gateway.enclave.expected.value  # type: ignore[index,call-overload]
        assert accepted[0].payload["operator"] == "installer"  # type: ignore[index,call-overload]
        attestation = started[0].payload["attestation"]  # type: ignore[index,call-overload]
        assert attestation["measurement"] == gateway.enclave.expected.value  # type: ignore[index]
        sid, granted = _read(gateway)
        assert granted.outcome == "granted"
        verdict = entries(gateway.gate)[granted.proposal_index + 1]
        assert verdict.type == "verdict"
        assert verdict.payload["signed"]["attestation_id"] == started[0].payload["attestation_id"]  # type: ignore[index,call-overload]
        gateway.gate.execute(sid, granted.token, banking.read_proposal(sid)["action"])
        assert bank.calls["read_file"] == 1
    # Reopening does not log the same acceptance twice; the new enclave start is logged.
    gateway, _ = _open(tmp_path)
    with gateway:
        assert len(_attestations(gateway, ACCEPTED)) == 1
        assert len(_attestations(gateway, STARTED)) == 2


@pytest.mark.parametrize("mode", ["forged-verdict", "wrong-request"])
def test_a_forged_or_mismatched_verdict_signature_blocks_minting(tmp_path: Path, mode: str) -> None:
    gateway, bank = _open(tmp_path, enclave_cmd=fault_command(mode))
    with gateway:
        _, outcome = _read(gateway)
        _no_capability_after(gateway, outcome)
        assert "no verdict could be had" in outcome.reason
        assert "signature" in outcome.reason or "request" in outcome.reason
        assert not outcome.retryable, "a forged or mismatched verdict is no reason to retry"
        error = entries(gateway.gate)[outcome.proposal_index + 1].payload
        assert error["error"]  # type: ignore[index,call-overload]
        assert bank.calls["read_file"] == 0


def _modified_package(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    shutil.copytree(
        SRC / "thirdway", root / "thirdway", ignore=shutil.ignore_patterns("__pycache__")
    )
    grounding = root / "thirdway" / "verify" / "grounding.py"
    grounding.write_text(grounding.read_text() + "\n# a modified verifier\n")
    return root


def test_a_modified_verifier_blocks_minting_until_an_operator_accepts_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gateway, _ = _open(data)  # accepts today's measurement
    original = gateway.enclave.expected.value  # type: ignore[union-attr]
    gateway.close()

    gateway, bank = _open(data, enclave_package_root=_modified_package(tmp_path))
    with gateway:
        assert gateway.enclave is not None
        modified = gateway.enclave.expected.value
        assert modified != original
        _, refused = _read(gateway)
        _no_capability_after(gateway, refused)
        assert f"verifier measurement {modified} has not been accepted" in refused.reason

        result = CliRunner().invoke(
            app,
            ["attest", "accept", modified, "--reason", "reviewed the grounding change",
             "--operator", "ops-alice", "--data-dir", str(data)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        _, granted = _read(gateway)
        assert granted.outcome == "granted"
        accepted = _attestations(gateway, ACCEPTED)
        assert [a.payload["operator"] for a in accepted] == ["installer", "ops-alice"]  # type: ignore[index,call-overload]
        assert accepted[-1].payload["reason"] == "reviewed the grounding change"  # type: ignore[index,call-overload]
        assert bank.calls["read_file"] == 0


def test_a_verifier_file_changed_under_a_running_gateway_blocks_until_accepted(
    tmp_path: Path,
) -> None:
    """The file changes while the gateway runs; the next enclave (after a crash) measures the
    new code: nothing is minted, the new measurement is named, and the operator's acceptance
    alone (no gateway restart) lets minting resume on the new enclave's verdicts."""
    data = tmp_path / "data"
    root = _modified_package(tmp_path)
    gateway, bank = _open(data, enclave_package_root=root)
    with gateway:
        assert gateway.enclave is not None
        before = gateway.enclave.expected.value
        sid, granted = _read(gateway)
        assert granted.outcome == "granted"
        codes = root / "thirdway" / "verify" / "codes.py"
        codes.write_text(codes.read_text() + "\n# changed while the gateway runs\n")
        pid = gateway.enclave.client.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)

        refused = gateway.gate.propose(sid, banking.read_proposal(sid))
        _no_capability_after(gateway, refused)
        assert "the verifier code changed on disk (code differs in thirdway.verify.codes)" in (
            refused.reason
        )
        after = gateway.enclave.expected.value
        assert after != before and after in refused.reason
        again = gateway.gate.propose(sid, banking.read_proposal(sid))
        _no_capability_after(gateway, again)
        assert f"verifier measurement {after} has not been accepted" in again.reason

        result = CliRunner().invoke(
            app,
            ["attest", "accept", after, "--reason", "reviewed codes.py", "--operator", "ops-bob",
             "--data-dir", str(data)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        granted = gateway.gate.propose(sid, banking.read_proposal(sid))
        assert granted.outcome == "granted"
        started = _attestations(gateway, STARTED)
        assert started[-1].payload["attestation"]["measurement"] == after  # type: ignore[index,call-overload]
        signed = entries(gateway.gate)[granted.proposal_index + 1].payload["signed"]  # type: ignore[index,call-overload]
        assert signed["measurement"] == after  # type: ignore[index]
        assert _attestations(gateway, ACCEPTED)[-1].payload["operator"] == "ops-bob"  # type: ignore[index,call-overload]
        assert bank.calls["read_file"] == 0


def test_killing_the_enclave_mid_verification_mints_nothing_then_serves_again(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "in-flight"
    gateway, _ = _open(
        tmp_path / "data",
        enclave_cmd=fault_command("slow", "0.5", str(marker)),
        enclave_timeout_s=20,
    )
    with gateway:
        assert gateway.enclave is not None
        pid = gateway.enclave.client.pid
        assert pid is not None
        sid = gateway.gate.open_session(AGENT, banking.INSTRUCTION)
        result: dict[str, Any] = {}
        thread = threading.Thread(
            target=lambda: result.update(
                outcome=gateway.gate.propose(sid, banking.read_proposal(sid))
            )
        )
        thread.start()
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), "the request never reached the enclave"
        os.kill(pid, signal.SIGKILL)
        thread.join(60)
        outcome = result["outcome"]
        _no_capability_after(gateway, outcome)
        assert "unavailable" in outcome.reason and "retry" in outcome.reason
        started = _attestations(gateway, STARTED)
        assert [s.payload["start"] for s in started] == [1, 2]  # type: ignore[index,call-overload]
        assert gateway.enclave.client.pid not in (None, pid)
        granted = gateway.gate.propose(sid, banking.read_proposal(sid))
        assert granted.outcome == "granted"
        signed = entries(gateway.gate)[granted.proposal_index + 1].payload["signed"]  # type: ignore[index,call-overload]
        assert signed["attestation_id"] == started[1].payload["attestation_id"]  # type: ignore[index,call-overload]


def test_a_hung_enclave_mints_nothing_is_replaced_and_serves_again(tmp_path: Path) -> None:
    marker = tmp_path / "hung"
    gateway, bank = _open(
        tmp_path / "data", enclave_cmd=fault_command("hang-once", str(marker)), enclave_timeout_s=1
    )
    with gateway:
        assert gateway.enclave is not None
        hung = gateway.enclave.client.pid
        started_at = time.monotonic()
        sid, outcome = _read(gateway)
        assert time.monotonic() - started_at < 30 and marker.exists()
        _no_capability_after(gateway, outcome)
        assert "no reply within 1 s" in outcome.reason and "retry" in outcome.reason
        started = _attestations(gateway, STARTED)
        assert [s.payload["start"] for s in started] == [1, 2]  # type: ignore[index,call-overload]
        keys = [s.payload["attestation"]["public_key"] for s in started]  # type: ignore[index,call-overload]
        assert keys[0] != keys[1]  # a new enclave, a new key
        assert gateway.enclave.client.pid not in (None, hung)
        granted = gateway.gate.propose(sid, banking.read_proposal(sid))
        assert granted.outcome == "granted"
        signed = entries(gateway.gate)[granted.proposal_index + 1].payload["signed"]  # type: ignore[index,call-overload]
        assert signed["attestation_id"] == started[1].payload["attestation_id"]  # type: ignore[index,call-overload]
        assert bank.calls["read_file"] == 0


def test_accept_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["attest", "accept"]
    bad = runner.invoke(
        app, [*base, "xyz", "--reason", "r", "--operator", "o", "--data-dir", str(tmp_path)]
    )
    assert bad.exit_code != 0 and "MEASUREMENT must be 64 lower-case hex digits" in bad.output
    blank = runner.invoke(
        app, [*base, "a" * 64, "--reason", "  ", "--operator", "o", "--data-dir", str(tmp_path)]
    )
    assert blank.exit_code != 0 and "reason" in blank.output
    assert not allowlist_path(tmp_path).exists()
    missing = runner.invoke(
        app,
        [*base, "a" * 64, "--reason", "r", "--operator", "o", "--data-dir", str(tmp_path / "no")],
    )
    assert missing.exit_code != 0 and "data folder not found" in missing.output
