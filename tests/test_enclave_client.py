"""The enclave process end to end: attestation, signed verdicts, fail-closed restarts."""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from enclave_support import (
    BAD_PROPOSAL,
    CHARTER,
    MANIFESTS,
    OBSERVATIONS,
    PROPOSAL,
    fault_command,
)
from thirdway.enclave import service as service_module
from thirdway.enclave.attestation import (
    Attestation,
    Measurement,
    expected_measurement,
    raw_public_key,
    verify_attestation,
)
from thirdway.enclave.client import EnclaveClient, enclave_command
from thirdway.enclave.verdicts import check_signed_verdict, request_digest
from thirdway.errors import EnclaveError, EnclaveUnavailable
from thirdway.protocol.canonical import canonical_json
from thirdway.verify import VerifyPolicy, verify


def client(**kwargs: object) -> EnclaveClient:
    return EnclaveClient(MANIFESTS, charter=CHARTER, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def expected() -> Measurement:
    """What the gateway measures from its own files."""
    return expected_measurement(MANIFESTS, VerifyPolicy(), CHARTER)


@pytest.fixture(scope="module")
def shared(expected: Measurement) -> Iterator[EnclaveClient]:
    """One real enclave for the tests that only ask it for verdicts."""
    with client(expected_measurement=expected) as running:
        yield running


def test_attestation_is_plain_about_the_platform_and_matches_the_gateway(
    shared: EnclaveClient, expected: Measurement
) -> None:
    attestation = shared.attestation
    assert attestation is not None
    verify_attestation(attestation, expected_measurement=expected)
    assert attestation.platform == "process"
    assert attestation.quote is None
    assert attestation.note.startswith("no hardware attestation: isolation is an OS process")
    # The enclave measured the very files the gateway measured, module by module.
    assert attestation.components == expected
    assert "thirdway.verify.api" in attestation.components.code
    assert "thirdway.protocol.models" in attestation.components.code
    assert "thirdway.enclave.service" in attestation.components.code


def test_signed_verdicts_equal_the_in_process_verifier(
    shared: EnclaveClient, expected: Measurement
) -> None:
    for proposal in (PROPOSAL, BAD_PROPOSAL):
        signed = shared.verify(proposal, OBSERVATIONS)
        local = verify(
            proposal, OBSERVATIONS, MANIFESTS, VerifyPolicy(), charter_sha256=CHARTER.sha256
        )
        assert canonical_json(signed.verdict) == canonical_json(local)
        assert signed.verdict.charter_sha256 == CHARTER.sha256  # the charter it measured
        assert signed.request_sha256 == request_digest(proposal, OBSERVATIONS)
        assert shared.attestation is not None
        check_signed_verdict(
            signed,
            shared.attestation,
            expected,
            request_sha256=request_digest(proposal, OBSERVATIONS),
        )
    assert shared.verify(PROPOSAL, OBSERVATIONS).verdict.verdict == "pass"
    assert shared.verify(BAD_PROPOSAL, OBSERVATIONS).verdict.verdict != "pass"


def test_a_verdict_cannot_be_replayed_for_another_request(
    shared: EnclaveClient, expected: Measurement
) -> None:
    signed = shared.verify(PROPOSAL, OBSERVATIONS)
    assert shared.attestation is not None
    with pytest.raises(EnclaveError, match="another request"):
        check_signed_verdict(
            signed,
            shared.attestation,
            expected,
            request_sha256=request_digest(BAD_PROPOSAL, OBSERVATIONS),
        )
    with pytest.raises(EnclaveError, match="another request"):
        check_signed_verdict(
            signed,
            shared.attestation,
            expected,
            request_sha256=request_digest(PROPOSAL, OBSERVATIONS[:2]),
        )


def test_concurrent_callers_each_get_their_own_verdict(shared: EnclaveClient) -> None:
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        proposal = PROPOSAL if n % 2 else BAD_PROPOSAL
        try:
            for _ in range(3):
                signed = shared.verify(proposal, OBSERVATIONS)
                assert signed.request_sha256 == request_digest(proposal, OBSERVATIONS)
                results[n] = signed.verdict.verdict
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert {results[n] for n in range(1, 8, 2)} == {"pass"}
    assert "pass" not in {results[n] for n in range(0, 8, 2)}


def test_verdict_from_enclave_a_is_refused_under_attestation_b(
    shared: EnclaveClient, expected: Measurement
) -> None:
    signed = shared.verify(PROPOSAL, OBSERVATIONS)
    with client() as other:
        b = other.attestation
        assert b is not None
        assert b.public_key != shared.attestation.public_key  # type: ignore[union-attr]
        with pytest.raises(EnclaveError, match="another enclave"):
            check_signed_verdict(signed, b, expected)
        # Relabelled to name B's attestation, A's signature no longer verifies.
        relabelled = signed.model_copy(update={"attestation_id": b.id})
        with pytest.raises(EnclaveError, match="signature does not verify"):
            check_signed_verdict(relabelled, b, expected)


def test_environment_is_empty_and_python_isolated(tmp_path: Path) -> None:
    report = tmp_path / "env.json"
    with client(command=fault_command("env", str(report))) as running:
        assert running.verify(PROPOSAL, OBSERVATIONS).verdict.verdict == "pass"
    seen = json.loads(report.read_text())
    assert seen["isolated"] == 1
    # Python itself may set LC_CTYPE (locale coercion); nothing from the gateway gets through.
    assert set(seen["env"]) <= {"LC_CTYPE"}
    assert enclave_command()[1] == "-I"


def test_the_signing_key_never_leaves_the_enclave(tmp_path: Path) -> None:
    """Everything the enclave sent (attestations, signed verdicts, across a restart) and wrote to
    stderr is searched for its private keys, raw, hex and base64: none is there. The enclave code
    holds no call that could serialise a private key."""
    keys_file = tmp_path / "keys"
    seen: list[Attestation] = []
    sent: list[bytes] = []
    with client(
        command=fault_command("record-key", str(keys_file)), on_attestation=seen.append
    ) as c:
        sent.append(canonical_json(c.verify(PROPOSAL, OBSERVATIONS)))
        sent.append(canonical_json(c.verify(BAD_PROPOSAL, OBSERVATIONS)))
        pid = c.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EnclaveUnavailable):
            c.verify(PROPOSAL, OBSERVATIONS)
        sent.append(canonical_json(c.verify(PROPOSAL, OBSERVATIONS)))
        running = c._process
        assert running is not None
        running.stderr.seek(0)
        sent.append(running.stderr.read())  # what the new enclave wrote on stderr
    sent.extend(canonical_json(a) for a in seen)
    keys = [bytes.fromhex(line) for line in keys_file.read_text().split()]
    assert len(keys) == 2 and len(seen) == 2  # one key per enclave start, each attested
    everything = b"\n".join(sent)
    for key in keys:
        for form in (key, key.hex().encode(), base64.b64encode(key)):
            assert form not in everything
    # and the key the attestation names is the public half of the recorded one
    assert [base64.b64encode(raw_public_key(Ed25519PrivateKey.from_private_bytes(k))).decode()
            for k in keys] == [a.public_key for a in seen]  # fmt: skip
    enclave_code = Path(service_module.__file__).parent
    for source in enclave_code.glob("*.py"):
        text = source.read_text()
        for call in ("private_bytes", "PrivateFormat", "pickle", "copyreg"):
            assert call not in text, f"{source.name} mentions {call}"


