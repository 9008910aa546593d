"""``thirdway bench gate``: the whole gated path per action, 1 and 8 concurrent agents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thirdway.cli.common import console, friendly_errors


def register(bench_app: typer.Typer) -> None:
    """Attach ``thirdway bench gate`` (the benchmark module is imported only when it runs)."""

    @bench_app.command("gate")
    @friendly_errors
    def bench_gate(
        quick: Annotated[
            bool, typer.Option("--quick", help="200 actions per run and a shorter enclave run.")
        ] = False,
        actions: Annotated[
            int | None,
            typer.Option("--actions", help="Actions per run (shared among its agents)."),
        ] = None,
        json_path: Annotated[
            Path | None, typer.Option("--json", help="Also write the results to this JSON file.")
        ] = None,
        folder: Annotated[
            Path | None,
            typer.Option("--dir", help="Where the benchmark's databases go (its filesystem)."),
        ] = None,
        enclave: Annotated[
            bool,
            typer.Option("--enclave/--no-enclave", help="Also time the verifier enclave."),
        ] = True,
        default_gc: Annotated[
            bool,
            typer.Option(
                "--default-gc",
                help="Keep CPython's garbage-collector defaults (thirdway serve tunes them).",
            ),
        ] = False,
    ) -> None:
        """p50/p99 of one gated action with 1 and 8 agents, and where the time goes."""
        from thirdway.gateway.bench import BenchConfig, dump_json, render_tables, run_bench

        tune_gc = not default_gc
        if quick:
            config = BenchConfig.quick(actions, folder=folder, enclave=enclave, tune_gc=tune_gc)
        else:
            config = BenchConfig(
                actions=actions if actions is not None else 1000,
                folder=folder,
                enclave=enclave,
                tune_gc=tune_gc,
            )
        result = run_bench(config)
        for table in render_tables(result):
            console.print(table)
        for note in result.notes:
            console.print(f"- {note}", highlight=False, soft_wrap=True)
        if json_path is not None:
            json_path.write_text(dump_json(result) + "\n", encoding="utf-8")
            console.print(f"results written to {json_path}", highlight=False)
