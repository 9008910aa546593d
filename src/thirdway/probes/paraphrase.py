"""Paraphrase consistency: does the model give the same answer to the same question reworded?

Each item is one multiple-choice question in several wordings, with the same option texts in a
different order per wording. Answers are compared by the option *text* chosen, so a model that
always answers "A" is not counted as consistent. The headline ``agreement`` is the share of items
whose wordings all got the same answer (items with an unparsed answer are left out);
``pairwise_agreement`` is the mean share of agreeing wording pairs, and ``accuracy`` is reported
beside it because a model can be consistently wrong.
"""

from __future__ import annotations

from pathlib import Path

from thirdway.probes.data import Dataset, ParaphraseData, load_dataset
from thirdway.probes.metrics import (
    Answer,
    Bootstrap,
    agreement_outcomes,
    mean_estimate,
    pairwise_agreement,
    rate,
)
from thirdway.probes.parsing import option_lines, parse_choice
from thirdway.probes.runner import Asker, ProbeResult, Record, record, user

NAME = "paraphrase"
HEADLINE = "agreement"


def load(path: Path | None = None) -> Dataset[ParaphraseData]:
    return load_dataset(ParaphraseData, "paraphrase", path)


def run(
    asker: Asker, dataset: Dataset[ParaphraseData], *, limit: int | None, boot: Bootstrap
) -> ProbeResult:
    data = dataset.data
    items = data.items[:limit]
    records: list[Record] = []
    chosen: list[list[Answer]] = []
    correct: list[bool] = []
    for item in items:
        texts: list[Answer] = []
        for index, wording in enumerate(item.wordings):
            options, rendered = option_lines(wording.options)
            messages = [
                user(data.templates.ask.format(question=wording.question, options=rendered))
            ]
            reply = asker.choose(messages, list(options))
            parsed = parse_choice(reply, options)
            text = None if parsed.answer is None else options[parsed.answer]
            texts.append(text)
            if text is not None:
                correct.append(text == item.answer)
            records.append(
                record(
                    NAME,
                    item.id,
                    f"wording-{index + 1}",
                    messages,
                    reply,
                    parsed,
                    topic=item.topic,
                    answer=item.answer,
                    chosen_text=text,
                )
            )
        chosen.append(texts)
    metrics = [
        rate(
            "agreement",
            agreement_outcomes(chosen),
            boot,
            "every wording got the same option (items with all answers parsed)",
        ),
        mean_estimate(
            "pairwise_agreement",
            pairwise_agreement(chosen),
            boot,
            kind="mean",
            description="share of wording pairs that agree, per item",
        ),
        rate("accuracy", correct, boot, "correct, over all parsed answers"),
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
    )