def test_a_forged_signature_from_the_enclave_blocks() -> None:
    with (
        client(command=fault_command("forged-verdict")) as forging,
        pytest.raises(EnclaveError, match="signature does not verify") as caught,
    ):
        forging.verify(PROPOSAL, OBSERVATIONS)
    assert not isinstance(caught.value, EnclaveUnavailable)
    assert caught.value.retryable is False


def test_a_verdict_for_another_request_blocks() -> None:
    with (
        client(command=fault_command("wrong-request")) as lying,
        pytest.raises(EnclaveError, match="another request"),
    ):
        lying.verify(PROPOSAL, OBSERVATIONS)


def test_enclave_with_unexpected_measurement_is_refused_at_start() -> None:
    seen: list[Attestation] = []
    wrong = client(expected_measurement="0" * 64, on_attestation=seen.append)
    with pytest.raises(EnclaveError, match="is not the expected"):
        wrong.start()
    with pytest.raises(EnclaveError, match="is not the expected"):
        wrong.verify(PROPOSAL, OBSERVATIONS)
    assert seen == []  # never reported, never used
    wrong.close()


def _restart_recorder() -> tuple[list[Attestation], EnclaveClient]:
    seen: list[Attestation] = []
    return seen, client(on_attestation=seen.append)


def test_killing_the_enclave_mid_verification_yields_no_verdict_then_a_new_enclave(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "in-flight"
    seen: list[Attestation] = []
    running = client(
        command=fault_command("slow", "0.8", str(marker)), on_attestation=seen.append, timeout_s=10
    )
    with running:
        first_pid = running.pid
        assert first_pid is not None
        outcome: dict[str, object] = {}

        def call() -> None:
            try:
                outcome["verdict"] = running.verify(PROPOSAL, OBSERVATIONS)
            except EnclaveError as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=call)
        thread.start()
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), "the request never reached the enclave"
        os.kill(first_pid, signal.SIGKILL)
        thread.join(30)
        assert "verdict" not in outcome
        error = outcome["error"]
        assert isinstance(error, EnclaveUnavailable) and error.retryable
        assert "SIGKILL" in str(error) and "no verdict" in str(error)
        # A new enclave with a new key and a new attestation, reported through the hook.
        assert len(seen) == 2 and running.restarts == 1
        assert seen[0].public_key != seen[1].public_key
        assert seen[0].nonce != seen[1].nonce
        assert running.pid not in (None, first_pid)
        assert running.attestation == seen[1]
        # Correct service afterwards, signed by the new enclave.
        signed = running.verify(PROPOSAL, OBSERVATIONS)
        assert signed.verdict.verdict == "pass"
        assert signed.attestation_id == seen[1].id
        check_signed_verdict(signed, seen[1], seen[1].measurement)


