"""``thirdway serve``, ``thirdway keys create`` and ``thirdway bench serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thirdway.cli.common import console, friendly_errors

keys_app = typer.Typer(help="API keys of the gateway service.", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (THIRDWAY_* env vars override).")
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Folder of the log, spent-set and keys.")
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="Storage: 'sqlite' (default, files in --data-dir) or a postgresql:// URL."
    ),
]


def register(app: typer.Typer) -> None:
    """Attach ``serve`` and the ``keys`` group."""
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")


@friendly_errors
def serve(
    config_path: ConfigOption = None,
    host: Annotated[str | None, typer.Option("--host", help="Default 127.0.0.1.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default 8080.")] = None,
    data_dir: DataDirOption = None,
    db: DbOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Worker processes (default 1; several share one SQLite folder or one "
            "PostgreSQL database).",
        ),
    ] = None,
) -> None:
    """Run the gateway service (HTTP API and auditor console) until SIGINT/SIGTERM."""
    from thirdway.service import load_config
    from thirdway.service.worker import run

    overrides = {"host": host, "port": port, "data_dir": data_dir, "db": db, "workers": workers}
    config = load_config(config_path, overrides=overrides)
    config.check_supported()
    run(config)


@keys_app.command("create")
@friendly_errors
def create_key(
    role: Annotated[str, typer.Option("--role", help="agent, auditor or admin.")],
    name: Annotated[str, typer.Option("--name", help="The principal (agent or auditor id).")],
    config_path: ConfigOption = None,
    data_dir: DataDirOption = None,
    db: DbOption = None,
) -> None:
    """Create an API key and print it (once: only its digest is stored)."""
    from thirdway.service import load_config
    from thirdway.service.state import open_keys

    config = load_config(config_path, overrides={"data_dir": data_dir, "db": db})
    config.check_supported()
    keys = open_keys(config)
    try:
        key = keys.create(name, role)
    finally:
        keys.close()
    typer.echo(key)


@keys_app.command("list")
@friendly_errors
def list_keys(
    config_path: ConfigOption = None, data_dir: DataDirOption = None, db: DbOption = None
) -> None:
    """List keys: id, principal, role, created, revoked (never a secret)."""
    from thirdway.service import load_config
    from thirdway.service.state import open_keys

    config = load_config(config_path, overrides={"data_dir": data_dir, "db": db})
    config.check_supported()
    keys = open_keys(config)
    try:
        for info in keys.listing():
            revoked = f"revoked {info.revoked_at}" if info.revoked_at else "active"
            typer.echo(f"{info.key_id}  {info.role:<7}  {info.name}  {revoked}")
    finally:
        keys.close()


@keys_app.command("revoke")
@friendly_errors
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key id (the part after 'tw_').")],
    config_path: ConfigOption = None,
    data_dir: DataDirOption = None,
    db: DbOption = None,
) -> None:
    """Revoke a key; a running service refuses it from its next request."""
    from thirdway.service import load_config
    from thirdway.service.state import open_keys

    config = load_config(config_path, overrides={"data_dir": data_dir, "db": db})
    config.check_supported()
    keys = open_keys(config)
    try:
        keys.revoke(key_id)
    finally:
        keys.close()
    typer.echo(f"revoked {key_id}")


def register_bench(bench_app: typer.Typer) -> None:
    """Attach ``thirdway bench serve`` (the benchmark module is imported only when it runs)."""

    @bench_app.command("serve")
    @friendly_errors
    def bench_serve(
        quick: Annotated[bool, typer.Option("--quick", help="A short run (400 actions).")] = False,
        actions: Annotated[
            int | None, typer.Option("--actions", help="Gated actions in all (default 3000).")
        ] = None,
        agents: Annotated[
            int, typer.Option("--agents", help="Concurrent agents (default 32).")
        ] = 32,
        json_path: Annotated[
            Path | None, typer.Option("--json", help="Also write the results to this JSON file.")
        ] = None,
        workers: Annotated[
            str,
            typer.Option(
                "--workers",
                help="Worker counts to run, like 1,2,4 (on SQLite, or on --db; default 1,2).",
            ),
        ] = "1,2",
        db: Annotated[
            str,
            typer.Option(
                "--db",
                help="sqlite, or a postgresql:// URL: without a database name the bench makes "
                "and drops its own; SQLite with 1 worker runs alongside.",
            ),
        ] = "sqlite",
        folder: Annotated[
            Path | None, typer.Option("--dir", help="Where the server's data goes.")
        ] = None,
        time_limit: Annotated[
            float, typer.Option("--time-limit", help="Stop each run after this many seconds.")
        ] = 120.0,
        flow: Annotated[
            str,
            typer.Option(
                "--flow",
                help="two-call (POST /proposals, then /executions with the token), one-call "
                "(one POST /actions), or both (a row for each).",
            ),
        ] = "both",
    ) -> None:
        """Gated actions per second and latency percentiles over loopback HTTP, per storage and
        worker count."""
        from thirdway.bench.serve import ServeBenchConfig, dump_json, render_table, run

        config = ServeBenchConfig.build(
            quick=quick,
            actions=actions,
            agents=agents,
            workers=workers,
            db=db,
            folder=folder,
            time_limit=time_limit,
            flow=flow,
        )
        report = run(config)
        console.print(render_table(report))
        for note in report.notes:
            console.print(f"- {note}", highlight=False, soft_wrap=True)
        if json_path is not None:
            json_path.write_text(dump_json(report) + "\n", encoding="utf-8")
            console.print(f"results written to {json_path}", highlight=False)
