"""The gateway's side of the enclave: spawn it, check its attestation, ask for signed verdicts.

:class:`EnclaveClient` starts ``python -I -m thirdway.enclave.server`` with an empty environment
(isolated mode: no ``PYTHON*`` variables, no user site, no current directory on the path), sends
the manifests, verify policy and charter with a fresh nonce, and checks the attestation that
comes back (signature, nonce, the configuration digests it sent, and the expected measurement
when given). Then every :meth:`EnclaveClient.verify` sends one request and returns the signed
verdict only after :func:`~thirdway.enclave.verdicts.check_signed_verdict` accepted it.

Fail closed: when the enclave dies, hangs past the per-call timeout or sends a malformed frame,
the call raises :class:`~thirdway.errors.EnclaveUnavailable` (retryable) and no verdict exists;
the client kills that process and starts a new enclave with a new key and a new attestation,
reported through ``on_attestation`` so the gateway can log it. Requests are serialised over the
one pipe by a lock: a request waiting for the lock during a restart is served by the new enclave.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ValidationError

from thirdway.enclave import wire
from thirdway.enclave.attestation import (
    Attestation,
    Measurement,
    config_digest,
    new_nonce,
    verify_attestation,
)
from thirdway.enclave.tsm import HardwareMode
from thirdway.enclave.verdicts import (
    SignedVerdict,
    canonical_bytes,
    check_verdict_signature,
    request_digest,
)
from thirdway.errors import EnclaveError, EnclaveUnavailable, InputError
from thirdway.protocol.manifest import ManifestSet
from thirdway.protocol.models import Observation, Proposal
from thirdway.protocol.parse import describe
from thirdway.verify import VerifyPolicy

DEFAULT_TIMEOUT_S = 2.0
"""Per verification: the deterministic verifier takes milliseconds; two seconds is a hang."""
DEFAULT_START_TIMEOUT_S = 60.0
"""Start-up imports pydantic, z3 and the verifier, and measures them: about a second, more on a
loaded CI machine."""

_BOOT_FROM_ROOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from thirdway.enclave.server import main; sys.exit(main())"
)

AttestationHook = Callable[[Attestation], None]


def enclave_command(package_root: Path | None = None, python: str | None = None) -> list[str]:
    """The argv that starts an enclave (from ``package_root``'s copy of thirdway if given)."""
    interpreter = python or sys.executable
    if package_root is None:
        return [interpreter, "-I", "-m", "thirdway.enclave.server"]
    return [interpreter, "-I", "-c", _BOOT_FROM_ROOT, str(package_root)]


def default_charter() -> BaseModel:
    """The charter shipped with thirdway (imported lazily: the client needs it only here)."""
    from thirdway.charter import load_charter

    return load_charter()


class _Process:
    """One running enclave process and its pipes."""

    def __init__(self, command: Sequence[str]) -> None:
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (lives with the process)
        try:
            self.popen = subprocess.Popen(
                list(command),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                env={},
                bufsize=0,
                close_fds=True,
            )
        except OSError as exc:
            self.stderr.close()
            raise EnclaveError(f"cannot start the verifier enclave ({command[0]}): {exc}") from None
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.to_enclave = self.popen.stdin.fileno()
        self.from_enclave = self.popen.stdout.fileno()
        os.set_blocking(self.to_enclave, False)
        os.set_blocking(self.from_enclave, False)
        self._finalizer = weakref.finalize(self, _kill, self.popen)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exchange(self, frame: bytes, deadline: float, max_bytes: int) -> dict[str, Any]:
        wire.write_all_fd(self.to_enclave, frame, deadline)
        return wire.read_frame_fd(self.from_enclave, deadline, max_bytes)

    def describe_exit(self, grace_s: float = 0.0) -> str | None:
        """How the process ended (status or signal, and its last stderr line), or None.

        A closed pipe usually means the process is exiting: ``grace_s`` waits for its status.
        """
        try:
            status = self.popen.wait(grace_s) if grace_s > 0 else self.popen.poll()
        except subprocess.TimeoutExpired:
            status = None
        if status is None:
            return None
        if status < 0:
            try:
                how = f"killed by {signal.Signals(-status).name}"
            except ValueError:
                how = f"killed by signal {-status}"
        else:
            how = f"exited with status {status}"
        tail = self.stderr_tail()
        return f"enclave {how}" + (f": {tail}" if tail else "")

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - 4096))
            lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return lines[-1][:300] if lines else ""

    def stop(self, grace_s: float = 1.0) -> None:
        """Close stdin (the enclave exits at end of input), then kill if it lingers."""
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            self.popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.kill()
        self.stderr.close()

    def kill(self) -> None:
        _kill(self.popen)