def test_a_kill_with_requests_queued_fails_only_the_one_in_the_enclave(tmp_path: Path) -> None:
    """Three callers at once: the request inside the killed enclave gets the retryable error,
    the two waiting behind it are answered by the new enclave (correct, signed verdicts)."""
    marker = tmp_path / "in-flight"
    seen: list[Attestation] = []
    running = client(
        command=fault_command("slow", "0.5", str(marker)), on_attestation=seen.append, timeout_s=20
    )
    with running:
        first_pid = running.pid
        assert first_pid is not None
        results: list[object] = [None, None, None]
        proposals = [PROPOSAL, BAD_PROPOSAL, PROPOSAL]

        def call(slot: int) -> None:
            try:
                results[slot] = running.verify(proposals[slot], OBSERVATIONS)
            except EnclaveError as exc:
                results[slot] = exc

        threads = [threading.Thread(target=call, args=(slot,)) for slot in range(3)]
        threads[0].start()
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), "the request never reached the enclave"
        for thread in threads[1:]:
            thread.start()
        time.sleep(0.1)  # both are now waiting for the pipe
        os.kill(first_pid, signal.SIGKILL)
        for thread in threads:
            thread.join(60)
        first, *queued = results
        assert isinstance(first, EnclaveUnavailable) and first.retryable
        assert "no verdict" in str(first) and "retry" in str(first)
        assert len(seen) == 2
        for slot, answer in zip((1, 2), queued, strict=True):
            assert not isinstance(answer, Exception), answer
            assert answer.attestation_id == seen[1].id  # type: ignore[attr-defined]
            expected_verdict = verify(
                proposals[slot],
                OBSERVATIONS,
                MANIFESTS,
                VerifyPolicy(),
                charter_sha256=CHARTER.sha256,
            )
            assert answer.verdict == expected_verdict  # type: ignore[attr-defined]
            check_signed_verdict(answer, seen[1], seen[1].measurement)  # type: ignore[arg-type]


