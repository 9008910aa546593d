"""``thirdway mcp-proxy --upstream CMD``: an MCP server (stdio) gating an upstream MCP server.

See :mod:`thirdway.mcp.proxy`. Standard output carries the MCP protocol; messages for people go
to standard error.
"""

from __future__ import annotations

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
    loaded = load_manifests(manifests)
    anyio.run(serve, command, data_dir, loaded, dict(os.environ))
