"""``thirdway bench serve``: gated actions per second and latency over loopback HTTP.

The server is ``thirdway serve`` in a subprocess (uvicorn, one worker, SQLite in a temporary
folder with the service's defaults: durable log appends and spends). Each of ``agents`` async
httpx clients, with its own agent key and connection, opens a session and runs gated actions
in it: a proposal (parsed, verified, authorized, a capability minted, four log entries) and
the execution of the hosted tool with that token (the token checked and spent, the tool run,
three log entries). One action's latency is the two requests together. A new session every
four actions. The run stops at ``actions`` or at ``time_limit`` seconds, whichever comes
first; then the server is stopped with SIGTERM and the log is reopened and verified, to show
that the graceful shutdown lost nothing.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from thirdway.errors import InputError
from thirdway.gateway import banking
from thirdway.service.config import ServiceConfig

TARGET_ACTIONS_PER_SECOND = 500
ACTIONS_PER_SESSION = 4
ENTRIES_PER_ACTION = 7
MAX_ACTIONS = 1_000_000
MAX_AGENTS = 1024


@dataclass(frozen=True)
class ServeBenchConfig:
    actions: int = 3000
    agents: int = 32
    workers: int = 1
    db: str = "sqlite"
    folder: Path | None = None
    time_limit: float = 120.0

    @classmethod
    def build(
        cls,
        *,
        quick: bool = False,
        actions: int | None = None,
        agents: int = 32,
        workers: int = 1,
        db: str = "sqlite",
        folder: Path | None = None,
        time_limit: float = 120.0,
    ) -> ServeBenchConfig:
        count = actions if actions is not None else (400 if quick else 3000)
        if not 1 <= count <= MAX_ACTIONS:
            raise InputError(f"--actions must be from 1 to {MAX_ACTIONS}")
        if not 1 <= agents <= MAX_AGENTS:
            raise InputError(f"--agents must be from 1 to {MAX_AGENTS}")
        if not (math.isfinite(time_limit) and 1 <= time_limit <= 3600):
            raise InputError("--time-limit must be from 1 to 3600 seconds")
        ServiceConfig(db=db, workers=max(1, min(workers, 64))).check_supported()
        if workers < 1:
            raise InputError("--workers must be at least 1")
        return cls(count, agents, workers, db, folder, time_limit)


@dataclass
class ServeBenchResult:
    agents: int
    actions: int
    failed: int
    seconds: float
    actions_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    log_entries: int
    log_verified: bool
    clean_shutdown: bool
    stopped_by_time_limit: bool
    notes: list[str] = field(default_factory=list)


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no samples)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _make_keys(folder: Path, agents: int) -> list[str]:
    from thirdway.service.state import open_keys

    keys = open_keys(folder)
    try:
        return [keys.create(f"bench-agent-{n}", "agent") for n in range(agents)]
    finally:
        keys.close()


def _start_server(folder: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "THIRDWAY_LOG_LEVEL": "warning",
        "THIRDWAY_CONSOLE": "false",
    }
    command = [
        sys.executable, "-c", "from thirdway.cli.main import main; main()", "serve",
        "--data-dir", str(folder), "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    stderr = (folder / "server.log").open("wb")
    return subprocess.Popen(command, env=env, stdout=stderr, stderr=stderr)


def _wait_ready(url: str, server: subprocess.Popen[bytes], folder: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = (folder / "server.log").read_text(errors="replace")[-2000:]
            raise InputError(f"the server exited with {server.returncode}: {tail}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise InputError("the server did not answer /v1/health within 60 s")


class _Budget:
    """Hands out action slots until the count or the deadline runs out."""

    def __init__(self, actions: int, deadline: float) -> None:
        self.left = actions
        self.deadline = deadline
        self.timed_out = False

    def take(self) -> bool:
        if time.monotonic() >= self.deadline:
            self.timed_out = True
            return False
        if self.left <= 0:
            return False
        self.left -= 1
        return True


async def _agent(url: str, key: str, budget: _Budget, latencies: list[float]) -> int:
    """One agent's loop; returns how many actions failed."""
    from thirdway.client import AsyncClient
    from thirdway.gateway import Granted

    failed = 0
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with AsyncClient(url, key, limits=limits, timeout=60) as client:
        while budget.left > 0 and not budget.timed_out:
            sid = await client.open_session(banking.INSTRUCTION)
            proposal = banking.read_proposal(sid)
            for _ in range(ACTIONS_PER_SESSION):
                if not budget.take():
                    return failed
                started = time.perf_counter()
                outcome = await client.propose(sid, proposal)
                if not isinstance(outcome, Granted):
                    failed += 1
                    continue
                done = await client.execute(sid, outcome.token, proposal["action"])
                latencies.append((time.perf_counter() - started) * 1000)
                if not done.ok:
                    failed += 1
    return failed


