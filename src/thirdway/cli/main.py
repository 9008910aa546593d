"""Entry point of the ``thirdway`` command: registers every command group."""

from __future__ import annotations

import typer

from thirdway import __version__
from thirdway.cli.demo import demo
from thirdway.cli.schema import schema

app = typer.Typer(
    name="thirdway",
    help="Agency that depends on verifiable honesty: a gate, a verifier and a transparency log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench_app = typer.Typer(
    help="Benchmarks: print tables of ratios and percentiles.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")

app.command("schema")(schema)
app.command("demo")(demo)


@app.command("version")
def version() -> None:
    """Print the thirdway version."""
    typer.echo(__version__)


def _register() -> None:
    """Attach the command groups that live in their own modules."""
    from thirdway.cli import attest as attest_cli
    from thirdway.cli import audit as audit_cli
    from thirdway.cli import bench_agentdojo as bench_agentdojo_cli
    from thirdway.cli import bench_gate as bench_gate_cli
    from thirdway.cli import bench_verify as bench_verify_cli
    from thirdway.cli import db as db_cli
    from thirdway.cli import log as log_cli
    from thirdway.cli import mcp as mcp_cli
    from thirdway.cli import probe as probe_cli
    from thirdway.cli import screen as screen_cli
    from thirdway.cli import serve as serve_cli
    from thirdway.cli import trust as trust_cli
    from thirdway.cli import verify as verify_cli

    app.add_typer(log_cli.app, name="log")
    log_cli.register_bench(bench_app)
    verify_cli.register(app, bench_app)
    trust_cli.register(app)
    probe_cli.register(app)
    bench_verify_cli.register(bench_app)
    bench_gate_cli.register(bench_app)
    bench_agentdojo_cli.register(bench_app)
    attest_cli.register(app)
    mcp_cli.register(app)
    audit_cli.register(app)
    screen_cli.register(bench_app)
    db_cli.register(app)
    serve_cli.register(app)
    serve_cli.register_bench(bench_app)


_register()


def main() -> None:
    app()
