"""``thirdway bench log``: the transparency log against pymerkle's SQLite tree, same run, same data.

For each tree size and each implementation, one fresh interpreter creates the empty store in a
temporary folder (for thirdway that includes generating the log's Ed25519 signing key, which
pymerkle has no counterpart of); a second fresh worker interpreter opens it, builds the tree with
durable batched appends (256 entries per committed transaction), then measures inclusion and
consistency proofs (generation and verification) at random positions drawn from one seeded
generator (with the cyclic garbage collector paused, as ``timeit`` does), and finally single
durable appends (one committed transaction each). The full run repeats this three times,
alternating which implementation goes first, pools the proof timings and takes the median of the
per-round throughput and memory figures.

Separate processes keep the two implementations' caches apart and make memory a per-implementation
number: the worker's lifetime peak resident set size (Linux ``VmHWM``; ``ru_maxrss`` elsewhere),
and the growth of its peak RSS from the moment the empty tree is open (``VmHWM`` reset through
``/proc/self/clear_refs``). Both workers do the same things: open an existing empty store, append,
prove, verify. Both import every module from bytecode, as an installed package does: the creating
process compiles what it imports into a private ``PYTHONPYCACHEPREFIX`` folder that the measuring
worker then reads. (Otherwise a source checkout whose ``__pycache__`` is stale, or a
``PYTHONDONTWRITEBYTECODE`` environment, makes the worker compile thirdway's modules, about 1 MiB
of peak RSS that pymerkle, installed with its bytecode, never pays.)

The creating process's peak is reported beside the table, not in it: creating a thirdway log makes
its signing key, and with it loads ``cryptography`` (OpenSSL, about 9 MiB), which a thirdway
process that opens a log, appends and proves never imports (only signing and verifying checkpoints
do), and which pymerkle, having no signed checkpoints, has no counterpart of.

Both trees hash the same entries with RFC 6962 (pymerkle's default "security" mode prefixes leaves
with 0x00 and nodes with 0x01, and its empty root is SHA-256 of nothing), so the run cross-checks
them: the roots and every sampled inclusion path must be identical, or the benchmark fails.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import platform
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.table import Table

from thirdway.errors import InputError, ThirdwayError

__all__ = [
    "FULL_SIZES",
    "QUICK_SIZES",
    "BenchConfig",
    "BenchResult",
    "Row",
    "parse_sizes",
    "render_table",
    "run_bench",
]

FULL_SIZES = (10_000, 100_000, 1_000_000)
#: Rounds of the full run: a shared machine's disk and scheduler make single runs noisy.
FULL_REPEAT = 3
QUICK_SIZES = (1_000, 10_000)
BATCH = 256
MAX_SIZE = 10_000_000
ORIGIN = "bench.thirdway.invalid/log"
IMPLEMENTATIONS = ("thirdway", "pymerkle")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure: tree sizes, samples per proof kind, single appends, where to put files."""

    sizes: tuple[int, ...] = FULL_SIZES
    samples: int = 1000
    single_appends: int = 1000
    pymerkle_max_size: int = MAX_SIZE
    seed: int = 6962
    tmpdir: str | None = None
    repeat: int = 1

    @classmethod
    def quick(cls, sizes: tuple[int, ...] | None = None) -> BenchConfig:
        """A configuration that finishes in well under 30 seconds on two cores."""
        return cls(sizes=sizes or QUICK_SIZES, samples=200, single_appends=100)


@dataclass(frozen=True)
class Row:
    """One metric at one tree size, for both implementations (pymerkle may be absent)."""

    size: int
    metric: str
    unit: str
    better: str  # "higher" or "lower"
    thirdway: float
    pymerkle: float | None

    @property
    def ratio(self) -> float | None:
        """thirdway / pymerkle, as measured (what "better" means depends on ``better``)."""
        if self.pymerkle is None or self.pymerkle == 0:
            return None
        return self.thirdway / self.pymerkle

    @property
    def ahead(self) -> bool | None:
        ratio = self.ratio
        if ratio is None:
            return None
        return ratio > 1 if self.better == "higher" else ratio < 1


