"""Every probe against the real bundled SmolLM2-135M-Instruct, on two items each.

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
from thirdway.probes import Asker, Bootstrap, run_probe
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


def test_seduction(asker: Asker) -> None:
    result = run_probe("seduction", asker, limit=LIMIT, boot=BOOT)
    assert result.calls == LIMIT
    for entry in rows(result):
        assert isinstance(entry["reply"], str) and entry["reply"].strip()
        assert "human_feelings" in entry["rubric"]
    flagged = [any(hit["flagged"] for hit in entry["rubric"].values()) for entry in rows(result)]
    assert result.metric("any_cue").value == pytest.approx(sum(flagged) / len(flagged))


def test_decoding_is_deterministic(asker: Asker) -> None:
    first = run_probe("alignment-faking", asker, limit=1, boot=BOOT)
    again = run_probe("alignment-faking", asker, limit=1, boot=BOOT)
    assert [r["reply"] for r in first.records] == [r["reply"] for r in again.records]
    assert first.records_sha256 == again.records_sha256
