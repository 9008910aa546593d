"""``thirdway mcp-proxy --upstream CMD``: an MCP server (stdio) gating an upstream MCP server.

See :mod:`thirdway.mcp.proxy`. Standard output carries the MCP protocol; messages for people go
to standard error.
"""

from __future__ import annotations

import math
import os
import shlex
from pathlib import Path
from typing import Annotated

import anyio
import typer

from thirdway.cli.common import friendly_errors
from thirdway.errors import InputError


def register(app: typer.Typer) -> None:
    """Attach ``thirdway mcp-proxy``."""
    app.command("mcp-proxy")(mcp_proxy)


@friendly_errors
def mcp_proxy(
    upstream: Annotated[
        str, typer.Option("--upstream", help="The upstream MCP server's command line (stdio).")
    ],
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The gateway's data folder (log, keys).")
    ] = Path("thirdway-mcp-data"),
    manifests: Annotated[
        Path | None,
        typer.Option("--manifests", help="Tool manifests (YAML file or folder; default: shipped)."),
    ] = None,
    upstream_timeout: Annotated[
        float,
        typer.Option(
            "--upstream-timeout",
            help="Seconds a gated call waits for the upstream's answer (1 to 3600); a call past "
            "it is recorded as failed.",
        ),
    ] = 60.0,  # thirdway.mcp.proxy.UPSTREAM_TIMEOUT_S (not imported: the SDK loads slowly)
) -> None:
    """Serve the upstream's tools over MCP, each call verified, authorized and logged."""
    from thirdway.mcp.proxy import serve
    from thirdway.policy.manifests import load_manifests

    try:
        command = shlex.split(upstream)
    except ValueError as exc:
        raise InputError(f"--upstream is not a valid command line: {exc}") from None
    if not command:
        raise InputError("--upstream needs a command")
    if not (math.isfinite(upstream_timeout) and 1 <= upstream_timeout <= 3600):
        raise InputError(
            f"--upstream-timeout must be from 1 to 3600 seconds, not {upstream_timeout:g}"
        )
    loaded = load_manifests(manifests)
    anyio.run(serve, command, data_dir, loaded, dict(os.environ), upstream_timeout)
