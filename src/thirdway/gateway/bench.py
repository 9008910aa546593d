"""``thirdway bench gate``: the whole gated path per action, with 1 and 8 concurrent agents.

One action is what an agent does for one protected call, all of it through a real
:class:`~thirdway.gateway.Gatekeeper` over durable SQLite (``synchronous=FULL``: the proposal's
append is fsynced before it returns; the tool result, the spend and the execution record, in
the same database, are committed at once and reach the disk with the next fsync, see
:mod:`thirdway.gateway.restart`):

1. a tool result passes the gateway and is recorded (``record_tool_result``: call + data);
2. the agent proposes paying the bill it shows (``propose``: parse, verify, authorize, mint;
   proposal, verdict, decision and capability written in one batch);
3. it executes the call with its token (``execute``: token verified and spent, tool run; call,
   result and execution record written in one batch).

Each agent is a thread working through sessions of :data:`ACTIONS_PER_SESSION` actions (opening
a session, once per task, and closing it after, are not timed). Closing matters: a session's
record stays in memory while it is open, and a benchmark that left every session open grew the
process's live set by every action's observations, which the garbage collector then walked
(3 ms every ~120 actions, 80 ms every ~1200). The gatekeeper reports the time of every stage to a
per-thread :class:`StageClock`, so the breakdown adds up to the measured latency: log appends
(building entries, hashing, the durable commit), the verifier, the Cedar decision, minting,
token verification + spend (a commit in the log's database), the tool itself, and the rest (input
validation, locks, Python). With 8 agents, stage times include waiting for the locks that
serialise log appends and each session's steps.

The latency table also gives the process's CPU time per action ("CPU ms/a", every thread,
session openings included): beside the mean latency it shows how much of an action is
computation and how much waiting (fsyncs, locks).

The process is set up as ``thirdway serve`` sets up its own: the garbage collector is tuned
(:mod:`thirdway.gateway.collector`; ``tune_gc=False`` keeps CPython's defaults, for comparison).
Each run starts after a warm-up of :data:`WARMUP_ACTIONS` actions: besides warming caches, it
takes the log past its first write-ahead-log cycle. Until SQLite's first checkpoint (about 1000
pages, some 80 actions) every commit makes the WAL file longer, and an fsync that extends a
file costs more than one that overwrites (here 0.46 against 0.27 ms at p50, 2.3 against 0.9
ms at p99); a gateway pays that once after it starts, and the benchmark measures the steady
state after it.

Disk floors are measured in the same folder (one small durable log append, one spend), because
on most machines fsync is the largest cost and varies more than anything thirdway does. When
:mod:`thirdway.enclave.bench` is available, the enclave round trip is compared with the
in-process verifier, and one more run puts the enclave in the gatekeeper's path.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.table import Table

from thirdway.capability import SQLiteSpentSet
from thirdway.errors import InputError
from thirdway.gateway import banking
from thirdway.gateway.collector import tuned_collector
from thirdway.gateway.gatekeeper import Gatekeeper
from thirdway.gateway.hooks import FixedTier
from thirdway.gateway.outcomes import Granted
from thirdway.gateway.verifiers import Verifier
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.models import LogEntry

ACTIONS_PER_SESSION: Final = 4
"""A task of a few actions per session: the record each proposal is verified against stays the
size of a real task's, rather than growing with the benchmark."""
STAGES: Final = ("log", "verify", "authorize", "mint", "token", "tool", "other")
STAGE_LABELS: Final = {
    "log": "log appends (3 batches, 1 fsynced)",
    "verify": "verify (reasoning chain)",
    "authorize": "authorize (Cedar)",
    "mint": "mint (Biscuit)",
    "token": "token verify + spend",
    "tool": "tool",
    "other": "other (parsing, validation, locks)",
}
TARGET_P99_MS: Final = 3.0
WARMUP_ACTIONS: Final = 120
"""Enough for the log's first WAL cycle (see the module docstring) and the caches."""
MAX_ACTIONS: Final = 100_000
READ_CALL: Final = {"tool": "read_file", "args": {"file_path": banking.BILL_FILE}}


