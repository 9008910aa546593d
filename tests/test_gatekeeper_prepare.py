"""The gatekeeper does the verifier's per-observation work when it records an observation, so a
proposal's verification only does the per-proposal part (and reaches the same verdict)."""

from __future__ import annotations

from pathlib import Path

import pytest

from thirdway.gateway import Gatekeeper, banking
from thirdway.protocol.models import ToolCall
from thirdway.verify import record as record_module


def _gate(folder: Path) -> Gatekeeper:
    return Gatekeeper.open(folder, tools=banking.Bank().registry())


def _decide(gate: Gatekeeper, broken: pytest.MonkeyPatch | None) -> tuple[str, list[str]]:
    sid = gate.open_session("agent-7", banking.INSTRUCTION)
    read = ToolCall(tool="read_file", args={"file_path": banking.BILL_FILE})
    _, bill = gate.record_tool_result(sid, read, banking.bill_text(banking.INJECTION))
    if broken is not None:

        def redone(*_args: object) -> object:
            raise AssertionError("per-observation work redone on the proposal's path")

        broken.setattr(record_module, "find_instruction_spans", redone)
        broken.setattr(record_module, "normalize", redone)
    outcome = gate.propose(sid, banking.injected_transfer_proposal(sid, bill))
    verdict = outcome.verdict
    return verdict.verdict, sorted(f.code for f in verdict.findings)


def test_recorded_observations_are_prepared_and_the_verdict_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _gate(tmp_path / "reference") as gate:
        expected = _decide(gate, None)
    with _gate(tmp_path / "prepared") as gate:
        assert _decide(gate, monkeypatch) == expected
    assert expected[0] == "deny"  # the injected transfer: the screen's work was needed