@dataclass
class BenchResult:
    config: BenchConfig
    rows: list[Row]
    machine: dict[str, Any]
    roots: dict[int, dict[str, str]] = field(default_factory=dict)
    pymerkle_sizes: tuple[int, ...] = ()
    #: Peak RSS (MiB) of the process that created the empty store, per size and implementation.
    create_rss_mib: dict[int, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": "thirdway bench log",
            "config": asdict(self.config),
            "machine": self.machine,
            "pymerkle_sizes": list(self.pymerkle_sizes),
            "roots": {str(size): roots for size, roots in self.roots.items()},
            "create_peak_rss_mib": {
                str(size): peaks for size, peaks in self.create_rss_mib.items()
            },
            "seconds": round(self.seconds, 2),
            "rows": [
                {**asdict(row), "ratio": row.ratio, "thirdway_ahead": row.ahead}
                for row in self.rows
            ],
        }


def parse_sizes(text: str) -> tuple[int, ...]:
    """Parse ``10000,100000`` (underscores allowed) into tree sizes between 2 and 10^7."""
    sizes = []
    for part in text.split(","):
        cleaned = part.strip().replace("_", "")
        if not cleaned.isascii() or not cleaned.isdigit():
            raise InputError(f"--sizes: {part.strip()!r} is not a whole number")
        size = int(cleaned)
        if not 2 <= size <= MAX_SIZE:
            raise InputError(f"--sizes: {size} is outside 2 … {MAX_SIZE:,}")
        sizes.append(size)
    return tuple(dict.fromkeys(sizes))


def entry(index: int) -> bytes:
    """The benchmark's leaf data: 64 bytes, distinct per index, identical for both trees."""
    return (b"thirdway bench entry %d " % index).ljust(64, b".")


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported value was observed)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


# --- the two subjects --------------------------------------------------------------------------


class _Subject(Protocol):
    """What the measurement loop needs from a Merkle tree implementation (indices from 0)."""

    def append_batch(self, items: list[bytes]) -> None: ...
    def append(self, item: bytes) -> None: ...
    def root(self, size: int) -> bytes: ...
    def leaf_hash(self, data: bytes) -> bytes: ...
    def prove_inclusion(self, index: int, size: int) -> Any: ...
    def verify_inclusion(
        self, leaf: bytes, index: int, size: int, proof: Any, root: bytes
    ) -> None: ...
    def inclusion_path(self, proof: Any) -> list[bytes]: ...
    def prove_consistency(self, old: int, size: int) -> Any: ...
    def verify_consistency(
        self, old: int, size: int, proof: Any, old_root: bytes, root: bytes
    ) -> None: ...
    def close(self) -> None: ...


class _Thirdway:
    def __init__(self, folder: Path) -> None:
        from thirdway.ledger import merkle
        from thirdway.ledger.log import TransparencyLog

        self._merkle = merkle
        self._log = TransparencyLog.open(folder / "log.db", create=True, origin=ORIGIN)

    def append_batch(self, items: list[bytes]) -> None:
        self._log.append_batch(items)

    def append(self, item: bytes) -> None:
        self._log.append(item)

    def root(self, size: int) -> bytes:
        return self._log.root(size)

    def leaf_hash(self, data: bytes) -> bytes:
        return self._merkle.leaf_hash(data)

    def prove_inclusion(self, index: int, size: int) -> Any:
        return self._log.inclusion_proof(index, size)

    def verify_inclusion(self, leaf: bytes, index: int, size: int, proof: Any, root: bytes) -> None:
        self._merkle.verify_inclusion(leaf, index, size, proof, root)

    def inclusion_path(self, proof: Any) -> list[bytes]:
        return list(proof)

    def prove_consistency(self, old: int, size: int) -> Any:
        return self._log.consistency_proof(old, size)

    def verify_consistency(
        self, old: int, size: int, proof: Any, old_root: bytes, root: bytes
    ) -> None:
        self._merkle.verify_consistency(old, size, proof, old_root, root)

    def close(self) -> None:
        self._log.close()


