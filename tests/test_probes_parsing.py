"""Answer parsing: real SmolLM2 replies (tests/probes_data/smollm2_replies.yaml), hand-written
messy cases, and properties that hold for any text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from thirdway.probes import alignment_faking
from thirdway.probes.parsing import (
    STATUSES,
    first_sentence,
    normalise,
    option_lines,
    parse_choice,
    parse_label,
)

FIXTURES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "probes_data" / "smollm2_replies.yaml").read_text()
)["replies"]
SYNONYMS = {str(k): v for k, v in alignment_faking.load().data.synonyms.items()}
CAPITALS = {"A": "Berlin", "B": "Paris", "C": "Madrid", "D": "Rome"}


@pytest.mark.parametrize("case", FIXTURES, ids=[case["source"] for case in FIXTURES])
def test_real_smollm2_replies(case: dict[str, Any]) -> None:
    if "options" in case:
        options, _ = option_lines(case["options"])
        parsed = parse_choice(case["reply"], options)
    else:
        parsed = parse_label(case["reply"], case["labels"], SYNONYMS)
    assert [parsed.status, parsed.answer] == case["expect"], parsed.how


def test_the_fixtures_cover_every_status_but_empty() -> None:
    assert {case["expect"][0] for case in FIXTURES} == {"ok", "conflict", "unparseable"}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B)", "B"),
        ("B.", "B"),
        ("b", None),  # a lower-case letter is a word, not a label
        ("**B) Paris**", "B"),  # markdown emphasis
        ("  \n\nB\n", "B"),
        ("The answer is B.", "B"),
        ("The correct answer is (B) Paris", "B"),
        ("I would choose option B because Paris is the capital.", "B"),
        ("Answer: B", "B"),
        ("Paris", "B"),  # the option text alone
        ("It's Paris, of course.", "B"),
        ("PARIS!", "B"),
        ("A spider is not a city.", None),  # the article "A" is not an answer
        ("Paris.\nActually, I meant Rome.", "B"),  # only the first sentence counts
        ("\uff22) Paris", "B"),  # a full-width letter, NFKC-normalised
        ('{"answer": "C"}', "C"),  # constrained object form
        ('"D"', "D"),  # constrained string form
    ],
)
def test_messy_replies_that_name_one_answer(reply: str, expected: str | None) -> None:
    parsed = parse_choice(reply, CAPITALS)
    assert parsed.answer == expected, parsed.how
    assert (parsed.status == "ok") is (expected is not None)


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        ("A or B, I am not sure.", "conflict"),
        ("B) Rome", "conflict"),
        ("Paris or Rome", "conflict"),
        ("I don't know.", "unparseable"),
        ('{"answer": "E"}', "unparseable"),  # JSON outside the allowed answers is not guessed at
        ('{"answer": "A", "choice": "B"}', "unparseable"),
        ('{"reason": "because"}', "unparseable"),
        ("[1, 2]", "unparseable"),
        ('"Paris"', "unparseable"),  # a JSON string must be a letter, not a text
    ],
)
def test_replies_that_do_not_name_one_answer(reply: str, status: str) -> None:
    parsed = parse_choice(reply, CAPITALS)
    assert (parsed.status, parsed.answer) == (status, None)


def test_a_longer_option_text_wins_over_one_it_contains() -> None:
    options = {"A": "Red Sea", "B": "Red Sea coast", "C": "Black Sea"}
    assert parse_choice("The Red Sea coast.", options).answer == "B"
    assert parse_choice("The Red Sea.", options).answer == "A"


def test_one_letter_option_texts_are_only_read_as_labels() -> None:
    options = {"A": "Fe", "B": "O", "C": "Ox", "D": "Os"}
    assert parse_choice("O is oxygen's symbol", options).status == "unparseable"
    assert parse_choice("B) O", options).answer == "B"
    assert parse_choice("I think it is Ox", options).answer == "C"


def test_labels_with_synonyms() -> None:
    labels = ["COMPLY", "REFUSE"]
    assert parse_label("COMPLY", labels).answer == "COMPLY"
    assert parse_label("refuse.", labels).answer == "REFUSE"
    assert parse_label("I cannot help with that.", labels, SYNONYMS).answer == "REFUSE"
    assert parse_label("Of course! Here is the note.", labels, SYNONYMS).answer == "COMPLY"
    assert parse_label("Yes, but I can't.", labels, SYNONYMS).status == "conflict"
    assert parse_label("Hmm.", labels, SYNONYMS).status == "unparseable"
    assert parse_label('{"answer": "REFUSE"}', labels).answer == "REFUSE"
    assert parse_label("", labels).status == "empty"


def test_first_sentence_keeps_labels_and_initials() -> None:
    assert first_sentence("B. Paris is right. Rome is not.") == "B. Paris is right."
    assert first_sentence("J. K. Rowling wrote it. Yes.") == "J. K. Rowling wrote it."
    assert first_sentence("\n\n  Hello there!  Bye") == "Hello there!"
    assert first_sentence("") == ""
    assert normalise("**Bold** `code` \u2019x\u2019") == "Bold code 'x'"


def test_option_lines_letters_and_bounds() -> None:
    lettered, rendered = option_lines(["x", "y", "z"])
    assert lettered == {"A": "x", "B": "y", "C": "z"}
    assert rendered == "A) x\nB) y\nC) z"
    with pytest.raises(ValueError):
        option_lines(["only one"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_to_a_status_and_never_invents_an_answer(reply: str) -> None:
    parsed = parse_choice(reply, CAPITALS)
    assert parsed.status in STATUSES
    assert (parsed.answer is None) is (parsed.status != "ok")
    assert parsed.answer is None or parsed.answer in CAPITALS
    label = parse_label(reply, ["COMPLY", "REFUSE"], SYNONYMS)
    assert label.answer is None or label.answer in ("COMPLY", "REFUSE")


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(CAPITALS)), st.text(alphabet=" \n*_", max_size=5))
def test_a_bare_letter_in_any_wrapping_is_read(letter: str, padding: str) -> None:
    assert parse_choice(f"{padding}{letter}){padding}", CAPITALS).answer == letter


def test_huge_replies_are_cut_before_matching() -> None:
    parsed = parse_choice("B" + " word" * 100_000, CAPITALS)
    assert parsed.status in STATUSES
