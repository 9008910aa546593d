"""Measurements, attestations, signed verdicts and the operator's allow-list (in process)."""

from __future__ import annotations

import base64
import importlib.util
import json
import marshal
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave_support import CHARTER, MANIFESTS, OBSERVATIONS, PROPOSAL
from thirdway.enclave.allowlist import MeasurementAllowList
from thirdway.enclave.attestation import (
    Attestation,
    Measurement,
    Quote,
    expected_measurement,
    new_nonce,
    raw_public_key,
    report_data,
    sign_attestation,
    verify_attestation,
)
from thirdway.enclave.client import EnclaveClient, enclave_command
from thirdway.enclave.measure import MEASURED_PACKAGES, code_digests, measured_module_names
from thirdway.enclave.tsm import PROCESS_NOTE
from thirdway.enclave.verdicts import SignedVerdict, check_signed_verdict, sign_verdict
from thirdway.errors import EnclaveError, InputError
from thirdway.protocol.manifest import ManifestSet
from thirdway.verify import VerifyPolicy, verify

PACKAGE_ROOT = Path(importlib.util.find_spec("thirdway").origin).parent.parent  # type: ignore[arg-type,union-attr]
EXPECTED = expected_measurement(MANIFESTS, VerifyPolicy(), CHARTER)
VERDICT = verify(PROPOSAL, OBSERVATIONS, MANIFESTS, VerifyPolicy(), charter_sha256=CHARTER.sha256)


def attest(
    key: Ed25519PrivateKey | None = None,
    *,
    nonce: str | None = None,
    platform: str = "process",
    quote: Quote | None = None,
    note: str = PROCESS_NOTE,
) -> tuple[Ed25519PrivateKey, Attestation]:
    key = key or Ed25519PrivateKey.generate()
    return key, sign_attestation(key, EXPECTED, nonce or new_nonce(), platform, quote, note)


