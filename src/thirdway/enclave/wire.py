"""Length-prefixed canonical JSON frames: how the gateway and the enclave talk over pipes.

A frame is a 4-byte big-endian length followed by that many bytes of RFC 8785 canonical JSON
encoding one JSON object. Both sides refuse a frame whose length exceeds the limit *before*
reading its body (a hostile length cannot make the reader allocate gigabytes), and a body that is
not valid UTF-8 JSON, holds duplicate keys or non-finite numbers, is not an object, or is not in
canonical form. Requiring canonical bytes means the bytes a signature covers are the bytes on the
wire: there is exactly one encoding of each message.

Two flavours: blocking reads and writes on binary streams (the enclave, which has nothing else to
do) and deadline-bound ones on non-blocking file descriptors (the gateway, which must never wait
on a hung enclave longer than its timeout).
"""

from __future__ import annotations

import json
import os
import selectors
import struct
import time
from typing import IO, Any

import rfc8785

from thirdway.errors import InputError

HEADER = struct.Struct(">I")
MAX_SAFE_INTEGER = 2**53 - 1
MAX_FRAME_BYTES = 128 * 1024 * 1024
"""Twice the largest JSON document thirdway parses (64 MiB): a request carries a proposal and the
session's observations. A length above it is refused before anything is read."""


class FrameError(InputError):
    """A frame was malformed: bad length, truncated, not canonical JSON, not an object."""


class FrameTimeout(FrameError):
    """The peer did not complete a frame before the deadline."""


class PeerClosed(FrameError):
    """The peer closed the pipe (at a frame boundary or in the middle of one)."""


def encode_frame(message: dict[str, Any], max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """The frame carrying ``message``: length prefix plus RFC 8785 bytes."""
    if not isinstance(message, dict):
        raise FrameError(f"a frame carries a JSON object, not {type(message).__name__}")
    try:
        body = rfc8785.dumps(message)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise FrameError(f"message cannot be encoded as canonical JSON: {exc}") from exc
    if len(body) > max_bytes:
        raise FrameError(f"message is {len(body)} bytes; the frame limit is {max_bytes}")
    return HEADER.pack(len(body)) + body


def encode_object_frame(parts: dict[str, bytes], max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """The frame of a JSON object whose member values are already RFC 8785 bytes.

    RFC 8785 encodes an object as its members sorted by the UTF-16 code units of their names,
    each ``name:value`` with the value's own canonical encoding, so splicing cached encodings
    gives exactly :func:`encode_frame`'s bytes. The gateway uses it to encode each observation
    once per object instead of once per request.
    """
    members = [
        rfc8785.dumps(name) + b":" + parts[name]
        for name in sorted(parts, key=lambda name: name.encode("utf-16-be"))
    ]
    body = b"{" + b",".join(members) + b"}"
    if len(body) > max_bytes:
        raise FrameError(f"message is {len(body)} bytes; the frame limit is {max_bytes}")
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes, max_bytes: int = MAX_FRAME_BYTES) -> int:
    """The body length announced by a 4-byte header, refused when over ``max_bytes``."""
    (length,) = HEADER.unpack(header)
    if length > max_bytes:
        raise FrameError(f"frame announces {length} bytes; the limit is {max_bytes}")
    return int(length)


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise FrameError(f"frame holds the key {key!r} twice")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise FrameError(f"frame holds the non-JSON number {name}")


def _parse_int(text: str) -> int | float:
    """JSON numbers are doubles (RFC 8785 §3.2.2.3): beyond 2**53 an integer is the float the
    sender encoded, so the canonical re-encoding can match."""
    if len(text) > 400:
        raise FrameError("frame holds a number too long to be a double")
    number = int(text)
    return number if abs(number) <= MAX_SAFE_INTEGER else float(number)


def decode_body(body: bytes) -> dict[str, Any]:
    """Parse a frame body strictly: UTF-8, one JSON object, canonical form."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"frame is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_refuse_duplicates,
            parse_constant=_refuse_constant,
            parse_int=_parse_int,
        )
    except json.JSONDecodeError as exc:
        raise FrameError(f"frame is not JSON: {exc.msg} at byte {exc.pos}") from None
    except RecursionError:
        raise FrameError("frame nests too deeply") from None
    if not isinstance(value, dict):
        raise FrameError(f"frame must hold a JSON object, found {type(value).__name__}")
    try:
        canonical = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise FrameError(f"frame is not canonicalisable JSON: {exc}") from None
    if canonical != body:
        raise FrameError("frame is not in RFC 8785 canonical form")
    return value


# --------------------------------------------------------------------------- blocking streams


def _read_exact(stream: IO[bytes], count: int, at_boundary: bool) -> bytes:
    data = stream.read(count)
    if data is None:
        raise FrameError("stream is non-blocking; use read_frame_fd")
    if len(data) < count:
        if at_boundary and not data:
            raise PeerClosed("peer closed the pipe")
        raise PeerClosed(f"peer closed the pipe inside a frame ({len(data)} of {count} bytes)")
    return data


def read_frame(stream: IO[bytes], max_bytes: int = MAX_FRAME_BYTES) -> dict[str, Any]:
    """Read one frame from a blocking binary stream. :class:`PeerClosed` at end of input."""
    length = frame_length(_read_exact(stream, HEADER.size, at_boundary=True), max_bytes)
    return decode_body(_read_exact(stream, length, at_boundary=False))


def write_frame(
    stream: IO[bytes], message: dict[str, Any], max_bytes: int = MAX_FRAME_BYTES
) -> None:
    """Write one frame to a blocking binary stream and flush it."""
    stream.write(encode_frame(message, max_bytes))
    stream.flush()


# --------------------------------------------------------------------------- deadline-bound fds


def _remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FrameTimeout(f"timed out {what}")
    return left


def _wait(fd: int, event: int, deadline: float, what: str) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(fd, event)
        while not selector.select(_remaining(deadline, what)):
            pass


def _read_exact_fd(fd: int, count: int, deadline: float, at_boundary: bool) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        _wait(fd, selectors.EVENT_READ, deadline, "waiting for the peer's reply")
        try:
            chunk = os.read(fd, min(count - len(chunks), 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            if at_boundary and not chunks:
                raise PeerClosed("peer closed the pipe")
            raise PeerClosed(
                f"peer closed the pipe inside a frame ({len(chunks)} of {count} bytes)"
            )
        chunks += chunk
    return bytes(chunks)


def read_frame_fd(fd: int, deadline: float, max_bytes: int = MAX_FRAME_BYTES) -> dict[str, Any]:
    """Read one frame from a non-blocking fd before ``deadline`` (``time.monotonic``)."""
    length = frame_length(_read_exact_fd(fd, HEADER.size, deadline, at_boundary=True), max_bytes)
    return decode_body(_read_exact_fd(fd, length, deadline, at_boundary=False))


def write_all_fd(fd: int, data: bytes, deadline: float) -> None:
    """Write ``data`` to a non-blocking fd before ``deadline``; a full pipe waits, never hangs."""
    view = memoryview(data)
    while view:
        _wait(fd, selectors.EVENT_WRITE, deadline, "sending to the peer")
        try:
            written = os.write(fd, view[: 1 << 20])
        except BlockingIOError:
            continue
        except BrokenPipeError:
            raise PeerClosed("peer closed the pipe") from None
        view = view[written:]
