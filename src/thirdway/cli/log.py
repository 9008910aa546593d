"""``thirdway log …``: the transparency log on a local SQLite file (and ``bench log``)."""

from __future__ import annotations

import typer

app = typer.Typer(help="The transparency log: append, checkpoint, prove, verify.", no_args_is_help=True)


def register_bench(bench_app: typer.Typer) -> None:
    """Attach ``thirdway bench log``."""
