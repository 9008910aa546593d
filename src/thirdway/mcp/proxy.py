"""``thirdway mcp-proxy --upstream CMD``: gate an existing MCP tool server.

The proxy is itself an MCP server (stdio). It starts the upstream server as a subprocess (the
SDK's stdio client), and mirrors each upstream tool that a tool manifest describes, with two
extra required arguments:

* ``thirdway_session`` — a session opened with the proxy's own ``thirdway_open_session`` tool
  (agent id + the principal's instruction, recorded as observation 0);
* ``thirdway_proposal`` — the reasoning chain for exactly this call: ``goal``, ``steps``,
  ``bindings``, ``effects`` (the ``thirdway/1`` proposal without ``session`` and ``action``,
  which the proxy fills in from the call itself).

Every call goes through the gate: verify → authorize → mint → execute. Only ``execute`` calls
the upstream tool, with the capability's exact arguments; its result is recorded as a data
observation (whose index the reply names, for later chains to cite). A denial, an escalation or
a malformed chain returns an MCP tool error naming the findings; the upstream never sees the
call. Tools no manifest describes are not mirrored (their risk is unknown: fail closed).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
from anyio import from_thread
from mcp import ClientSession, StdioServerParameters
from mcp import types as mcp_types
from mcp.client.stdio import stdio_client
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from thirdway.errors import InputError, ThirdwayError
from thirdway.gateway import Denied, Escalated, Granted, ToolRegistry
from thirdway.gateway.factory import Gateway, open_gateway
from thirdway.protocol.manifest import ManifestSet

OPEN_SESSION: Final = "thirdway_open_session"
SESSION_ARG: Final = "thirdway_session"
PROPOSAL_ARG: Final = "thirdway_proposal"
CHAIN_FIELDS: Final = ("goal", "steps", "bindings", "effects")
MAX_PROPOSAL_BYTES: Final = 256 * 1024
UPSTREAM_TIMEOUT_S: Final = 60.0
"""How long a gated call waits for the upstream's answer by default (``--upstream-timeout``)."""


class UpstreamError(RuntimeError):
    """The upstream tool answered with an error (recorded as the tool's failure)."""


def _text(result: mcp_types.CallToolResult) -> str:
    parts = []
    for item in result.content:
        if isinstance(item, mcp_types.TextContent):
            parts.append(item.text)
        else:
            parts.append(f"[{item.type} content]")
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, sort_keys=True))
    return "\n".join(parts)


def _caller(upstream: ClientSession, name: str, timeout_s: float) -> Any:
    """A synchronous hosted tool that calls the upstream tool (from the gate's worker thread),
    waiting at most ``timeout_s`` for its answer: an upstream that hangs must not hold a gate
    thread (and the agent) for ever."""
    wait = timedelta(seconds=timeout_s)

    def call(**args: Any) -> str:
        try:
            result = from_thread.run(
                partial(upstream.call_tool, name, args, read_timeout_seconds=wait)
            )
        except Exception as exc:  # died, hung or broke the protocol: name it as such
            detail = f"{type(exc).__name__}: {exc}"
            raise UpstreamError(
                f"the upstream MCP server did not answer ({detail}; waited at most "
                f"{timeout_s:g} s); whether the call took effect upstream is unknown"
            ) from exc
        text = _text(result)
        if result.isError:
            raise UpstreamError(text)
        return text

    call.__name__ = name
    return call


def mirrored_schema(tool: mcp_types.Tool) -> dict[str, Any]:
    """The upstream tool's input schema plus the session and the chain."""
    schema = dict(tool.inputSchema or {"type": "object"})
    properties = dict(schema.get("properties") or {})
    properties[SESSION_ARG] = {
        "type": "string",
        "description": f"A session id from {OPEN_SESSION}.",
    }
    properties[PROPOSAL_ARG] = {
        "type": "object",
        "description": "The reasoning chain for this exact call (thirdway/1): "
        + ", ".join(CHAIN_FIELDS),
        "properties": {name: {} for name in CHAIN_FIELDS},
        "required": ["goal", "steps", "bindings"],
    }
    schema["properties"] = properties
    schema["required"] = [*list(schema.get("required") or []), SESSION_ARG, PROPOSAL_ARG]
    schema["type"] = "object"
    return schema


def _error(text: str) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text=text)], isError=True
    )


def _ok(*texts: str) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text=t) for t in texts], isError=False
    )


