"""``thirdway bench serve`` runs a tiny load against a real server subprocess and stops."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postgres_support import pg_url
from thirdway.bench.serve import (
    ServeBenchConfig,
    bench_database,
    names_database,
    parse_flow,
    parse_workers,
    percentile,
)
from thirdway.cli.main import app
from thirdway.errors import InputError

__all__ = ["pg_url"]  # the fixture

runner = CliRunner()


def test_a_tiny_run_measures_both_flows_and_shuts_down_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    result = runner.invoke(
        app,
        ["bench", "serve", "--actions", "24", "--agents", "3", "--workers", "1",
         "--json", str(out), "--dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2-call" in result.output and "1-call" in result.output
    assert "one POST /actions" in result.output.replace("\n", " ")
    runs = json.loads(out.read_text())["results"]
    assert [(run["storage"], run["workers"], run["flow"]) for run in runs] == [
        ("sqlite", 1, "two-call"), ("sqlite", 1, "one-call")
    ]  # fmt: skip
    for data in runs:
        assert data["actions"] == 24 and data["failed"] == 0 and data["agents"] == 3
        assert data["actions_per_second"] > 0
        assert 0 < data["p50_ms"] <= data["p99_ms"] <= data["max_ms"]
        # 24 actions in sessions of four: 6+ sessions, 7 entries per action, 1 per session,
        # whichever the flow
        assert data["log_entries"] >= 24 * 7 + 6
        assert data["log_verified"] is True and data["clean_shutdown"] is True
        assert data["server_cpu_ms_per_action"] == pytest.approx(
            data["server_cpu_seconds"] * 1000 / 24, abs=0.01
        )
    assert list(tmp_path.iterdir()) == [out]  # the server's temporary folder is gone


def test_one_flow_runs_alone(tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    result = runner.invoke(
        app,
        ["bench", "serve", "--actions", "8", "--agents", "2", "--flow", "one-call",
         "--workers", "1", "--json", str(out), "--dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    runs = json.loads(out.read_text())["results"]
    assert [run["flow"] for run in runs] == ["one-call"]
    assert runs[0]["actions"] == 8 and runs[0]["failed"] == 0
    assert runs[0]["log_entries"] >= 8 * 7 + 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers"),
        (["--workers", "two"], "--workers"),
        (["--db", "mysql://localhost/thirdway"], "not a storage"),
        (["--agents", "0"], "--agents"),
        (["--actions", "0"], "--actions"),
        (["--time-limit", "0"], "--time-limit"),
        (["--flow", "three-call"], "--flow"),
    ],
)
def test_bad_options_are_refused(args: list[str], message: str) -> None:
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


def test_a_tiny_run_with_two_workers_on_one_sqlite_folder(tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    result = runner.invoke(
        app,
        ["bench", "serve", "--actions", "32", "--agents", "4", "--workers", "2",
         "--flow", "both", "--json", str(out), "--dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    runs = json.loads(out.read_text())["results"]
    assert [(run["storage"], run["workers"], run["flow"]) for run in runs] == [
        ("sqlite", 2, "two-call"), ("sqlite", 2, "one-call")
    ]  # fmt: skip
    for run in runs:
        assert run["actions"] == 32 and run["failed"] == 0
        assert run["log_entries"] >= 32 * 7 + 8
        assert run["log_verified"] is True and run["clean_shutdown"] is True
    assert list(tmp_path.iterdir()) == [out]


def test_a_tiny_run_on_postgres_with_two_workers(tmp_path: Path, pg_url: str) -> None:
    out = tmp_path / "serve.json"
    result = runner.invoke(
        app,
        ["bench", "serve", "--actions", "16", "--agents", "4", "--workers", "1,2",
         "--db", pg_url, "--flow", "one-call", "--json", str(out), "--dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    runs = json.loads(out.read_text())["results"]
    assert [(run["storage"], run["workers"], run["flow"]) for run in runs] == [
        ("sqlite", 1, "one-call"), ("postgresql", 1, "one-call"), ("postgresql", 2, "one-call")
    ]  # fmt: skip
    for run in runs:
        assert run["actions"] == 16 and run["failed"] == 0
        assert run["log_verified"] is True and run["clean_shutdown"] is True
    # the named database is used as it is: both PostgreSQL runs wrote to the same log
    assert runs[2]["log_entries"] >= 2 * (16 * 7 + 4)
    assert runs[2]["log_entries"] > runs[1]["log_entries"]
    assert list(tmp_path.iterdir()) == [out]


def test_the_bench_makes_and_drops_its_own_database(pg_url: str) -> None:
    import psycopg

    server = pg_url.rpartition("/")[0] + "/"
    assert not names_database(server) and names_database(pg_url)
    with bench_database(server) as url:
        assert names_database(url) and url != server
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        name = url.rpartition("/")[2]
    with psycopg.connect(pg_url, autocommit=True) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        assert found.fetchone() is None
    with bench_database(pg_url) as url:
        assert url == pg_url


def test_worker_counts_and_runs() -> None:
    assert ServeBenchConfig.build().workers == (1, 2)  # one worker, and two sharing SQLite
    assert parse_workers("1,2,4") == (1, 2, 4)
    assert parse_workers("4, 2,4") == (4, 2)
    with pytest.raises(InputError, match="--workers"):
        parse_workers("1,,x")
    config = ServeBenchConfig.build(workers="1,2,4", db="postgresql://h/db", flow="two-call")
    assert config.runs() == [
        ("sqlite", 1, "two-call"), ("postgresql://h/db", 1, "two-call"),
        ("postgresql://h/db", 2, "two-call"), ("postgresql://h/db", 4, "two-call"),
    ]  # fmt: skip
    assert ServeBenchConfig.build().runs() == [
        ("sqlite", 1, "two-call"), ("sqlite", 1, "one-call"),
        ("sqlite", 2, "two-call"), ("sqlite", 2, "one-call"),
    ]  # fmt: skip
    both = ServeBenchConfig.build(workers="2", db="postgresql://h/db").runs()
    assert both == [
        ("sqlite", 1, "two-call"), ("sqlite", 1, "one-call"),
        ("postgresql://h/db", 2, "two-call"), ("postgresql://h/db", 2, "one-call"),
    ]  # fmt: skip
    assert parse_flow("both") == ("two-call", "one-call")
    assert parse_flow("one-call") == ("one-call",)
    with pytest.raises(InputError, match="--flow"):
        parse_flow("Both")


def test_the_table_fits_80_columns() -> None:
    from rich.console import Console

    from thirdway.bench.serve import ServeBenchReport, ServeBenchResult, render_table

    big = {"seconds": 9999.0, "actions_per_second": 9999.0, "p50_ms": 9999.0}
    big |= {"p90_ms": 9999.0, "p99_ms": 9999.0, "max_ms": 9999.0, "log_entries": 10**7}
    big |= {"server_cpu_seconds": 9999.9, "client_cpu_seconds": 999.9}
    rows = [
        ServeBenchResult(
            storage=storage,
            workers=64,
            flow=flow,
            agents=32,
            actions=999_999,
            failed=0,
            log_verified=False,
            clean_shutdown=False,
            stopped_by_time_limit=True,
            **big,
        )
        for storage in ("sqlite", "postgresql")
        for flow in ("two-call", "one-call")
    ]
    console = Console(width=80, record=True)
    console.print(render_table(ServeBenchReport(rows)))
    text = console.export_text()
    assert "…" not in text  # nothing cut
    assert "999999*" in text and "1-call" in text and "NO!" in text


def _silent_or_closing_server(close: bool) -> tuple[int, Callable[[], None]]:
    """A TCP server on loopback that closes every connection or never answers."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if close:
                conn.close()
            else:
                held.append(conn)

    threading.Thread(target=accept, daemon=True).start()

    def stop() -> None:
        listener.close()
        for conn in held:
            conn.close()

    return listener.getsockname()[1], stop


@pytest.mark.parametrize("close", [True, False])
def test_a_server_that_stops_answering_ends_the_run(
    close: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run is bounded even when the server hangs up or hangs: a clear BenchError."""
    import asyncio

    from thirdway.bench import serve

    monkeypatch.setattr(serve, "ANSWER_GRACE_S", 0.5)
    port, stop = _silent_or_closing_server(close)
    try:
        with pytest.raises(serve.BenchError, match=r"connection|did not answer"):
            asyncio.run(serve._drive(port, ["tw_x_y"] * 3, actions=10, time_limit=1.0))
    finally:
        stop()


def test_an_unreachable_server_is_named_without_its_password() -> None:
    with (
        pytest.raises(InputError, match="cannot create a bench database") as caught,
        bench_database("postgresql://bench:hunter2@127.0.0.1:1/"),
    ):
        pass
    assert "hunter2" not in str(caught.value)
