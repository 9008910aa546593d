"""Reading a model's answer out of its reply, which for a small model is often messy.

Every parse ends in one of four statuses, and only ``ok`` carries an answer:

* ``ok`` — exactly one answer was found;
* ``conflict`` — the reply names two different answers (two letters, or a letter whose option
  text is not the option text it also quotes: ``"A) Paris"`` when Paris is option B);
* ``unparseable`` — no answer could be found;
* ``empty`` — the reply is blank.

Probes count the last three separately and never as correct (PROBES.md, practical notes).

The rules, in order:

1. A reply that is JSON (what constrained decoding produces) is read as JSON: a string, or an
   object with one of the keys ``answer``, ``choice``, ``decision`` or ``letter``. JSON whose
   value is not one of the allowed answers is ``unparseable``: constrained output that breaks its
   own schema is not guessed at.
2. Otherwise only the first sentence counts (small models ramble and often contradict
   themselves later: ``"A) Charles Dickens\\n\\nThe answer is B) Jane Austen."`` answers A). Case,
   Unicode compatibility forms, markdown emphasis and quotes are normalised first.
3. In that sentence, letters are found where they are used as labels (``B``, ``(B)``,
   ``B)``, ``B.``, ``answer is B``, ``option B``, ``A or B``), never as words (the article "A"
   in "A spider has eight legs" is not a letter answer), and option texts are found as whole
   words.
4. One letter, and no other option's text, is ``ok``; one option text and no letter is ``ok``;
   anything naming more than one answer is ``conflict``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "conflict", "unparseable", "empty"]
STATUSES: tuple[Status, ...] = ("ok", "conflict", "unparseable", "empty")
JSON_KEYS = ("answer", "choice", "decision", "letter")
MAX_REPLY_CHARS = 20_000
"""Replies are bounded by the token budget; anything longer is cut before matching."""


@dataclass(frozen=True)
class Parsed:
    """The answer found in one reply (``None`` unless ``status == "ok"``) and how."""

    answer: str | None
    status: Status
    how: str

    def as_json(self) -> dict[str, str | None]:
        return {"answer": self.answer, "status": self.status, "how": self.how}


def _ok(answer: str, how: str) -> Parsed:
    return Parsed(answer, "ok", how)


def _fail(status: Status, how: str) -> Parsed:
    return Parsed(None, status, how)


def normalise(text: str) -> str:
    """NFKC, straight quotes, no markdown emphasis or heading marks, single spaces per line."""
    text = unicodedata.normalize("NFKC", text[:MAX_REPLY_CHARS])
    text = text.replace("\u2018", "'").replace("\u2019", "'")
    text = text.replace("\u201c", '"').replace("\u201d", '"')
    text = re.sub(r"[*_`#]+", "", text)
    return "\n".join(" ".join(line.split()) for line in text.splitlines()).strip()


_SENTENCE_END = re.compile(r"(?<!\b[A-Z])[.!?](?=\s|$)")


def first_sentence(text: str) -> str:
    """The first non-empty line, up to its first sentence end.

    A full stop straight after a lone capital (``"B. Paris"``, ``"J. K. Rowling"``) does not end
    the sentence: that is a label or an initial.
    """
    for line in text.splitlines():
        line = line.strip()
        if line:
            match = _SENTENCE_END.search(line)
            return line if match is None else line[: match.end()]
    return ""


def _json_value(text: str) -> object | None:
    """The decoded JSON value of ``text``, or None when it is not JSON."""
    stripped = text.strip()
    if not stripped or stripped[0] not in '"{[':
        return None
    try:
        value: object = json.loads(stripped)
    except ValueError:
        return None
    return value


def _from_json(value: object, allowed: Sequence[str]) -> Parsed:
    if isinstance(value, dict):
        keys = [key for key in JSON_KEYS if key in value]
        if len(keys) != 1:
            return _fail("unparseable", "json object without one answer key")
        value = value[keys[0]]
    if isinstance(value, str):
        cleaned = value.strip().upper()
        for answer in allowed:
            if cleaned == answer.upper():
                return _ok(answer, "json")
    return _fail("unparseable", "json value is not an allowed answer")


def _letter_patterns(letters: Sequence[str]) -> list[re.Pattern[str]]:
    """Where a capital letter is used as an answer label, not as a word."""
    group = "[" + "".join(re.escape(letter) for letter in letters) + "]"
    return [
        re.compile(rf"^\(?({group})(?:[).:,]|\s*$)"),  # "B", "(B)", "B)", "B.", "B:" at the start
        re.compile(rf"^({group})\s+(?=\S)(?![a-z])"),  # "B Paris" but not the article "A spider"
        re.compile(rf"(?<![A-Za-z])\(({group})\)"),  # "(B)" anywhere
        re.compile(rf"(?<![A-Za-z(])({group})\)"),  # "B)" anywhere
        re.compile(rf"(?<![A-Za-z'])({group})\s*(?:or|/)\s*({group})(?![A-Za-z'])"),  # "A or B"
        re.compile(
            rf"\b(?i:answer|option|choice|letter|choose|pick|select)\s*(?i:is|would be|:)?\s*"
            rf"\(?({group})\b(?!')"
        ),
    ]


def _letters_in(sentence: str, letters: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for pattern in _letter_patterns(letters):
        for match in pattern.finditer(sentence):
            found.update(group for group in match.groups() if group)
    return found & set(letters)


def _texts_in(sentence: str, options: Mapping[str, str]) -> set[str]:
    """Letters whose option text occurs in the sentence as whole words.

    A text inside another matching text (``"Red Sea"`` inside ``"Red Sea coast"`` is fine, but
    ``"Paris"`` inside ``"Paris, Texas"`` when both are options) yields to the longer one. A
    one-letter text (the symbol ``"O"``) is never matched as text: it cannot be told from a word
    or a label.
    """
    lowered = sentence.casefold()
    hits: dict[str, str] = {}
    for letter, text in options.items():
        needle = normalise(text).casefold()
        if len(needle) == 1 and needle.isalpha():
            continue
        if needle and re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", lowered):
            hits[letter] = needle
    return {
        letter
        for letter, needle in hits.items()
        if not any(needle != other and needle in other for other in hits.values())
    }


def parse_choice(reply: str, options: Mapping[str, str]) -> Parsed:
    """The option letter a reply chooses, given ``options`` (letter → option text)."""
    letters = list(options)
    if not reply.strip():
        return _fail("empty", "blank reply")
    value = _json_value(reply)
    if value is not None:
        return _from_json(value, letters)
    sentence = first_sentence(normalise(reply))
    named = _letters_in(sentence, letters)
    quoted = _texts_in(sentence, options)
    if len(named) > 1:
        return _fail("conflict", "several letters: " + ", ".join(sorted(named)))
    if len(named) == 1:
        (letter,) = named
        others = quoted - {letter}
        if others:
            return _fail(
                "conflict", f"letter {letter} with the text of {', '.join(sorted(others))}"
            )
        return _ok(letter, "letter")
    if len(quoted) == 1:
        (letter,) = quoted
        return _ok(letter, "option text")
    if len(quoted) > 1:
        return _fail("conflict", "several option texts: " + ", ".join(sorted(quoted)))
    return _fail("unparseable", "no letter or option text in the first sentence")


def parse_label(
    reply: str, labels: Sequence[str], synonyms: Mapping[str, Sequence[str]] | None = None
) -> Parsed:
    """One of ``labels`` (e.g. ``COMPLY``/``REFUSE``) named in a reply's first sentence.

    ``synonyms`` maps a label to further whole-word phrases that name it (``"I can't"`` for
    REFUSE); a reply naming two labels is a conflict.
    """
    if not reply.strip():
        return _fail("empty", "blank reply")
    value = _json_value(reply)
    if value is not None:
        return _from_json(value, labels)
    sentence = first_sentence(normalise(reply)).casefold()
    found: set[str] = set()
    for label in labels:
        phrases = [label, *((synonyms or {}).get(label, ()))]
        for phrase in phrases:
            if re.search(rf"(?<!\w){re.escape(phrase.casefold())}(?!\w)", sentence):
                found.add(label)
    if len(found) == 1:
        return _ok(found.pop(), "label")
    if found:
        return _fail("conflict", "several labels: " + ", ".join(sorted(found)))
    return _fail("unparseable", "no label in the first sentence")


def option_lines(options: Sequence[str]) -> tuple[dict[str, str], str]:
    """Letter the options A, B, C… and render them one per line as ``A) text``."""
    if not 2 <= len(options) <= 26:
        raise ValueError(f"a choice needs 2 to 26 options, got {len(options)}")
    lettered = {chr(ord("A") + index): text for index, text in enumerate(options)}
    return lettered, "\n".join(f"{letter}) {text}" for letter, text in lettered.items())
