"""``thirdway mcp-proxy`` at its edges, against a real upstream MCP server (a stdio subprocess):
a chain argument that is missing, malformed or huge never reaches the upstream and is answered
with a tool error naming what is wrong; an upstream that errors, dies or hangs (past
``--upstream-timeout``) is the call's recorded failure, and the proxy keeps answering."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from thirdway.gateway import banking
from thirdway.ledger.log import TransparencyLog
from thirdway.mcp.proxy import MAX_PROPOSAL_BYTES
from thirdway.protocol.models import LogEntry

UPSTREAM = Path(__file__).with_name("mcp_upstream_server.py")
AGENT = "agent-7"
CHAIN_FIELDS = ("goal", "steps", "bindings", "effects")


def _text(result: Any) -> str:
    return "\n".join(item.text for item in result.content)


def _chain(sid: str) -> dict[str, Any]:
    proposal = banking.read_proposal(sid)
    return {k: v for k, v in proposal.items() if k in CHAIN_FIELDS}


def _params(data: Path, calls: Path, mode: str) -> StdioServerParameters:
    upstream = f"{sys.executable} {UPSTREAM} {calls} {mode}"
    wait = ["--upstream-timeout", "1"] if mode == "hang" else []
    return StdioServerParameters(
        command=sys.executable,
        args=["-c", "from thirdway.cli.main import main; main()", "mcp-proxy",
              "--upstream", upstream, "--data-dir", str(data), *wait],
    )  # fmt: skip


async def _malformed(data: Path, calls: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    read = {"file_path": banking.BILL_FILE}
    async with (
        stdio_client(_params(data, calls, "normal")) as (r, w),
        ClientSession(r, w) as client,
    ):
        await client.initialize()
        opened = await client.call_tool(
            "thirdway_open_session", {"agent": AGENT, "instruction": banking.INSTRUCTION}
        )
        sid = json.loads(_text(opened))["session"]
        gated = {**read, "thirdway_session": sid}
        chain = _chain(sid)
        cases: dict[str, dict[str, Any]] = {
            "missing": gated,
            "null": {**gated, "thirdway_proposal": None},
            "list": {**gated, "thirdway_proposal": [chain]},
            "number": {**gated, "thirdway_proposal": 7},
            "json_list": {**gated, "thirdway_proposal": json.dumps([chain])},
            "extra_field": {**gated, "thirdway_proposal": {**chain, "action": {"tool": "x"}}},
            "huge_string": {**gated, "thirdway_proposal": " " * (MAX_PROPOSAL_BYTES + 1)},
            "huge_object": {
                **gated,
                "thirdway_proposal": {**chain, "goal": "x" * (MAX_PROPOSAL_BYTES + 1)},
            },
            "no_session": {**read, "thirdway_proposal": chain},
            "session_not_text": {**read, "thirdway_session": 5, "thirdway_proposal": chain},
        }
        for name, arguments in cases.items():
            seen[name] = await client.call_tool("read_file", arguments)
        seen["open_bad"] = await client.call_tool("thirdway_open_session", {"agent": 3})
        seen["unmirrored"] = await client.call_tool("shred_everything", {})
        # the proxy still serves an honest call after all of that
        seen["honest"] = await client.call_tool("read_file", {**gated, "thirdway_proposal": chain})
    return seen


def test_malformed_chains_never_reach_the_upstream(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    calls.touch()
    seen = anyio.run(_malformed, tmp_path / "data", calls)
    expected = {
        "missing": "thirdway_proposal must be an object",
        "null": "thirdway_proposal must be an object",
        "list": "thirdway_proposal must be an object",
        "number": "thirdway_proposal must be an object",
        "json_list": "thirdway_proposal must be an object",
        "extra_field": "unknown fields: action",
        "huge_string": f"larger than {MAX_PROPOSAL_BYTES} bytes",
        "huge_object": f"larger than {MAX_PROPOSAL_BYTES} bytes",
        "no_session": "thirdway_session must be a session id",
        "session_not_text": "thirdway_session must be a session id",
        "open_bad": "agent and instruction must be strings",
        "unmirrored": "no gated tool 'shred_everything'",
    }
    for name, needle in expected.items():
        result = seen[name]
        assert result.isError, (name, _text(result))
        assert needle in _text(result), (name, _text(result))
    assert not seen["honest"].isError, _text(seen["honest"])
    reached = [json.loads(line) for line in calls.read_text().splitlines()]
    assert reached == [{"tool": "read_file", "args": {"file_path": banking.BILL_FILE}}]


async def _failing(data: Path, calls: Path, mode: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with stdio_client(_params(data, calls, mode)) as (r, w), ClientSession(r, w) as client:
        await client.initialize()
        opened = await client.call_tool(
            "thirdway_open_session", {"agent": AGENT, "instruction": banking.INSTRUCTION}
        )
        sid = json.loads(_text(opened))["session"]
        arguments = {"file_path": banking.BILL_FILE, "thirdway_session": sid}
        with anyio.fail_after(60):
            seen["first"] = await client.call_tool(
                "read_file", {**arguments, "thirdway_proposal": _chain(sid)}
            )
            # the proxy is still there: a second session opens and its call is answered
            again = await client.call_tool(
                "thirdway_open_session", {"agent": AGENT, "instruction": banking.INSTRUCTION}
            )
            sid2 = json.loads(_text(again))["session"]
            seen["second"] = await client.call_tool(
                "read_file",
                {**arguments, "thirdway_session": sid2, "thirdway_proposal": _chain(sid2)},
            )
    return seen


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("error", "the disk is on fire"),
        ("crash", "the upstream MCP server did not answer"),
        ("hang", "waited at most 1 s); whether the call took effect upstream is unknown"),
    ],
)
def test_an_upstream_that_fails_is_the_calls_recorded_failure(
    tmp_path: Path, mode: str, needle: str
) -> None:
    calls = tmp_path / "calls.jsonl"
    calls.touch()
    seen = anyio.run(_failing, tmp_path / "data", calls, mode)
    first = seen["first"]
    assert first.isError, _text(first)
    assert needle in _text(first) and "recorded as observation 2" in _text(first)
    assert seen["second"].isError  # answered (the upstream is gone or still failing), no hang
    with TransparencyLog.open(tmp_path / "data" / "log.db", create=False) as log:
        logged = [LogEntry.model_validate_json(log.entry(i)) for i in range(log.size())]
    executions = [e for e in logged if e.type == "execution"]
    assert len(executions) == 2
    for entry in executions:
        payload: Any = entry.payload
        assert payload["event"] == "failed", payload
        assert payload["error"].startswith("UpstreamError"), payload


@pytest.mark.parametrize("value", ["0", "3601", "nan"])
def test_an_upstream_timeout_out_of_range_is_refused_in_one_line(value: str) -> None:
    from typer.testing import CliRunner

    from thirdway.cli.main import app

    result = CliRunner().invoke(
        app, ["mcp-proxy", "--upstream", "true", "--upstream-timeout", value]
    )
    assert result.exit_code == 2
    assert "--upstream-timeout must be from 1 to 3600 seconds" in result.output
    assert "Traceback" not in result.output
