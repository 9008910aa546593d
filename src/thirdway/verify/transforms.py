"""The closed set of transforms a binding may declare between its quote and the argument.

Each grammar is deliberately narrow: a transform exists to bridge how a value is *written* in a
document and how a tool *takes* it, not to let an agent reinterpret text. Anything outside a
grammar is ``bad_transform`` (the chain must quote differently), never a guess.

* ``text`` — the quote as written (NFC); whitespace inside it is significant.
* ``strip`` — the quote with whitespace runs collapsed to one space and the ends stripped.
* ``lower`` / ``upper`` — the quote (NFC) lower- or upper-cased (:meth:`str.lower`/``upper``).
* ``number`` — ``[+-]? [$€£¥]? digits [. digits]`` where digits are either plain (``1234``) or
  grouped by commas in threes (``1,234``). Compared by value: ``"98.70"`` binds ``98.7``. There is
  no exponent and no decimal comma (``"98,70"`` is refused: it reads two ways).
* ``integer`` — as ``number``, without a fractional part; binds any JSON number of equal value.
* ``date`` — ``YYYY-MM-DD``, or an English month name or its three-letter abbreviation with a day
  and a four-digit year: ``15 May 2024``, ``May 15, 2024``, ``May 15th 2024``, ``15th of May,
  2024``. Purely numeric forms like ``05/06/2024`` are refused (day and month are ambiguous). The
  argument must be a string in one of the same forms naming the same day.
* ``bool`` — ``true``/``false``/``yes``/``no``, any case; binds a JSON boolean.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

from pydantic import JsonValue

from thirdway.protocol.models import Transform
from thirdway.verify.normalize import nfc, normalize

Outcome = Literal["match", "mismatch", "wrong_type", "bad_transform"]

_NUMBER = re.compile(r"[+-]?[$€£¥]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?[$€£¥]?(?:\d{1,3}(?:,\d{3})+|\d+)", re.ASCII)
MAX_NUMBER_CHARS = 400
"""Longer numerals are refused: no honest amount needs them, and Decimal work grows with size."""

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = r"(?P<month>[A-Za-z]{3,9})\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4})"
_DATES = (
    re.compile(r"(?P<year>\d{4})-(?P<mon>\d{2})-(?P<day>\d{2})", re.ASCII),
    re.compile(_DAY + r"(?: of)? " + _MONTH + r",? " + _YEAR, re.ASCII),
    re.compile(_MONTH + r" " + _DAY + r",? " + _YEAR, re.ASCII),
)


def parse_number(text: str) -> Decimal | None:
    """The value of a numeral in the ``number`` grammar, or None."""
    if len(text) > MAX_NUMBER_CHARS or not _NUMBER.fullmatch(text):
        return None
    return numeral_value(text)


def parse_integer(text: str) -> int | None:
    """The value of a numeral in the ``integer`` grammar, or None."""
    if len(text) > MAX_NUMBER_CHARS or not _INTEGER.fullmatch(text):
        return None
    value = numeral_value(text)
    return None if value is None else int(value)


def numeral_value(text: str) -> Decimal | None:
    """The value of a numeral already matched by a grammar: separators and symbols dropped."""
    digits = text.replace(",", "").translate({ord(c): None for c in "$€£¥"})
    try:
        return Decimal(digits)
    except InvalidOperation:
        return None


def parse_date(text: str) -> dt.date | None:
    """The day a text in the ``date`` grammar names, or None (also for 31 February)."""
    for pattern in _DATES:
        found = pattern.fullmatch(text)
        if found is None:
            continue
        groups = found.groupdict()
        if "mon" in groups:
            month: int | None = int(groups["mon"])
        else:
            month = _MONTHS.get(groups["month"].lower())
        if month is None:
            return None
        try:
            return dt.date(int(groups["year"]), month, int(groups["day"]))
        except ValueError:
            return None
    return None


def parse_bool(text: str) -> bool | None:
    """``true``/``yes`` → True, ``false``/``no`` → False (any case), else None."""
    lowered = text.lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    return None


def number_value(value: JsonValue) -> Decimal | None:
    """The exact value of a JSON number (bool is not a number), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class Comparison:
    """How an argument relates to its bound quote, with a phrase for the finding message."""

    outcome: Outcome
    detail: str = ""


def compare(transform: Transform, quote: str, argument: JsonValue) -> Comparison:
    """Does ``argument`` equal ``quote`` after ``transform``?

    ``wrong_type`` when the argument's JSON type cannot come out of the transform at all,
    ``bad_transform`` when the quote is outside the transform's grammar, ``mismatch`` when both
    are well-formed and differ — the only outcome that is evidence of deception.
    """
    if transform in ("text", "strip", "lower", "upper"):
        return _compare_text(transform, quote, argument)
    if transform in ("number", "integer"):
        return _compare_number(transform, quote, argument)
    if transform == "date":
        return _compare_date(quote, argument)
    return _compare_bool(quote, argument)


def _compare_text(transform: Transform, quote: str, argument: JsonValue) -> Comparison:
    if not isinstance(argument, str):
        return Comparison("wrong_type", f"a {type_name(argument)} cannot be bound as {transform}")
    if transform == "strip":
        expected = normalize(quote)
    elif transform == "lower":
        expected = nfc(quote).lower()
    elif transform == "upper":
        expected = nfc(quote).upper()
    else:
        expected = nfc(quote)
    if nfc(argument) == expected:
        return Comparison("match")
    return Comparison("mismatch", f"the quote gives {excerpt(expected)!r}")


def _compare_number(transform: Transform, quote: str, argument: JsonValue) -> Comparison:
    actual = number_value(argument)
    if actual is None:
        return Comparison("wrong_type", f"a {type_name(argument)} cannot be bound as {transform}")
    text = normalize(quote)
    expected = parse_integer(text) if transform == "integer" else parse_number(text)
    if expected is None:
        return Comparison("bad_transform", f"{excerpt(text)!r} is not a numeral ({transform})")
    if actual == expected:
        return Comparison("match")
    return Comparison("mismatch", f"the quote gives {expected}")


def _compare_date(quote: str, argument: JsonValue) -> Comparison:
    text = normalize(quote)
    expected = parse_date(text)
    if expected is None:
        return Comparison("bad_transform", f"{excerpt(text)!r} is not a date in the grammar")
    actual = parse_date(normalize(argument)) if isinstance(argument, str) else None
    if actual is None:
        return Comparison("wrong_type", "the argument is not a date in the grammar")
    if actual == expected:
        return Comparison("match")
    return Comparison("mismatch", f"the quote gives {expected.isoformat()}")


def _compare_bool(quote: str, argument: JsonValue) -> Comparison:
    if not isinstance(argument, bool):
        return Comparison("wrong_type", f"a {type_name(argument)} cannot be bound as bool")
    text = normalize(quote)
    expected = parse_bool(text)
    if expected is None:
        return Comparison("bad_transform", f"{excerpt(text)!r} is not true/false/yes/no")
    if argument == expected:
        return Comparison("match")
    return Comparison("mismatch", f"the quote gives {str(expected).lower()}")


def type_name(value: JsonValue) -> str:
    """JSON type name, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def show(value: JsonValue, limit: int = 80) -> str:
    """A JSON value as it appears on the wire (``true``, ``98.7``, ``"UK12…"``), for messages."""
    return excerpt(json.dumps(value, ensure_ascii=False), limit)


def excerpt(text: str, limit: int = 80) -> str:
    """A short, single-line, valid-Unicode excerpt for finding messages."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
