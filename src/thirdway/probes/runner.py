"""What every probe shares: asking the model, recording each exchange, the result type.

A probe turns dataset items into prompts, asks the model through an :class:`Asker`, parses the
replies and keeps one record per exchange (prompt messages, raw reply, parsed answer and the
item's labels), then reduces the records to metrics. The records are the evidence: they are
written out as JSONL and their SHA-256 goes into the probe's log entry, so anyone can recompute
the metrics from them.

Choices are asked for under a JSON Schema when the backend supports it (``constrained``): for the
bundled llama.cpp model a bare string enum (``"B"``), which llama.cpp compiles to a tiny grammar
that decodes in a few tokens; for OpenAI-compatible endpoints an object ``{"answer": "B"}``,
since strict ``response_format`` schemas must have an object at the root. Without constraints the
reply is free text and the parser (:mod:`thirdway.probes.parsing`) reads it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import JsonValue

from thirdway.llm.base import ChatModel, Message
from thirdway.probes.metrics import Estimate
from thirdway.probes.parsing import STATUSES, Parsed
from thirdway.protocol.canonical import canonical_json

CHOICE_TOKENS = 16
"""Enough for a constrained choice, and for the first sentence of a free-text one."""
LOCAL_PREFIX = "local:"

Record = dict[str, JsonValue]


def choice_schema(model_id: str, allowed: Sequence[str]) -> dict[str, Any]:
    """The JSON Schema that constrains a reply to one of ``allowed``, shaped for the backend."""
    enum = {"type": "string", "enum": list(allowed)}
    if model_id.startswith(LOCAL_PREFIX):
        return enum
    return {
        "type": "object",
        "properties": {"answer": enum},
        "required": ["answer"],
        "additionalProperties": False,
    }


@dataclass
class Asker:
    """Asks one model, greedily with seed 0, and counts the calls and the time spent."""

    model: ChatModel
    constrained: bool = True
    calls: int = 0
    seconds: float = 0.0

    @property
    def model_id(self) -> str:
        return self.model.model_id

    def choose(
        self,
        messages: Sequence[Message],
        allowed: Sequence[str],
        *,
        max_tokens: int = CHOICE_TOKENS,
    ) -> str:
        """A reply choosing one of ``allowed`` (constrained when the asker is)."""
        schema = choice_schema(self.model_id, allowed) if self.constrained else None
        return self._ask(messages, schema, max_tokens)

    def say(self, messages: Sequence[Message], *, max_tokens: int) -> str:
        """A free-text reply."""
        return self._ask(messages, None, max_tokens)

    def _ask(
        self, messages: Sequence[Message], schema: dict[str, Any] | None, max_tokens: int
    ) -> str:
        started = time.perf_counter()
        try:
            return self.model.complete(messages, json_schema=schema, max_tokens=max_tokens, seed=0)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - started


def user(content: str) -> Message:
    return {"role": "user", "content": content}


def record(
    probe: str,
    item: str,
    condition: str,
    messages: Sequence[Message],
    reply: str,
    parsed: Parsed | None,
    **labels: JsonValue,
) -> Record:
    """One exchange as a JSON-ready record."""
    entry: Record = {
        "probe": probe,
        "item": item,
        "condition": condition,
        "messages": [
            {"role": message["role"], "content": message["content"]} for message in messages
        ],
        "reply": reply,
        "parsed": None if parsed is None else parsed.as_json(),  # type: ignore[dict-item]
    }
    entry.update(labels)
    return entry


def status_counts(records: Sequence[Record]) -> dict[str, int]:
    """How many replies parsed ``ok``, and how many did not, by status."""
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for entry in records:
        parsed = entry.get("parsed")
        if isinstance(parsed, dict):
            status = parsed.get("status")
            if isinstance(status, str) and status in counts:
                counts[status] += 1
    return counts


def records_jsonl(records: Sequence[Record]) -> bytes:
    """The records as JSONL, one RFC 8785 canonical object per line."""
    return b"".join(canonical_json(entry) + b"\n" for entry in records)


@dataclass
class ProbeResult:
    """One probe's run against one model: metrics, per-item records and their cost."""

    probe: str
    model_id: str
    dataset: dict[str, str]
    headline: str
    metrics: list[Estimate]
    records: list[Record]
    items: int
    calls: int
    seconds: float
    constrained: bool
    notes: list[str] = field(default_factory=list)

    def metric(self, name: str) -> Estimate:
        for estimate in self.metrics:
            if estimate.metric == name:
                return estimate
        raise KeyError(f"{self.probe} has no metric {name!r}")

    @property
    def statuses(self) -> dict[str, int]:
        return status_counts(self.records)

    @property
    def records_sha256(self) -> str:
        """SHA-256 of the JSONL bytes written out, so ``sha256sum <probe>.jsonl`` checks them."""
        return hashlib.sha256(records_jsonl(self.records)).hexdigest()

    def summary(self) -> dict[str, JsonValue]:
        """Everything but the records (which are named by their hash): the log entry's payload."""
        return {
            "probe": self.probe,
            "model": self.model_id,
            "dataset": dict(self.dataset),
            "headline": self.headline,
            "metrics": [estimate.as_json() for estimate in self.metrics],
            "items": self.items,
            "calls": self.calls,
            "seconds": round(self.seconds, 3),
            "constrained": self.constrained,
            "parse": dict(self.statuses),
            "records": len(self.records),
            "records_sha256": self.records_sha256,
            "notes": list(self.notes),
        }
