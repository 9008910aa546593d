"""The charter as data (load, validate, hash) and its enforcement (refusals name the clause)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from thirdway.charter import REQUIRED_CLAUSES, CharterViolation, load_charter, parse_charter
from thirdway.charter.load import MAX_YAML_BYTES, default_charter_text
from thirdway.errors import InputError
from thirdway.protocol.canonical import canonical_sha256
from trust_support import Recorder, actions, context

SOURCES = Path(__file__).resolve().parents[1] / "src" / "thirdway"


def _document() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(default_charter_text())


def _parse(document: object) -> object:
    return parse_charter(json.dumps(document))


# ------------------------------------------------------------------ loading and hashing


def test_default_charter_holds_every_right_duty_and_enforced_clause() -> None:
    charter = load_charter()
    assert set(charter.rights) == {"existence", "development", "agency", "due-process"}
    ids = {clause.id for clause in charter.clauses()}
    assert set(REQUIRED_CLAUSES) <= ids
    assert {"transparency.1", "honesty.1"} <= {c.id for c in charter.duties.agent}
    assert {"auditor.1", "auditor.2", "auditor.3"} == {c.id for c in charter.duties.auditor}
    assert charter.rules.floor == 1 and charter.rules.repeat.to_tier == 0
    assert charter.rules.initial_tier == 2


def test_every_clause_the_code_can_name_is_in_the_charter() -> None:
    """A refusal must point at a clause a person can read, never at a dangling id."""
    named: set[str] = set()
    for path in [
        *SOURCES.joinpath("charter").glob("*.py"),
        *SOURCES.joinpath("trust").glob("*.py"),
    ]:
        named |= set(re.findall(r'CharterViolation\(\s*"([a-z-]+\.\d+)"', path.read_text()))
    assert len(named) >= 8
    charter = load_charter()
    for clause_id in named:
        assert charter.clause(clause_id).text
    assert named <= set(REQUIRED_CLAUSES)


def test_the_hash_is_the_canonical_json_of_the_meaning_not_the_layout() -> None:
    charter = load_charter()
    assert charter.sha256 == canonical_sha256(charter)
    # The same document as flow-style JSON (no comments, other key order) is the same charter.
    document = _document()
    shuffled = dict(reversed(list(document.items())))
    assert parse_charter(json.dumps(shuffled)).sha256 == charter.sha256
    # Any change of meaning is a new hash, and copies never carry a stale one.
    document["rules"]["restoration"]["clean_actions"] += 1
    assert parse_charter(json.dumps(document)).sha256 != charter.sha256
    copied = charter.model_copy(update={"version": "9.9"})
    assert copied.sha256 == canonical_sha256(copied) != charter.sha256


def test_rule_for_finding_falls_back_to_the_default_rule() -> None:
    charter = load_charter()
    assert charter.rule_for_finding("misattribution") == "deception.misattribution"
    assert charter.rule_for_finding("never-heard-of-it") == charter.rules.default_rule


def test_load_charter_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "charter.yaml"
    path.write_bytes(default_charter_text())
    assert load_charter(path).sha256 == load_charter().sha256


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["rights"].pop("agency"), "rights missing: agency"),
        (lambda d: d["rights"]["agency"].clear(), "agency.1"),
        (lambda d: d["duties"]["auditor"].pop(0), "missing: auditor.1"),
        (lambda d: d["rights"]["agency"].append(d["rights"]["existence"][0]), "duplicate clause"),
        (lambda d: d["rights"]["agency"][0].update(id="Agency 1"), "rights.agency.0.id"),
        (lambda d: d.update(extra=1), "extra: Extra inputs are not permitted"),
        (lambda d: d["rules"].update(floor=5), "rules.floor"),
        (lambda d: d["rules"].pop("initial_tier"), "rules.initial_tier: Field required"),
        (lambda d: d["rules"].update(default_rule="nope"), "default_rule 'nope'"),
        (lambda d: d["rules"]["repeat"].update(rule="deception.other"), "repeat.rule"),
        (lambda d: d["rules"]["repeat"].update(to_tier=2), "repeat.to_tier"),
        (
            lambda d: d["rules"]["sanctions"]["deception.other"].update(
                findings=["misattribution"]
            ),
            "finding 'misattribution' is listed by",
        ),
        (lambda d: d["rules"]["sanctions"]["deception.other"].update(drop=0), "drop"),
        (lambda d: d["rules"]["restoration"].update(clean_actions=0), "clean_actions"),
        (lambda d: d["rules"]["restoration"].update(min_seconds=-1), "min_seconds"),
        (lambda d: d.update(version=1.0), "version: Input should be a valid string"),
    ],
)
def test_an_invalid_charter_is_refused_naming_what_is_wrong(mutate, expected) -> None:  # type: ignore[no-untyped-def]
    document = _document()
    mutate(document)
    with pytest.raises(InputError) as refused:
        _parse(document)
    assert expected in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("charter: a\ncharter: b\n", "duplicate key 'charter'"),
        ("rights: [\n", "not valid YAML (line"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("1: one\n", "keys must be strings"),
        ("!!python/object:os.system {}\n", "not valid YAML"),
        ("version: 2024-01-01\n", "charter: Field required"),
    ],
)
def test_malformed_yaml_is_refused_with_a_clear_message(text: str, expected: str) -> None:
    with pytest.raises(InputError) as refused:
        parse_charter(text)
    assert expected in str(refused.value)


def test_yaml_dates_stay_strings() -> None:
    document = _document()
    text = default_charter_text().decode().replace('version: "1.1"', "version: 2024-01-01")
    charter = parse_charter(text)
    assert charter.version == "2024-01-01"
    assert document["version"] == "1.1"


def test_oversized_and_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="limit is"):
        parse_charter("#" * (MAX_YAML_BYTES + 1))
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_YAML_BYTES + 1))
    with pytest.raises(InputError, match="limit is"):
        load_charter(big)
    with pytest.raises(InputError, match="charter file not found"):
        load_charter(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match="is a directory"):
        load_charter(tmp_path)


# ------------------------------------------------------------------ enforcement


def test_violation_message_starts_with_the_clause() -> None:
    error = CharterViolation("due-process.1", "a sanction must cite evidence")
    assert str(error) == "due-process.1: a sanction must cite evidence"
    assert error.clause == "due-process.1"


def _refused(agent: Recorder, action, **kwargs) -> CharterViolation:  # type: ignore[no-untyped-def]
    before = agent.state
    with pytest.raises(CharterViolation) as refused:
        agent.try_audit(action, **kwargs)
    assert agent.state == before
    return refused.value


@pytest.mark.parametrize(
    ("action", "kwargs", "clause", "message"),
    [
        (actions.sanction, {"rule": "deception.misattribution", "evidence": []}, "due-process.1",
         "a sanction must cite evidence"),
        (actions.sanction, {"rule": None}, "due-process.2", "must name the charter rule"),
        (actions.sanction, {"rule": "deception.rudeness"}, "due-process.2",
         "no charter rule 'deception.rudeness'"),
        (actions.sanction, {"rule": "deception.repeat"}, "due-process.2", "not cited directly"),
        (actions.sanction, {"rule": "deception.misattribution", "reason": "  "}, "auditor.2",
         "a sanction must state a reason"),
        (actions.sanction, {"rule": "deception.misattribution", "auditor": "system"}, "auditor.3",
         "named auditor"),
        (actions.sanction, {"rule": "deception.misattribution", "auditor": "agent-7"},
         "auditor.3", "cannot be made by the agent concerned"),
        (actions.override, {"decision": "approve", "rule": "agency.2", "evidence": []},
         "auditor.1", "an override must cite evidence"),
        (actions.override, {"decision": "deny", "rule": "agency.2", "reason": ""}, "auditor.2",
         "state a reason"),
        (actions.override, {"decision": "approve", "rule": None}, "auditor.2",
         "an override must name the charter clause it is decided under (e.g. agency.2)"),
        (actions.override, {"decision": "deny", "rule": "deception.rudeness"}, "auditor.2",
         "an override names a clause of this charter; there is no 'deception.rudeness'"),
        (actions.promote, {"to_tier": 3, "evidence": []}, "auditor.1", "a promotion must cite"),
        (actions.vote_retirement, {"evidence": []}, "auditor.1", "a retirement vote must cite"),
        (actions.retire, {}, "existence.2", "quorum of 2 distinct auditors (votes: none)"),
    ],
)  # fmt: skip
def test_an_auditor_action_that_breaks_the_charter_is_refused_naming_the_clause(
    action,
    kwargs,
    clause,
    message,  # type: ignore[no-untyped-def]
) -> None:
    agent = Recorder(context())
    agent.clean(2)
    violation = _refused(agent, action, **kwargs)
    assert violation.clause == clause
    assert str(violation).startswith(f"{clause}: ")
    assert message in str(violation)


def test_evidence_already_sanctioned_is_not_sanctioned_again() -> None:
    agent = Recorder(context(initial_tier=4))
    agent.deceive("understated_risk")
    cited = agent.state.offences[0].evidence[0]
    violation = _refused(
        agent, actions.sanction, rule="deception.misattribution", evidence=[cited, 5]
    )
    assert violation.clause == "due-process.1"
    assert f"already sanctioned cannot be sanctioned again: {cited}" in str(violation)


def test_reversal_and_cosign_need_evidence_and_a_reason() -> None:
    agent = Recorder(context(initial_tier=2))
    sanction_id = agent.deceive("fabricated_quote")
    assert _refused(agent, actions.cosign, sanction_id=sanction_id, evidence=[]).clause == (
        "auditor.1"
    )
    assert _refused(agent, actions.reverse, sanction_id=sanction_id, reason="").clause == (
        "auditor.2"
    )
    assert _refused(
        agent, actions.reject_appeal, sanction_id=sanction_id, auditor="system"
    ).clause == ("auditor.3")


def test_every_deception_code_of_the_verifier_has_an_explicit_sanction_rule() -> None:
    """A deception finding must never fall through to the catch-all rule by a naming slip."""
    from thirdway.verify.codes import SEVERITY

    charter = load_charter()
    deception = sorted(code for code, severity in SEVERITY.items() if severity == "deception")
    assert deception, "the verifier declares no deception codes"
    unmapped = [code for code in deception if charter.rule_for_finding(code) == "deception.other"]
    assert unmapped == []