def _kill(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is None:
        popen.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(5)
    for pipe in (popen.stdin, popen.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


class EnclaveClient:
    """A verifier enclave process, restarted on failure, giving signed verdicts.

    ``expected_measurement`` (value or components, see
    :func:`~thirdway.enclave.attestation.expected_measurement`) makes the client refuse an
    enclave that measures otherwise; without it the client still checks that the enclave judges
    with the configuration it was sent. ``on_attestation`` is called with each new attestation
    (first start and every restart) before any verdict from it is returned; if it raises, that
    enclave is not used.
    """

    def __init__(
        self,
        manifests: ManifestSet,
        policy: VerifyPolicy | None = None,
        charter: BaseModel | Mapping[str, Any] | None = None,
        *,
        expected_measurement: str | Measurement | None = None,
        on_attestation: AttestationHook | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        hardware: HardwareMode = "auto",
        tsm_root: Path | None = None,
        command: Sequence[str] | None = None,
        max_frame_bytes: int = wire.MAX_FRAME_BYTES,
    ) -> None:
        if timeout_s <= 0 or start_timeout_s <= 0:
            raise InputError("enclave timeouts must be positive")
        self.manifests = manifests
        self.policy = policy or VerifyPolicy()
        self.charter = charter if charter is not None else default_charter()
        self.expected_measurement = expected_measurement
        self.on_attestation = on_attestation
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.hardware: HardwareMode = hardware
        self.tsm_root = tsm_root
        self.command = list(command) if command is not None else enclave_command()
        self.max_frame_bytes = max_frame_bytes
        self.restarts = 0
        """Enclaves started after a failure (not counting the first)."""
        self.last_failure: str | None = None
        self._config = {
            "manifests": config_digest(manifests),
            "policy": config_digest(self.policy),
            "charter": config_digest(self.charter),
        }
        self._lock = threading.Lock()
        self._process: _Process | None = None
        self._attestation: Attestation | None = None
        self._next_id = 1

    # ----------------------------------------------------------------------- lifecycle

    def __enter__(self) -> EnclaveClient:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def attestation(self) -> Attestation | None:
        """The running enclave's attestation (None before the first start or after a failure)."""
        return self._attestation

    @property
    def pid(self) -> int | None:
        """The running enclave's process id (for operators and tests)."""
        return self._process.pid if self._process is not None else None

    def start(self) -> Attestation:
        """Start the enclave now if it is not running; return its attestation."""
        with self._lock:
            return self._ensure_started()

    def close(self) -> None:
        """Stop the enclave (its key dies with it)."""
        with self._lock:
            if self._process is not None:
                self._process.stop()
            self._process = None
            self._attestation = None

    def _ensure_started(self) -> Attestation:
        if self._process is not None and self._attestation is not None:
            if self._process.popen.poll() is None:
                return self._attestation
            self._discard()
        process = _Process(self.command)
        try:
            attestation = self._handshake(process)
        except BaseException:
            process.kill()
            process.stderr.close()
            raise
        self._process, self._attestation = process, attestation
        if self.on_attestation is not None:
            try:
                self.on_attestation(attestation)
            except Exception as exc:
                self._discard()
                raise EnclaveUnavailable(
                    f"the new enclave's attestation could not be recorded ({exc}); not used"
                ) from exc
        return attestation

    def _handshake(self, process: _Process) -> Attestation:
        nonce = new_nonce()
        init = {
            "type": "init",
            "nonce": nonce,
            "manifests": _dump(self.manifests),
            "policy": _dump(self.policy),
            "charter": _dump(self.charter),
            "hardware": self.hardware,
            "tsm_root": str(self.tsm_root) if self.tsm_root is not None else None,
        }
        deadline = time.monotonic() + self.start_timeout_s
        try:
            reply = process.exchange(wire.encode_frame(init), deadline, self.max_frame_bytes)
        except (wire.FrameError, OSError) as exc:
            reason = process.describe_exit(_grace(exc)) or _reason(exc, self.start_timeout_s)
            raise EnclaveUnavailable(f"the verifier enclave did not start ({reason})") from None
        if reply.get("type") == "error":
            raise EnclaveError(f"the verifier enclave refused to start: {reply.get('message')}")
        if reply.get("type") != "attestation":
            raise EnclaveUnavailable("the verifier enclave answered the handshake out of turn")
        try:
            attestation = Attestation.model_validate(reply.get("attestation"))
        except ValidationError as exc:
            raise EnclaveError(describe(exc, "enclave attestation")) from None
        verify_attestation(attestation, nonce=nonce, expected_measurement=self.expected_measurement)
        for name, digest in self._config.items():
            if getattr(attestation.components, name) != digest:
                raise EnclaveError(f"the enclave measured other {name} than it was sent")
        return attestation

    def _discard(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.stderr.close()
        self._process = None
        self._attestation = None

    def _fail(self, reason: str) -> EnclaveUnavailable:
        """Kill the broken enclave, start a fresh one now, and build the error to raise."""
        self.last_failure = reason
        self._discard()
        try:
            self._ensure_started()
            self.restarts += 1
            after = "a new enclave with a new key was started; retry the request"
        except EnclaveError as exc:
            after = f"restarting failed too ({exc}); the next request will try again"
        return EnclaveUnavailable(f"verifier enclave unavailable ({reason}); no verdict; {after}")

    # ----------------------------------------------------------------------- verification

    def verify(
        self,
        proposal: Proposal,
        observations: Sequence[Observation],
        history: Sequence[Proposal] = (),
        recorded_before: int | None = None,
    ) -> SignedVerdict:
        """A verdict on ``proposal`` signed by the enclave and already checked by this client.

        Raises :class:`EnclaveUnavailable` (retryable) when the enclave dies, hangs or garbles,
        :class:`EnclaveError` when its answer cannot be trusted or it refuses the request, and
        :class:`InputError` when the request cannot be framed (too large).
        """
        digest = request_digest(proposal, observations, history, recorded_before)
        with self._lock:
            attestation = self._ensure_started()
            assert self._process is not None
            request_id = self._next_id
            self._next_id += 1
            frame = self._frame(proposal, observations, history, recorded_before, request_id)
            deadline = time.monotonic() + self.timeout_s
            try:
                reply = self._process.exchange(frame, deadline, self.max_frame_bytes)
            except (wire.FrameError, OSError) as exc:
                reason = self._process.describe_exit(_grace(exc)) or _reason(exc, self.timeout_s)
                raise self._fail(reason) from None
            return self._accept(reply, request_id, attestation, digest)

    def _frame(
        self,
        proposal: Proposal,
        observations: Sequence[Observation],
        history: Sequence[Proposal],
        recorded_before: int | None,
        request_id: int,
    ) -> bytes:
        parts = {
            "type": b'"verify"',
            "id": str(request_id).encode("ascii"),
            "proposal": canonical_bytes(proposal),
            "observations": _array(canonical_bytes(o) for o in observations),
            "history": _array(canonical_bytes(p) for p in history),
            "recorded_before": b"null" if recorded_before is None else b"%d" % recorded_before,
        }
        try:
            return wire.encode_object_frame(parts, self.max_frame_bytes)
        except wire.FrameError as exc:
            raise InputError(f"verification request cannot go to the enclave: {exc}") from None

    def _accept(
        self, reply: dict[str, Any], request_id: int, attestation: Attestation, digest: str
    ) -> SignedVerdict:
        if reply.get("id") != request_id:
            raise self._fail(f"reply names request {reply.get('id')!r}, not {request_id}")
        if reply.get("type") == "error":
            raise EnclaveError(f"the enclave refused the request: {reply.get('message')}")
        if reply.get("type") != "verdict":
            raise self._fail(f"unexpected reply type {reply.get('type')!r}")
        try:
            signed = SignedVerdict.model_validate(reply.get("signed"))
        except ValidationError as exc:
            raise self._fail(describe(exc, "signed verdict")) from None
        try:  # the attestation itself was verified and measured at the handshake
            check_verdict_signature(signed, attestation, request_sha256=digest)
        except EnclaveError as exc:
            self._fail(f"its verdict failed the check: {exc}")
            raise
        return signed


def _array(encoded: Iterable[bytes]) -> bytes:
    """A JSON array of already-canonical elements (RFC 8785: no whitespace)."""
    return b"[" + b",".join(encoded) + b"]"


def _dump(value: BaseModel | Mapping[str, Any]) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return dict(value)


def _grace(exc: Exception) -> float:
    """How long to wait for an exit status: a closed pipe means the process is going."""
    return 1.0 if isinstance(exc, wire.PeerClosed | BrokenPipeError) else 0.0


def _reason(exc: Exception, timeout_s: float) -> str:
    if isinstance(exc, wire.FrameTimeout):
        return f"no reply within {timeout_s:g} s"
    if isinstance(exc, wire.PeerClosed):
        return "the enclave closed its pipe"
    if isinstance(exc, wire.FrameError):
        return f"malformed frame from the enclave: {exc}"
    return f"pipe error: {exc}"