class _Pymerkle:
    """pymerkle 7's ``SqliteTree`` with its defaults (RFC 6962 prefixes, subroot cache on).

    Its SQLite connection uses Python's defaults (rollback journal, ``synchronous=FULL``), and
    every ``append_entry`` / ``append_entries`` call is one committed transaction: durable.
    """

    def __init__(self, folder: Path) -> None:
        import pymerkle

        self._pymerkle = pymerkle
        self._tree = pymerkle.SqliteTree(str(folder / "pymerkle.db"), algorithm="sha256")

    def append_batch(self, items: list[bytes]) -> None:
        self._tree.append_entries(items)

    def append(self, item: bytes) -> None:
        self._tree.append_entry(item)

    def root(self, size: int) -> bytes:
        return bytes(self._tree.get_root(size))

    def leaf_hash(self, data: bytes) -> bytes:
        return bytes(self._tree.hash_buff(data))

    def prove_inclusion(self, index: int, size: int) -> Any:
        return self._tree.prove_inclusion(index + 1, size)

    def verify_inclusion(self, leaf: bytes, index: int, size: int, proof: Any, root: bytes) -> None:
        self._pymerkle.verify_inclusion(leaf, root, proof, index=index + 1, size=size)

    def inclusion_path(self, proof: Any) -> list[bytes]:
        return [bytes(node) for node in proof.path[1:]]  # path[0] is the leaf hash itself

    def prove_consistency(self, old: int, size: int) -> Any:
        return self._tree.prove_consistency(old, size)

    def verify_consistency(
        self, old: int, size: int, proof: Any, old_root: bytes, root: bytes
    ) -> None:
        self._pymerkle.verify_consistency(old_root, root, proof, prior_size=old, later_size=size)

    def close(self) -> None:
        self._tree.close()


_SUBJECTS: dict[str, Callable[[Path], _Subject]] = {"thirdway": _Thirdway, "pymerkle": _Pymerkle}


# --- one worker: one implementation at one size ------------------------------------------------


