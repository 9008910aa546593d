"""``thirdway verify``: verify a recorded proposal offline (and ``bench verify``)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Attach ``thirdway verify`` and ``thirdway bench verify``."""
