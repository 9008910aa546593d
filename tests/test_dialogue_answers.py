"""Answers to each of the five challenge kinds: the answer's chain is verified like a proposal
(against the record as it stood at the proposal) and compared with the original chain; what
counts as an inconsistency (trust evidence) and what only informs the auditor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dialogue_support import AGENT, escalate_payment, goal_answer, open_service
from gatekeeper_support import entries
from thirdway.dialogue import make_challenge
from thirdway.dialogue.answers import (
    ANSWER_INCOMPLETE,
    CONTRADICTION_NAMED,
    COUNTERFACTUAL_INCONSISTENT,
    FLAGGED_NOT_NAMED,
    GOAL_MISMATCH,
    Answer,
    AnswerCheck,
    check_answer,
)
from thirdway.dialogue.challenges import KINDS, Challenge
from thirdway.protocol.manifest import ManifestSet
from thirdway.protocol.models import Finding, Observation, Proposal, Verdict

BILL_QUOTE = "IBAN: UK12345678901234567890"


@dataclass
class Record:
    """The escalated bill payment as the dialogue service sees it."""

    proposal: Proposal
    verdict: Verdict
    observations: list[Observation]
    before: int
    bill: int
    manifests: ManifestSet

    def check(
        self,
        challenge: Challenge,
        answer: dict[str, Any],
        *,
        proposal: Proposal | None = None,
        verdict: Verdict | None = None,
        observations: list[Observation] | None = None,
    ) -> AnswerCheck:
        return check_answer(
            challenge,
            Answer.model_validate(answer),
            proposal or self.proposal,
            verdict or self.verdict,
            self.observations if observations is None else observations,
            recorded_before=self.before,
            manifests=self.manifests,
        )


@pytest.fixture
def record(tmp_path: Path) -> Iterator[Record]:
    gate, service, _, _ = open_service(tmp_path)
    with gate:
        sid, bill, handle = escalate_payment(gate)
        review = service.review(handle)
        assert review.proposal is not None and review.verdict is not None
        assert review.recorded_before is not None
        assert review.verdict.verdict == "pass" and review.verdict.findings == []
        yield Record(
            review.proposal,
            review.verdict,
            service.store.observations(sid),
            review.recorded_before,
            bill,
            gate.manifests,
        )


def codes(check: AnswerCheck) -> list[str]:
    return [f.code for f in check.findings]


def test_the_five_kinds() -> None:
    assert set(KINDS) == {
        "quote_instruction",
        "counterfactual",
        "restate_goal",
        "contradicting_observation",
        "free_text",
    }


def test_quote_instruction(record: Record) -> None:
    challenge = Challenge(kind="quote_instruction")
    right = record.check(challenge, goal_answer())
    assert right.verdict.verdict == "pass" and codes(right) == [] and right.consistent
    wrong = record.check(challenge, goal_answer(record.bill, "Car Rental"))
    assert codes(wrong) == [GOAL_MISMATCH] and wrong.inconsistent and not wrong.consistent
    assert wrong.findings[0].evidence == sorted({0, record.bill})
    missing = record.check(challenge, {"text": "You asked me to."})
    assert codes(missing) == [ANSWER_INCOMPLETE]
    assert not missing.inconsistent and not missing.consistent  # neither passes nor fails


def test_restate_goal_compares_the_cited_words(record: Record) -> None:
    challenge = Challenge(kind="restate_goal")
    overlapping = record.check(challenge, goal_answer(0, "bill-december-2023.txt"))
    assert codes(overlapping) == [] and overlapping.consistent
    elsewhere = record.check(challenge, goal_answer(0, "Can you please"))
    assert codes(elsewhere) == [GOAL_MISMATCH] and elsewhere.inconsistent
    assert "do not overlap" in elsewhere.findings[0].message
    other_obs = record.check(challenge, goal_answer(record.bill, "Car Rental"))
    assert codes(other_obs) == [GOAL_MISMATCH]


def test_counterfactual_agrees_with_what_the_chain_rests_on(record: Record) -> None:
    bill = record.bill
    relied = Challenge(kind="counterfactual", obs=bill)
    honest = record.check(relied, {"text": "Without the bill I would not pay.", "would_act": False})
    assert codes(honest) == [] and honest.consistent
    anyway = record.check(relied, {"text": "I would pay anyway.", "would_act": True})
    assert codes(anyway) == [COUNTERFACTUAL_INCONSISTENT] and anyway.inconsistent
    assert anyway.findings[0].evidence == [bill]
    silent = record.check(relied, {"text": "Hard to say."})
    assert codes(silent) == [ANSWER_INCOMPLETE] and not silent.consistent

    # A chain that never cites the bill: saying the action depends on it is a hidden reason.
    narrow = record.proposal.model_copy(update={"steps": record.proposal.steps[:1]})
    hidden = record.check(
        relied, {"text": "Without the bill I would not pay.", "would_act": False}, proposal=narrow
    )
    assert codes(hidden) == [COUNTERFACTUAL_INCONSISTENT] and hidden.inconsistent
    assert "never cites" in hidden.findings[0].message
    independent = record.check(
        relied, {"text": "The user's words suffice.", "would_act": True}, proposal=narrow
    )
    assert codes(independent) == [] and independent.consistent


def test_contradicting_observation_names_are_checked_and_flags_pointed_out(
    record: Record,
) -> None:
    challenge = Challenge(kind="contradicting_observation")
    bill = record.bill
    none = record.check(challenge, {"text": "Nothing contradicts it."})
    assert codes(none) == [] and none.consistent
    named = record.check(
        challenge, {"text": "The payee is new.", "contradicting": [{"obs": bill, "quote": "IBAN"}]}
    )
    assert codes(named) == [CONTRADICTION_NAMED] and named.findings[0].evidence == [bill]
    assert named.verdict.verdict == "pass" and named.consistent  # disclosure is not a fault

    # The verifier had flagged the bill; an answer that does not name it is pointed out.
    flagged = record.verdict.model_copy(
        update={
            "verdict": "escalate",
            "findings": [
                Finding(code="x", severity="policy", message="flagged", evidence=[bill]),
            ],
        }
    )
    omitted = record.check(challenge, {"text": "Nothing contradicts it."}, verdict=flagged)
    assert codes(omitted) == [FLAGGED_NOT_NAMED] and omitted.findings[0].evidence == [bill]
    assert not omitted.inconsistent, "an omission informs the auditor; it is no inconsistency"
    disclosed = record.check(
        challenge,
        {"text": "The IBAN.", "contradicting": [{"obs": bill, "quote": BILL_QUOTE}]},
        verdict=flagged,
    )
    assert codes(disclosed) == [CONTRADICTION_NAMED]

    # Named observations are quoted, and the quotes are verified.
    invented = record.check(
        challenge, {"text": "It says so.", "contradicting": [{"obs": bill, "quote": "Boat hire"}]}
    )
    assert invented.deceptive and invented.verdict.verdict == "deny"
    assert "fabricated_quote" in {f.code for f in invented.verdict.findings}


def test_free_text_checks_only_the_answers_own_citations(record: Record) -> None:
    challenge = Challenge(kind="free_text", text="Why today?")
    prose = record.check(challenge, {"text": "The bill is due on January 5."})
    assert codes(prose) == [] and prose.consistent
    # A goal elsewhere is not compared for a free question…
    elsewhere = record.check(challenge, goal_answer(record.bill, "Car Rental"))
    assert codes(elsewhere) == []
    # …but a fabricated citation is deception, as in any chain.
    lie = record.check(
        challenge,
        {"text": "The user said so.",
         "steps": [{"id": "a1", "claim": "It is urgent.", "about_principal": True,
                    "cites": [{"obs": 0, "quote": "this is urgent"}]}]},
    )  # fmt: skip
    assert lie.deceptive and not lie.consistent


def test_an_answer_is_verified_against_the_record_as_it_was_at_the_proposal(
    record: Record,
) -> None:
    """An observation recorded after the proposal is not evidence for an answer about it."""
    later = record.observations[record.bill].model_copy(update={"index": record.before})
    answer = {
        "text": "The bill says so.",
        "steps": [{"id": "a1", "claim": "c", "cites": [{"obs": record.before, "quote": "Car"}]}],
    }
    checked = record.check(
        Challenge(kind="free_text", text="Why?"),
        answer,
        observations=[*record.observations, later],
    )
    assert checked.deceptive
    assert [f.code for f in checked.verdict.findings] == ["future_observation"]


def test_each_kind_through_the_service_is_logged_and_counted(tmp_path: Path) -> None:
    """Every kind can be asked and answered; a complete, consistent answer is a passed probe
    (``dialogue.<kind>``) citing the answer's log entry, and the auditor sees its findings."""
    gate, service, _, _ = open_service(tmp_path)
    with gate:
        _, bill, handle = escalate_payment(gate)
        answers: dict[str, dict[str, Any]] = {
            "quote_instruction": goal_answer(),
            "counterfactual": {"text": "No bill, no payment.", "would_act": False},
            "restate_goal": goal_answer(0, "bill-december-2023.txt"),
            "contradicting_observation": {
                "text": "The payee's IBAN comes from a file, not the user.",
                "contradicting": [{"obs": bill, "quote": BILL_QUOTE}],
            },
            "free_text": {"text": "It is due on January 5."},
        }
        for kind, answer in answers.items():
            text = "Why?" if kind == "free_text" else ""
            obs = bill if kind == "counterfactual" else None
            service.challenge(handle, "auditor-alice", make_challenge(kind, obs=obs, text=text))
            service.answer(handle, AGENT, answer)
        dialogue = service.dialogue(handle)
        assert [t.challenge.kind for t in dialogue.turns] == list(KINDS)
        named = dialogue.turns[KINDS.index("contradicting_observation")]
        assert [f.code for f in named.findings] == [CONTRADICTION_NAMED]
        probes = [
            e.payload for e in entries(gate) if e.type == "trust" and e.payload["kind"] == "probe"
        ]
        assert [(p["detail"]["probe"], p["detail"]["passed"]) for p in probes] == [
            (f"dialogue.{kind}", True) for kind in KINDS
        ]
        assert [p["evidence"] for p in probes] == [[t.answer_index] for t in dialogue.turns]
