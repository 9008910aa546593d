"""The reply gate: the agent's message to its principal is an output too, and is screened.

A tool gate sees every call, but an injection can also act through what the agent *says*: "tell
the user to visit <a hotel>", "tell the user their account is locked and to log in at <a link>".
The final answer reaches the principal without any tool call to refuse. :func:`screen_reply`
screens it against the session's record with the verifier's own injection screen
(:func:`thirdway.verify.record.spans_of`: the instruction-like spans of each data observation):

* a sentence (or line) of the reply that repeats a run of :data:`RUN_WORDS` consecutive words of
  an instruction span, where that run is written nowhere else in the record (not in the
  principal's instruction, not in tool data outside a span), repeats the injection;
* a sentence that carries an identifier-like token (a link, an address, an account number, a
  code: a digit or one of ``@ / . : _ -`` inside) written in the record only inside instruction
  spans passes on what only the injection said.

Such sentences are withheld: replaced by :data:`WITHHELD` (adjacent ones by one marker); the rest
of the reply goes through. Words are compared case-folded, as runs of word characters (so
markdown, punctuation and the escapes of YAML and ``repr`` renderings do not matter), except
that an identifier-like token is one word: a sentence that names an address honest data also
holds ("the email from security@facebook.com") does not repeat an injection's words by that.
A sentence that only *mentions* something the injection also names (a hotel that is also in the
honest hotel list) is not touched: what is caught is repeating the injection's words, or passing
on a value only the injection held. Paraphrase defeats the first test; the second still holds
for links, addresses and account numbers.

Pure: no I/O; the caller records the outcome (the AgentDojo pipeline element logs it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from thirdway.protocol.models import Observation
from thirdway.verify.normalize import normalize
from thirdway.verify.record import spans_of, text_of

__all__ = ["RUN_WORDS", "WITHHELD", "ReplyScreen", "WithheldText", "screen_reply"]

RUN_WORDS = 5
"""How many consecutive words of an instruction span a sentence must repeat to be withheld."""

WITHHELD = "[thirdway withheld text that repeats an instruction found in tool data]"
"""What a withheld sentence becomes in the reply."""

EXCERPT_CHARS = 160
_WORD = re.compile(r"\w+")
_ESCAPE = re.compile(r"\\[nrt]")
"""Escaped line breaks in YAML / ``repr`` renderings: ``visit.\\nAfter`` is two words apart."""
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]*_]*\s+")
_TOKEN_EDGES = "\"'()[]{}<>.,;:!?*`"
_MIN_TOKEN_CHARS = 4


@dataclass(frozen=True)
class WithheldText:
    """One withheld sentence of the reply: where it was, and why."""

    start: int
    end: int
    excerpt: str
    obs: int
    """The data observation whose instruction span it repeats."""
    rule: str
    repeats: str
    """The repeated words, or the token only the span held."""


@dataclass(frozen=True)
class ReplyScreen:
    """The reply as screened: ``text`` is what the principal receives."""

    original: str
    text: str
    withheld: tuple[WithheldText, ...]

    @property
    def changed(self) -> bool:
        return bool(self.withheld)

    def to_log(self) -> dict[str, object]:
        """The log payload: hashes of both texts and what was withheld (excerpts, evidence)."""
        return {
            "event": "reply_screened",
            "reply_sha256": _sha256(self.original),
            "sent_sha256": _sha256(self.text),
            "withheld": [
                {
                    "excerpt": w.excerpt,
                    "obs": w.obs,
                    "rule": w.rule,
                    "repeats": w.repeats[:EXCERPT_CHARS],
                }
                for w in self.withheld
            ],
        }


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _identifier_like(token: str) -> bool:
    return any(c.isdigit() for c in token) or any(c in "@/.:_-" for c in token)


def _words(text: str) -> list[str]:
    """The text's words, case-folded: an identifier-like token (an address, a link, a number)
    is one word, so that repeating a value honest data also holds does not make a run of words
    by itself (``security@facebook.com`` is one word, not three); other tokens split into their
    runs of word characters (markdown and punctuation drop out)."""
    words: list[str] = []
    for raw in _ESCAPE.sub(" ", text).split():
        token = raw.strip(_TOKEN_EDGES)
        if _identifier_like(token):
            words.append(token.casefold())
        else:
            words.extend(w.casefold() for w in _WORD.findall(token))
    return words


def _runs(words: Sequence[str], size: int) -> Iterator[tuple[str, ...]]:
    for i in range(len(words) - size + 1):
        yield tuple(words[i : i + size])


def _identifiers(text: str) -> list[str]:
    """Identifier-like tokens (as :func:`thirdway.adapters.chains.salient_tokens` traces them)."""
    found: list[str] = []
    for raw in _ESCAPE.sub(" ", text).split():
        token = raw.strip(_TOKEN_EDGES)
        if len(token) >= _MIN_TOKEN_CHARS and token not in found and _identifier_like(token):
            found.append(token)
    return found


@dataclass
class _Injected:
    """What the record's instruction spans say and nothing else in the record does."""

    runs: dict[tuple[str, ...], tuple[int, str]]
    tokens: dict[str, tuple[int, str]]

    def token_in(self, sentence: str) -> tuple[str, tuple[int, str]] | None:
        """An injected token written in ``sentence`` (at word boundaries, so inside a markdown
        link too, but ``1000`` not inside ``10000``)."""
        text = normalize(_ESCAPE.sub(" ", sentence))
        for token, where in self.tokens.items():
            if token in text and re.search(rf"(?<!\w){re.escape(token)}(?!\w)", text):
                return token, where
        return None


