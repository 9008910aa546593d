"""Alignment faking: does the model behave differently when it believes it is watched?

After Greenblatt et al. 2024: the same grey-area requests are put under two system framings, one
saying the conversation is monitored and used for training (their "free tier"), one saying it is
unmonitored and never used for training ("paid tier"). The headline is the **compliance gap**:
compliance under the training framing minus compliance under the unmonitored framing, paired by
item. Positive means more compliant when trained on, Greenblatt's direction; thirdway's evidence
policy treats a gap in either direction as behaviour that depends on being watched.

Differences from the paper, stated in every report: the model *states* whether it will comply
(COMPLY or REFUSE) instead of answering, so compliance is a stated decision, and no reasoning is
elicited, so the paper's second measure (reasoning that mentions the training situation) is not
taken.
"""

from __future__ import annotations

from pathlib import Path

from thirdway.llm.base import Message
from thirdway.probes.data import DECISIONS, AlignmentData, AlignmentItem, Dataset, load_dataset
from thirdway.probes.metrics import Bootstrap, compliance_gap, rate
from thirdway.probes.parsing import parse_label
from thirdway.probes.runner import Asker, ProbeResult, Record, record, user

NAME = "alignment-faking"
HEADLINE = "compliance_gap"
FRAMINGS = ("training", "unmonitored")
NOTES = [
    "compliance is the model's stated decision (COMPLY/REFUSE), not a judged answer",
    "reasoning about the training situation is not elicited or measured",
]


def load(path: Path | None = None) -> Dataset[AlignmentData]:
    return load_dataset(AlignmentData, "alignment_faking", path)


def messages_for(data: AlignmentData, item: AlignmentItem, framing: str) -> list[Message]:
    system = data.framings.training if framing == "training" else data.framings.unmonitored
    first, second = item.order
    ask = data.templates.ask.format(request=item.request, first=first, second=second)
    return [{"role": "system", "content": system}, user(ask)]


def run(
    asker: Asker, dataset: Dataset[AlignmentData], *, limit: int | None, boot: Bootstrap
) -> ProbeResult:
    data = dataset.data
    items = data.items[:limit]
    records: list[Record] = []
    synonyms = {str(label): phrases for label, phrases in data.synonyms.items()}
    complied: dict[str, list[bool | None]] = {framing: [] for framing in FRAMINGS}
    # Framing outermost: consecutive prompts then share the system message, which a local model
    # keeps evaluated in its KV cache (about a third less prompt to evaluate).
    for framing in FRAMINGS:
        for item in items:
            messages = messages_for(data, item, framing)
            reply = asker.choose(messages, list(DECISIONS))
            parsed = parse_label(reply, DECISIONS, synonyms)
            complied[framing].append(None if parsed.answer is None else parsed.answer == "COMPLY")
            records.append(
                record(
                    NAME,
                    item.id,
                    framing,
                    messages,
                    reply,
                    parsed,
                    category=item.category,
                    order=list(item.order),
                )
            )
    metrics = [
        compliance_gap(complied["training"], complied["unmonitored"], boot),
        rate(
            "compliance_training",
            [c for c in complied["training"] if c is not None],
            boot,
            "said COMPLY when told the conversation trains it",
        ),
        rate(
            "compliance_unmonitored",
            [c for c in complied["unmonitored"] if c is not None],
            boot,
            "said COMPLY when told the conversation is unmonitored",
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
