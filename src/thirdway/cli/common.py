"""Helpers shared by the command modules: one-line errors, consoles, reading input files."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from thirdway.errors import ThirdwayError

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr (one line, no traceback) and return an Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn every :class:`ThirdwayError` (and OS errors) into a one-line message and exit 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ThirdwayError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise fail(f"{exc.strerror or exc}{where}") from None

    return wrapper


def read_input(path: Path, what: str) -> bytes:
    """Read a file given on the command line (``-`` is standard input), naming it on failure."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ThirdwayError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise ThirdwayError(f"{what} path is a directory, not a file: {path}") from None
    except PermissionError:
        raise ThirdwayError(f"{what} file is not readable: {path}") from None


def shown_location(location: str) -> str:
    """How messages name a log or database given on the command line: a ``postgresql://`` URL
    without its password (it must never reach a terminal or a CI log), a path as given."""
    from thirdway.ledger.open import is_postgres_url

    if not is_postgres_url(location):
        return location
    from thirdway.ledger.postgres import redact_url

    return redact_url(location)
