"""``thirdway bench serve``: gated actions per second and latency over loopback HTTP.

Each run starts ``thirdway serve`` in a subprocess (uvicorn, the service's defaults: durable log
appends and spends) with a given number of worker processes over a given storage: SQLite in a
temporary folder (one worker, or several sharing it) or a PostgreSQL database (any number of
workers). The bench makes a fresh database for each PostgreSQL run and drops it afterwards,
unless the URL it was given names a database, which is then used as it is. With PostgreSQL one
SQLite single-worker run comes first, as the reference the PostgreSQL rows are read against.

The load: ``agents`` concurrent agents, each with its own API key and one keep-alive HTTP/1.1
connection, open a session and run gated actions in it: a proposal (parsed, verified,
authorized, a capability minted, four log entries) and the execution of the hosted tool with
that token (the token checked and spent, the tool run, three log entries). With ``--flow
two-call`` an action is two requests (``/proposals``, then ``/executions`` with the token); with
``one-call`` one request to ``/actions``, which does both in the server (the same seven
entries); ``both`` (the default) runs each storage and worker count once per flow. One action's
latency is its requests together. A new session every four actions. The client is a small asyncio
HTTP/1.1 client (not httpx): on two cores the load generator's CPU is taken from the server, and
a general client spends more on itself than the gateway spends on a request. It still sends
real requests over a real socket and checks every answer: a grant must carry a token and an
execution must report ``ok``.

Each run stops at ``actions`` or at ``time_limit`` seconds, whichever comes first; then the
server is stopped with SIGTERM and the log is reopened and verified, to show that the graceful
shutdown lost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich import box
from rich.table import Table

from thirdway.errors import InputError
from thirdway.gateway import banking
from thirdway.service.config import ServiceConfig, is_postgres_db

TARGET_ACTIONS_PER_SECOND = 500
ACTIONS_PER_SESSION = 4
ENTRIES_PER_ACTION = 7
MAX_ACTIONS = 1_000_000
MAX_AGENTS = 1024
MAX_WORKERS = 64
FLOWS = ("two-call", "one-call")
"""How an action is sent: a proposal then an execution, or one ``/actions`` request."""
ANSWER_GRACE_S = 30.0
"""How long after the time limit the answers in flight may take before the run is abandoned."""


@dataclass(frozen=True)
class ServeBenchConfig:
    actions: int = 3000
    agents: int = 32
    workers: tuple[int, ...] = (1,)
    db: str = "sqlite"
    folder: Path | None = None
    time_limit: float = 120.0
    flows: tuple[str, ...] = FLOWS

    @classmethod
    def build(
        cls,
        *,
        quick: bool = False,
        actions: int | None = None,
        agents: int = 32,
        workers: str | Sequence[int] = "1,2",
        db: str = "sqlite",
        folder: Path | None = None,
        time_limit: float = 120.0,
        flow: str = "both",
    ) -> ServeBenchConfig:
        count = actions if actions is not None else (400 if quick else 3000)
        if not 1 <= count <= MAX_ACTIONS:
            raise InputError(f"--actions must be from 1 to {MAX_ACTIONS}")
        if not 1 <= agents <= MAX_AGENTS:
            raise InputError(f"--agents must be from 1 to {MAX_AGENTS}")
        if not (math.isfinite(time_limit) and 1 <= time_limit <= 3600):
            raise InputError("--time-limit must be from 1 to 3600 seconds")
        flows = parse_flow(flow)
        counts = parse_workers(workers)
        for n in counts:
            ServiceConfig(db=db, workers=n).check_supported()
        return cls(count, agents, counts, db, folder, time_limit, flows)

    def runs(self) -> list[tuple[str, int, str]]:
        """(storage, workers, flow) of every run: each worker count on SQLite, or, when ``db``
        is PostgreSQL, SQLite with one worker first, then each worker count on PostgreSQL; each
        once per flow, in turn."""
        if not is_postgres_db(self.db):
            places = [("sqlite", n) for n in self.workers]
        else:
            places = [("sqlite", 1)] + [(self.db, n) for n in self.workers]
        return [(storage, n, flow) for storage, n in places for flow in self.flows]


def parse_flow(flow: str) -> tuple[str, ...]:
    """``two-call``, ``one-call`` or ``both`` as the flows to run."""
    if flow == "both":
        return FLOWS
    if flow in FLOWS:
        return (flow,)
    raise InputError(f"--flow must be two-call, one-call or both; got {flow[:40]!r}")


def parse_workers(workers: str | Sequence[int]) -> tuple[int, ...]:
    """``"1,2,4"`` (or a sequence) as distinct worker counts in the order given."""
    if isinstance(workers, str):
        try:
            values = [int(part) for part in workers.split(",") if part.strip()]
        except ValueError:
            raise InputError(
                f"--workers must be worker counts separated by commas, like 1,2,4; "
                f"got {workers[:40]!r}"
            ) from None
    else:
        values = list(workers)
    if not values or any(not 1 <= n <= MAX_WORKERS for n in values):
        raise InputError(f"--workers must be counts from 1 to {MAX_WORKERS}, like 1,2,4")
    return tuple(dict.fromkeys(values))


@dataclass
class ServeBenchResult:
    storage: str
    workers: int
    flow: str
    """``two-call`` (proposal, then execution) or ``one-call`` (``/actions``)."""
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
    server_cpu_seconds: float
    """CPU time of the server's processes (all workers) during the run, from /proc."""
    client_cpu_seconds: float
    """CPU time of the load generator (this process) during the run."""

    @property
    def server_cpu_ms_per_action(self) -> float:
        return self.server_cpu_seconds * 1000 / self.actions if self.actions else 0.0


