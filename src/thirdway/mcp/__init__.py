"""The MCP proxy: an MCP server whose tools mirror an upstream MCP server's, behind the gate.

See :mod:`thirdway.mcp.proxy`. (This package is ``thirdway.mcp``; the SDK is the top-level
``mcp`` package.)
"""