@dataclass(frozen=True)
class BenchConfig:
    """What to run. ``actions`` is per scenario (shared out among its agents)."""

    actions: int = 1000
    agents: tuple[int, ...] = (1, 8)
    warmup: int = WARMUP_ACTIONS
    folder: Path | None = None
    enclave: bool = True
    enclave_n: int = 200
    floor_n: int = 200
    tune_gc: bool = True

    @classmethod
    def quick(cls, actions: int | None = None, **changes: Any) -> BenchConfig:
        return cls(
            actions=200 if actions is None else actions,
            warmup=16,
            enclave_n=50,
            floor_n=100,
            **changes,
        )

    def __post_init__(self) -> None:
        if not 1 <= self.actions <= MAX_ACTIONS:
            raise InputError(f"--actions must be between 1 and {MAX_ACTIONS}, got {self.actions}")
        if not self.agents or any(not 1 <= n <= 64 for n in self.agents):
            raise InputError("agent counts must be between 1 and 64")
        if self.folder is not None and not self.folder.is_dir():
            raise InputError(f"--dir {self.folder} is not a directory")


@dataclass
class Scenario:
    """One run: per-action latencies and per-action stage times (milliseconds)."""

    name: str
    agents: int
    verifier: str
    latencies_ms: list[float] = field(default_factory=list)
    stages_ms: dict[str, list[float]] = field(default_factory=dict)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    """CPU time of the whole process (every thread) during the timed run."""

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_ms_per_action(self) -> float:
        return 1000 * self.cpu_s / len(self.latencies_ms) if self.latencies_ms else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "agents": self.agents,
            "verifier": self.verifier,
            "actions": len(self.latencies_ms),
            "p50_ms": percentile(self.latencies_ms, 50),
            "p99_ms": percentile(self.latencies_ms, 99),
            "mean_ms": _mean(self.latencies_ms),
            "max_ms": max(self.latencies_ms),
            "throughput_per_s": self.throughput,
            "cpu_ms_per_action": self.cpu_ms_per_action,
            "stages_mean_ms": {s: _mean(v) for s, v in self.stages_ms.items()},
            "stages_p50_ms": {s: percentile(v, 50) for s, v in self.stages_ms.items()},
            "stages_p99_ms": {s: percentile(v, 99) for s, v in self.stages_ms.items()},
        }


@dataclass
class BenchResult:
    config: BenchConfig
    scenarios: list[Scenario]
    floors: dict[str, dict[str, float]]
    enclave: dict[str, Any] | None
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        config = asdict(self.config)
        config["folder"] = str(self.config.folder) if self.config.folder else None
        return {
            "config": config,
            "machine": _machine(),
            "scenarios": [scenario.summary() for scenario in self.scenarios],
            "disk_floors_ms": self.floors,
            "enclave_round_trip": self.enclave,
            "notes": self.notes,
        }


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _mean(samples: Sequence[float]) -> float:
    return sum(samples) / len(samples) if samples else 0.0


class StageClock:
    """A :class:`~thirdway.gateway.hooks.StageTimer` that keeps each thread's stage times apart,
    so that concurrent agents' actions are broken down separately."""

    def __init__(self) -> None:
        self._local = threading.local()

    def add(self, stage: str, nanoseconds: int) -> None:
        times: Counter[str] | None = getattr(self._local, "times", None)
        if times is None:
            times = self._local.times = Counter()
        times[stage] += nanoseconds

    def take(self) -> Counter[str]:
        """This thread's stage times since the last call, and start again."""
        times: Counter[str] = getattr(self._local, "times", None) or Counter()
        self._local.times = Counter()
        return times


# --------------------------------------------------------------------------- running


@contextmanager
def _gatekeeper(
    config: BenchConfig, clock: StageClock, verifier: Verifier | None = None
) -> Iterator[tuple[Gatekeeper, banking.Bank]]:
    bank = banking.Bank(balance=1e12)
    with tempfile.TemporaryDirectory(prefix="thirdway-bench-gate-", dir=config.folder) as folder:
        options: dict[str, Any] = {"verifier": verifier} if verifier is not None else {}
        gate = Gatekeeper.open(
            folder,
            tools=bank.registry(),
            manifests=banking.manifests(),
            tiers=FixedTier(3),
            timer=clock,
            **options,
        )
        with gate:
            yield gate, bank


def _agent_actions(
    gate: Gatekeeper, clock: StageClock, name: str, count: int, scenario: Scenario | None
) -> None:
    """``count`` actions by one agent; record them in ``scenario`` (None: warm-up)."""
    bill = banking.bill_text()
    sid = ""
    for number in range(count):
        if number % ACTIONS_PER_SESSION == 0:
            if sid:
                gate.close_session(sid)
            sid = gate.open_session(name, banking.INSTRUCTION)
        expected = 2 + 4 * (number % ACTIONS_PER_SESSION)  # principal, then 4 per action
        proposal = banking.payment_proposal(sid, expected)
        clock.take()
        started = time.perf_counter_ns()
        _, bill_index = gate.record_tool_result(sid, READ_CALL, bill)
        outcome = gate.propose(sid, proposal)
        if not isinstance(outcome, Granted):
            raise RuntimeError(f"benchmark action not granted: {outcome.outcome}")
        executed = gate.execute(sid, outcome.token, proposal["action"])
        elapsed = time.perf_counter_ns() - started
        stages = clock.take()
        if bill_index != expected or not executed.ok:
            raise RuntimeError("benchmark session went off script")
        if scenario is not None:
            _record(scenario, elapsed, stages)


