"""uvicorn's httptools protocol, sending each response with one ``send`` instead of two.

uvicorn writes a response's status line and headers, then its body, as two transport writes;
on uvloop each is a ``send`` system call made with the GIL held, and on loopback each wakes the
client. Profiling ``thirdway bench serve`` put 13 % of the server's GIL time in those writes. The
transport below gathers the writes made in one turn of the event loop and sends them together at
the end of the turn: the same bytes in the same order, one call. Closing flushes first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROTOCOL = "thirdway.service.http:OneWriteHttpToolsProtocol"
"""uvicorn's ``http`` setting for this protocol (an import string: spawned workers import it)."""


class _GatheringTransport:
    """Delegates to ``transport``; ``write`` collects until the loop's next turn."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._pending is None:
            self._pending = [bytes(data)]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` over a :class:`_GatheringTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        gathering = _GatheringTransport(transport, self.loop)
        super().connection_made(gathering)  # type: ignore[arg-type]
