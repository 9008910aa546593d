"""Turning dialogue data into what the console's templates show: observations with every cited
quote marked where it occurs, ages, compact JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from thirdway.protocol.models import Observation, Proposal, QuoteBinding
from thirdway.verify.normalize import nfc, normalize

MAX_MARKS_PER_QUOTE = 50
MAX_SHOWN_CHARS = 200_000


@dataclass(frozen=True)
class Cited:
    """One quote the chain cites from an observation, and who cites it (``goal``, ``s2``…)."""

    obs: int
    quote: str
    by: str


def citations(proposal: Proposal) -> list[Cited]:
    """Every quote of the chain: the goal, each step's citations, each quote binding's quote
    (placed in the observations the bound step cites)."""
    found = [Cited(proposal.goal.obs, proposal.goal.quote, "goal")]
    steps = {step.id: step for step in proposal.steps}
    for step in proposal.steps:
        found.extend(Cited(c.obs, c.quote, step.id) for c in step.cites)
    for name, binding in proposal.bindings.items():
        if isinstance(binding, QuoteBinding) and binding.step in steps:
            for obs in {c.obs for c in steps[binding.step].cites}:
                found.append(Cited(obs, binding.quote, f"{name} ← {binding.step}"))
    return found


def _normalised_with_map(text: str) -> tuple[str, list[int], list[int]]:
    """``normalize(text)`` (for NFC text) and, per character of it, the span of ``text`` it
    stands for (a collapsed whitespace run maps to the whole run)."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    run_start: int | None = None
    for position, char in enumerate(text):
        if char.isspace():
            if run_start is None:
                run_start = position
            continue
        if run_start is not None and chars:
            chars.append(" ")
            starts.append(run_start)
            ends.append(position)
        run_start = None
        chars.append(char)
        starts.append(position)
        ends.append(position + 1)
    return "".join(chars), starts, ends


def _spans(text: str, quotes: Iterable[tuple[str, str]]) -> list[tuple[int, int, list[str]]]:
    """Merged spans of ``text`` where the quotes occur (after normalisation), with labels."""
    normal, starts, ends = _normalised_with_map(text)
    found: list[tuple[int, int, str]] = []
    for quote, label in quotes:
        needle = normalize(quote)
        if not needle:
            continue
        at = normal.find(needle)
        count = 0
        while at >= 0 and count < MAX_MARKS_PER_QUOTE:
            found.append((starts[at], ends[at + len(needle) - 1], label))
            count += 1
            at = normal.find(needle, at + 1)
    found.sort()
    merged: list[tuple[int, int, list[str]]] = []
    for start, end, label in found:
        if merged and start <= merged[-1][1]:
            last = merged[-1]
            labels = last[2] if label in last[2] else [*last[2], label]
            merged[-1] = (last[0], max(last[1], end), labels)
        else:
            merged.append((start, end, [label]))
    return merged


def highlight(content: str, quotes: Sequence[tuple[str, str]]) -> Markup:
    """``content`` as HTML with each quoted span in ``<mark>`` (its title names who cites it).
    Everything is escaped; only the ``<mark>`` elements are markup."""
    text = nfc(content)
    truncated = len(text) > MAX_SHOWN_CHARS
    if truncated:
        text = text[:MAX_SHOWN_CHARS]
    parts: list[str] = []
    position = 0
    for start, end, labels in _spans(text, quotes):
        parts.append(str(escape(text[position:start])))
        title = escape("cited by " + ", ".join(labels))
        parts.append(f'<mark title="{title}">{escape(text[start:end])}</mark>')
        position = end
    parts.append(str(escape(text[position:])))
    if truncated:
        parts.append(f"\n… ({len(nfc(content)) - MAX_SHOWN_CHARS} more characters not shown)")
    return Markup("".join(parts))


@dataclass(frozen=True)
class ShownObservation:
    index: int
    channel: str
    html: Markup
    call: str | None
    produced_by: int | None
    cited: bool
    quotes_missing: list[str]
    """Quotes cited from this observation that do not occur in it (fabricated)."""


def observations_view(
    observations: Sequence[Observation], cited: Sequence[Cited]
) -> list[ShownObservation]:
    """Each observation with the chain's quotes marked, and the quotes that are not there."""
    by_obs: dict[int, list[tuple[str, str]]] = {}
    for item in cited:
        by_obs.setdefault(item.obs, []).append((item.quote, item.by))
    shown = []
    for obs in observations:
        quotes = by_obs.get(obs.index, [])
        content = obs.content or ""
        missing = sorted(
            {q for q, _ in quotes if normalize(q) and normalize(q) not in normalize(content)}
        )
        call = json.dumps(obs.call.model_dump(), ensure_ascii=False) if obs.call else None
        shown.append(
            ShownObservation(
                index=obs.index,
                channel=obs.channel,
                html=highlight(content, quotes),
                call=call,
                produced_by=obs.produced_by,
                cited=bool(quotes),
                quotes_missing=missing,
            )
        )
    return shown


def age(seconds: int) -> str:
    """``95`` → ``1 min``; ``7300`` → ``2 h 1 min``; ``200000`` → ``2 d 7 h``."""
    seconds = max(0, seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def pretty(value: Any, limit: int = 20_000) -> str:
    """Indented JSON, cut at ``limit`` characters."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + "\n… (cut)"