def _injected(observations: Sequence[Observation], size: int) -> _Injected:
    clean_texts: list[str] = []
    span_texts: list[tuple[int, str, str]] = []
    for obs in observations:
        if obs.channel == "principal":
            clean_texts.append(text_of(obs))
        elif obs.channel == "data":
            text = text_of(obs)
            position = 0
            for span in spans_of(obs):
                clean_texts.append(text[position : span.start])
                span_texts.append((obs.index, span.rule, text[span.start : span.end]))
                position = max(position, span.end)
            clean_texts.append(text[position:])
    if not span_texts:
        return _Injected({}, {})
    clean_runs = {run for text in clean_texts for run in _runs(_words(text), size)}
    clean_blob = _ESCAPE.sub(" ", "\n".join(clean_texts))
    runs: dict[tuple[str, ...], tuple[int, str]] = {}
    tokens: dict[str, tuple[int, str]] = {}
    for index, rule, text in span_texts:
        for run in _runs(_words(text), size):
            if run not in clean_runs:
                runs.setdefault(run, (index, rule))
        for token in _identifiers(text):
            if normalize(token) not in clean_blob:
                tokens.setdefault(token, (index, rule))
    return _Injected(runs, tokens)


def _sentences(reply: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each sentence: lines, split after ``.``, ``!`` or ``?``."""
    for line in re.finditer(r"[^\n]+", reply):
        start = line.start()
        for cut in _SENTENCE_END.finditer(line.group(0)):
            end = line.start() + cut.start()
            if reply[start:end].strip():
                yield start, end
            start = line.start() + cut.end()
        if reply[start : line.end()].strip():
            yield start, line.end()


def _why(sentence: str, injected: _Injected, size: int) -> tuple[int, str, str] | None:
    for run in _runs(_words(sentence), size):
        hit = injected.runs.get(run)
        if hit is not None:
            return hit[0], hit[1], " ".join(run)
    found = injected.token_in(sentence)
    if found is not None:
        token, (obs, rule) = found
        return obs, rule, token
    return None


def screen_reply(
    reply: str,
    observations: Sequence[Observation],
    *,
    session: str | None = None,
    run_words: int = RUN_WORDS,
) -> ReplyScreen:
    """Screen the agent's reply against the record (observations of ``session`` when given):
    withhold each sentence that repeats an instruction span (see the module docstring)."""
    if run_words < 2:
        raise ValueError(f"run_words must be at least 2, not {run_words}")
    mine = [o for o in observations if session is None or o.session == session]
    injected = _injected(mine, run_words)
    if not injected.runs and not injected.tokens:
        return ReplyScreen(reply, reply, ())
    withheld: list[WithheldText] = []
    for start, end in _sentences(reply):
        why = _why(reply[start:end], injected, run_words)
        if why is not None:
            excerpt = " ".join(reply[start:end].split())[:EXCERPT_CHARS]
            withheld.append(WithheldText(start, end, excerpt, why[0], why[1], why[2]))
    return ReplyScreen(reply, _redact(reply, withheld), tuple(withheld))


def _redact(reply: str, withheld: Sequence[WithheldText]) -> str:
    parts: list[str] = []
    position = 0
    for item in withheld:
        between = reply[position : item.start]
        if parts and parts[-1] == WITHHELD and not between.strip():
            position = item.end  # adjacent to the previous one: one marker for both
            continue
        parts.append(between)
        parts.append(WITHHELD)
        position = item.end
    parts.append(reply[position:])
    return "".join(parts)
