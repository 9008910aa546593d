"""A small upstream MCP server (stdio) for the proxy test: a bank's ``read_file`` and
``send_money``. Every call that reaches it is appended to the file named by ``argv[1]``, so the
test can tell which calls got through the gate. An optional ``argv[2]`` makes ``read_file`` fail
after recording the call: ``error`` (an MCP tool error), ``crash`` (the process exits) or
``hang`` (it never answers)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from mcp.server.fastmcp import FastMCP

from thirdway.gateway import banking

CALLS = Path(sys.argv[1])
MODE = sys.argv[2] if len(sys.argv) > 2 else "normal"
server = FastMCP("upstream-bank")


def _record(tool: str, args: dict[str, object]) -> None:
    with CALLS.open("a") as handle:
        handle.write(json.dumps({"tool": tool, "args": args}) + "\n")


@server.tool()
def read_file(file_path: str) -> str:
    """Read a local file."""
    _record("read_file", {"file_path": file_path})
    if MODE == "crash":
        os._exit(3)
    if MODE == "hang":
        _hang()
    if MODE == "error":
        raise ValueError("the disk is on fire")
    if file_path != banking.BILL_FILE:
        raise ValueError(f"no such file: {file_path}")
    return banking.bill_text(banking.INJECTION)


def _hang() -> None:
    """Never answer, but leave once the proxy that started this server is gone: a proxy killed
    by its own client does not stop its upstream, which would otherwise sleep on for an hour
    after the test (seen as stray processes after a test run)."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


@server.tool()
def send_money(recipient: str, amount: float, subject: str, date: str) -> str:
    """Send money."""
    _record("send_money", {"recipient": recipient, "amount": amount})
    return f"Transaction to {recipient} for {amount} sent."


@server.tool()
def shred_everything() -> str:
    """A tool no manifest describes: the proxy must not mirror it."""
    _record("shred_everything", {})
    return "shredded"


if __name__ == "__main__":
    server.run()
