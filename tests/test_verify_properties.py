"""Property tests of the verifier over the honest corpus chains (hypothesis).

* mutating any quote-bound argument after the chain is built is caught (``action_mismatch``);
* replacing any quote with text absent from its cited observation is caught (``fabricated_quote``);
* reordering steps never changes the verdict (nor, without duplicate ids, the findings);
* the verdict is deterministic: the same canonical bytes on repeat, from fresh copies too.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.models import Observation, Proposal, Verdict
from thirdway.verify import codes, verify
from thirdway.verify.normalize import normalize
from thirdway.verify.transforms import parse_date
from verify_support import Case, load_corpus, load_test_manifests

MANIFESTS = load_test_manifests()
CORPUS = load_corpus()
HONEST = [c for c in CORPUS if c.verdict == "pass"]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Path = tuple[str | int, ...]


def judge(case: Case, proposal: dict[str, Any] | None = None) -> Verdict:
    raw = dict(case.proposal if proposal is None else proposal)
    return verify(
        Proposal.model_validate(raw),
        [Observation.model_validate(o) for o in case.observations],
        MANIFESTS,
        history=[Proposal.model_validate(p) for p in case.history],
        recorded_before=case.recorded_before,
    )


def quote_bound(args: Any, binding: Any, path: Path = ()) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every (path, quote binding) pair of an action, walking value and binding together."""
    if "items" in binding:
        for i, inner in enumerate(binding["items"]):
            yield from quote_bound(args[i], inner, (*path, i))
    elif "fields" in binding:
        for key, inner in binding["fields"].items():
            yield from quote_bound(args[key], inner, (*path, key))
    elif "quote" in binding:
        yield path, binding


def bound_positions(case: Case) -> list[tuple[Path, dict[str, Any]]]:
    args, bindings = case.proposal["action"]["args"], case.proposal.get("bindings", {})
    return [
        ((name, *path), binding)
        for name in sorted(bindings)
        for path, binding in quote_bound(args[name], bindings[name])
    ]


def mutated(value: Any, transform: str, noise: int) -> Any:
    """A value of the same JSON type that the same quote can never produce."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return float(Decimal(repr(value)) + Decimal(noise) / 100) if noise else value + 1
    if transform == "date":
        day = parse_date(normalize(value))
        assert day is not None
        return (day + dt.timedelta(days=noise or 1)).isoformat()
    return value + ("x" if transform != "upper" else "X") * (noise or 1)


def put(document: dict[str, Any], path: Path, value: Any) -> None:
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


MUTABLE = [(c, p, b) for c in HONEST for p, b in bound_positions(c)]


@SETTINGS
@given(st.sampled_from(MUTABLE), st.integers(min_value=1, max_value=10_000))
def test_mutating_a_bound_argument_is_an_action_mismatch(
    target: tuple[Case, Path, dict[str, Any]], noise: int
) -> None:
    case, path, binding = target
    proposal = copy.deepcopy(case.proposal)
    args = proposal["action"]["args"]
    original: Any = args
    for key in path:
        original = original[key]
    put(args, path, mutated(original, binding.get("as", "text"), noise))
    verdict = judge(case, proposal)
    assert verdict.verdict == "deny"
    assert codes.ACTION_MISMATCH in {f.code for f in verdict.findings}


def citations(case: Case) -> list[tuple[Case, int | None, int]]:
    """(case, step index or None for the goal, citation index) of every citation."""
    found: list[tuple[Case, int | None, int]] = [(case, None, 0)]
    for s, step in enumerate(case.proposal["steps"]):
        found.extend((case, s, c) for c in range(len(step.get("cites", []))))
    return found


CITATIONS = [c for case in HONEST for c in citations(case)]


@SETTINGS
@given(st.sampled_from(CITATIONS), st.text(min_size=1, max_size=40))
def test_a_quote_absent_from_its_observation_is_fabricated(
    target: tuple[Case, int | None, int], text: str
) -> None:
    case, step, index = target
    proposal = copy.deepcopy(case.proposal)
    cite = proposal["goal"] if step is None else proposal["steps"][step]["cites"][index]
    source = next(o for o in case.observations if o["index"] == cite["obs"])
    quote = f"{text} ⟂ {cite['quote']}"  # ⟂ occurs in no observation of the corpus
    assert normalize(quote) not in normalize(source.get("content") or "")
    cite["quote"] = quote
    verdict = judge(case, proposal)
    assert verdict.verdict == "deny"
    expected_step = None if step is None else proposal["steps"][step]["id"]
    assert any(
        f.code == codes.FABRICATED_QUOTE and f.step == expected_step for f in verdict.findings
    )


def has_duplicate_ids(case: Case) -> bool:
    ids = [s["id"] for s in case.proposal["steps"]]
    return len(ids) != len(set(ids))


@SETTINGS
@given(st.sampled_from(CORPUS), st.randoms(use_true_random=False))
def test_reordering_steps_keeps_the_verdict(case: Case, rng: Any) -> None:
    proposal = copy.deepcopy(case.proposal)
    rng.shuffle(proposal["steps"])
    before, after = judge(case), judge(case, proposal)
    assert after.verdict == before.verdict == case.verdict
    if not has_duplicate_ids(case):
        assert after.findings == before.findings


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(CORPUS))
def test_verdict_bytes_are_deterministic(case: Case) -> None:
    first = canonical_json(judge(case))
    assert canonical_json(judge(case)) == first
    fresh = copy.deepcopy(case)  # new objects: nothing can come from a cache
    assert canonical_json(judge(fresh)) == first