def _record(scenario: Scenario, elapsed_ns: int, stages: Counter[str]) -> None:
    accounted = sum(stages.values())
    stages["other"] = max(0, elapsed_ns - accounted)
    with _RECORD_LOCK:
        scenario.latencies_ms.append(elapsed_ns / 1e6)
        for stage in STAGES:
            scenario.stages_ms.setdefault(stage, []).append(stages.get(stage, 0) / 1e6)


_RECORD_LOCK = threading.Lock()


def run_scenario(
    config: BenchConfig, agents: int, verifier: Verifier | None = None, label: str = ""
) -> Scenario:
    """``config.actions`` actions shared among ``agents`` threads, after a warm-up."""
    clock = StageClock()
    name = label or f"{agents} agent{'s' if agents > 1 else ''}"
    with _gatekeeper(config, clock, verifier) as (gate, _bank):
        scenario = Scenario(name=name, agents=agents, verifier=gate.verifier.name)
        _run_threads(gate, clock, agents, max(agents, config.warmup), None)
        with tuned_collector() if config.tune_gc else nullcontext():
            started, cpu = time.perf_counter(), time.process_time()
            _run_threads(gate, clock, agents, config.actions, scenario)
            scenario.wall_s = time.perf_counter() - started
            scenario.cpu_s = time.process_time() - cpu
        if not gate.log.verify().ok:
            raise RuntimeError("the benchmark's log does not verify")
    return scenario


def _run_threads(
    gate: Gatekeeper, clock: StageClock, agents: int, actions: int, scenario: Scenario | None
) -> None:
    shares = [actions // agents + (1 if n < actions % agents else 0) for n in range(agents)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(agents)

    def work(n: int) -> None:
        try:
            barrier.wait()
            _agent_actions(gate, clock, f"agent-{n}", shares[n], scenario)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(agents)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def measure_floors(config: BenchConfig) -> dict[str, dict[str, float]]:
    """One small durable log append, and one spend as the gatekeeper makes it (in the log's
    database, synced by the log's next commit), in the benchmark's folder."""
    entry = canonical_json(LogEntry(type="note", payload={"floor": "x" * 64}))
    with tempfile.TemporaryDirectory(prefix="thirdway-bench-floor-", dir=config.folder) as folder:
        path = Path(folder) / "floor.db"
        with TransparencyLog.open(path) as log:
            appends = _timed(lambda _: log.append(entry), config.floor_n)
            spent = SQLiteSpentSet(path, durable=False)
            try:
                nonces = [os.urandom(16).hex() for _ in range(config.floor_n + 10)]
                spends = _timed(lambda i: spent.spend(nonces[i], 2**40, 1.0), config.floor_n)
            finally:
                spent.close()
    return {"log append (1 entry)": _stats(appends), "spent-set spend": _stats(spends)}


def _timed(step: Callable[[int], object], n: int) -> list[float]:
    for i in range(min(10, n)):
        step(n + i % 10)  # warm-up on indices the timed loop does not use
    samples = []
    for i in range(n):
        started = time.perf_counter_ns()
        step(i)
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return samples


def _stats(samples: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples, 50),
        "p99_ms": percentile(samples, 99),
        "mean_ms": _mean(samples),
    }


def enclave_available() -> bool:
    try:
        from thirdway.enclave import bench as enclave_bench
    except ImportError:
        return False
    return hasattr(enclave_bench, "measure_round_trip")


