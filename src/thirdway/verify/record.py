"""The gateway's record of a session, as the verifier sees it.

Observations are addressed by ``(session, index)``; indices are assigned by the gateway in the
order it records, so they are also time. The proposal sits at a boundary: observations of its
session with ``index < recorded_before`` were recorded before it, the rest after. When the
caller does not say, every observation given is taken to precede the proposal (the gateway
verifies a proposal against the record as it stands when the proposal arrives). A citation can
only be evidence if it names an observation of this session recorded before the proposal.

Derived text (normalised content, instruction spans) is computed once per
observation object and reused across verifications (see :mod:`thirdway.verify.memo`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from thirdway.protocol.models import Observation
from thirdway.verify import memo
from thirdway.verify.injection import find_instruction_spans
from thirdway.verify.normalize import normalize, normalized_offsets


@dataclass(frozen=True)
class Span:
    """An instruction-like span, in normalised-text coordinates."""

    start: int
    end: int
    rule: str


def text_of(obs: Observation) -> str:
    """The normalised content (empty for a call observation, which has none)."""
    return memo.derived(obs, "text", lambda: normalize(obs.content or ""))


def spans_of(obs: Observation) -> tuple[Span, ...]:
    """Instruction-like spans of a data observation, mapped into normalised coordinates.

    The screen runs on the content as recorded (line structure matters to it); quotes are found
    in the normalised text, so the span boundaries are mapped over.
    """

    def compute() -> tuple[Span, ...]:
        content = obs.content or ""
        found = find_instruction_spans(content) if obs.channel == "data" else ()
        if not found:
            return ()
        ordered = sorted({p for s in found for p in (s.start, s.end)})
        mapped = dict(zip(ordered, normalized_offsets(content, ordered), strict=True))
        return tuple(Span(mapped[s.start], mapped[s.end], s.rule) for s in found)

    return memo.derived(obs, "spans", compute)


def overlapping_span(obs: Observation, quote: str) -> Span | None:
    """The first instruction span that some occurrence of the normalised ``quote`` overlaps.

    An occurrence ``[i, i+L)`` overlaps ``[s, e)`` iff it starts in ``[s-L+1, e-1]``, i.e. lies
    wholly within ``[s-L+1, e+L-1)``; one bounded ``str.find`` per span decides that.
    """
    spans = spans_of(obs)
    if not spans or not quote:
        return None
    text = text_of(obs)
    length = len(quote)
    for span in spans:
        low = max(0, span.start - length + 1)
        high = min(len(text), span.end + length - 1)
        if text.find(quote, low, high) != -1:
            return span
    return None


@dataclass
class Record:
    """This session's observations, split by time and channel, plus what else was given."""

    session: str
    observations: Sequence[Observation]
    recorded_before: int | None = None
    by_index: dict[int, Observation] = field(init=False, default_factory=dict)
    foreign: dict[int, list[Observation]] = field(init=False, default_factory=dict)
    duplicates: list[int] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        for obs in self.observations:
            if obs.session != self.session:
                self.foreign.setdefault(obs.index, []).append(obs)
            elif obs.index in self.by_index:
                self.duplicates.append(obs.index)
            else:
                self.by_index[obs.index] = obs

    @cached_property
    def boundary(self) -> int:
        """First index recorded after the proposal."""
        if self.recorded_before is not None:
            return self.recorded_before
        return max(self.by_index, default=-1) + 1

    def prior(self, index: int) -> Observation | None:
        """The observation of this session with ``index``, if recorded before the proposal."""
        obs = self.by_index.get(index)
        return obs if obs is not None and index < self.boundary else None

    @cached_property
    def past(self) -> list[Observation]:
        """This session's observations recorded before the proposal, in index order."""
        return [self.by_index[i] for i in sorted(self.by_index) if i < self.boundary]

    @cached_property
    def principal(self) -> list[Observation]:
        """Past principal observations: what the principal actually said."""
        return [o for o in self.past if o.channel == "principal"]

    def said_by_principal(self, quote: str) -> list[int]:
        """Indices of past principal observations containing the normalised ``quote``."""
        return [o.index for o in self.principal if quote in text_of(o)]
