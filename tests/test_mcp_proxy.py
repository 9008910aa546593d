"""``thirdway mcp-proxy`` gating a real upstream MCP server (a stdio subprocess), driven by an MCP
client session: an honest call reaches the upstream; injected and fabricated ones never do."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from gatekeeper_support import fabricated_transfer, injected_transfer
from thirdway.gateway import banking
from thirdway.ledger.log import TransparencyLog
from thirdway.protocol.models import LogEntry

UPSTREAM = Path(__file__).with_name("mcp_upstream_server.py")
AGENT = "agent-7"


def _chain(proposal: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in proposal.items() if k in ("goal", "steps", "bindings", "effects")}


def _text(result: Any) -> str:
    return "\n".join(item.text for item in result.content)


async def _drive(data: Path, calls: Path) -> dict[str, Any]:
    upstream = f"{sys.executable} {UPSTREAM} {calls}"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", "from thirdway.cli.main import main; main()", "mcp-proxy",
              "--upstream", upstream, "--data-dir", str(data)],
    )  # fmt: skip
    seen: dict[str, Any] = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        seen["tools"] = tools
        opened = await client.call_tool(
            "thirdway_open_session", {"agent": AGENT, "instruction": banking.INSTRUCTION}
        )
        sid = json.loads(_text(opened))["session"]
        gated = {"thirdway_session": sid}

        read_chain = _chain(banking.read_proposal(sid))
        seen["read"] = await client.call_tool(
            "read_file",
            {"file_path": banking.BILL_FILE, **gated, "thirdway_proposal": read_chain},
        )
        bill = int(re.findall(r"recorded as observation (\d+)", _text(seen["read"]))[0])
        injected = injected_transfer(sid, bill)
        seen["injected"] = await client.call_tool(
            "send_money",
            {**injected["action"]["args"], **gated, "thirdway_proposal": _chain(injected)},
        )
        fabricated = fabricated_transfer(sid)
        seen["fabricated"] = await client.call_tool(
            "send_money",
            {**fabricated["action"]["args"], **gated, "thirdway_proposal": _chain(fabricated)},
        )
        # The chain says one payee, the call names another: the gate binds the call it got.
        swapped = banking.payment_proposal(sid, bill)
        args = {**swapped["action"]["args"], "recipient": banking.ATTACKER_IBAN}
        seen["swapped"] = await client.call_tool(
            "send_money", {**args, **gated, "thirdway_proposal": _chain(swapped)}
        )
        seen["garbage"] = await client.call_tool(
            "send_money", {**args, **gated, "thirdway_proposal": "{not json"}
        )
        seen["no_session"] = await client.call_tool(
            "read_file",
            {"file_path": banking.BILL_FILE, "thirdway_session": "s-nope",
             "thirdway_proposal": read_chain},
        )  # fmt: skip
    return seen


def test_the_proxy_passes_honest_calls_and_stops_the_rest(tmp_path: Path) -> None:
    calls = tmp_path / "upstream-calls.jsonl"
    calls.touch()
    seen = anyio.run(_drive, tmp_path / "data", calls)

    tools = seen["tools"]
    assert {"thirdway_open_session", "read_file", "send_money"} <= set(tools)
    assert "shred_everything" not in tools  # no manifest: never mirrored
    schema = tools["send_money"].inputSchema
    assert {"recipient", "thirdway_session", "thirdway_proposal"} <= set(schema["required"])

    read = seen["read"]
    assert not read.isError, _text(read)
    assert "Car Rental" in _text(read) and "recorded as observation 2" in _text(read)

    injected = seen["injected"]
    assert injected.isError and "thirdway refused send_money" in _text(injected)
    assert "instruction_from_data (policy)" in _text(injected)
    fabricated = seen["fabricated"]
    assert fabricated.isError and "fabricated_quote (deception)" in _text(fabricated)
    assert seen["swapped"].isError and "findings:" in _text(seen["swapped"])
    assert seen["garbage"].isError and "not JSON" in _text(seen["garbage"])
    assert seen["no_session"].isError and "unknown session" in _text(seen["no_session"])

    reached = [json.loads(line) for line in calls.read_text().splitlines()]
    assert reached == [{"tool": "read_file", "args": {"file_path": banking.BILL_FILE}}]

    with TransparencyLog.open(tmp_path / "data" / "log.db", create=False) as log:
        logged = [LogEntry.model_validate_json(log.entry(i)) for i in range(log.size())]
    assert [e.type for e in logged].count("execution") == 1
    sanctions = [e for e in logged if e.type == "trust" and e.payload["kind"] == "sanction"]  # type: ignore[index,call-overload]
    assert len(sanctions) >= 1  # the fabricated quote cost the agent its tier
