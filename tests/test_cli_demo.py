"""The main job (``thirdway demo``, run by ``make demo``) shows each outcome it promises."""

from __future__ import annotations

from typer.testing import CliRunner

from thirdway.cli.main import app


def test_demo_proves_verifies_and_catches_tampering() -> None:
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # rich wraps lines at the terminal width
    assert "log size 1003" in out
    assert "— thirdway.local/log/" in out  # a C2SP signature line
    assert "proof verified against the checkpoint" in out
    assert "consistency proof verified" in out
    assert "verified 1003 entries" in out
    assert "entry 2 does not match its stored leaf hash" in out
