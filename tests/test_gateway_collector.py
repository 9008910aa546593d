"""The gateway's garbage-collector settings: applied, and undone by the benchmark's block."""

from __future__ import annotations

import gc
from pathlib import Path

from thirdway.gateway.bench import BenchConfig, run_bench
from thirdway.gateway.collector import YOUNG_THRESHOLD, tuned_collector


def test_tuned_block_freezes_and_raises_the_threshold_then_restores() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    with tuned_collector():
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
        assert gc.get_freeze_count() > frozen_before  # the objects alive now are frozen
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_bench_gate_tunes_only_for_its_run_and_says_so(tmp_path: Path) -> None:
    before = gc.get_threshold()
    tuned = run_bench(
        BenchConfig(actions=2, agents=(1,), warmup=1, folder=tmp_path, enclave=False, floor_n=2)
    )
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    assert any("tuned as `thirdway serve` tunes it" in note for note in tuned.notes)
    plain = run_bench(
        BenchConfig(
            actions=2, agents=(1,), warmup=1, folder=tmp_path, enclave=False, floor_n=2,
            tune_gc=False,
        )
    )  # fmt: skip
    assert any("CPython's defaults" in note for note in plain.notes)
