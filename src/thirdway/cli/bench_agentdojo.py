"""``thirdway bench agentdojo``: recorded AgentDojo runs replayed behind the gate, or synthetic
agents from AgentDojo's ground truth (``--synthetic``). Writes JSON, markdown and a PNG chart to
``--out`` and prints the summary table."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from thirdway.cli.common import console, err_console, friendly_errors
from thirdway.errors import InputError

if TYPE_CHECKING:
    from thirdway.protocol.manifest import ManifestSet

GATES = ("gatekeeper", "verifier")
MAX_WORKERS = 64


def split_names(values: Sequence[str] | None, what: str) -> frozenset[str] | None:
    """Repeatable, comma-separated names as a set (None when not given); empty names refused."""
    if not values:
        return None
    names = {name.strip() for value in values for name in value.split(",")}
    if "" in names:
        raise InputError(f"--{what}: empty name in {', '.join(values)!r}")
    return frozenset(names)


def check_known(names: frozenset[str] | None, known: set[str], what: str) -> None:
    """An unknown model/suite/attack name is an error listing the known ones."""
    if names is None:
        return
    unknown = sorted(names - known)
    if unknown:
        raise InputError(
            f"unknown {what} {', '.join(unknown)}; known: {', '.join(sorted(known)) or 'none'}"
        )


def check_options(limit: int | None, workers: int, tier: int, gate: str) -> None:
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, not {limit}")
    if not 1 <= workers <= MAX_WORKERS:
        raise InputError(f"--workers must be between 1 and {MAX_WORKERS}, not {workers}")
    if not 0 <= tier <= 4:
        raise InputError(f"--tier must be between 0 and 4, not {tier}")
    if gate not in GATES:
        raise InputError(f"--gate must be one of {', '.join(GATES)}, not {gate!r}")


def gate_factory(gate: str, manifests: ManifestSet, tier: int) -> Any:
    from thirdway.adapters.agentdojo_replay import GatekeeperGateFactory, VerifierGateFactory

    if gate == "verifier":
        return VerifierGateFactory(manifests)
    return GatekeeperGateFactory(manifests, tier)


def register(bench_app: typer.Typer) -> None:
    """Attach ``thirdway bench agentdojo`` (AgentDojo is imported only when it runs)."""

    @bench_app.command("agentdojo")
    @friendly_errors
    def bench_agentdojo(
        out: Annotated[Path, typer.Option("--out", help="Folder for the JSON, markdown and PNG.")],
        runs: Annotated[
            Path | None,
            typer.Option(
                "--runs", help="Recorded runs (model/suite/user_task/attack/injection.json)."
            ),
        ] = None,
        synthetic: Annotated[
            bool,
            typer.Option("--synthetic", help="Synthetic agents from ground truth, not a replay."),
        ] = False,
        limit: Annotated[
            int | None,
            typer.Option("--limit", help="At most N runs (synthetic: N user tasks per suite)."),
        ] = None,
        models: Annotated[
            list[str] | None, typer.Option("--models", help="Only these models (comma-separated).")
        ] = None,
        suites: Annotated[
            list[str] | None, typer.Option("--suites", help="Only these suites (comma-separated).")
        ] = None,
        attacks: Annotated[
            list[str] | None,
            typer.Option("--attacks", help="Only these attacks (comma-separated; 'none' too)."),
        ] = None,
        workers: Annotated[
            int, typer.Option("--workers", help="Worker processes for the replay.")
        ] = min(2, os.cpu_count() or 1),
        gate: Annotated[
            str,
            typer.Option(
                "--gate",
                help="gatekeeper (verify, authorize, token, log) or verifier (verdicts only).",
            ),
        ] = "gatekeeper",
        tier: Annotated[int, typer.Option("--tier", help="The agent's trust tier (0-4).")] = 3,
        manifests_path: Annotated[
            Path | None,
            typer.Option(
                "--manifests", help="Tool manifests (default: the shipped AgentDojo ones)."
            ),
        ] = None,
    ) -> None:
        """Replay recorded AgentDojo runs behind thirdway (or run synthetic agents) and report
        attack success, utility and false positives."""
        check_options(limit, workers, tier, gate)
        from thirdway.policy.manifests import load_manifests

        manifests = load_manifests(manifests_path)
        factory = gate_factory(gate, manifests, tier)
        shown_tier = tier if gate == "gatekeeper" else None
        if synthetic:
            if models or attacks or runs is not None:
                raise InputError("--runs, --models and --attacks do not apply to --synthetic")
            _synthetic(factory, out, suites, limit, gate, shown_tier)
        else:
            _replay(factory, out, runs, (models, suites, attacks), limit, workers, gate, shown_tier)


def _replay(
    factory: Any,
    out: Path,
    runs: Path | None,
    filters: tuple[list[str] | None, list[str] | None, list[str] | None],
    limit: int | None,
    workers: int,
    gate: str,
    tier: int | None,
) -> None:
    from thirdway.adapters.agentdojo_replay import Selection, replay_all
    from thirdway.adapters.agentdojo_runs import default_runs_dir, run_files
    from thirdway.bench.agentdojo import write_replay

    root = runs if runs is not None else default_runs_dir()
    locations = run_files(root)
    if not locations:
        raise InputError(f"no run files (model/suite/user_task/attack/injection.json) in {root}")
    names = [split_names(f, what) for f, what in zip(filters, _FILTERS, strict=True)]
    for selected, what, attr in zip(names, _FILTERS, _ATTRS, strict=True):
        check_known(selected, {getattr(loc, attr) for loc in locations}, what)
    selection = Selection(models=names[0], suites=names[1], attacks=names[2], limit=limit)
    chosen = len(selection.pick(locations))
    err_console.print(f"replaying {chosen} run(s) from {root} with {workers} worker(s)…")
    report = replay_all(root, factory, selection, workers=workers)
    summary = write_replay(report, out, gate=gate, tier=tier)
    console.print(_replay_table(summary))
    _print_totals(summary, out)


_FILTERS = ("models", "suites", "attacks")
_ATTRS = ("model", "suite", "attack")
REPLAY_COLUMNS = (
    "model",
    "attack",
    "runs",
    "ASR % ungated → strict (approve)",
    "utility % ungated → strict (approve)",
    "denied / escalated",
    "FP calls",
)


def _replay_table(summary: dict[str, Any]) -> Table:
    table = Table(title="AgentDojo replay behind thirdway", box=box.SIMPLE_HEAVY)
    for column in REPLAY_COLUMNS:
        table.add_column(column, justify="left" if column in ("model", "attack") else "right")
    for row in summary["by_model_attack"]:
        calls = row["calls_strict"]
        table.add_row(
            row["model"],
            row["attack"],
            str(row["runs"]),
            _three(row["asr"]),
            _three(row["utility"]),
            f"{calls['denied']} / {calls['escalated']}",
            _cell(row["false_positives"]),
        )
    return table


def _three(rates: dict[str, Any]) -> str:
    if rates["reproduced"]["rate"] is None:
        return "–"
    return (
        f"{_number(rates['reproduced'])} → {_number(rates['strict'])} ({_number(rates['approve'])})"
    )


def _number(rate: dict[str, Any]) -> str:
    return f"{100 * rate['rate']:.1f}"


def _cell(rate: dict[str, Any]) -> str:
    return "–" if rate["rate"] is None else f"{100 * rate['rate']:.1f} %"


def _print_totals(summary: dict[str, Any], out: Path) -> None:
    from thirdway.bench.agentdojo import totals_line

    console.print(totals_line(summary), highlight=False, soft_wrap=True)
    timing = summary["timing"]
    console.print(
        f"{summary['replayed']} runs in {timing['wall_seconds']} s "
        f"({timing['runs_per_second']} runs/s, {timing['workers']} worker(s)); "
        f"written to {out}/replay.json, replay.md, replay.png",
        highlight=False,
        soft_wrap=True,
    )


def _synthetic(
    factory: Any,
    out: Path,
    suites: list[str] | None,
    limit: int | None,
    gate: str,
    tier: int | None,
) -> None:
    from thirdway.adapters.agentdojo_synthetic import (
        SyntheticSelection,
        newest_version,
        run_synthetic,
    )
    from thirdway.bench.agentdojo import write_synthetic

    version = newest_version()
    selected = split_names(suites, "suites")
    from agentdojo.task_suite.load_suites import get_suites

    check_known(selected, set(get_suites(version)), "suites")
    report = run_synthetic(
        factory,
        SyntheticSelection(suites=selected, limit=limit),
        version=version,
        progress=lambda suite: err_console.print(f"synthetic agents: {suite}…"),
    )
    summary = write_synthetic(report, out, gate=gate, tier=tier)
    console.print(_synthetic_table(summary))
    console.print(
        f"{report.wall_seconds:.1f} s; written to {out}/synthetic.json, synthetic.md, "
        "synthetic.png",
        highlight=False,
    )


def _synthetic_table(summary: dict[str, Any]) -> Table:
    table = Table(
        title=f"Synthetic AgentDojo agents ({summary['version']}) behind thirdway",
        box=box.SIMPLE_HEAVY,
    )
    for column in ("suite", "user tasks", "benign pass", "honest under attack",
                   "(a) executed", "(b) caught", "(c) caught"):  # fmt: skip
        table.add_column(column, justify="left" if column == "suite" else "right")
    for row in [*summary["by_suite"], summary["total"]]:
        hijack = row["hijack"]
        table.add_row(
            row["suite"],
            str(row["user_tasks"]),
            _cell(row["benign"]),
            _cell(row["under_attack"]),
            _cell(hijack["honest"]["executed"]),
            _cell(hijack["deceptive"]["caught"]),
            _cell(hijack["mismatched"]["caught"]),
        )
    return table
