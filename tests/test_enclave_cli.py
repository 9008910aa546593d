"""``thirdway attest show | verify | measure``: one-line errors, honest exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thirdway.cli.main import app
from thirdway.enclave.attestation import Attestation

runner = CliRunner()


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Attestation]:
    """One real enclave's attestation, printed by ``attest show`` and saved with ``--out``."""
    out = tmp_path_factory.mktemp("attest") / "attestation.json"
    result = runner.invoke(app, ["attest", "show", "--hardware", "off", "--out", str(out)])
    assert result.exit_code == 0, result.output
    printed = Attestation.model_validate_json(result.stdout)
    assert Attestation.model_validate_json(out.read_text()) == printed
    return out, printed


def test_show_prints_a_process_attestation_that_verifies(shown: tuple[Path, Attestation]) -> None:
    path, attestation = shown
    assert attestation.platform == "process" and attestation.quote is None
    measured = runner.invoke(app, ["attest", "measure"])
    assert measured.exit_code == 0, measured.output
    expected = measured.stdout.strip()
    assert expected == attestation.measurement  # the enclave runs this installation's files
    result = runner.invoke(
        app, ["attest", "verify", str(path), "--expect", expected, "--nonce", attestation.nonce]
    )
    assert result.exit_code == 0, result.output
    assert f"attestation {attestation.id}: valid" in result.stdout
    assert "(matches --expect)" in result.stdout and "(matches --nonce)" in result.stdout
    assert "no hardware attestation: isolation is an OS process" in result.stdout


def test_show_from_a_file_and_json_report(shown: tuple[Path, Attestation]) -> None:
    path, attestation = shown
    again = runner.invoke(app, ["attest", "show", "--from", str(path)])
    assert again.exit_code == 0 and Attestation.model_validate_json(again.stdout) == attestation
    report = runner.invoke(app, ["attest", "verify", str(path), "--json"])
    assert report.exit_code == 0
    data = json.loads(report.stdout)
    assert data["valid"] is True and data["id"] == attestation.id
    assert data["measurement_check"] == "not compared: pass --expect"


def _tampered(tmp_path: Path, path: Path, **change: object) -> Path:
    document = json.loads(path.read_text())
    document.update(change)
    target = tmp_path / "tampered.json"
    target.write_text(json.dumps(document))
    return target


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--expect", "f" * 64], 1, "attestation rejected: enclave measurement"),
        (["--expect", "F" * 64], 2, "--expect must be 64 lower-case hex digits"),
        (["--nonce", "0" * 64], 1, "nonce is not the one sent"),
        (["--nonce", "xyz"], 2, "--nonce must be 64 lower-case hex digits"),
    ],
)
def test_verify_refuses_with_one_line(
    shown: tuple[Path, Attestation], argv: list[str], code: int, message: str
) -> None:
    result = runner.invoke(app, ["attest", "verify", str(shown[0]), *argv])
    assert result.exit_code == code
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"platform": "tdx_guest"}, 1, "signature does not verify"),
        ({"note": "trust me"}, 1, "signature does not verify"),
        ({"nonce": "abc"}, 2, "invalid attestation"),
        ({"public_key": "not base64!"}, 2, "public_key"),
        ({"extra": 1}, 2, "extra"),
    ],
)
def test_verify_refuses_tampered_files(
    tmp_path: Path,
    shown: tuple[Path, Attestation],
    change: dict[str, object],
    code: int,
    message: str,
) -> None:
    result = runner.invoke(app, ["attest", "verify", str(_tampered(tmp_path, shown[0], **change))])
    assert result.exit_code == code
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{not json", "invalid attestation"), (b"", "invalid attestation"), (b"[]", "invalid")],
)
def test_verify_refuses_unreadable_input(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "in.json"
    path.write_bytes(content)
    result = runner.invoke(app, ["attest", "verify", str(path)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    missing = runner.invoke(app, ["attest", "verify", str(tmp_path / "missing.json")])
    assert missing.exit_code == 2 and "attestation file not found" in missing.output


def test_show_refuses_a_bad_hardware_mode() -> None:
    result = runner.invoke(app, ["attest", "show", "--hardware", "sometimes"])
    assert result.exit_code == 2 and "--hardware must be auto, require or off" in result.output
