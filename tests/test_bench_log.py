"""``thirdway bench log`` on a tiny tree: every row is there with positive numbers, and thirdway's
and pymerkle's roots both equal an independent RFC 6962 computation over the same entries.

(No timing is asserted here: performance numbers come from running the benchmark itself.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thirdway.bench.log import (
    BenchConfig,
    _in_fresh_process,
    _merge_rounds,
    entry,
    parse_sizes,
    percentile,
    render_table,
    run_bench,
)
from thirdway.cli.main import app
from thirdway.errors import InputError, ThirdwayError

EXPECTED_METRICS = [
    "durable appends, batched (256)",
    "durable appends, single",
    "inclusion proof generation p50",
    "inclusion proof generation p99",
    "inclusion proof verification p50",
    "inclusion proof verification p99",
    "consistency proof generation p50",
    "consistency proof generation p99",
    "consistency proof verification p50",
    "consistency proof verification p99",
    "peak RSS of the worker process",
    "peak RSS growth after opening the tree",
]


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """MTH from RFC 6962 section 2.1, written straight from the definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    left, right = rfc6962_root(leaves[:split]), rfc6962_root(leaves[split:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def test_tiny_run_has_every_row_and_matching_rfc6962_roots(tmp_path: Path) -> None:
    config = BenchConfig(sizes=(100, 257), samples=15, single_appends=5, tmpdir=str(tmp_path))
    result = run_bench(config)
    for size in (100, 257):
        rows = [row for row in result.rows if row.size == size]
        assert [row.metric for row in rows] == EXPECTED_METRICS
        for row in rows:
            if row.metric.startswith("peak RSS growth"):  # may round to 0 on a tiny tree
                assert row.thirdway >= 0 and row.pymerkle is not None and row.pymerkle >= 0
                continue
            assert row.thirdway > 0, row
            assert row.pymerkle is not None and row.pymerkle > 0, row
            assert row.ratio == pytest.approx(row.thirdway / row.pymerkle)
        expected = rfc6962_root([entry(i) for i in range(size)]).hex()
        assert result.roots[size] == {"thirdway": expected, "pymerkle": expected}
        # The stores are created by another process, whose peak is reported beside the table.
        assert set(result.create_rss_mib[size]) == {"thirdway", "pymerkle"}
        assert all(peak > 0 for peak in result.create_rss_mib[size].values())
    assert result.pymerkle_sizes == (100, 257)
    assert list(tmp_path.iterdir()) == []  # temporary databases cleaned up
    assert render_table(result).row_count == len(result.rows)


def test_pymerkle_cap_is_reported_not_faked(tmp_path: Path) -> None:
    config = BenchConfig(
        sizes=(50, 120), samples=5, single_appends=2, pymerkle_max_size=60, tmpdir=str(tmp_path)
    )
    result = run_bench(config)
    assert result.pymerkle_sizes == (50,)
    capped = [row for row in result.rows if row.size == 120]
    assert capped and all(row.pymerkle is None and row.ratio is None for row in capped)
    assert set(result.roots[120]) == {"thirdway"}


def test_cli_writes_json_with_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    runner = CliRunner()
    invoked = runner.invoke(
        app,
        ["bench", "log", "--quick", "--sizes", "64", "--samples", "10", "--json", str(out)],
        env={"COLUMNS": "200"},
        catch_exceptions=False,
    )
    assert invoked.exit_code == 0, invoked.output
    assert "inclusion proof generation p99" in invoked.output
    data = json.loads(out.read_text())
    assert [row["metric"] for row in data["rows"]] == EXPECTED_METRICS
    assert all(row["thirdway"] > 0 and row["pymerkle"] > 0 for row in data["rows"][:-1])
    assert data["rows"][-1]["thirdway"] >= 0 and data["rows"][-1]["pymerkle"] >= 0
    assert data["roots"]["64"]["thirdway"] == rfc6962_root([entry(i) for i in range(64)]).hex()
    assert data["pymerkle_sizes"] == [64]
    assert set(data["create_peak_rss_mib"]["64"]) == {"thirdway", "pymerkle"}
    assert "Creating the empty store" in invoked.output


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sizes", "1"], "outside 2"),
        (["--sizes", "ten"], "not a whole number"),
        (["--sizes", "100", "--samples", "0"], "--samples"),
        (["--sizes", "100", "--repeat", "0"], "--repeat"),
        (["--sizes", "100", "--json", "/nonexistent/dir/out.json"], "does not exist"),
    ],
)
def test_cli_bad_options_fail_with_one_line(argv: list[str], message: str) -> None:
    invoked = CliRunner().invoke(app, ["bench", "log", *argv])
    assert invoked.exit_code != 0
    assert message in invoked.output
    assert "Traceback" not in invoked.output


def test_rounds_alternate_and_pool(tmp_path: Path) -> None:
    config = BenchConfig(sizes=(40,), samples=4, single_appends=2, repeat=2, tmpdir=str(tmp_path))
    result = run_bench(config)
    assert result.roots[40]["thirdway"] == rfc6962_root([entry(i) for i in range(40)]).hex()
    assert [row.metric for row in result.rows] == EXPECTED_METRICS
    merged = _merge_rounds(
        [
            {"root": "r", "batched_per_s": 1.0, "inclusion_gen": [1.0, 2.0]},
            {"root": "r", "batched_per_s": 5.0, "inclusion_gen": [3.0]},
            {"root": "r", "batched_per_s": 2.0, "inclusion_gen": [4.0]},
        ]
    )
    assert merged == {"root": "r", "batched_per_s": 2.0, "inclusion_gen": [1.0, 2.0, 3.0, 4.0]}


def test_parse_sizes_and_percentile() -> None:
    assert parse_sizes("10_000, 100000,10000") == (10_000, 100_000)
    for bad in ["", "1e6", "-5", "٣", "20000000"]:
        with pytest.raises(InputError):
            parse_sizes(bad)
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0


def test_the_measuring_worker_opens_an_existing_store_from_bytecode(tmp_path: Path) -> None:
    """The creating worker compiles into the private bytecode folder even when the environment
    says not to write bytecode; the measuring worker then imports compiled modules."""
    bytecode = tmp_path / "bytecode"
    config = BenchConfig(sizes=(20,), samples=2, single_appends=1, tmpdir=str(tmp_path))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONDONTWRITEBYTECODE", "1")
        out = _in_fresh_process("thirdway", 20, config, 0, bytecode)
    assert out["root"] == rfc6962_root([entry(i) for i in range(20)]).hex()
    compiled = {path.name.split(".")[0] for path in bytecode.rglob("*.pyc")}
    assert {"log", "merkle", "sqlite", "note"} <= compiled


def test_a_failing_worker_is_reported_in_one_line() -> None:
    with pytest.raises(ThirdwayError, match="nosuch benchmark worker failed at size 10: KeyError"):
        _in_fresh_process("nosuch", 10, BenchConfig(samples=1, single_appends=1), 0)