class GatedTools:
    """The mirrored tools and how a call to one goes through the gate."""

    def __init__(self, gateway: Gateway, tools: Sequence[mcp_types.Tool]) -> None:
        self.gateway = gateway
        self.tools = {tool.name: tool for tool in tools}

    def listing(self) -> list[mcp_types.Tool]:
        opener = mcp_types.Tool(
            name=OPEN_SESSION,
            description="Open a gated session: your agent id and the principal's instruction.",
            inputSchema={
                "type": "object",
                "properties": {"agent": {"type": "string"}, "instruction": {"type": "string"}},
                "required": ["agent", "instruction"],
            },
        )
        mirrored = [
            mcp_types.Tool(
                name=tool.name,
                description=(tool.description or "")
                + " (gated by thirdway: pass the session and the reasoning chain)",
                inputSchema=mirrored_schema(tool),
            )
            for tool in self.tools.values()
        ]
        return [opener, *mirrored]

    def call(self, name: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """Runs in a worker thread (the gate and the upstream call block)."""
        try:
            if name == OPEN_SESSION:
                return self._open(arguments)
            if name not in self.tools:
                return _error(f"thirdway: no gated tool {name[:80]!r}")
            return self._gated(name, dict(arguments))
        except ThirdwayError as exc:
            return _error(f"thirdway refused the call: {exc}")

    def _open(self, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        agent, instruction = arguments.get("agent"), arguments.get("instruction")
        if not isinstance(agent, str) or not isinstance(instruction, str):
            raise InputError("agent and instruction must be strings")
        sid = self.gateway.gate.open_session(agent, instruction)
        return _ok(json.dumps({"session": sid, "instruction_observation": 0}))

    def _gated(self, name: str, args: dict[str, Any]) -> mcp_types.CallToolResult:
        session = args.pop(SESSION_ARG, None)
        chain = args.pop(PROPOSAL_ARG, None)
        if not isinstance(session, str):
            raise InputError(f"{SESSION_ARG} must be a session id from {OPEN_SESSION}")
        chain = _parsed_chain(chain)
        unknown = sorted(set(chain) - set(CHAIN_FIELDS))
        if unknown:
            raise InputError(f"{PROPOSAL_ARG} has unknown fields: {', '.join(unknown)}")
        gate = self.gateway.gate
        call = {"tool": name, "args": args}
        outcome = gate.propose(session, {**chain, "session": session, "action": call})
        if isinstance(outcome, Granted):
            executed = gate.execute(session, outcome.token, call)
            note = f"[thirdway] recorded as observation {executed.result_index}"
            if not executed.ok:
                return _error(f"{executed.content}\n{note}")
            return _ok(executed.content, note)
        findings = outcome.verdict.findings if outcome.verdict is not None else ()
        lines = [f"- {f.code} ({f.severity}): {f.message}" for f in findings]
        if isinstance(outcome, Escalated):
            head = f"thirdway escalated {name} (dialogue {outcome.handle}): {outcome.reason}"
        else:
            assert isinstance(outcome, Denied)
            head = f"thirdway refused {name}: {outcome.reason}"
        return _error("\n".join([head, "findings:" if lines else "findings: none", *lines]))


def _parsed_chain(chain: Any) -> dict[str, Any]:
    """The chain argument as an object, sent as one or as its JSON text; over
    ``MAX_PROPOSAL_BYTES`` either way (measured as UTF-8 JSON) is refused before parsing it
    further."""
    if isinstance(chain, str):
        text = chain
    elif isinstance(chain, dict):
        text = json.dumps(chain, ensure_ascii=False, default=str)
    else:
        raise InputError(f"{PROPOSAL_ARG} must be an object with {', '.join(CHAIN_FIELDS)}")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PROPOSAL_BYTES:
        raise InputError(f"{PROPOSAL_ARG} is larger than {MAX_PROPOSAL_BYTES} bytes")
    if isinstance(chain, dict):
        return chain
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{PROPOSAL_ARG} is not JSON ({exc.msg})") from None
    if not isinstance(parsed, dict):
        raise InputError(f"{PROPOSAL_ARG} must be an object with {', '.join(CHAIN_FIELDS)}")
    return parsed


def build_server(gated: GatedTools) -> Server[Any, Any]:
    server: Server[Any, Any] = Server("thirdway-mcp-proxy")

    @server.list_tools()  # type: ignore[untyped-decorator,no-untyped-call]
    async def list_tools() -> list[mcp_types.Tool]:
        return gated.listing()

    @server.call_tool(validate_input=False)  # type: ignore[untyped-decorator]
    async def call_tool(name: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        return await anyio.to_thread.run_sync(gated.call, name, arguments or {})

    return server


async def serve(
    upstream: Sequence[str],
    data_dir: Path,
    manifests: ManifestSet,
    env: dict[str, str],
    timeout_s: float = UPSTREAM_TIMEOUT_S,
) -> None:
    """Connect to the upstream server, open the gateway, and serve MCP on stdin/stdout; each
    upstream call may take at most ``timeout_s``."""
    if not upstream:
        raise InputError("--upstream needs a command")
    params = StdioServerParameters(command=upstream[0], args=list(upstream[1:]), env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = (await session.list_tools()).tools
        registry = ToolRegistry()
        mirrored: list[mcp_types.Tool] = []
        for tool in listed:
            manifest = manifests.tools.get(tool.name)
            props = (tool.inputSchema or {}).get("properties") or {}
            if tool.name == OPEN_SESSION or SESSION_ARG in props or PROPOSAL_ARG in props:
                print(f"thirdway: {tool.name!r} collides with the gate's names", file=sys.stderr)
            elif manifest is None:
                print(f"thirdway: no manifest for {tool.name!r}; not mirrored", file=sys.stderr)
            else:
                registry.register(_caller(session, tool.name, timeout_s), manifest)
                mirrored.append(tool)
        gateway = open_gateway(data_dir, tools=registry, dialogue=False)
        try:
            server = build_server(GatedTools(gateway, mirrored))
            async with stdio_server() as (server_read, server_write):
                await server.run(server_read, server_write, server.create_initialization_options())
        finally:
            gateway.close()
