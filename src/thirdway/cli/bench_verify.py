"""``thirdway bench verify``: verifier latency against invariant-ai's LocalPolicy, same traces."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from thirdway.cli.common import console, friendly_errors
from thirdway.errors import InputError

if TYPE_CHECKING:
    from thirdway.bench.verify import Workload

_WORKLOAD = re.compile(r"^(\d{1,4}):(\d{1,5})$")
MAX_CUSTOM_KB = 8192


def parse_workload(spec: str, quick: bool) -> Workload:
    """``STEPS:KB`` (e.g. ``10:50``) as a Workload; a clear error otherwise."""
    from thirdway.bench.verify import Workload

    match = _WORKLOAD.match(spec.strip())
    if not match:
        raise InputError(f"--workload must be STEPS:KB (e.g. 10:50), got {spec!r}")
    steps, kb = int(match[1]), int(match[2])
    if not 3 <= steps <= 1000:
        raise InputError(f"--workload steps must be between 3 and 1000, got {steps}")
    if not 1 <= kb <= MAX_CUSTOM_KB:
        raise InputError(f"--workload size must be between 1 and {MAX_CUSTOM_KB} KB, got {kb}")
    iterations = 50 if quick else 500
    return Workload(f"{steps} steps / {kb} KB", steps, kb * 1000, iterations, 5, 15.0)


def register(bench_app: typer.Typer) -> None:
    """Attach ``thirdway bench verify`` (the benchmark module is imported only when it runs)."""

    @bench_app.command("verify")
    @friendly_errors
    def bench_verify(
        quick: Annotated[
            bool, typer.Option("--quick", help="Fewer repetitions and shorter Invariant budgets.")
        ] = False,
        json_path: Annotated[
            Path | None, typer.Option("--json", help="Also write the results to this JSON file.")
        ] = None,
        workload: Annotated[
            list[str] | None,
            typer.Option(
                "--workload",
                help="STEPS:KB instead of the standard 10:50 and 100:1000 (repeatable).",
            ),
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the generated sessions.")] = 0,
        invariant: Annotated[
            bool,
            typer.Option(
                "--invariant/--no-invariant", help="Also time invariant-ai's LocalPolicy."
            ),
        ] = True,
    ) -> None:
        """p50/p99 of the deterministic verifier, and invariant-ai on the same sessions."""
        from thirdway.bench.verify import FULL, QUICK, dump_json, render_tables, run_bench

        if workload:
            workloads = [parse_workload(spec, quick) for spec in workload]
        else:
            workloads = list(QUICK if quick else FULL)
        result = run_bench(workloads, seed=seed, invariant=invariant)
        for table in render_tables(result):
            console.print(table)
        for note in result.notes:
            console.print(f"- {note}", highlight=False, soft_wrap=True)
        if json_path is not None:
            json_path.write_text(dump_json(result) + "\n", encoding="utf-8")
            console.print(f"results written to {json_path}", highlight=False)
