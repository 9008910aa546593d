"""``thirdway bench gate`` runs end to end (tiny), and refuses bad options with one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thirdway.cli.main import app
from thirdway.errors import InputError
from thirdway.gateway.bench import STAGES, BenchConfig, StageClock, percentile, run_bench


def test_a_tiny_run_measures_every_stage(tmp_path: Path) -> None:
    config = BenchConfig(
        actions=6, agents=(1, 2), warmup=2, folder=tmp_path, enclave=False, floor_n=3
    )
    result = run_bench(config)
    assert [(s.agents, len(s.latencies_ms)) for s in result.scenarios] == [(1, 6), (2, 6)]
    for scenario in result.scenarios:
        assert set(scenario.stages_ms) == set(STAGES)
        for stage in ("log", "verify", "authorize", "mint", "token", "tool"):
            assert all(value > 0 for value in scenario.stages_ms[stage]), stage
        for number, total in enumerate(scenario.latencies_ms):  # the breakdown adds up
            parts = sum(scenario.stages_ms[stage][number] for stage in STAGES)
            assert parts == pytest.approx(total, rel=1e-6, abs=1e-6)
    for scenario in result.scenarios:  # CPU time was taken over the timed run only
        assert 0 < scenario.cpu_s <= scenario.wall_s * (os.cpu_count() or 1) + 0.01
        assert scenario.cpu_ms_per_action == pytest.approx(1000 * scenario.cpu_s / 6)
    assert set(result.floors) == {"log append (1 entry)", "spent-set spend"}
    assert any("target p99 <= 3 ms" in note for note in result.notes)
    assert list(tmp_path.iterdir()) == []  # the databases were temporary


def test_cli_writes_tables_and_json(tmp_path: Path) -> None:
    out = tmp_path / "gate.json"
    result = CliRunner().invoke(
        app,
        ["bench", "gate", "--quick", "--actions", "4", "--no-enclave", "--dir", str(tmp_path),
         "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "where the time goes" in result.output and "p99 ms" in result.output
    data = json.loads(out.read_text())
    assert [s["agents"] for s in data["scenarios"]] == [1, 8]
    assert all(s["actions"] == 4 for s in data["scenarios"])
    assert data["enclave_round_trip"] is None
    assert set(data["scenarios"][0]["stages_mean_ms"]) == set(STAGES)
    assert data["scenarios"][0]["cpu_ms_per_action"] > 0 and "CPU" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--actions", "0"], "--actions must be between 1 and 100000"),
        (["--quick", "--actions", "0"], "--actions must be between 1 and 100000"),
        (["--actions", "100001"], "--actions must be between 1 and 100000"),
        (["--dir", "/nonexistent/place"], "is not a directory"),
    ],
)
def test_cli_refuses_bad_options(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["bench", "gate", "--no-enclave", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_config_validation() -> None:
    with pytest.raises(InputError, match="agent counts"):
        BenchConfig(agents=(0,))
    with pytest.raises(InputError, match="agent counts"):
        BenchConfig(agents=())


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile([5.0], 99) == 5.0
    assert percentile([], 50) == 0.0


def test_stage_clock_keeps_threads_apart() -> None:
    import threading

    clock = StageClock()
    clock.add("log", 5)
    seen: list[dict[str, int]] = []
    worker = threading.Thread(target=lambda: (clock.add("log", 7), seen.append(clock.take())))
    worker.start()
    worker.join()
    assert seen == [{"log": 7}]
    assert clock.take() == {"log": 5}
    assert clock.take() == {}


def test_the_enclave_is_compared_when_available(tmp_path: Path) -> None:
    from thirdway.gateway.bench import enclave_available

    if not enclave_available():
        pytest.skip("thirdway.enclave.bench is not available")
    config = BenchConfig(
        actions=3, agents=(1,), warmup=1, folder=tmp_path, enclave=True, enclave_n=3, floor_n=3
    )
    result = run_bench(config)
    assert result.enclave is not None
    assert result.enclave["ratio_p50"] > 0
    enclave_run = result.scenarios[-1]
    assert enclave_run.verifier == "thirdway.enclave" and len(enclave_run.latencies_ms) == 3