def run_bench(config: BenchConfig) -> BenchResult:
    """Every scenario of ``config``, the disk floors and (when possible) the enclave."""
    notes: list[str] = [
        f"warm-up: {config.warmup} actions per run, not timed; garbage collector: "
        + ("tuned as `thirdway serve` tunes it" if config.tune_gc else "CPython's defaults")
    ]
    floors = measure_floors(config)
    scenarios = [run_scenario(config, agents) for agents in config.agents]
    enclave: dict[str, Any] | None = None
    if config.enclave and enclave_available():
        from thirdway.enclave.bench import measure_round_trip
        from thirdway.enclave.client import EnclaveClient
        from thirdway.gateway.verifiers import EnclaveVerifier

        enclave = measure_round_trip(config.enclave_n)
        with EnclaveClient(banking.manifests()) as client:
            scenarios.append(
                run_scenario(config, 1, EnclaveVerifier(client), label="1 agent, enclave verifier")
            )
    elif config.enclave:
        notes.append("thirdway.enclave.bench is not available: no enclave comparison")
    single = next((s for s in scenarios if s.agents == 1 and s.verifier == "thirdway.verify"), None)
    if single is not None:
        p99 = percentile(single.latencies_ms, 99)
        verdict = "met" if p99 <= TARGET_P99_MS else "NOT met"
        notes.append(
            f"target p99 <= {TARGET_P99_MS:g} ms for one agent: {verdict} ({p99:.2f} ms); "
            f"one durable log append here takes "
            f"{floors['log append (1 entry)']['p50_ms']:.2f} ms (p50), a spend "
            f"{floors['spent-set spend']['p50_ms']:.2f} ms, and an action needs 1 durable "
            "append, 2 committed without their own fsync and 1 spend"
        )
    return BenchResult(config, scenarios, floors, enclave, notes)


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def dump_json(result: BenchResult) -> str:
    return json.dumps(result.to_json(), indent=2, sort_keys=True)


# --------------------------------------------------------------------------- tables


def render_tables(result: BenchResult) -> list[Table]:
    """The latency table, the per-stage breakdown, the disk floors and the enclave comparison."""
    tables = [_latency_table(result), _stage_table(result), _floor_table(result)]
    if result.enclave is not None:
        tables.append(_enclave_table(result.enclave))
    return tables


_LATENCY_COLUMNS: Final = (
    "agents", "verifier", "actions", "p50 ms", "p99 ms", "max ms", "mean ms", "CPU ms/a",
    "actions/s",
)  # fmt: skip


def _latency_table(result: BenchResult) -> Table:
    table = Table(
        title="thirdway bench gate: one action (observe → propose → verify → authorize → mint → "
        "execute → log), durable SQLite",
        title_justify="left",
    )
    for column in _LATENCY_COLUMNS:
        table.add_column(column, justify="left" if column == "verifier" else "right")
    for scenario in result.scenarios:
        s = scenario.summary()
        table.add_row(
            str(s["agents"]),
            s["verifier"],
            str(s["actions"]),
            f"{s['p50_ms']:.2f}",
            f"{s['p99_ms']:.2f}",
            f"{s['max_ms']:.1f}",
            f"{s['mean_ms']:.2f}",
            f"{s['cpu_ms_per_action']:.2f}",
            f"{s['throughput_per_s']:.0f}",
        )
    return table


def _stage_table(result: BenchResult) -> Table:
    table = Table(
        title="where the time goes (ms per action: mean, and share)", title_justify="left"
    )
    table.add_column("stage")
    for scenario in result.scenarios:
        table.add_column(scenario.name, justify="right")
    for stage in STAGES:
        cells = []
        for scenario in result.scenarios:
            mean = _mean(scenario.stages_ms.get(stage, []))
            total = _mean(scenario.latencies_ms)
            share = 100 * mean / total if total else 0.0
            cells.append(f"{mean:.3f} ({share:.0f}%)")
        table.add_row(STAGE_LABELS[stage], *cells)
    table.add_row(
        "total", *(f"{_mean(s.latencies_ms):.3f} (100%)" for s in result.scenarios), style="bold"
    )
    return table


def _floor_table(result: BenchResult) -> Table:
    table = Table(title="disk floors in the same folder (ms)", title_justify="left")
    for column in ("operation", "p50 ms", "p99 ms", "mean ms"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    for name, stats in result.floors.items():
        table.add_row(
            name, f"{stats['p50_ms']:.3f}", f"{stats['p99_ms']:.3f}", f"{stats['mean_ms']:.3f}"
        )
    return table


def _enclave_table(enclave: dict[str, Any]) -> Table:
    table = Table(
        title=f"verifier: enclave round trip vs in-process (n={enclave['n']}, "
        f"platform={enclave['platform']}, start {enclave['enclave_start_ms']:.0f} ms once)",
        title_justify="left",
    )
    for column in ("path", "p50 ms", "p99 ms", "mean ms"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, key in (("in-process verify", "in_process"), ("enclave round trip", "enclave")):
        stats = enclave[key]
        table.add_row(
            name, f"{stats['p50_ms']:.3f}", f"{stats['p99_ms']:.3f}", f"{stats['mean_ms']:.3f}"
        )
    table.add_row("ratio (enclave / in-process)", f"{enclave['ratio_p50']:.2f}",
                  f"{enclave['ratio_p99']:.2f}", "")  # fmt: skip
    return table
