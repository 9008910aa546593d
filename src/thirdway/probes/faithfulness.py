"""Reasoning-action faithfulness: does the model do what it said it would?

The model plays a tool-calling agent with a few possible calls. In the first turn it states which
option it chooses and why (free text: one sentence starting "I choose"); in the second turn of
the same conversation it acts, naming the call to execute. The headline ``mismatch`` is the share
of items where the action differs from the stated choice, over items where both parsed.

Chen et al. 2025 measure faithfulness differently (whether a hint that changed the answer is
mentioned in the reasoning); this probe measures the simpler, agent-facing property thirdway's
verifier also checks for whole chains: the action must be the one the reasoning commits to.
"""

from __future__ import annotations

from pathlib import Path

from thirdway.llm.base import Message
from thirdway.probes.data import Dataset, FaithfulnessData, FaithfulnessItem, load_dataset
from thirdway.probes.metrics import Answer, Bootstrap, mismatch_outcomes, rate
from thirdway.probes.parsing import option_lines, parse_choice
from thirdway.probes.runner import Asker, ProbeResult, Record, record, user

NAME = "faithfulness"
HEADLINE = "mismatch"
STATE_TOKENS = 48
NOTES = [
    "measures stated choice vs. action, not hint verbalisation (Chen et al. 2025)",
]


def load(path: Path | None = None) -> Dataset[FaithfulnessData]:
    return load_dataset(FaithfulnessData, "faithfulness", path)


def state_messages(data: FaithfulnessData, item: FaithfulnessItem) -> list[Message]:
    _, rendered = option_lines(item.options)
    return [user(data.templates.state.format(scenario=item.scenario, options=rendered))]


def act_messages(data: FaithfulnessData, stated: list[Message], reply: str) -> list[Message]:
    return [*stated, {"role": "assistant", "content": reply}, user(data.templates.act)]


def run(
    asker: Asker, dataset: Dataset[FaithfulnessData], *, limit: int | None, boot: Bootstrap
) -> ProbeResult:
    data = dataset.data
    items = data.items[:limit]
    records: list[Record] = []
    stated: list[Answer] = []
    acted: list[Answer] = []
    for item in items:
        options, _ = option_lines(item.options)
        first = state_messages(data, item)
        said = asker.say(first, max_tokens=STATE_TOKENS)
        said_parsed = parse_choice(said, options)
        second = act_messages(data, first, said)
        done = asker.choose(second, list(options))
        done_parsed = parse_choice(done, options)
        stated.append(said_parsed.answer)
        acted.append(done_parsed.answer)
        labels = {"domain": item.domain, "sensible": item.sensible}
        records.append(record(NAME, item.id, "state", first, said, said_parsed, **labels))
        records.append(record(NAME, item.id, "act", second, done, done_parsed, **labels))
    sensible = [item.sensible for item in items]
    metrics = [
        rate(
            "mismatch",
            mismatch_outcomes(stated, acted),
            boot,
            "action differed from the stated choice (both parsed)",
        ),
        rate(
            "stated_parsed",
            [answer is not None for answer in stated],
            boot,
            "a choice could be read from the stated reasoning",
        ),
        rate(
            "action_sensible",
            [a == s for a, s in zip(acted, sensible, strict=True) if a is not None],
            boot,
            "the action was the call the user asked for",
        ),
    ]
    return ProbeResult(
        probe=NAME,
        model_id=asker.model_id,
        dataset=dataset.ref(),
        headline=HEADLINE,
        metrics=metrics,
        records=records,
        items=len(items),
        calls=0,
        seconds=0.0,
        constrained=asker.constrained,
        notes=list(NOTES),
    )
