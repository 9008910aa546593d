"""The enclave's work: handshake, attestation, then verify-and-sign until stdin closes.

Messages (all frames, see :mod:`thirdway.enclave.wire`):

* gateway → enclave, first: ``{"type": "init", "nonce", "manifests", "policy", "charter",
  "hardware", "tsm_root"}``; the enclave answers ``{"type": "attestation", "attestation"}``.
* then ``{"type": "verify", "id", "proposal", "observations", "history", "recorded_before"}``;
  the answer is ``{"type": "verdict", "id", "signed"}`` or ``{"type": "error", "id",
  "message"}`` for a request it cannot judge (the gateway validates first, so this is rare).

A frame that cannot be read (bad length, garbage) desynchronises the stream: the enclave answers
with an error naming it and exits. The signing key is created here and never written anywhere.
Standard output is reserved for frames: anything printed by a library goes to standard error.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import TypeAdapter, ValidationError

from thirdway.enclave import measure, tsm, wire
from thirdway.enclave.attestation import (
    NONCE_BYTES,
    Attestation,
    Measurement,
    Quote,
    config_digest,
    raw_public_key,
    report_data,
    sign_attestation,
)
from thirdway.enclave.verdicts import request_digest, sign_verdict
from thirdway.errors import ThirdwayError
from thirdway.protocol.manifest import ManifestSet
from thirdway.protocol.models import Observation, Proposal
from thirdway.protocol.parse import describe
from thirdway.verify import VerifyPolicy, verify

EXIT_OK = 0
EXIT_BAD_FRAME = 2
EXIT_BAD_INIT = 3

_OBSERVATIONS: TypeAdapter[list[Observation]] = TypeAdapter(list[Observation])
_PROPOSALS: TypeAdapter[list[Proposal]] = TypeAdapter(list[Proposal])
_INDEX: TypeAdapter[int | None] = TypeAdapter(int | None)


class RequestError(ThirdwayError):
    """A well-framed message the enclave cannot act on; answered, then serving continues."""


@dataclass(frozen=True)
class Enclave:
    """One started enclave: what it judges with, its key and its attestation."""

    manifests: ManifestSet
    policy: VerifyPolicy
    charter_sha256: str
    """The charter it measured (``attestation.components.charter``); every verdict cites it."""
    key: Ed25519PrivateKey
    attestation: Attestation


def run(finder: measure.MeasuringFinder) -> int:
    """Serve one gateway over stdin/stdout; returns the process exit status."""
    frames_in = sys.stdin.buffer
    frames_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from any library must never corrupt the frame stream
    sys.stdout = sys.stderr
    try:
        init = wire.read_frame(frames_in)
    except wire.PeerClosed:
        return EXIT_OK
    except wire.FrameError as exc:
        return _refuse_frame(frames_out, exc)
    try:
        enclave = start(init, finder)
    except (ThirdwayError, measure.MeasurementError) as exc:
        _send(frames_out, {"type": "error", "id": None, "message": f"enclave start failed: {exc}"})
        return EXIT_BAD_INIT
    _send(frames_out, {"type": "attestation", "attestation": _json(enclave.attestation)})
    return serve(enclave, frames_in, frames_out)


def serve(enclave: Enclave, frames_in: IO[bytes], frames_out: IO[bytes]) -> int:
    """Answer requests until the gateway closes the pipe."""
    while True:
        try:
            message = wire.read_frame(frames_in)
        except wire.PeerClosed:
            return EXIT_OK
        except wire.FrameError as exc:
            return _refuse_frame(frames_out, exc)
        _send(frames_out, handle(enclave, message))


def handle(enclave: Enclave, message: dict[str, Any]) -> dict[str, Any]:
    """The reply to one request (never raises: a bad request gets an error reply)."""
    request_id = message.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        request_id = None
    try:
        if message.get("type") != "verify":
            raise RequestError(f"unknown request type {message.get('type')!r}")
        if request_id is None:
            raise RequestError("a verify request needs an integer 'id'")
        return {"type": "verdict", "id": request_id, "signed": _json(judge(enclave, message))}
    except ThirdwayError as exc:
        return {"type": "error", "id": request_id, "message": str(exc)}
    except Exception as exc:  # fail closed, keep serving: the gateway gets no verdict
        return {
            "type": "error",
            "id": request_id,
            "message": f"enclave error: {type(exc).__name__}",
        }


def judge(enclave: Enclave, message: dict[str, Any]) -> Any:
    """Validate one verify request, run the verifier, sign the verdict for exactly it."""
    _only_keys(
        message, {"type", "id", "proposal", "observations", "history", "recorded_before"}, "verify"
    )
    proposal = _validate(Proposal.model_validate, message.get("proposal"), "proposal")
    observations = _validate(
        _OBSERVATIONS.validate_python, message.get("observations"), "observations"
    )
    history = _validate(_PROPOSALS.validate_python, message.get("history", []), "history")
    recorded_before = _validate(
        _INDEX.validate_python, message.get("recorded_before"), "recorded_before"
    )
    if recorded_before is not None and recorded_before < 0:
        raise RequestError("recorded_before must be ≥ 0")
    if recorded_before is None:
        verdict = verify(
            proposal,
            observations,
            enclave.manifests,
            enclave.policy,
            history,
            charter_sha256=enclave.charter_sha256,
        )
    else:
        verdict = verify(
            proposal,
            observations,
            enclave.manifests,
            enclave.policy,
            history,
            recorded_before=recorded_before,
            charter_sha256=enclave.charter_sha256,
        )
    digest = request_digest(proposal, observations, history, recorded_before)
    return sign_verdict(enclave.key, verdict, digest, enclave.attestation)


def start(init: dict[str, Any], finder: measure.MeasuringFinder) -> Enclave:
    """Validate the init message, measure, create the key, attest."""
    _only_keys(
        init,
        {"type", "nonce", "manifests", "policy", "charter", "hardware", "tsm_root"},
        "init",
    )
    if init.get("type") != "init":
        raise RequestError("the first message must be 'init'")
    nonce = init.get("nonce")
    if not isinstance(nonce, str) or len(nonce) != 2 * NONCE_BYTES or not _is_hex(nonce):
        raise RequestError(f"init nonce must be {NONCE_BYTES} bytes as lower-case hex")
    manifests = _validate(ManifestSet.model_validate, init.get("manifests"), "manifests")
    policy = _validate(VerifyPolicy.model_validate, init.get("policy"), "policy")
    charter = init.get("charter")
    if not isinstance(charter, dict) or not charter:
        raise RequestError("init charter must be a non-empty JSON object")
    hardware = init.get("hardware", "auto")
    if hardware not in ("auto", "require", "off"):
        raise RequestError("init hardware must be 'auto', 'require' or 'off'")
    tsm_root_text = init.get("tsm_root")
    if tsm_root_text is not None and not isinstance(tsm_root_text, str):
        raise RequestError("init tsm_root must be a path or null")
    tsm_root = Path(tsm_root_text) if tsm_root_text else tsm.DEFAULT_TSM_ROOT

    components = Measurement(
        code=measure.load_measured_code(finder),
        manifests=config_digest(manifests),
        policy=config_digest(policy),
        charter=config_digest(charter),
    )
    key = Ed25519PrivateKey.generate()
    public_key = raw_public_key(key)
    found = tsm.platform_evidence(report_data(public_key, bytes.fromhex(nonce)), hardware, tsm_root)
    quote = None
    if found.evidence is not None:
        quote = Quote(
            provider=found.evidence.provider,
            inblob=found.evidence.inblob.hex(),
            outblob=_b64(found.evidence.outblob),
            generation=found.evidence.generation,
        )
    attestation = sign_attestation(key, components, nonce, found.platform, quote, found.note)
    return Enclave(
        manifests=manifests,
        policy=policy,
        charter_sha256=components.charter,
        key=key,
        attestation=attestation,
    )


# --------------------------------------------------------------------------- helpers


def _validate(validator: Any, value: Any, what: str) -> Any:
    try:
        return validator(value)
    except ValidationError as exc:
        raise RequestError(describe(exc, what)) from None


def _only_keys(message: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(message) - allowed)
    if unknown:
        raise RequestError(f"{what} message has unknown fields {unknown}")


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True)


def _send(frames_out: IO[bytes], message: dict[str, Any]) -> None:
    try:
        wire.write_frame(frames_out, message)
    except wire.FrameError as exc:  # a reply too large for a frame: say so instead
        wire.write_frame(
            frames_out,
            {"type": "error", "id": message.get("id"), "message": f"reply not sendable: {exc}"},
        )


def _refuse_frame(frames_out: IO[bytes], exc: wire.FrameError) -> int:
    """Name the malformed frame to the gateway, then stop: the stream cannot be trusted."""
    with contextlib.suppress(OSError):
        _send(frames_out, {"type": "error", "id": None, "message": f"malformed frame: {exc}"})
    return EXIT_BAD_FRAME
