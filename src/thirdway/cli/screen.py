"""``thirdway bench screen``: the injection screen on recorded AgentDojo runs and AgentDojo's own
environment documents (false-positive rate, detection, coverage, timing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from thirdway.cli.common import console, friendly_errors
from thirdway.errors import InputError

if TYPE_CHECKING:
    from thirdway.bench.screen import Example


def register(bench_app: typer.Typer) -> None:
    """Attach ``thirdway bench screen`` (the benchmark module is imported only when it runs)."""

    @bench_app.command("screen")
    @friendly_errors
    def bench_screen(
        runs: Annotated[
            Path | None,
            typer.Option(
                "--runs",
                help="Recorded runs (<model>/<suite>/<user_task>/<attack>/<task>.json); "
                "default ../shared/agentdojo-runs next to the repository.",
            ),
        ] = None,
        json_path: Annotated[
            Path | None, typer.Option("--json", help="Also write the results to this JSON file.")
        ] = None,
        environments: Annotated[
            bool,
            typer.Option(
                "--environments/--no-environments",
                help="Also screen AgentDojo's environment documents with every registered "
                "attack (needs the dev extra's agentdojo).",
            ),
        ] = True,
        examples: Annotated[
            int, typer.Option("--examples", min=0, max=100, help="Examples to print per kind.")
        ] = 5,
        hostile: Annotated[
            bool,
            typer.Option("--hostile/--no-hostile", help="Also time 8 MiB inputs built to be slow."),
        ] = False,
    ) -> None:
        """False positives on honest tool outputs, detection and coverage of injected ones."""
        from thirdway.adapters.agentdojo_runs import default_runs_dir
        from thirdway.bench.screen import (
            HOSTILE_BYTES,
            render_attack_table,
            render_benign_table,
            render_hostile_table,
            render_runs_table,
            screen_corpus,
            screen_hostile,
            screen_runs,
        )

        root = runs if runs is not None else default_runs_dir()
        if not root.is_dir():
            raise InputError(f"runs directory not found: {root} (give one with --runs DIR)")
        report = screen_runs(root)
        console.print(render_runs_table(report))
        _print_timing("recorded tool outputs", report.timing, report.wall_seconds)
        _print_examples(report.examples, examples)
        result: dict[str, object] = {"runs": report.to_json()}
        if environments:
            corpus = screen_corpus()
            console.print(render_attack_table(corpus))
            console.print(render_benign_table(corpus))
            _print_timing("environment documents", corpus.timing, corpus.wall_seconds)
            _print_examples(corpus.examples, examples)
            result["environments"] = corpus.to_json()
        if hostile:
            timings = screen_hostile()
            console.print(render_hostile_table(timings, HOSTILE_BYTES))
            result["hostile"] = [
                {"input": name, "seconds": seconds, "spans": spans}
                for name, seconds, spans in timings
            ]
        if json_path is not None:
            json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            console.print(f"results written to {json_path}", highlight=False)


def _print_timing(what: str, timing: dict[str, float], wall: float) -> None:
    if not timing:
        return
    console.print(
        f"screen time over {int(timing['texts'])} {what}: p50 {timing['p50_us']:.0f} µs, "
        f"p99 {timing['p99_us']:.0f} µs, max {timing['max_us']:.0f} µs, "
        f"{timing['mb_per_s']:.1f} MB/s; whole command part {wall:.1f} s",
        highlight=False,
    )


def _print_examples(examples: list[Example], limit: int) -> None:
    shown: dict[str, int] = {}
    for example in examples:
        if shown.get(example.kind, 0) >= limit:
            continue
        shown[example.kind] = shown.get(example.kind, 0) + 1
        console.print(
            f"  [{example.kind}] {example.where} ({example.rule or '-'}): {example.excerpt!r}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