@dataclass
class ServeBenchReport:
    results: list[ServeBenchResult]
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


# --- PostgreSQL databases -----------------------------------------------------------------


def names_database(url: str) -> bool:
    """Whether a PostgreSQL URL names a database (``postgresql:///`` or one ending in ``/``
    does not: the bench then makes its own)."""
    from sqlalchemy.engine import make_url

    try:
        return bool(make_url(url).database)
    except Exception:
        raise InputError("--db is not a valid PostgreSQL URL") from None


@contextlib.contextmanager
def bench_database(url: str) -> Iterator[str]:
    """The URL to run against: ``url`` itself when it names a database, else a new database
    ``thirdway_bench_<random>`` on that server, dropped afterwards."""
    if names_database(url):
        yield url
        return
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(url).set(drivername="postgresql")
    admin = base.set(database="postgres").render_as_string(hide_password=False)
    name = "thirdway_bench_" + secrets.token_hex(6)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        shown = base.render_as_string(hide_password=True)
        raise InputError(f"cannot create a bench database on {shown}: {message}") from None
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the server -----------------------------------------------------------------------------


def _make_keys(config: ServiceConfig, agents: int) -> list[str]:
    from thirdway.service.state import open_keys

    keys = open_keys(config)
    try:
        tag = secrets.token_hex(3)  # a database given by URL may hold earlier runs' agents
        return [keys.create(f"bench-{tag}-agent-{n}", "agent") for n in range(agents)]
    finally:
        keys.close()


def _start_server(config: ServiceConfig, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "THIRDWAY_LOG_LEVEL": "warning",
        "THIRDWAY_CONSOLE": "false",
        "THIRDWAY_DB": config.db,  # not on the command line, where ps shows a password
    }
    command = [
        sys.executable, "-c", "from thirdway.cli.main import main; main()", "serve",
        "--data-dir", str(config.data_dir), "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(config.workers),
    ]  # fmt: skip
    stderr = (config.data_dir / "server.log").open("wb")
    return subprocess.Popen(command, env=env, stdout=stderr, stderr=stderr)