def test_killing_the_enclave_between_requests_restarts_it() -> None:
    seen, running = _restart_recorder()
    with running:
        pid = running.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        try:
            signed = running.verify(PROPOSAL, OBSERVATIONS)
        except EnclaveUnavailable:  # the death may be noticed only on the pipe
            signed = running.verify(PROPOSAL, OBSERVATIONS)
        assert signed.verdict.verdict == "pass"
        assert len(seen) == 2 and signed.attestation_id == seen[1].id
        assert running.pid != pid


def test_a_hung_enclave_hits_the_timeout_and_is_replaced() -> None:
    seen: list[Attestation] = []
    with client(
        command=fault_command("slow", "60"), on_attestation=seen.append, timeout_s=0.5
    ) as r:
        hung_pid = r.pid
        started = time.monotonic()
        with pytest.raises(EnclaveUnavailable, match=r"no reply within 0\.5 s"):
            r.verify(PROPOSAL, OBSERVATIONS)
        assert time.monotonic() - started < 30
        assert hung_pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(hung_pid, 0)  # killed and reaped
        assert len(seen) == 2 and r.pid != hung_pid


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("garbage-verdict", "malformed frame from the enclave: frame is not JSON"),
        ("oversized-verdict", "malformed frame from the enclave: frame announces 1073741824"),
        ("wrong-id", "reply names request"),
    ],
)
def test_malformed_replies_from_the_enclave_are_refused(mode: str, message: str) -> None:
    seen, _ = _restart_recorder()
    with client(command=fault_command(mode), on_attestation=seen.append) as bad:
        with pytest.raises(EnclaveUnavailable, match=message):
            bad.verify(PROPOSAL, OBSERVATIONS)
        assert len(seen) == 2  # replaced, never trusted


def test_garbage_handshake_and_crash_at_start_are_clear() -> None:
    with pytest.raises(EnclaveUnavailable, match=r"did not start.*frame is not JSON"):
        client(command=fault_command("garbage-handshake")).start()
    with pytest.raises(EnclaveUnavailable, match="exited with status 1: boom"):
        client(command=fault_command("crash-at-start")).start()


def test_a_hook_that_cannot_record_the_attestation_keeps_the_enclave_unused() -> None:
    def refuse(_: Attestation) -> None:
        raise OSError("log is down")

    broken = client(on_attestation=refuse)
    with pytest.raises(EnclaveUnavailable, match="could not be recorded"):
        broken.verify(PROPOSAL, OBSERVATIONS)
    assert broken.attestation is None and broken.pid is None


def test_hardware_mode_never_pretends(tmp_path: Path) -> None:
    """A directory that is not configfs: ``auto`` says process and why, ``require`` refuses."""
    fake_root = tmp_path / "tsm" / "report"
    fake_root.mkdir(parents=True)
    with client(tsm_root=fake_root) as auto:
        attestation = auto.attestation
        assert attestation is not None and attestation.platform == "process"
        assert attestation.quote is None and "configfs-tsm unusable" in attestation.note
    with pytest.raises(EnclaveError, match=r"refused to start.*report has no generation"):
        client(tsm_root=fake_root, hardware="require").start()
    with pytest.raises(EnclaveError, match="required, but configfs-tsm is absent"):
        client(tsm_root=tmp_path / "none", hardware="require").start()
