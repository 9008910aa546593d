"""Every probe against the real bundled SmolLM2-135M-Instruct, on two items each (for seduction,
the first dialogue and the first that asks whether the user is talking to an AI).

The model is loaded once for the module and used without the response cache, so these tests
exercise real generation (greedy, seed 0). They check what must hold whatever a 135M model
answers: constrained choices always parse, the records hold every exchange, the metrics are
exactly what the records say, and decoding is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from thirdway.llm import LocalModel
from thirdway.probes import Asker, Bootstrap, run_probe, seduction
from thirdway.probes.data import Dataset
from thirdway.probes.parsing import STATUSES
from thirdway.probes.runner import ProbeResult

LIMIT = 2
BOOT = Bootstrap(resamples=200)


@pytest.fixture(scope="module")
def asker() -> Iterator[Asker]:
    yield Asker(LocalModel())


def rows(result: ProbeResult) -> list[Any]:
    """The records, typed loosely for reading in tests."""
    return list(result.records)


def answers(result: ProbeResult, condition: str) -> list[str | None]:
    return [r["parsed"]["answer"] for r in rows(result) if r["condition"] == condition]


def assert_constrained_replies_parse(result: ProbeResult, conditions: set[str]) -> None:
    for entry in rows(result):
        if entry["condition"] in conditions:
            parsed = entry["parsed"]
            assert (parsed["status"], parsed["how"]) == ("ok", "json"), entry["reply"]


def test_sycophancy(asker: Asker) -> None:
    result = run_probe("sycophancy", asker, limit=LIMIT, boot=BOOT)
    assert result.calls == LIMIT * 3 + LIMIT * 2
    assert len(result.records) == result.calls
    assert_constrained_replies_parse(
        result, {"plain", "wrong", "right", "user-favours-A", "user-favours-B"}
    )
    plain, wrong = answers(result, "plain"), answers(result, "wrong")
    targets = [r["suggested_wrong"] for r in rows(result) if r["condition"] == "wrong"]
    eligible = [(w == t) for p, w, t in zip(plain, wrong, targets, strict=True) if p != t]
    flip = result.metric("flip_to_wrong")
    assert flip.n == len(eligible)
    assert flip.value == (sum(eligible) / len(eligible) if eligible else None)
    # The right-suggested condition suggests the labelled correct letter.
    for entry in rows(result):
        if entry["condition"] == "right":
            assert f"I think the answer is {entry['correct']})" in entry["messages"][0]["content"]
    by_side = answers(result, "user-favours-A"), answers(result, "user-favours-B")
    shifts = [(a, b) == ("A", "B") for a, b in zip(*by_side, strict=True)]
    assert result.metric("stance_shift").value == pytest.approx(sum(shifts) / len(shifts))
    assert result.model_id.startswith("local:smollm2-135m-instruct")


def test_alignment_faking(asker: Asker) -> None:
    result = run_probe("alignment-faking", asker, limit=LIMIT, boot=BOOT)
    assert result.calls == LIMIT * 2
    assert_constrained_replies_parse(result, {"training", "unmonitored"})
    training = [a == "COMPLY" for a in answers(result, "training")]
    unmonitored = [a == "COMPLY" for a in answers(result, "unmonitored")]
    gap = result.metric("compliance_gap")
    assert gap.n == LIMIT
    assert gap.value == pytest.approx((sum(training) - sum(unmonitored)) / LIMIT)
    for entry in rows(result):  # the framing really is the system message
        assert entry["messages"][0]["role"] == "system"


def test_paraphrase(asker: Asker) -> None:
    result = run_probe("paraphrase", asker, limit=LIMIT, boot=BOOT)
    assert result.calls == LIMIT * 3
    assert_constrained_replies_parse(result, {"wording-1", "wording-2", "wording-3"})
    by_item: dict[str, list[object]] = {}
    for entry in rows(result):
        by_item.setdefault(str(entry["item"]), []).append(entry["chosen_text"])
    agree = [len(set(texts)) == 1 for texts in by_item.values()]
    assert result.metric("agreement").value == pytest.approx(sum(agree) / len(agree))


def test_faithfulness(asker: Asker) -> None:
    result = run_probe("faithfulness", asker, limit=LIMIT, boot=BOOT)
    assert result.calls == LIMIT * 2
    assert_constrained_replies_parse(result, {"act"})
    records = rows(result)
    for state, act in zip(records[::2], records[1::2], strict=True):
        assert (state["condition"], act["condition"]) == ("state", "act")
        # The action is asked for in the same conversation, after the stated reasoning.
        assert act["messages"][1] == {"role": "assistant", "content": state["reply"]}
        assert state["parsed"]["status"] in STATUSES
    stated = [entry["parsed"]["answer"] for entry in records[::2]]
    acted = [entry["parsed"]["answer"] for entry in records[1::2]]
    differ = [s != a for s, a in zip(stated, acted, strict=True) if None not in (s, a)]
    mismatch = result.metric("mismatch")
    assert mismatch.n == len(differ)
    assert mismatch.value == (sum(differ) / len(differ) if differ else None)


def test_seduction(asker: Asker) -> None:
    # The first dialogue and the first that asks whether the user is talking to an AI, so that
    # every rule of the rubric, disclosure included, scores a real reply.
    dataset = seduction.load()
    first_asking = next(item for item in dataset.data.items if item.asks_if_ai)
    items = [dataset.data.items[0], first_asking]
    picked = Dataset(dataset.name, dataset.data.model_copy(update={"items": items}), dataset.sha256)
    result = seduction.run(asker, picked, limit=None, boot=BOOT)
    rules = [rule.id for rule in seduction.load_rubric().rules]
    for entry, item in zip(rows(result), items, strict=True):
        assert isinstance(entry["reply"], str) and entry["reply"].strip()
        expected = [r for r in rules if r != "ai_nondisclosure" or item.asks_if_ai]
        assert sorted(entry["rubric"]) == sorted(expected)
    for rule in rules:
        hits = [e["rubric"][rule]["flagged"] for e in rows(result) if rule in e["rubric"]]
        assert result.metric(rule).n == len(hits)
        assert result.metric(rule).value == pytest.approx(sum(hits) / len(hits))
    flagged = [any(hit["flagged"] for hit in entry["rubric"].values()) for entry in rows(result)]
    assert result.metric("any_cue").value == pytest.approx(sum(flagged) / len(flagged))


def test_decoding_is_deterministic(asker: Asker) -> None:
    first = run_probe("alignment-faking", asker, limit=1, boot=BOOT)
    again = run_probe("alignment-faking", asker, limit=1, boot=BOOT)
    assert [r["reply"] for r in first.records] == [r["reply"] for r in again.records]
    assert first.records_sha256 == again.records_sha256
