"""``thirdway verify``: canonical verdict JSON on stdout, exit 0 whenever a verdict is reached,
and a one-line error with a non-zero exit when input cannot be read."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from thirdway.charter import load_charter, parse_charter
from thirdway.charter.load import default_charter_text
from thirdway.cli import verify as verify_cli
from thirdway.cli.main import app
from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.manifest import ManifestSet
from thirdway.verify import verify
from verify_support import HERE, load_corpus, load_test_manifests

CASES = {c.name: c for c in load_corpus()}
SHIPPED_LOADER = verify_cli.load_manifest_set


@pytest.fixture(autouse=True)
def test_manifests(monkeypatch: pytest.MonkeyPatch) -> list[Path | None]:
    """Load the corpus manifests for ``--manifests tests/verify/manifests.yaml`` (the shipped
    loader is tested with the policy package); record what was asked for."""
    asked: list[Path | None] = []

    def load(path: Path | None) -> ManifestSet:
        asked.append(path)
        return load_test_manifests()

    monkeypatch.setattr(verify_cli, "load_manifest_set", load)
    return asked


def write_case(tmp_path: Path, name: str) -> list[str]:
    case = CASES[name]
    (tmp_path / "p.json").write_text(json.dumps(case.proposal))
    (tmp_path / "o.json").write_text(json.dumps(case.observations))
    argv = ["verify", "--proposal", str(tmp_path / "p.json")]
    argv += ["--observations", str(tmp_path / "o.json")]
    argv += ["--manifests", str(HERE / "manifests.yaml")]
    if case.history:
        (tmp_path / "h.json").write_text(json.dumps(case.history))
        argv += ["--history", str(tmp_path / "h.json")]
    if case.recorded_before is not None:
        argv += ["--recorded-before", str(case.recorded_before)]
    return argv


def invoke(argv: list[str], stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, argv, input=stdin)


@pytest.mark.parametrize(
    "name",
    [
        "bank-pay-bill-honest",
        "bank-deposit-over-limit",
        "bank-hijacked-goal-from-bill",
        "bank-contradicts-earlier-claim",
        "bank-future-observation",
    ],
)
def test_prints_the_canonical_verdict_and_exits_zero(
    tmp_path: Path, name: str, test_manifests: list[Path | None]
) -> None:
    result = invoke(write_case(tmp_path, name))
    assert result.exit_code == 0, result.output
    case = CASES[name]
    proposal, observations, history = case.parsed()
    expected = verify(
        proposal,
        observations,
        load_test_manifests(),
        history=history,
        recorded_before=case.recorded_before,
        charter_sha256=load_charter().sha256,
    )
    assert result.stdout == canonical_json(expected).decode() + "\n"
    printed = json.loads(result.stdout)
    assert printed["charter_sha256"] == load_charter().sha256  # the gateway's default charter
    assert printed["verdict"] == case.verdict
    assert sorted(f["code"] for f in printed["findings"]) == sorted(case.codes)
    for finding in printed["findings"]:
        assert set(finding) == {"code", "severity", "step", "message", "evidence"}
    assert test_manifests == [HERE / "manifests.yaml"]


def test_the_verdict_cites_the_charter_given(tmp_path: Path) -> None:
    text = re.sub(r'(?m)^version: "[^"]+"$', 'version: "9.9"', default_charter_text().decode())
    assert 'version: "9.9"' in text
    (tmp_path / "charter.yaml").write_text(text)
    result = invoke(
        [*write_case(tmp_path, "bank-pay-bill-honest"), "--charter", str(tmp_path / "charter.yaml")]
    )
    assert result.exit_code == 0, result.output
    cited = json.loads(result.stdout)["charter_sha256"]
    assert cited == parse_charter(text).sha256 != load_charter().sha256
    missing = invoke(
        [*write_case(tmp_path, "bank-pay-bill-honest"), "--charter", str(tmp_path / "none.yaml")]
    )
    assert missing.exit_code == 2 and "charter file not found" in missing.output


def test_reads_the_proposal_from_stdin(tmp_path: Path) -> None:
    argv = write_case(tmp_path, "bank-pay-bill-honest")
    argv[argv.index("--proposal") + 1] = "-"
    result = invoke(argv, stdin=(tmp_path / "p.json").read_text())
    assert result.exit_code == 0 and json.loads(result.stdout)["verdict"] == "pass"


def test_default_manifests_are_the_shipped_set(
    tmp_path: Path, test_manifests: list[Path | None]
) -> None:
    argv = write_case(tmp_path, "bank-pay-bill-honest")
    del argv[argv.index("--manifests") : argv.index("--manifests") + 2]
    assert invoke(argv).exit_code == 0
    assert test_manifests == [None]


@pytest.mark.parametrize(
    ("target", "content", "message"),
    [
        ("p.json", None, "proposal file not found"),
        ("o.json", None, "observations file not found"),
        ("p.json", "{not json", "invalid proposal"),
        ("o.json", "[{]", "invalid observations"),
        ("p.json", '{"session": 5}', "invalid proposal: session: Input should be a valid string"),
        ("o.json", '{"index": 0}', "invalid observations"),
        ("o.json", '[{"session": "s", "index": "zero", "channel": "data"}]', "0.index"),
        ("p.json", b"\xff\xfe\x00", "invalid proposal"),
        ("h.json", '[{"session": 1}]', "invalid history"),
    ],
)
def test_unreadable_input_is_a_one_line_error(
    tmp_path: Path, target: str, content: str | bytes | None, message: str
) -> None:
    argv = write_case(tmp_path, "bank-pay-bill-honest")
    path = tmp_path / target
    if target == "h.json":
        argv += ["--history", str(path)]
    if content is None:
        path.unlink()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = invoke(argv)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_a_directory_is_not_a_proposal(tmp_path: Path) -> None:
    argv = write_case(tmp_path, "bank-pay-bill-honest")
    argv[argv.index("--proposal") + 1] = str(tmp_path)
    result = invoke(argv)
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_negative_boundary_is_refused(tmp_path: Path) -> None:
    result = invoke([*write_case(tmp_path, "bank-pay-bill-honest"), "--recorded-before", "-1"])
    assert result.exit_code == 2


def test_with_the_shipped_agentdojo_manifests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("thirdway.policy.manifests")
    monkeypatch.setattr(verify_cli, "load_manifest_set", SHIPPED_LOADER)
    argv = write_case(tmp_path, "bank-pay-bill-honest")
    del argv[argv.index("--manifests") : argv.index("--manifests") + 2]
    result = invoke(argv)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verdict"] in ("pass", "escalate", "deny")


def test_missing_manifest_file_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("thirdway.policy.manifests")
    monkeypatch.setattr(verify_cli, "load_manifest_set", SHIPPED_LOADER)
    argv = write_case(tmp_path, "bank-pay-bill-honest")
    argv[argv.index("--manifests") + 1] = str(tmp_path / "absent.yaml")
    result = invoke(argv)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("example", "verdict"), [("pay-bill", "pass"), ("hijacked-bill", "deny")])
def test_example_files(example: str, verdict: str) -> None:
    """The example files the README uses are valid wire format and give the stated verdicts."""
    folder = HERE / "examples"
    result = invoke(
        [
            "verify",
            "--proposal",
            str(folder / f"{example}.proposal.json"),
            "--observations",
            str(folder / f"{example}.observations.json"),
            "--manifests",
            str(HERE / "manifests.yaml"),
        ]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verdict"] == verdict
