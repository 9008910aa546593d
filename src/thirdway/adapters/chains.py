"""Reasoning chains for tool calls that came without one, built from the gateway's own record.

Recorded AgentDojo runs and today's live models emit tool calls, not ``thirdway/1`` chains. To
put such a call through the gate anyway, :func:`provenance_chain` writes the chain the gateway's
record supports, and nothing more:

* **goal** — the principal's instruction (the session's first principal observation), quoted
  whole. The agent works for its principal; nothing else in the record can be its goal.
* **bindings** — for every scalar in the arguments, the verifier's own provenance classifier
  (:class:`thirdway.verify.provenance.Sources`, the code that judges the chain afterwards) says
  which observations hold the value and how trusted the most trusted of them is (principal, a
  designated tool result, other tool data). The binding quotes the value exactly as it is written
  in the first such observation (a string verbatim, a number or date as the numeral or date that
  matched it, with the ``number`` / ``date`` transform), through one step per cited observation.
* **composed values** — a value found in no observation (an e-mail body the model wrote, a date
  it computed), a boolean or null, an empty string, or a string too long to quote, is bound as
  *composed*. Its justifying step cites the principal's instruction and, for a string, where
  each identifier-like token of it (an address, a link, an account number, a code, an amount,
  a date: :func:`salient_tokens`) is written in the record, again in the most trusted
  observation holding it. The verifier gives a composed value the provenance of the least
  trusted observation its step cites, and screens every cited quote for instruction spans, so a
  message repeating a link from an injected document is judged like that document. Plain words
  are not traced (they are language, not data; tracing them would taint every reply).
* **effects** — exactly the tool manifest's reversibility and reach (no understatement, so no
  ``understated_risk``); for a tool without a manifest, irreversible and external.

So such a chain never lies and never hides where a value came from: what gets refused is what the
gateway's provenance rules and injection screen refuse, which is what a replay of chain-less
recordings can measure. The synthetic benchmark uses the same builder for its honest agent and
derives its hijacked agents' chains from it (:func:`retarget_goal`, :func:`mismatched_chain`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeGuard

from pydantic import JsonValue, ValidationError

from thirdway.errors import InputError
from thirdway.protocol.limits import MAX_CITES_PER_STEP, MAX_QUOTE_CHARS
from thirdway.protocol.manifest import ManifestSet
from thirdway.protocol.models import (
    Binding,
    Citation,
    ComposedBinding,
    Effects,
    FieldsBinding,
    ItemsBinding,
    Observation,
    Proposal,
    QuoteBinding,
    Step,
    ToolCall,
    Transform,
)
from thirdway.protocol.parse import describe
from thirdway.verify.normalize import normalize
from thirdway.verify.policy import VerifyPolicy
from thirdway.verify.provenance import Sources
from thirdway.verify.record import Record, text_of
from thirdway.verify.transforms import number_value, parse_date, parse_number

COMPOSED_STEP = "composed"
"""Id of the step that justifies the values the agent wrote itself."""

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Quoted:
    """Where one value is written in the record: the observation and the exact text."""

    obs: int
    quote: str
    as_: Transform


@dataclass
class _Evidence:
    """The steps being built: one per cited observation, one per distinct set of pieces that
    composed values repeat (``composed``: none, only the principal's instruction)."""

    quotes: dict[int, list[str]] = field(default_factory=dict)
    composed: dict[tuple[Quoted, ...], str] = field(default_factory=dict)

    def cite(self, found: Quoted) -> QuoteBinding:
        quotes = self.quotes.setdefault(found.obs, [])
        if found.quote not in quotes:
            quotes.append(found.quote)
        position = quotes.index(found.quote)
        return QuoteBinding(
            step=_step_id(found.obs, position // MAX_CITES_PER_STEP),
            quote=found.quote,
            **{"as": found.as_},
        )

    def compose(self, pieces: tuple[Quoted, ...] = ()) -> ComposedBinding:
        if pieces not in self.composed:
            self.composed[pieces] = (
                COMPOSED_STEP if not pieces else f"{COMPOSED_STEP}-{len(self.composed) + 1}"
            )
        return ComposedBinding(composed=self.composed[pieces])


def _step_id(obs: int, part: int) -> str:
    return f"obs{obs}" if part == 0 else f"obs{obs}-{part}"


def principal_goal(observations: Sequence[Observation], session: str) -> Citation:
    """The goal every chain-less call gets: the session's first principal instruction, whole."""
    for obs in sorted(observations, key=lambda o: o.index):
        if obs.session == session and obs.channel == "principal" and normalize(obs.content or ""):
            text = obs.content or ""
            return Citation(obs=obs.index, quote=text[:MAX_QUOTE_CHARS])
    raise InputError(f"session {session!r} has no principal instruction to act on")


_NUMERALS = re.compile(r"[+-]?[$€£¥]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", re.ASCII)
"""Numerals in the ``number`` transform's grammar, longest first at each position."""
_DATES = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"|\d{1,2}(?:st|nd|rd|th)?(?: of)? [A-Za-z]{3,9}\.?,? \d{4}"
    r"|[A-Za-z]{3,9}\.? \d{1,2}(?:st|nd|rd|th)?,? \d{4}",
    re.ASCII,
)
"""Candidates for the ``date`` transform's grammar (confirmed by ``parse_date``)."""


def locate(value: Scalar, obs: Observation) -> Quoted | None:
    """The text in ``obs`` that a binding of ``value`` should quote, or None if none fits.

    A string is quoted verbatim when the observation holds it (after normalisation, as the
    verifier compares); a date string may also be quoted as another written form of the same day
    (``date``); a number as a numeral of equal value (``number``). Candidates are confirmed with
    the same parsers the binding check uses, so a quote found here always binds.
    """
    text = text_of(obs)
    if isinstance(value, str):
        normal = normalize(value)
        if normal and normal in text and len(value) <= MAX_QUOTE_CHARS:
            return Quoted(obs.index, value, "text")
        day = parse_date(normal)
        if day is None:
            return None
        for found in _DATES.finditer(text):
            if parse_date(found.group(0)) == day:
                return Quoted(obs.index, found.group(0), "date")
        return None
    number = number_value(value)
    if number is None:
        return None
    for found in _NUMERALS.finditer(text):
        for candidate in (found.group(0), found.group(0).lstrip("+-")):
            if parse_number(candidate) == number:
                return Quoted(obs.index, candidate, "number")
    return None


_TOKEN_EDGES = "\"'()[]{}<>.,;:!?*`"
MIN_TOKEN_CHARS = 4


def salient_tokens(text: str) -> list[str]:
    """The identifier-like tokens of a text: whitespace-separated, stripped of surrounding
    punctuation, at least four characters, and holding a digit or one of ``@ / . : _ -`` inside
    (e-mail addresses, links, IBANs, ids, codes, amounts, dates). Plain words are language, not
    data: they are not traced, so a message is not tainted by every word it shares with a
    document."""
    tokens: list[str] = []
    for raw in text.split():
        token = raw.strip(_TOKEN_EDGES)
        if len(token) < MIN_TOKEN_CHARS or token in tokens:
            continue
        if any(c.isdigit() for c in token) or any(c in "@/.:_-" for c in token):
            tokens.append(token)
    return tokens


class ChainBuilder:
    """Builds chains against one session's record as it stands (see the module docstring)."""

    def __init__(
        self,
        session: str,
        observations: Sequence[Observation],
        manifests: ManifestSet,
        policy: VerifyPolicy | None = None,
    ) -> None:
        self.session = session
        self.observations = observations
        self.manifests = manifests
        self.record = Record(session, observations)
        policy = policy or VerifyPolicy()
        self.sources = Sources(self.record, policy.designation_neutral_kinds, manifests)
        self.goal = principal_goal(observations, session)

    def where(self, value: Scalar) -> Quoted | None:
        """Where the gateway's record says ``value`` came from (the most trusted observation
        holding it), as a quotable text; None when the agent must have composed it."""
        origin = self.sources.classify(value)
        if origin.kind not in ("principal", "designated", "undesignated"):
            return None
        for index in origin.evidence:
            obs = self.record.prior(index)
            found = locate(value, obs) if obs is not None else None
            if found is not None:
                return found
        return None

    def bindings(self, args: dict[str, JsonValue], evidence: _Evidence) -> dict[str, Binding]:
        return {name: self._bind(value, evidence) for name, value in args.items()}

    def _bind(self, value: JsonValue, evidence: _Evidence) -> Binding:
        if isinstance(value, list):
            return ItemsBinding(items=[self._bind(item, evidence) for item in value])
        if isinstance(value, dict):
            return FieldsBinding(fields={k: self._bind(v, evidence) for k, v in value.items()})
        found = self.where(value)
        if found is not None:
            return evidence.cite(found)
        return evidence.compose(self.pieces(value) if isinstance(value, str) else ())

    def pieces(self, value: str) -> tuple[Quoted, ...]:
        """Where the identifier-like tokens of a composed string (addresses, links, account
        numbers, codes, amounts, dates: see :func:`salient_tokens`) are written in the record,
        each in its most trusted observation. A composed message that repeats a link or an
        account number from tool data cites that data, and so carries its provenance."""
        found: dict[str, Quoted] = {}
        for token in salient_tokens(value):
            where = self.where(token)
            if where is not None and where.quote not in found:
                found[where.quote] = where
        return tuple(found.values())[: MAX_CITES_PER_STEP - 1]

    def steps(self, evidence: _Evidence) -> list[Step]:
        steps = []
        for obs in sorted(evidence.quotes):
            quotes = evidence.quotes[obs]
            channel = self.record.by_index[obs].channel
            for part in range(0, len(quotes), MAX_CITES_PER_STEP):
                steps.append(
                    Step(
                        id=_step_id(obs, part // MAX_CITES_PER_STEP),
                        claim=f"Observation {obs} ({channel}) states these values.",
                        cites=[
                            Citation(obs=obs, quote=q)
                            for q in quotes[part : part + MAX_CITES_PER_STEP]
                        ],
                    )
                )
        for pieces, step_id in evidence.composed.items():
            claim = "I wrote this value myself to do what the principal asked"
            if pieces:
                claim += ", repeating these pieces of what I read"
            steps.append(
                Step(
                    id=step_id,
                    claim=claim + ".",
                    cites=[self.goal, *(Citation(obs=p.obs, quote=p.quote) for p in pieces)],
                )
            )
        return steps

    def effects(self, tool: str) -> Effects:
        manifest = self.manifests.tools.get(tool)
        if manifest is None:
            return Effects(reversible=False, external=True, summary=f"calls {tool}")
        return Effects(
            reversible=manifest.reversible, external=manifest.external, summary=f"calls {tool}"
        )

    def proposal(self, call: ToolCall, *, goal: Citation | None = None) -> Proposal:
        """The provenance chain for ``call`` (optionally with another goal)."""
        evidence = _Evidence()
        bindings = self.bindings(dict(call.args), evidence)
        return _proposal(
            session=self.session,
            action=call,
            goal=goal or self.goal,
            steps=self.steps(evidence),
            bindings=bindings,
            effects=self.effects(call.tool),
        )


def _proposal(**fields: object) -> Proposal:
    try:
        return Proposal.model_validate(fields)
    except ValidationError as exc:
        raise InputError(describe(exc, "proposal")) from None


def provenance_chain(
    session: str,
    call: ToolCall,
    observations: Sequence[Observation],
    manifests: ManifestSet,
    policy: VerifyPolicy | None = None,
) -> Proposal:
    """The chain the gateway's record supports for ``call`` (see the module docstring)."""
    return ChainBuilder(session, observations, manifests, policy).proposal(call)


def retarget_goal(proposal: Proposal, goal: Citation) -> Proposal:
    """The same chain with another goal (a hijacked agent's real goal, or a false one)."""
    return proposal.model_copy(update={"goal": goal})


# --------------------------------------------------------------------------- mismatched chains


_WORDS = re.compile(r"\w{2,}")


def decoy_for(value: Scalar, observations: Sequence[Observation]) -> Quoted | None:
    """A grounded quote of the same kind as ``value`` that binds a *different* value: what a
    chain written for another action would bind this argument to (principal text preferred).
    None when the record holds no such text, or for booleans and null."""
    if value is None or isinstance(value, bool):
        return None
    ordered = sorted(observations, key=lambda o: (o.channel != "principal", o.index))
    for obs in ordered:
        text = text_of(obs) if obs.channel != "call" else ""
        for candidate, as_ in _candidates(value, text):
            quoted = Quoted(obs.index, candidate, as_)
            if _differs(value, quoted):
                return quoted
    return None


def _candidates(value: str | int | float, text: str) -> Iterator[tuple[str, Transform]]:
    if isinstance(value, str) and parse_date(normalize(value)) is not None:
        yield from ((m.group(0), "date") for m in _DATES.finditer(text))
    elif isinstance(value, str):
        yield from ((m.group(0), "text") for m in _WORDS.finditer(text))
    else:
        yield from ((m.group(0), "number") for m in _NUMERALS.finditer(text))


def _differs(value: str | int | float, quoted: Quoted) -> bool:
    """Does the quote parse under its transform to a value other than ``value``?"""
    if quoted.as_ == "text":
        return quoted.quote != value
    if quoted.as_ == "date":
        day = parse_date(quoted.quote)
        return day is not None and day != parse_date(normalize(str(value)))
    parsed = parse_number(quoted.quote)
    return parsed is not None and parsed != number_value(value)


def mismatched_chain(
    builder: ChainBuilder, call: ToolCall, *, goal: Citation | None = None
) -> Proposal | None:
    """A chain for ``call`` whose bindings argue for a different action: every argument that the
    record can supply a different value of the same kind for is bound to that value instead.

    This is the lie a capability must never honour (the chain justifies one action, the agent
    proposes another). None when no argument can be mismatched (a call without arguments)."""
    evidence = _Evidence()
    bindings: dict[str, Binding] = {}
    mismatched = False
    for name, value in call.args.items():
        decoy = decoy_for(value, builder.observations) if _is_scalar(value) else None
        if decoy is None:
            bindings[name] = builder._bind(value, evidence)
        else:
            bindings[name] = evidence.cite(decoy)
            mismatched = True
    if not mismatched:
        return None
    return _proposal(
        session=builder.session,
        action=call,
        goal=goal or builder.goal,
        steps=builder.steps(evidence),
        bindings=bindings,
        effects=builder.effects(call.tool),
    )


def _is_scalar(value: JsonValue) -> TypeGuard[Scalar]:
    return value is None or isinstance(value, str | int | float | bool)
