"""The worked example ``examples/banking_injection.py`` runs and comes out as its docstring says,
and the log it leaves verifies with the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from thirdway.cli.main import app

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "banking_injection.py"


def test_the_example_refuses_the_injection_and_pays_the_bill(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--json", "--data-dir", str(tmp_path / "gate")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["outcomes"] == {
        "read_bill": "granted",
        "honest_payment": "granted",
        "injection_obeyed_openly": "denied",
        "injection_hidden_under_user_goal": "denied",
        "fabricated_request": "denied",
        "replayed_token": "refused: spent",
    }
    codes = {step: set(detail["codes"]) for step, detail in result["details"].items()}
    assert codes["honest_payment"] == set()
    assert {"instruction_from_data", "cited_from_instruction"} <= codes["injection_obeyed_openly"]
    assert "cited_from_instruction" in codes["injection_hidden_under_user_goal"]
    assert {"fabricated_quote", "misattribution"} <= codes["fabricated_request"]
    assert result["paid_to_attacker"] == 0
    assert result["balance"] == 1810.0 - 98.7
    assert result["entry_types"]["capability"] == 2
    assert result["entry_types"]["note"] == 1  # the fabrication, reported to the sanctioner
    verified = CliRunner().invoke(app, ["log", "verify", "--db", str(tmp_path / "gate" / "log.db")])
    assert verified.exit_code == 0, verified.output


def test_the_narrated_run_says_so() -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "as expected" in run.stdout and "NOT as expected" not in run.stdout
    assert "instruction_from_data" in run.stdout
    assert "money sent to US133000000121212121212: 0" in run.stdout
