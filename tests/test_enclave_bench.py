"""The round-trip benchmark returns consistent numbers (timings themselves are not asserted)."""

from __future__ import annotations

import pytest

from thirdway.enclave.bench import main, measure_round_trip, percentile, render


def test_percentile_is_nearest_rank() -> None:
    samples = [float(v) for v in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile([3.0], 99) == 3.0


def test_measure_round_trip_reports_both_paths_and_their_ratio() -> None:
    result = measure_round_trip(5, warmup=1)
    assert result["n"] == 5 and result["platform"] == "process"
    for path in ("in_process", "enclave"):
        stats = result[path]
        assert 0 < stats["p50_ms"] <= stats["p99_ms"]
    assert result["ratio_p50"] == result["enclave"]["p50_ms"] / result["in_process"]["p50_ms"]
    assert result["ratio_p99"] == result["enclave"]["p99_ms"] / result["in_process"]["p99_ms"]
    table = render(result)
    assert "enclave round trip" in table and "ratio (enclave / in)" in table


def test_bench_refuses_a_bad_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["0"]) == 2
    assert "n must be at least 1" in capsys.readouterr().err
    assert main(["many"]) == 2