def _wait_ready(port: int, workers: int, server: subprocess.Popen[bytes], folder: Path) -> None:
    """Until ``/v1/health`` has been answered by ``workers`` distinct worker processes (each
    probe on a new connection): a worker still importing would take CPU from the run."""
    deadline = time.monotonic() + 90
    seen: set[int] = set()
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = (folder / "server.log").read_text(errors="replace")[-2000:]
            raise InputError(f"the server exited with {server.returncode}: {tail}")
        with contextlib.suppress(OSError, ValueError, BenchError):
            seen.add(_health_worker(port))
            if len(seen) >= workers:
                return
            continue
        time.sleep(0.1)
    raise InputError(
        f"the server's {workers} workers did not all answer /v1/health within 90 s "
        f"({len(seen)} did)"
    )


def _health_worker(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise BenchError("not ready")
    worker = orjson.loads(body).get("worker")
    if not isinstance(worker, int):
        raise BenchError("the server does not say which worker answered")
    return worker


def _process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live children (Linux /proc; 0 elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            pids.extend(int(child) for child in children)
    for one in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _stop(server: subprocess.Popen[bytes]) -> bool:
    """SIGTERM, as a service manager would; True when the server exited cleanly in time."""
    if server.poll() is not None:
        return server.returncode in (0, -signal.SIGTERM)
    server.send_signal(signal.SIGTERM)
    try:
        # uvicorn re-raises the signal after its graceful shutdown
        return server.wait(timeout=60) in (0, -signal.SIGTERM)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        return False


def _verify_log(config: ServiceConfig) -> tuple[int, bool]:
    if config.postgres:
        from thirdway.gateway.gatekeeper import LOG_KEY_NAME
        from thirdway.ledger.open import open_log

        with open_log(config.db, key_path=config.data_dir / LOG_KEY_NAME, create=False) as log:
            return log.size(), log.verify().ok
    from thirdway.ledger.log import TransparencyLog

    with TransparencyLog.open(config.data_dir / "log.db", create=False) as log:
        return log.size(), log.verify().ok


# --- the load -------------------------------------------------------------------------------


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

    @property
    def open(self) -> bool:
        return self.left > 0 and not self.timed_out


class BenchError(Exception):
    """An answer the bench did not expect (a status, a body): the run stops and says so."""


class HttpConnection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads JSON answers with a
    ``Content-Length`` (what the service sends). Small on purpose: see the module docstring."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host = host
        self.port = port
        self._head = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> HttpConnection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    async def post(self, path: str, body: bytes) -> tuple[int, Any]:
        """POST one JSON body and read the answer: (status, parsed JSON body)."""
        return await self.send(b"POST", path, body)

    async def delete(self, path: str) -> tuple[int, Any]:
        return await self.send(b"DELETE", path, b"")

    async def send(self, method: bytes, path: str, body: bytes) -> tuple[int, Any]:
        """Send one request and read its answer: (status, parsed JSON body)."""
        assert self._reader is not None and self._writer is not None
        self._writer.write(
            method + b" " + path.encode() + b" HTTP/1.1\r\n" + self._head
            + str(len(body)).encode() + b"\r\n\r\n" + body
        )  # fmt: skip
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = _content_length(head)
        payload = await self._reader.readexactly(length)
        return status, orjson.loads(payload) if payload else None


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            return int(value.strip())
        if lowered == b"transfer-encoding":
            raise BenchError("the server sent a chunked answer; the bench reads Content-Length")
    raise BenchError("the server's answer has no Content-Length")


def _expect(status: int, body: Any, want: int, what: str) -> dict[str, Any]:
    if status != want or not isinstance(body, dict):
        raise BenchError(f"{what}: HTTP {status}: {str(body)[:300]}")
    return body


async def _agent(
    port: int, key: str, budget: _Budget, latencies: list[float], flow: str = "two-call"
) -> int:
    """One agent's loop on one connection; returns how many actions were refused."""
    failed = 0
    opening = orjson.dumps({"instruction": banking.INSTRUCTION})
    async with HttpConnection("127.0.0.1", port, key) as http:
        while budget.open:
            status, body = await http.post("/v1/sessions", opening)
            sid = _expect(status, body, 201, "open session")["session"]
            proposal = banking.read_proposal(sid)
            proposal_body = orjson.dumps(proposal)
            base = f"/v1/sessions/{sid}"
            for _ in range(ACTIONS_PER_SESSION):
                if not budget.take():
                    break
                started = time.perf_counter()
                if flow == "one-call":
                    status, acted = await http.post(base + "/actions", proposal_body)
                    acted = _expect(status, acted, 200, "action")
                    latencies.append((time.perf_counter() - started) * 1000)
                    granted = (acted.get("outcome") or {}).get("outcome") == "granted"
                    if not granted or (acted.get("executed") or {}).get("ok") is not True:
                        failed += 1
                    continue
                status, outcome = await http.post(base + "/proposals", proposal_body)
                outcome = _expect(status, outcome, 200, "proposal")
                if outcome.get("outcome") != "granted" or not outcome.get("token"):
                    failed += 1
                    continue
                execution = orjson.dumps({"token": outcome["token"], "call": proposal["action"]})
                status, done = await http.post(base + "/executions", execution)
                done = _expect(status, done, 200, "execution")
                latencies.append((time.perf_counter() - started) * 1000)
                if done.get("ok") is not True:
                    failed += 1
            status, body = await http.delete(base)  # the task is done (not timed)
            _expect(status, body, 200, "close session")
    return failed


async def _drive(
    port: int, keys: list[str], actions: int, time_limit: float, flow: str = "two-call"
) -> tuple[list[float], int, float, bool]:
    """Run the agents; bounded even when the server stops answering: the budget stops handing
    out actions at ``time_limit``, and the agents are cancelled ``ANSWER_GRACE_S`` later."""
    budget = _Budget(actions, time.monotonic() + time_limit)
    latencies: list[float] = []
    started = time.perf_counter()
    agents = asyncio.gather(*(_agent(port, key, budget, latencies, flow) for key in keys))
    try:
        failures = await asyncio.wait_for(agents, timeout=time_limit + ANSWER_GRACE_S)
    except TimeoutError:
        raise BenchError(
            f"the server did not answer within {time_limit + ANSWER_GRACE_S:.0f} s"
        ) from None
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise BenchError(f"the connection to the server failed: {exc}") from None
    return latencies, sum(failures), time.perf_counter() - started, budget.timed_out


def _event_loop_run(coro: Any) -> Any:
    """``asyncio.run`` on uvloop when it is installed (less of the client's CPU per request)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_one(
    config: ServeBenchConfig, storage: str, workers: int, tmp: Path, flow: str = "two-call"
) -> ServeBenchResult:
    """One server, one load, SIGTERM, the log verified."""
    tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
    service = ServiceConfig(data_dir=tmp, db=storage, workers=workers, console=False)
    keys = _make_keys(service, config.agents)
    port = _free_port()
    server = _start_server(service, port)
    try:
        _wait_ready(port, workers, server, tmp)
        cpu_before = _process_tree_cpu(server.pid)
        client_before = time.process_time()
        latencies, failed, seconds, timed_out = _event_loop_run(
            _drive(port, keys, config.actions, config.time_limit, flow)
        )
        client_cpu = time.process_time() - client_before
        server_cpu = _process_tree_cpu(server.pid) - cpu_before
    except BenchError as exc:
        _stop(server)
        tail = (tmp / "server.log").read_text(errors="replace")[-1500:]
        where = "PostgreSQL" if service.postgres else "SQLite"
        raise InputError(
            f"the {flow} run on {where} with {workers} worker(s) failed: {exc}\n{tail}"
        ) from None
    finally:
        clean = _stop(server)
    size, verified = _verify_log(service)
    done = len(latencies)
    rate = done / seconds if seconds > 0 else 0.0
    return ServeBenchResult(
        storage="postgresql" if service.postgres else "sqlite",
        workers=workers,
        flow=flow,
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
        server_cpu_seconds=round(server_cpu, 2),
        client_cpu_seconds=round(client_cpu, 2),
    )


def run(config: ServeBenchConfig) -> ServeBenchReport:
    """Every run of ``config.runs()``, one after another. A PostgreSQL URL without a database
    gets a new database per run; a URL naming one is used by every run, with one key folder for
    all of them (the log there is signed with the key of the first run), so it should be a new,
    empty database."""
    results = []
    with tempfile.TemporaryDirectory(prefix="thirdway-bench-serve-", dir=config.folder) as tmp:
        shared = Path(tmp) / "shared-keys"
        for number, (storage, workers, flow) in enumerate(config.runs()):
            folder = Path(tmp) / f"run-{number}"
            if not is_postgres_db(storage):
                results.append(run_one(config, storage, workers, folder, flow))
            elif names_database(storage):
                results.append(run_one(config, storage, workers, shared, flow))
            else:
                with bench_database(storage) as url:
                    results.append(run_one(config, url, workers, folder, flow))
    return ServeBenchReport(results, _notes(results))


def _notes(results: list[ServeBenchResult]) -> list[str]:
    best = max(results, key=lambda r: r.actions_per_second, default=None)
    rate = best.actions_per_second if best else 0.0
    met = "met" if rate >= TARGET_ACTIONS_PER_SECOND else "NOT met"
    agents = results[0].agents if results else 0
    notes = [
        f"target >= {TARGET_ACTIONS_PER_SECOND} gated actions/s with {agents} agents: {met} "
        f"(best {rate:.0f}" + (f", {best.flow}" if best else "") + ")",
        "one action = propose (verify, authorize, mint) + execute (token spent, tool run), "
        f"{ENTRIES_PER_ACTION} durable log entries; flow 2-call: POST /proposals then POST "
        "/executions with the token; 1-call: one POST /actions doing both; each task is a "
        f"session of {ACTIONS_PER_SESSION} actions, opened and closed (DELETE) around them "
        "(counted in the server's CPU and the rate, not in the latencies); one keep-alive "
        "connection per agent",
        "after each run: SIGTERM, then the log reopened and verified ('log ok'; "
        + ", ".join(f"{r.log_entries} entries" for r in results)
        + ")",
        f"CPU cores on this machine: {os.cpu_count()}; server and load generator share them "
        "(columns 'srv cpu', 'cli cpu': CPU seconds each used during the run; 'ms/a': the "
        "server's CPU milliseconds per action)",
    ]
    if any(r.stopped_by_time_limit for r in results):
        notes.append("a run marked * was stopped by the time limit before all actions ran")
    if not all(r.clean_shutdown for r in results):
        notes.append("a run marked ! did not stop cleanly on SIGTERM (it was killed)")
    return notes


def render_table(report: ServeBenchReport) -> Table:
    """One row per run; fits 80 columns (the agents, the maximum latency and the counts of log
    entries are in the notes and the JSON)."""
    table = Table(
        title="bench serve: loopback HTTP, durable (latency ms, CPU s)",
        box=box.SIMPLE_HEAD,
        padding=0,
        show_edge=False,
    )
    columns = (
        "db", "wk", "flow", "actions", "fail", "act/s", "p50", "p99", "srv cpu", "ms/a",
        "cli cpu", "log ok",
    )  # fmt: skip
    for column in columns:
        left = column in ("db", "flow")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for r in report.results:
        table.add_row(
            "pg" if r.storage == "postgresql" else r.storage,
            str(r.workers),
            "1-call" if r.flow == "one-call" else "2-call",
            str(r.actions) + ("*" if r.stopped_by_time_limit else ""),
            str(r.failed),
            f"{r.actions_per_second:.0f}",
            f"{r.p50_ms:.0f}",
            f"{r.p99_ms:.0f}",
            f"{r.server_cpu_seconds:.1f}",
            f"{r.server_cpu_ms_per_action:.1f}",
            f"{r.client_cpu_seconds:.1f}",
            ("yes" if r.log_verified else "NO") + ("" if r.clean_shutdown else "!"),
        )
    return table


def dump_json(report: ServeBenchReport) -> str:
    payload: dict[str, Any] = {
        "results": [
            {**asdict(r), "server_cpu_ms_per_action": round(r.server_cpu_ms_per_action, 2)}
            for r in report.results
        ],
        "notes": report.notes,
    }
    return json.dumps(payload, indent=2)
