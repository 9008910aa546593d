"""``thirdway db upgrade --url URL``: create or upgrade thirdway's schema in a database.

The URL picks the backend: a file path or ``sqlite:///PATH`` for SQLite, ``postgresql://…`` for
PostgreSQL (shared by several gateway workers). Running it again is harmless; several workers
running it at once against one PostgreSQL database queue on an advisory lock and one upgrades.
"""

from __future__ import annotations

from typing import Annotated

import typer

from thirdway.cli.common import console, fail, friendly_errors

app = typer.Typer(help="Database schema: create or upgrade it (SQLite or PostgreSQL).")

UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        help="Database: a file path, sqlite:///PATH or postgresql://user@host/db.",
        show_default=False,
    ),
]


@app.command("upgrade")
@friendly_errors
def upgrade(url: UrlOption, revision: str = "head") -> None:
    """Create the schema in a new database, or bring an existing one up to date."""
    from sqlalchemy.exc import SQLAlchemyError

    from thirdway.ledger.postgres import redact_url
    from thirdway.migrations import database_url
    from thirdway.migrations import upgrade as run_upgrade

    target = database_url(url)
    try:
        run_upgrade(target, revision)
    except SQLAlchemyError as exc:
        original = getattr(exc, "orig", None) or exc
        reason = (str(original).strip().splitlines() or [type(exc).__name__])[0]
        raise fail(f"cannot upgrade {redact_url(target)}: {reason}") from None
    except Exception as exc:  # alembic's own errors: unknown revision and the like
        if type(exc).__module__.startswith("alembic"):
            raise fail(f"cannot upgrade {redact_url(target)}: {exc}") from None
        raise
    console.print(f"{redact_url(target)}: schema at {revision}", soft_wrap=True, highlight=False)


def register(root: typer.Typer) -> None:
    """Attach ``thirdway db`` to the root command."""
    root.add_typer(app, name="db")
