"""A real enclave with one fault injected, for the client's fail-closed tests.

Run as ``python -I enclave_fault.py MODE [ARG]``; it patches :mod:`thirdway.enclave.service`
and then runs the normal entry point, so everything else (measurement, key, attestation,
signatures) is the real code. Modes:

* ``slow SECONDS [MARKER]`` — each verification first touches MARKER (if given), then sleeps.
* ``garbage-verdict`` / ``oversized-verdict`` — reply to a verification with bytes that are not
  JSON / with a length header of 1 GiB.
* ``forged-verdict`` — sign verdicts with a key that is not the attested one.
* ``wrong-request`` — sign verdicts for another request digest.
* ``wrong-id`` — answer with another request id.
* ``garbage-handshake`` — answer the handshake with garbage.
* ``crash-at-start`` — print ``boom`` on stderr and exit 1 before the handshake.
* ``env FILE`` — write this process's environment and isolation flag to FILE, then serve.
* ``record-key FILE`` — the test's window into the enclave: append each signing key this
  process generates (raw 32 bytes, hex, one a line) to FILE, so a test can look for it in
  everything that left the process.
* ``hang-once MARKER`` — the first enclave to get a verification creates MARKER and hangs;
  enclaves started after it (MARKER exists) serve normally.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from thirdway.enclave import server, service, verdicts

MODE = sys.argv[1]
ARGS = sys.argv[2:]
_real_send = service._send
_real_verify = service.verify
_real_sign = service.sign_verdict


def slow_verify(*args: Any, **kwargs: Any) -> Any:
    if len(ARGS) > 1:
        Path(ARGS[1]).write_text("in flight")
    time.sleep(float(ARGS[0]))
    return _real_verify(*args, **kwargs)


def raw_send(frames_out: Any, message: dict[str, Any]) -> None:
    if message.get("type") == "verdict" and MODE == "garbage-verdict":
        frames_out.write(b"\x00\x00\x00\x0bnot json!!!")
        frames_out.flush()
    elif message.get("type") == "verdict" and MODE == "oversized-verdict":
        frames_out.write(b"\x40\x00\x00\x00")
        frames_out.flush()
    elif message.get("type") == "verdict" and MODE == "wrong-id":
        _real_send(frames_out, {**message, "id": message["id"] + 100})
    elif message.get("type") == "attestation" and MODE == "garbage-handshake":
        frames_out.write(b"\x00\x00\x00\x05hello")
        frames_out.flush()
    else:
        _real_send(frames_out, message)


def forged_sign(key: Any, verdict: Any, digest: str, attestation: Any) -> Any:
    if MODE == "forged-verdict":
        key = Ed25519PrivateKey.generate()
    if MODE == "wrong-request":
        digest = "0" * 64
    return _real_sign(key, verdict, digest, attestation)


class RecordingKeys:
    """Stands in for ``Ed25519PrivateKey`` in the service: generates the real key, records it."""

    @staticmethod
    def generate() -> Ed25519PrivateKey:
        key = Ed25519PrivateKey.generate()
        with open(ARGS[0], "a") as out:
            out.write(key.private_bytes_raw().hex() + "\n")
        return key


def hang_once(*args: Any, **kwargs: Any) -> Any:
    marker = Path(ARGS[0])
    if not marker.exists():
        marker.write_text("hung")
        time.sleep(3600)
    return _real_verify(*args, **kwargs)


if MODE == "crash-at-start":
    print("boom", file=sys.stderr)
    sys.exit(1)
if MODE == "env":
    Path(ARGS[0]).write_text(json.dumps({"env": dict(os.environ), "isolated": sys.flags.isolated}))
if MODE == "slow":
    service.verify = slow_verify  # type: ignore[assignment]
if MODE == "hang-once":
    service.verify = hang_once  # type: ignore[assignment]
if MODE == "record-key":
    service.Ed25519PrivateKey = RecordingKeys  # type: ignore[misc,assignment]
service._send = raw_send  # type: ignore[assignment]
service.sign_verdict = forged_sign  # type: ignore[assignment]
assert verdicts.sign_verdict is _real_sign
sys.exit(server.main())