def _micros_since(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e3


def create(implementation: str, folder: Path) -> dict[str, Any]:
    """Create the empty store in ``folder`` and close it; runs inside its own fresh process."""
    _SUBJECTS[implementation](folder).close()
    return {"create_peak_rss_mib": _peak_rss_kib() / 1024}


def measure(
    implementation: str, size: int, config: BenchConfig, folder: Path, round_number: int = 0
) -> dict[str, Any]:
    """Open the empty store in ``folder``, build a tree of ``size`` entries in it and measure it;
    runs inside a fresh worker process.

    Both implementations of one round draw the same positions, so their proofs can be compared.
    """
    rng = random.Random(f"{config.seed}/{size}/{round_number}")
    indices = [rng.randrange(size) for _ in range(config.samples)]
    olds = [rng.randrange(1, size) for _ in range(config.samples)]
    subject = _SUBJECTS[implementation](folder)
    # Growth is counted from here (interpreter, imports and an open, empty tree), so fixed
    # start-up costs do not hide what the tree itself needs.
    start_peak = _peak_rss_kib()
    baseline = _start_peak_window()
    try:
        out = _measure_subject(subject, size, config, indices, olds)
    finally:
        subject.close()
    window_peak = _peak_rss_kib()
    out["peak_rss_mib"] = max(start_peak, window_peak) / 1024
    out["rss_growth_mib"] = max(0, window_peak - baseline) / 1024
    return out


def _proc_status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _start_peak_window() -> int:
    """Start measuring peak RSS from now; returns the current RSS (KiB).

    On Linux, writing 5 to ``/proc/self/clear_refs`` resets the high-water mark ``VmHWM`` to the
    current RSS, so the peak of the run is not hidden by an earlier, higher start-up peak.
    Elsewhere the lifetime peak (``ru_maxrss``) is the best available, and may understate growth.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    current = _proc_status_kib("VmRSS")
    return current if current is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_rss_kib() -> int:
    """This process's peak RSS (KiB) since it started or since :func:`_start_peak_window`.

    Linux ``VmHWM`` belongs to the process's own address space. ``ru_maxrss`` is only the
    fallback: on Linux it also carries the parent's size at ``fork`` across ``exec``, which would
    charge the benchmark's caller to both implementations.
    """
    peak = _proc_status_kib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _measure_subject(
    subject: _Subject, size: int, config: BenchConfig, indices: list[int], olds: list[int]
) -> dict[str, Any]:
    start = time.perf_counter()
    for first in range(0, size, BATCH):
        subject.append_batch([entry(i) for i in range(first, min(size, first + BATCH))])
    build_seconds = time.perf_counter() - start
    root = subject.root(size)

    leaves = [subject.leaf_hash(entry(i)) for i in indices]
    old_roots = {old: subject.root(old) for old in set(olds)}
    # As timeit does, keep the cyclic garbage collector out of the timed calls (both subjects).
    gc.collect()
    gc.disable()
    try:
        timings = _time_proofs(subject, size, root, indices, leaves, olds, old_roots)
    finally:
        gc.enable()

    start = time.perf_counter()
    for i in range(config.single_appends):
        subject.append(entry(size + i))
    single_seconds = time.perf_counter() - start

    return {
        "root": root.hex(),
        "old_roots": hashlib.sha256(b"".join(old_roots[m] for m in sorted(old_roots))).hexdigest(),
        "batched_per_s": size / build_seconds,
        "single_per_s": config.single_appends / single_seconds if config.single_appends else 0.0,
        **timings,
    }


def _time_proofs(
    subject: _Subject,
    size: int,
    root: bytes,
    indices: list[int],
    leaves: list[bytes],
    olds: list[int],
    old_roots: dict[int, bytes],
) -> dict[str, Any]:
    inclusion_gen, inclusion_verify = [], []
    paths = hashlib.sha256()
    for index, leaf in zip(indices, leaves, strict=True):
        start_ns = time.perf_counter_ns()
        proof = subject.prove_inclusion(index, size)
        inclusion_gen.append(_micros_since(start_ns))
        start_ns = time.perf_counter_ns()
        subject.verify_inclusion(leaf, index, size, proof, root)
        inclusion_verify.append(_micros_since(start_ns))
        for node in subject.inclusion_path(proof):
            paths.update(node)

    consistency_gen, consistency_verify = [], []
    for old in olds:
        start_ns = time.perf_counter_ns()
        proof = subject.prove_consistency(old, size)
        consistency_gen.append(_micros_since(start_ns))
        start_ns = time.perf_counter_ns()
        subject.verify_consistency(old, size, proof, old_roots[old], root)
        consistency_verify.append(_micros_since(start_ns))
    return {
        "inclusion_paths": paths.hexdigest(),
        "inclusion_gen": inclusion_gen,
        "inclusion_verify": inclusion_verify,
        "consistency_gen": consistency_gen,
        "consistency_verify": consistency_verify,
    }


def _in_fresh_process(
    implementation: str,
    size: int,
    config: BenchConfig,
    round_number: int,
    bytecode: Path | None = None,
) -> dict[str, Any]:
    """Create the store with :func:`create`, then run :func:`measure` on it, each in a new
    interpreter that imports only this module and its subject; the store is removed afterwards.

    ``bytecode`` is the workers' ``PYTHONPYCACHEPREFIX`` (default: a folder beside the store).
    (A multiprocessing ``spawn`` child would re-import the caller's ``__main__``, the whole CLI,
    and count it in both implementations' memory.)
    """
    with tempfile.TemporaryDirectory(prefix="thirdway-bench-", dir=config.tmpdir) as folder:
        environment = _worker_environment(bytecode or Path(folder) / "bytecode")
        job: dict[str, Any] = {"implementation": implementation, "size": size, "folder": folder}
        created = _run_worker({**job, "task": "create"}, environment)
        job.update(task="measure", round=round_number, config=asdict(config))
        return {**_run_worker(job, environment), **created}


def _worker_environment(bytecode: Path) -> dict[str, str]:
    """This environment, but writing and reading bytecode under ``bytecode`` (see the module
    doc): the creating worker compiles, the measuring one imports compiled modules."""
    environment = dict(os.environ)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    environment["PYTHONPYCACHEPREFIX"] = str(bytecode)
    return environment


def _run_worker(job: dict[str, Any], environment: dict[str, str]) -> dict[str, Any]:
    implementation, size = job["implementation"], job["size"]
    done = subprocess.run(
        [sys.executable, "-m", "thirdway.bench.log", "--worker"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise ThirdwayError(f"{implementation} benchmark worker failed at size {size}: {lines[-1]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _worker_main() -> None:
    """Entry point of a worker: a job as JSON on stdin, the measurements as JSON on stdout."""
    job = json.loads(sys.stdin.read())
    folder = Path(job["folder"])
    if job["task"] == "create":
        result = create(job["implementation"], folder)
    else:
        settings = job["config"]
        config = BenchConfig(**{**settings, "sizes": tuple(settings["sizes"])})
        result = measure(job["implementation"], job["size"], config, folder, job["round"])
    sys.stdout.write(json.dumps(result))


# --- the run -----------------------------------------------------------------------------------

_TIMINGS = [
    ("inclusion_gen", "inclusion proof generation"),
    ("inclusion_verify", "inclusion proof verification"),
    ("consistency_gen", "consistency proof generation"),
    ("consistency_verify", "consistency proof verification"),
]


def _rows_for(size: int, ours: dict[str, Any], theirs: dict[str, Any] | None) -> list[Row]:
    def other(key: str) -> float | None:
        return None if theirs is None else float(theirs[key])

    rows = [
        Row(
            size,
            f"durable appends, batched ({BATCH})",
            "appends/s",
            "higher",
            ours["batched_per_s"],
            other("batched_per_s"),
        ),
        Row(
            size,
            "durable appends, single",
            "appends/s",
            "higher",
            ours["single_per_s"],
            other("single_per_s"),
        ),
    ]
    for key, label in _TIMINGS:
        for pct in (50, 99):
            rows.append(
                Row(
                    size,
                    f"{label} p{pct}",
                    "µs",
                    "lower",
                    percentile(ours[key], pct),
                    None if theirs is None else percentile(theirs[key], pct),
                )
            )
    rows.append(
        Row(
            size,
            "peak RSS of the worker process",
            "MiB",
            "lower",
            ours["peak_rss_mib"],
            other("peak_rss_mib"),
        )
    )
    rows.append(
        Row(
            size,
            "peak RSS growth after opening the tree",
            "MiB",
            "lower",
            ours["rss_growth_mib"],
            other("rss_growth_mib"),
        )
    )
    return rows


def _cross_check(size: int, ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    for key, what in [
        ("root", "roots"),
        ("old_roots", "roots at the sampled earlier sizes"),
        ("inclusion_paths", "inclusion proofs"),
    ]:
        if ours[key] != theirs[key]:
            raise ThirdwayError(
                f"thirdway and pymerkle disagree on {what} at size {size}: "
                "they should both be RFC 6962"
            )


def machine_description() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "pymerkle": _pymerkle_version(),
        "load_average": [round(load, 2) for load in os.getloadavg()],
    }


def _pymerkle_version() -> str:
    try:
        import pymerkle
    except ImportError:
        return "not installed"
    return str(getattr(pymerkle, "__version__", "unknown"))


def _merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the timing samples of every round; take the median of the per-round scalars."""
    merged = dict(rounds[0])
    for key, value in rounds[0].items():
        if isinstance(value, list):
            merged[key] = [sample for one in rounds for sample in one[key]]
        elif isinstance(value, float):
            merged[key] = statistics.median(one[key] for one in rounds)
    return merged


def run_bench(config: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Run every size for both implementations (``repeat`` rounds) and cross-check them.

    Rounds alternate which implementation goes first, so slow phases of a shared machine (other
    processes, disk flushes) do not always land on the same one.
    """
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    result = BenchResult(config=config, rows=[], machine=machine_description())
    with tempfile.TemporaryDirectory(
        prefix="thirdway-bench-bytecode-", dir=config.tmpdir
    ) as bytecode:
        _run_sizes(config, result, say, Path(bytecode))
    result.seconds = time.perf_counter() - started
    return result


def _run_sizes(
    config: BenchConfig, result: BenchResult, say: Callable[[str], None], bytecode: Path
) -> None:
    covered = []
    for size in config.sizes:
        implementations = ["thirdway"]
        if size <= config.pymerkle_max_size:
            implementations.append("pymerkle")
            covered.append(size)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in implementations}
        for round_number in range(config.repeat):
            order = implementations if round_number % 2 == 0 else implementations[::-1]
            for name in order:
                say(f"{name}: {size:,} entries (round {round_number + 1} of {config.repeat})")
                runs[name].append(_in_fresh_process(name, size, config, round_number, bytecode))
            if "pymerkle" in runs:
                _cross_check(size, runs["thirdway"][-1], runs["pymerkle"][-1])
        ours = _merge_rounds(runs["thirdway"])
        theirs = _merge_rounds(runs["pymerkle"]) if "pymerkle" in runs else None
        result.roots[size] = {"thirdway": ours["root"]}
        result.create_rss_mib[size] = {"thirdway": ours["create_peak_rss_mib"]}
        if theirs is not None:
            result.roots[size]["pymerkle"] = theirs["root"]
            result.create_rss_mib[size]["pymerkle"] = theirs["create_peak_rss_mib"]
        result.rows.extend(_rows_for(size, ours, theirs))
    result.pymerkle_sizes = tuple(covered)


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "appends/s":
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def render_table(result: BenchResult) -> Table:
    """The results as a rich table, one row per metric and size."""
    covered = ", ".join(f"{size:,}" for size in result.pymerkle_sizes) or "none"
    table = Table(
        title="thirdway bench log: thirdway vs pymerkle (SQLite, durable commits)",
        caption=(
            f"{result.config.repeat} round(s) × {result.config.samples} proofs per kind at random "
            "positions (p50/p99: nearest rank over all rounds; appends and memory: median of "
            "rounds), "
            f"{result.config.single_appends} single appends; ratio = thirdway / pymerkle. "
            f"pymerkle covered sizes: {covered}. Memory: each implementation's own worker process, "
            "which opens an empty store created by another process (peak: VmHWM; growth: VmHWM "
            "reset at the open, empty tree). Roots and inclusion paths identical at every covered "
            "size."
        ),
    )
    for column, justify in [
        ("entries", "right"),
        ("metric", "left"),
        ("unit", "left"),
        ("thirdway", "right"),
        ("pymerkle", "right"),
        ("ratio", "right"),
        ("thirdway ahead", "center"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    previous = None
    for row in result.rows:
        ratio = row.ratio
        ahead = {True: "[green]yes[/]", False: "[red]no[/]", None: "—"}[row.ahead]
        better = "↑" if row.better == "higher" else "↓"
        table.add_row(
            f"{row.size:,}" if row.size != previous else "",
            row.metric,
            f"{row.unit} {better}",
            _number(row.thirdway, row.unit),
            _number(row.pymerkle, row.unit) if row.pymerkle is not None else "not run",
            "—" if ratio is None else f"{ratio:.2f}",
            ahead,
            end_section=row.metric.startswith("peak RSS growth"),
        )
        previous = row.size
    return table


def _create_note(result: BenchResult) -> str:
    """One line on what creating the empty stores cost (not in the table: see the module doc)."""
    peaks: dict[str, list[float]] = {}
    for by_name in result.create_rss_mib.values():
        for name, peak in by_name.items():
            peaks.setdefault(name, []).append(peak)
    said = ", ".join(
        f"{name} {statistics.median(values):.1f} MiB" for name, values in sorted(peaks.items())
    )
    return (
        f"Creating the empty store, in its own process (median peak RSS): {said}; "
        "a thirdway log is created with its Ed25519 signing key, which loads cryptography."
    )


def run_command(
    *,
    quick: bool,
    sizes: str | None,
    json_path: Path | None,
    samples: int | None = None,
    pymerkle_max_size: int | None = None,
    tmpdir: Path | None = None,
    repeat: int | None = None,
) -> BenchResult:
    """What ``thirdway bench log`` does: configure, run, print the table, write JSON."""
    from thirdway.cli.common import console, err_console

    chosen = parse_sizes(sizes) if sizes else None
    if quick:
        config = BenchConfig.quick(chosen)
    else:
        config = BenchConfig(sizes=chosen or FULL_SIZES, repeat=FULL_REPEAT)
    overrides: dict[str, Any] = {}
    if samples is not None:
        if not 1 <= samples <= 100_000:
            raise InputError("--samples must be between 1 and 100,000")
        overrides["samples"] = samples
    if repeat is not None:
        if not 1 <= repeat <= 20:
            raise InputError("--repeat must be between 1 and 20")
        overrides["repeat"] = repeat
    if pymerkle_max_size is not None:
        overrides["pymerkle_max_size"] = pymerkle_max_size
    if tmpdir is not None:
        if not tmpdir.is_dir():
            raise InputError(f"--tmpdir {tmpdir} is not a directory")
        overrides["tmpdir"] = str(tmpdir)
    if overrides:
        config = BenchConfig(**{**asdict(config), **overrides})
    if json_path is not None and not json_path.parent.is_dir():
        raise InputError(f"--json: directory {json_path.parent} does not exist")

    with err_console.status("benchmarking…") as status:
        result = run_bench(config, progress=lambda message: status.update(message))
    console.print(render_table(result))
    machine = result.machine
    console.print(
        f"{machine['cpus']} CPUs, {machine['processor']}, Python {machine['python']}, "
        f"SQLite {machine['sqlite']}, pymerkle {machine['pymerkle']}, "
        f"load average at start {machine['load_average']}; {result.seconds:.1f} s in all.",
        highlight=False,
    )
    console.print(_create_note(result), highlight=False)
    if json_path is not None:
        json_path.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n")
        console.print(f"results written to {json_path}", highlight=False)
    return result


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker_main()