def copy_package(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    shutil.copytree(
        PACKAGE_ROOT / "thirdway", root / "thirdway", ignore=shutil.ignore_patterns("__pycache__")
    )
    return root


# --------------------------------------------------------------------------- measurement


def test_measurement_covers_verifier_protocol_and_enclave_code() -> None:
    names = measured_module_names(PACKAGE_ROOT)
    for package in MEASURED_PACKAGES:
        files = (PACKAGE_ROOT / package.replace(".", "/")).glob("*.py")
        for path in files:
            module = package if path.stem == "__init__" else f"{package}.{path.stem}"
            assert module in names
    assert "thirdway.enclave.service" in names and "thirdway.errors" in names
    assert "thirdway.enclave.client" not in names  # the gateway's side is not enclave code


def test_measurement_is_path_independent(tmp_path: Path) -> None:
    copy = copy_package(tmp_path)
    assert code_digests(copy) == code_digests(PACKAGE_ROOT)
    assert expected_measurement(MANIFESTS, VerifyPolicy(), CHARTER, copy) == EXPECTED


def test_every_configuration_part_changes_the_measurement() -> None:
    variants = [
        expected_measurement(ManifestSet(), VerifyPolicy(), CHARTER),
        expected_measurement(MANIFESTS, VerifyPolicy(unknown_tool="escalate"), CHARTER),
        expected_measurement(MANIFESTS, VerifyPolicy(), {**CHARTER.model_dump(), "version": "x"}),
    ]
    assert len({v.value for v in variants} | {EXPECTED.value}) == 4


def test_modified_verifier_file_blocks_minting_until_an_operator_accepts_it(
    tmp_path: Path,
) -> None:
    copy = copy_package(tmp_path)
    accepted = expected_measurement(MANIFESTS, VerifyPolicy(), CHARTER, copy)
    allow = MeasurementAllowList()
    allow.accept_measurement(accepted, "ops-alice", "release 0.1.0")
    assert allow.require(accepted) == accepted.value

    target = copy / "thirdway" / "verify" / "grounding.py"
    data = bytearray(target.read_bytes())
    first = data.index(b'"""') + 3  # the docstring's first letter: still valid Python
    data[first] ^= 0x20  # flip its case
    target.write_bytes(bytes(data))
    modified = expected_measurement(MANIFESTS, VerifyPolicy(), CHARTER, copy)
    assert modified.value != accepted.value
    assert {n for n in modified.code if modified.code[n] != accepted.code[n]} == {
        "thirdway.verify.grounding"
    }
    with pytest.raises(EnclaveError, match="not been accepted by an operator"):
        allow.require(modified)

    # The enclave started from the modified copy attests the modified code...
    with EnclaveClient(MANIFESTS, charter=CHARTER, command=enclave_command(copy)) as changed:
        attestation = changed.attestation
        assert attestation is not None and attestation.components == modified
        signed = changed.verify(PROPOSAL, OBSERVATIONS)
        # ...so its verdicts are refused against the accepted measurement, naming the file.
        with pytest.raises(EnclaveError, match=r"code differs in thirdway\.verify\.grounding"):
            check_signed_verdict(signed, attestation, accepted)

    record = allow.accept_measurement(modified, "ops-bob", "reviewed grounding.py docstring")
    assert record.kind == "measurement_accepted" and record.operator == "ops-bob"
    assert record.measurement == modified.value and record.components == modified
    assert allow.require(modified) == modified.value
    check_signed_verdict(signed, attestation, allow.require(modified))


def test_enclave_compiles_source_not_a_planted_bytecode_file(tmp_path: Path) -> None:
    """A .pyc that Python's own loader would accept (matching mtime and size) is ignored."""
    copy = copy_package(tmp_path)
    source = copy / "thirdway" / "verify" / "codes.py"
    stat = source.stat()
    tampered = compile(source.read_text() + "\nTAMPERED = True\n", str(source), "exec")
    cache = source.parent / "__pycache__"
    cache.mkdir(exist_ok=True)
    pyc = cache / f"codes.{sys.implementation.cache_tag}.pyc"
    header = importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little")
    header += (int(stat.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
    header += (stat.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    pyc.write_bytes(header + marshal.dumps(tampered))

    def probe(measured: bool) -> str:
        hook = (
            "from thirdway.enclave import measure; measure.install_finder(); " if measured else ""
        )
        code = (
            f"import sys; sys.path.insert(0, {str(copy)!r}); {hook}"
            "import thirdway.verify.codes as c; print(hasattr(c, 'TAMPERED'))"
        )
        run = subprocess.run(
            [sys.executable, "-I", "-B", "-c", code], capture_output=True, text=True, env={}
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    assert probe(measured=False) == "True"  # the planted bytecode is live for plain imports
    assert probe(measured=True) == "False"  # the enclave's hook compiles the measured source


def test_enclave_refuses_to_start_with_unmeasured_thirdway_code_loaded(tmp_path: Path) -> None:
    """A measured module that pulls in thirdway code outside the measured set (here the
    charter package) would run unmeasured code: the enclave refuses to start."""
    copy = copy_package(tmp_path)
    grounding = copy / "thirdway" / "verify" / "grounding.py"
    grounding.write_text(grounding.read_text() + "\nimport thirdway.charter  # unmeasured\n")
    with pytest.raises(
        EnclaveError,
        match=r"unmeasured thirdway modules loaded in the enclave: .*thirdway\.charter",
    ):
        EnclaveClient(MANIFESTS, charter=CHARTER, command=enclave_command(copy)).start()


def test_a_measured_module_without_source_is_refused_on_both_sides(tmp_path: Path) -> None:
    """A lone .pyc in place of a measured module's source cannot be measured: the gateway cannot
    compute the expected value and the enclave will not load it."""
    copy = copy_package(tmp_path)
    source = copy / "thirdway" / "verify" / "codes.py"
    sourceless = source.with_suffix(".pyc")
    header = importlib.util.MAGIC_NUMBER + bytes(12)
    sourceless.write_bytes(header + marshal.dumps(compile(source.read_text(), "codes", "exec")))
    source.unlink()
    with pytest.raises(EnclaveError, match=r"thirdway\.verify\.codes has no Python source"):
        expected_measurement(MANIFESTS, VerifyPolicy(), CHARTER, copy)
    with pytest.raises(EnclaveError, match=r"codes is not loadable from Python source"):
        EnclaveClient(MANIFESTS, charter=CHARTER, command=enclave_command(copy)).start()


# --------------------------------------------------------------------------- attestations


def test_attestation_round_trip_and_nonce() -> None:
    nonce = new_nonce()
    _, attestation = attest(nonce=nonce)
    again = Attestation.model_validate_json(attestation.model_dump_json())
    verify_attestation(again, nonce=nonce, expected_measurement=EXPECTED.value)
    assert again.id == attestation.id
    with pytest.raises(EnclaveError, match="nonce is not the one sent"):
        verify_attestation(again, nonce=new_nonce())


@pytest.mark.parametrize(
    "change",
    [
        {"platform": "tdx_guest"},
        {"nonce": "0" * 64},
        {"note": "hardware-backed, trust me"},
        {"measurement": "f" * 64},
    ],
)
def test_any_changed_attestation_field_breaks_its_signature(change: dict[str, str]) -> None:
    _, attestation = attest()
    forged = attestation.model_copy(update=change)
    with pytest.raises(EnclaveError, match="signature does not verify"):
        verify_attestation(forged)


def test_process_platform_must_say_so_and_carry_no_quote() -> None:
    with pytest.raises(EnclaveError, match="must say it has no hardware"):
        verify_attestation(attest(note="isolated")[1])
    key = Ed25519PrivateKey.generate()
    nonce = new_nonce()
    quote = Quote(
        provider="tdx_guest",
        inblob=report_data(raw_public_key(key), bytes.fromhex(nonce)).hex(),
        outblob=base64.b64encode(b"quote").decode(),
        generation=1,
    )
    with pytest.raises(EnclaveError, match="'process' but carries a quote"):
        verify_attestation(attest(key, nonce=nonce, quote=quote)[1])
    with pytest.raises(EnclaveError, match="claims platform 'tdx_guest' but carries no quote"):
        verify_attestation(attest(platform="tdx_guest", note="hw")[1])
    verify_attestation(attest(key, nonce=nonce, platform="tdx_guest", quote=quote, note="hw")[1])
    with pytest.raises(EnclaveError, match="is not the platform"):
        verify_attestation(
            attest(key, nonce=nonce, platform="sev_guest", quote=quote, note="hw")[1]
        )
    with pytest.raises(EnclaveError, match=r"not SHA-512\(public key ‖ nonce\)"):
        verify_attestation(attest(platform="tdx_guest", quote=quote, note="hw")[1])


def test_components_must_hash_to_the_measurement() -> None:
    """Even correctly signed, an attestation whose parts do not add up is refused."""
    key = Ed25519PrivateKey.generate()
    other = Measurement(**{**EXPECTED.model_dump(), "policy": "0" * 64})
    fields = {
        "measurement": EXPECTED.value,
        "components": other,
        "public_key": base64.b64encode(raw_public_key(key)).decode(),
        "platform": "process",
        "nonce": new_nonce(),
        "quote": None,
        "note": PROCESS_NOTE,
    }
    unsigned = Attestation.model_construct(**fields, signature="")
    signature = base64.b64encode(key.sign(unsigned.signed_bytes())).decode()
    inconsistent = Attestation.model_validate({**fields, "signature": signature})
    with pytest.raises(EnclaveError, match="do not hash to its measurement"):
        verify_attestation(inconsistent)


# --------------------------------------------------------------------------- signed verdicts


def signed_verdict() -> tuple[SignedVerdict, Attestation]:
    key, attestation = attest()
    return sign_verdict(key, VERDICT, "a" * 64, attestation), attestation


def test_a_signed_verdict_checks_and_returns_the_verdict() -> None:
    signed, attestation = signed_verdict()
    assert check_signed_verdict(signed, attestation, EXPECTED, request_sha256="a" * 64) == VERDICT


def test_a_forged_verdict_signature_blocks() -> None:
    signed, attestation = signed_verdict()
    raw = bytearray(base64.b64decode(signed.signature))
    raw[0] ^= 1
    forged = signed.model_copy(update={"signature": base64.b64encode(bytes(raw)).decode()})
    with pytest.raises(EnclaveError, match="verdict signature does not verify"):
        check_signed_verdict(forged, attestation, EXPECTED)
    upgraded = signed.model_copy(update={"verdict": VERDICT.model_copy(update={"verdict": "deny"})})
    with pytest.raises(EnclaveError, match="verdict signature does not verify"):
        check_signed_verdict(upgraded, attestation, EXPECTED)


def test_a_verdict_citing_another_charter_than_measured_blocks() -> None:
    key, attestation = attest()
    assert attestation.components.charter == CHARTER.sha256 == VERDICT.charter_sha256
    for cited in (None, "0" * 64):
        other = VERDICT.model_copy(update={"charter_sha256": cited})
        signed = sign_verdict(key, other, "a" * 64, attestation)  # signed by the enclave's key
        with pytest.raises(EnclaveError, match="does not cite the charter the enclave measured"):
            check_signed_verdict(signed, attestation, EXPECTED, request_sha256="a" * 64)


def test_a_mismatched_verdict_signature_blocks() -> None:
    signed, _ = signed_verdict()
    _, attestation_b = attest()
    with pytest.raises(EnclaveError, match="another enclave"):
        check_signed_verdict(signed, attestation_b, EXPECTED)
    relabelled = signed.model_copy(update={"attestation_id": attestation_b.id})
    with pytest.raises(EnclaveError, match="verdict signature does not verify"):
        check_signed_verdict(relabelled, attestation_b, EXPECTED)


def test_a_measurement_other_than_expected_blocks() -> None:
    signed, attestation = signed_verdict()
    other = Measurement(**{**EXPECTED.model_dump(), "charter": "0" * 64})
    with pytest.raises(EnclaveError, match="charter differs"):
        check_signed_verdict(signed, attestation, other)
    with pytest.raises(EnclaveError, match="is not the expected"):
        check_signed_verdict(signed, attestation, "b" * 64)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=64, max_size=64))
def test_no_random_signature_passes(signature: bytes) -> None:
    signed, attestation = signed_verdict()
    candidate = signed.model_copy(update={"signature": base64.b64encode(signature).decode()})
    if candidate.signature == signed.signature:
        return
    with pytest.raises(EnclaveError):
        check_signed_verdict(candidate, attestation, EXPECTED)


# --------------------------------------------------------------------------- allow-list


def test_allow_list_persists_and_refuses_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "accepted.json"
    assert not MeasurementAllowList.load(path).is_accepted(EXPECTED.value)
    allow = MeasurementAllowList()
    record = allow.accept_measurement(EXPECTED.value, "ops-alice", "initial")
    allow.save(path)
    loaded = MeasurementAllowList.load(path)
    assert loaded.acceptances == (record,)
    assert loaded.require(EXPECTED.value) == EXPECTED.value
    assert json.loads(path.read_text())["accepted"][0]["reason"] == "initial"

    path.write_text('{"format": "thirdway-measurement-allowlist/1", "accepted": [{"x": 1}]}')
    with pytest.raises(InputError, match="allow-list"):
        MeasurementAllowList.load(path)
    path.write_text("not json")
    with pytest.raises(InputError, match="allow-list"):
        MeasurementAllowList.load(path)


@pytest.mark.parametrize(
    ("value", "operator", "reason", "field"),
    [
        ("0" * 64, "ops", "   ", "reason"),
        ("0" * 64, "", "why", "operator"),
        ("xyz", "ops", "why", "measurement"),
    ],
)
def test_an_acceptance_needs_a_value_an_operator_and_a_reason(
    value: str, operator: str, reason: str, field: str
) -> None:
    allow = MeasurementAllowList()
    with pytest.raises(InputError, match=field):
        allow.accept_measurement(value, operator, reason)
    assert allow.acceptances == ()
