"""Frames on the pipe: strict on both sides, bounded before anything is read."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave_support import CHARTER, MANIFESTS, OBSERVATIONS, PROPOSAL
from thirdway.enclave import wire
from thirdway.enclave.attestation import new_nonce
from thirdway.enclave.client import enclave_command
from thirdway.verify import VerifyPolicy

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
messages = st.dictionaries(st.text(), json_values, max_size=5)


@settings(max_examples=200, deadline=None)
@given(messages)
def test_every_message_round_trips(message: dict[str, Any]) -> None:
    frame = wire.encode_frame(message)
    assert frame[4:] == rfc8785.dumps(message)
    assert wire.read_frame(io.BytesIO(frame)) == wire.decode_body(frame[4:])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_are_refused_cleanly_or_are_a_canonical_frame(data: bytes) -> None:
    try:
        message = wire.read_frame(io.BytesIO(data), max_bytes=1024)
    except wire.FrameError:
        return
    assert wire.encode_frame(message) == data[: 4 + len(rfc8785.dumps(message))]


class _NoBody(io.BytesIO):
    """Fails the test if anyone reads past the 4-byte header."""

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= 4:
            raise AssertionError("the body of an oversized frame was read")
        return super().read(size)


def test_an_oversized_length_is_refused_before_reading_the_body() -> None:
    with pytest.raises(wire.FrameError, match="frame announces 4294967295 bytes; the limit is"):
        wire.read_frame(_NoBody(b"\xff\xff\xff\xff" + b"x" * 10))
    with pytest.raises(wire.FrameError, match="the frame limit is 8"):
        wire.encode_frame({"a": "long text"}, max_bytes=8)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{nope", "not JSON"),
        (b"[1,2]", "must hold a JSON object"),
        (b'{"a":1,"a":2}', "holds the key 'a' twice"),
        (b'{"a":NaN}', "non-JSON number NaN"),
        (b'{"b":1,"a":2}', "not in RFC 8785 canonical form"),
        (b'{"a": 1}', "not in RFC 8785 canonical form"),
        (b'{"a":1.0}', "not in RFC 8785 canonical form"),
        (b"[" * 100_000, "nests too deeply"),
        (b'{"a":' + b"9" * 500 + b"}", "number too long"),
    ],
)
def test_malformed_bodies_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(wire.FrameError, match=message):
        wire.read_frame(io.BytesIO(len(body).to_bytes(4, "big") + body))


def test_truncated_frames_and_closed_pipes() -> None:
    with pytest.raises(wire.PeerClosed, match=r"peer closed the pipe$"):
        wire.read_frame(io.BytesIO(b""))
    with pytest.raises(wire.PeerClosed, match="inside a frame"):
        wire.read_frame(io.BytesIO(b"\x00\x00"))
    with pytest.raises(wire.PeerClosed, match=r"inside a frame \(2 of 10 bytes\)"):
        wire.read_frame(io.BytesIO(b"\x00\x00\x00\x0a{}"))


def test_fd_reads_and_writes_respect_the_deadline() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    try:
        started = time.monotonic()
        with pytest.raises(wire.FrameTimeout):
            wire.read_frame_fd(read_end, time.monotonic() + 0.2)
        with pytest.raises(wire.FrameTimeout):
            wire.write_all_fd(write_end, b"x" * (16 << 20), time.monotonic() + 0.2)
        assert time.monotonic() - started < 5
    finally:
        os.close(read_end)
        os.close(write_end)


# --------------------------------------------------------------------------- the real server


def _spawn() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        enclave_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={}
    )


def _init() -> dict[str, Any]:
    return {
        "type": "init",
        "nonce": new_nonce(),
        "manifests": MANIFESTS.model_dump(mode="json"),
        "policy": VerifyPolicy().model_dump(mode="json"),
        "charter": CHARTER.model_dump(mode="json"),
        "hardware": "off",
        "tsm_root": None,
    }


def _talk(proc: subprocess.Popen[bytes], raw: bytes) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(raw)
    proc.stdin.flush()
    return wire.read_frame(proc.stdout)


def test_server_refuses_an_oversized_frame_and_exits() -> None:
    proc = _spawn()
    reply = _talk(proc, b"\x7f\xff\xff\xff")
    assert reply["type"] == "error"
    assert "malformed frame: frame announces 2147483647 bytes" in reply["message"]
    assert proc.wait(30) == 2


def test_server_refuses_garbage_after_the_handshake_and_serves_bad_requests_politely() -> None:
    proc = _spawn()
    assert _talk(proc, wire.encode_frame(_init()))["type"] == "attestation"
    unknown = _talk(proc, wire.encode_frame({"type": "mint", "id": 1}))
    assert unknown == {"type": "error", "id": 1, "message": "unknown request type 'mint'"}
    bad = _talk(proc, wire.encode_frame({"type": "verify", "id": 2, "proposal": {"x": 1}}))
    assert bad["id"] == 2 and bad["message"].startswith("invalid proposal:")
    good = {
        "type": "verify",
        "id": 3,
        "proposal": PROPOSAL.model_dump(mode="json", by_alias=True),
        "observations": [o.model_dump(mode="json") for o in OBSERVATIONS],
        "history": [],
        "recorded_before": None,
    }
    assert _talk(proc, wire.encode_frame(good))["type"] == "verdict"
    garbage = _talk(proc, b"\x00\x00\x00\x04junk")
    assert garbage["type"] == "error" and "malformed frame: frame is not JSON" in garbage["message"]
    assert proc.wait(30) == 2


def test_server_refuses_a_bad_init() -> None:
    proc = _spawn()
    reply = _talk(proc, wire.encode_frame({**_init(), "nonce": "abc"}))
    assert reply["type"] == "error" and "init nonce must be 32 bytes" in reply["message"]
    assert proc.wait(30) == 3


def test_server_exits_quietly_when_the_gateway_goes_away() -> None:
    proc = _spawn()
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(30) == 0


def test_enclave_command_runs_isolated() -> None:
    assert enclave_command()[:3] == [sys.executable, "-I", "-m"]


@settings(max_examples=200, deadline=None)
@given(messages)
def test_spliced_frames_equal_whole_frames(message: dict[str, Any]) -> None:
    """The gateway's cached per-member encodings give the exact RFC 8785 frame."""
    parts = {name: rfc8785.dumps(value) for name, value in message.items()}
    assert wire.encode_object_frame(parts) == wire.encode_frame(message)


def test_spliced_frames_keep_the_size_limit() -> None:
    with pytest.raises(wire.FrameError, match="the frame limit is 10"):
        wire.encode_object_frame({"a": b'"' + b"x" * 20 + b'"'}, max_bytes=10)
