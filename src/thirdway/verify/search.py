"""Finding a number or a date *by value* in normalised text, for provenance.

``98.7`` was "in" a bill if the bill says ``98.70``, ``$98.70`` or ``1,098.70``? The first two
yes, the third no: it is a different number. So instead of extracting every numeral of every
observation (slow on a megabyte, and done again for each new observation), one regular expression
per value matches exactly the numerals with that value, and runs at C speed over the text:

* a number: optional leading zeros, the integer part plain or grouped by commas in threes, the
  fractional part with any trailing zeros (``98.7`` matches ``98.70`` and ``098.7``; ``5``
  matches ``5``, ``5.0`` and ``5.00``); not glued to other digits or to a separator followed by
  a digit (so ``98.7`` is not found inside ``1,098.70`` or ``98.75``). A negative value needs a
  ``-`` in front (a positive one is found after a ``-`` as well: a text that says ``-50`` does
  mention 50).
* a date: the forms of the ``date`` transform (``2024-01-05``, ``5 January 2024``,
  ``Jan 5th, 2024``, ``5th of January, 2024``, …), month names in any case.
* a link: an argument ``http://www.x.com/page`` (or ``https://``, or with a trailing ``/``) was
  written by whoever wrote ``www.x.com/page``: models add the scheme to a link the user typed
  without one. Only the scheme and one trailing ``/`` are dropped; the rest (host and path) must
  occur exactly, as a whole link: not inside a longer host (``evil.www.x.com``,
  ``www.x.com.evil.net``), a longer path (``www.x.com/page/2``), an address (``a@www.x.com``), or
  after another scheme (``ftp://``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

_MONTH_NAMES = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]


@dataclass(frozen=True)
class NumberSpec:
    """How to find one value: literal anchors to ``str.find`` and the pattern to confirm."""

    anchors: tuple[str, ...]
    pattern: re.Pattern[str]


@lru_cache(maxsize=4096)
def number_spec(value: Decimal) -> NumberSpec:
    """The numerals whose value is ``value`` (see the module docstring)."""
    sign = r"-[$€£¥]?" if value < 0 else ""
    whole, _, fraction = format(abs(value), "f").partition(".")
    whole = whole.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    anchors: tuple[str, ...]
    if whole == "0":
        integer, anchors = "0+", ("." + fraction,) if fraction else ("0",)
    else:
        grouped = _grouped(whole)
        integer = "0*(?:" + "|".join(dict.fromkeys((whole, grouped))) + ")"
        anchors = tuple(dict.fromkeys((whole, grouped)))
    decimals = r"\." + fraction + "0*" if fraction else r"(?:\.0+)?"
    pattern = re.compile(r"(?<![\d.,])" + sign + integer + decimals + r"(?!\d)(?![.,]\d)", re.ASCII)
    return NumberSpec(anchors, pattern)


def _grouped(whole: str) -> str:
    head = len(whole) % 3 or 3
    groups = [whole[:head]] + [whole[i : i + 3] for i in range(head, len(whole), 3)]
    return ",".join(groups)


@lru_cache(maxsize=4096)
def date_pattern(day: dt.date) -> re.Pattern[str]:
    """The written forms of ``day`` in the ``date`` grammar."""
    name = _MONTH_NAMES[day.month - 1]
    month = f"(?:{name}|{name[:3]}{'|sept' if day.month == 9 else ''})\\.?"
    number = f"0?{day.day}(?:st|nd|rd|th)?"
    year = f"{day.year:04d}"
    forms = [
        f"{year}-{day.month:02d}-{day.day:02d}",
        f"{number}(?: of)? {month},? {year}",
        f"(?<![a-z]){month} {number},? {year}",
    ]
    return re.compile(r"(?<!\d)(?:" + "|".join(forms) + r")(?!\d)", re.IGNORECASE | re.ASCII)


_URL = re.compile(r"https?://(?P<bare>\S+?)/?", re.IGNORECASE)


def url_without_scheme(value: str) -> str | None:
    """The host and path of a link ``http(s)://host/path[/]``, or None if ``value`` is none."""
    found = _URL.fullmatch(value)
    return found.group("bare") if found is not None and found.group("bare") else None


@lru_cache(maxsize=4096)
def bare_url_pattern(bare: str) -> re.Pattern[str]:
    """``bare`` as a whole link: after nothing link-like (or right after ``http(s)://``), with at
    most a trailing ``/``, and not continued by more host, path, port or query."""
    before = r"(?:(?<=http://)|(?<=https://)|(?<![\w.\-/@:]))"
    after = r"/?(?![\w\-]|[./?#=&%:+~@][\w])"
    return re.compile(before + re.escape(bare) + after)


def has_url(text: str, value: str) -> bool:
    """Is the link ``value`` written in ``text``, perhaps without its scheme (module docstring)?
    Host and path are compared exactly, as the verifier compares all text."""
    bare = url_without_scheme(value)
    if bare is None or bare not in text:
        return False
    return bare_url_pattern(bare).search(text) is not None


def has_number(text: str, value: Decimal) -> bool:
    """Is a numeral of this value in ``text``?

    A regular expression starting with a lookbehind is tried at every position of the text;
    instead, ``str.find`` jumps to each occurrence of the value's digits, and the pattern is
    only confirmed there (after stepping back over leading zeros and a sign).
    """
    spec = number_spec(value)
    for anchor in spec.anchors:
        found = text.find(anchor)
        while found != -1:
            start = found
            while start > 0 and text[start - 1] == "0":
                start -= 1
            for at in (start, start - 1, start - 2):
                if at >= 0 and spec.pattern.match(text, at):
                    return True
            found = text.find(anchor, found + 1)
    return False


def has_date(text: str, day: dt.date) -> bool:
    """Is this day written in ``text``? Every form contains the year: find it, then confirm in
    a window around it (no form is longer than 40 characters before its year)."""
    pattern = date_pattern(day)
    year = f"{day.year:04d}"
    found = text.find(year)
    while found != -1:
        if pattern.search(text, max(0, found - 40), min(len(text), found + 11)):
            return True
        found = text.find(year, found + 1)
    return False
