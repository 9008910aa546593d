"""The one-write HTTP protocol: the bytes uvicorn writes in one loop turn leave in one write,
in order; closing sends what is pending first; and a real server answers over it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st

from thirdway.service.http import PROTOCOL, _GatheringTransport


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"extra:{name}"


@given(st.lists(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=5), max_size=5))
def test_each_turns_writes_leave_as_one_write_in_order(turns: list[list[bytes]]) -> None:
    async def main() -> list[bytes]:
        recorder = _Recorder()
        transport = _GatheringTransport(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
        for chunks in turns:
            for chunk in chunks:
                transport.write(chunk)
            await asyncio.sleep(0)  # the loop's next turn
            await asyncio.sleep(0)
        return recorder.writes

    assert asyncio.run(main()) == [b"".join(chunks) for chunks in turns]


def test_close_sends_the_pending_bytes_first_and_delegates_the_rest() -> None:
    async def main() -> _Recorder:
        recorder = _Recorder()
        transport = _GatheringTransport(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.writelines([b"bo", b"dy"])
        transport.close()
        assert transport.get_extra_info("peername") == "extra:peername"
        await asyncio.sleep(0)  # the scheduled flush finds nothing more to send
        return recorder

    recorder = asyncio.run(main())
    assert recorder.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"] and recorder.closed


def test_a_server_answers_over_it_with_keep_alive() -> None:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict[str, int]) -> dict[str, int]:
        return {key: value + 1 for key, value in body.items()}

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, http=PROTOCOL, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for n in range(20):  # one connection, kept alive across the requests
                answer = client.post("/echo", json={"n": n})
                assert answer.status_code == 200 and answer.json() == {"n": n + 1}
            assert client.get("/missing").status_code == 404
    finally:
        server.should_exit = True
        thread.join(timeout=20)
