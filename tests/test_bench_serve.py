"""``thirdway bench serve`` runs a tiny load against a real server subprocess and stops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thirdway.bench.serve import percentile
from thirdway.cli.main import app

runner = CliRunner()


def test_a_tiny_run_measures_and_shuts_down_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    result = runner.invoke(
        app,
        ["bench", "serve", "--actions", "24", "--agents", "3", "--json", str(out),
         "--dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "actions/s" in result.output.replace("\n", "") or "actio" in result.output
    data = json.loads(out.read_text())
    assert data["actions"] == 24 and data["failed"] == 0 and data["agents"] == 3
    assert data["actions_per_second"] > 0
    assert 0 < data["p50_ms"] <= data["p99_ms"] <= data["max_ms"]
    # 24 actions in sessions of four: 6+ sessions, 7 entries per action, 1 per session
    assert data["log_entries"] >= 24 * 7 + 6
    assert data["log_verified"] is True and data["clean_shutdown"] is True
    assert list(tmp_path.iterdir()) == [out]  # the server's temporary folder is gone


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2"], "not supported yet"),
        (["--db", "postgresql://localhost/thirdway"], "not supported yet"),
        (["--agents", "0"], "--agents"),
        (["--actions", "0"], "--actions"),
        (["--time-limit", "0"], "--time-limit"),
    ],
)
def test_unsupported_or_bad_options_are_refused(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["bench", "serve", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile([], 99) == 0.0