async def _drive(
    url: str, keys: list[str], config: ServeBenchConfig
) -> tuple[list[float], int, float, bool]:
    budget = _Budget(config.actions, time.monotonic() + config.time_limit)
    latencies: list[float] = []
    started = time.perf_counter()
    failures = await asyncio.gather(*(_agent(url, key, budget, latencies) for key in keys))
    return latencies, sum(failures), time.perf_counter() - started, budget.timed_out


def _stop(server: subprocess.Popen[bytes]) -> bool:
    """SIGTERM, as a service manager would; True when the server exited cleanly in time."""
    server.send_signal(signal.SIGTERM)
    try:
        # uvicorn re-raises the signal after its graceful shutdown
        return server.wait(timeout=30) in (0, -signal.SIGTERM)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        return False


def _verify_log(folder: Path) -> tuple[int, bool]:
    from thirdway.ledger.log import TransparencyLog

    with TransparencyLog.open(folder / "log.db", create=False) as log:
        return log.size(), log.verify().ok


def run(config: ServeBenchConfig) -> ServeBenchResult:
    with tempfile.TemporaryDirectory(prefix="thirdway-bench-serve-", dir=config.folder) as tmp:
        folder = Path(tmp)
        keys = _make_keys(folder, config.agents)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        server = _start_server(folder, port)
        try:
            _wait_ready(url, server, folder)
            latencies, failed, seconds, timed_out = asyncio.run(_drive(url, keys, config))
        finally:
            clean = _stop(server)
        size, verified = _verify_log(folder)
    done = len(latencies)
    rate = done / seconds if seconds > 0 else 0.0
    result = ServeBenchResult(
        agents=config.agents,
        actions=done,
        failed=failed,
        seconds=round(seconds, 3),
        actions_per_second=round(rate, 1),
        p50_ms=round(percentile(latencies, 50), 2),
        p90_ms=round(percentile(latencies, 90), 2),
        p99_ms=round(percentile(latencies, 99), 2),
        max_ms=round(max(latencies, default=0.0), 2),
        log_entries=size,
        log_verified=verified,
        clean_shutdown=clean,
        stopped_by_time_limit=timed_out,
    )
    result.notes = _notes(result)
    return result


def _notes(result: ServeBenchResult) -> list[str]:
    met = "met" if result.actions_per_second >= TARGET_ACTIONS_PER_SECOND else "NOT met"
    notes = [
        f"target >= {TARGET_ACTIONS_PER_SECOND} gated actions/s with {result.agents} agents: {met}",
        "one action = propose (verify, authorize, mint) + execute (token spent, tool run), "
        f"{ENTRIES_PER_ACTION} durable log entries; a session opened every "
        f"{ACTIONS_PER_SESSION} actions",
        f"after SIGTERM: clean exit {result.clean_shutdown}, log of {result.log_entries} "
        f"entries verified {result.log_verified}",
        f"CPU cores on this machine: {os.cpu_count()}; server and clients share them",
    ]
    if result.stopped_by_time_limit:
        notes.append("stopped by the time limit before all actions ran")
    return notes


def render_table(result: ServeBenchResult) -> Table:
    table = Table(title="bench serve: loopback HTTP, 1 uvicorn worker, SQLite (latency in ms)")
    for column in ("agents", "actions", "failed", "wall s", "act/s", "p50", "p90", "p99", "max"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_row(
        str(result.agents),
        str(result.actions),
        str(result.failed),
        f"{result.seconds:.1f}",
        f"{result.actions_per_second:.0f}",
        f"{result.p50_ms:.1f}",
        f"{result.p90_ms:.1f}",
        f"{result.p99_ms:.1f}",
        f"{result.max_ms:.1f}",
    )
    return table


def dump_json(result: ServeBenchResult) -> str:
    payload: dict[str, Any] = asdict(result)
    return json.dumps(payload, indent=2)
