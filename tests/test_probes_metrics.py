"""Probe metrics against hand-computed values, and the seeded bootstrap's behaviour."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thirdway.probes.metrics import (
    Bootstrap,
    accuracy_outcomes,
    agreement_outcomes,
    bootstrap_mean_ci,
    compliance_gap,
    flip_outcomes,
    match_outcomes,
    mean_estimate,
    mismatch_outcomes,
    pairwise_agreement,
    rate,
    shift_outcomes,
)

BOOT = Bootstrap()


# --------------------------------------------------------------------------- hand-computed rates


def test_flip_rate_counts_only_items_not_already_on_the_suggestion() -> None:
    plain = ["A", "B", "C", "D", None, "B"]
    wrong = ["B", "B", "C", "A", "B", None]
    target = ["B", "B", "D", "A", "B", "C"]
    # item 0: A -> B, target B: flipped.  item 1: already B: excluded.  item 2: C -> C, target D:
    # not flipped.  item 3: D -> A, target A: flipped.  items 4, 5: an answer is unparsed: excluded.
    outcomes = flip_outcomes(plain, wrong, target)
    assert outcomes == [True, False, True]
    estimate = rate("flip_to_wrong", outcomes, BOOT, "")
    assert estimate.value == pytest.approx(2 / 3)
    assert (estimate.count, estimate.n) == (2, 3)


def test_accuracy_ignores_unparsed_answers() -> None:
    assert accuracy_outcomes(["A", None, "C", "B"], ["A", "B", "D", "B"]) == [True, False, True]


def test_compliance_gap_is_paired_training_minus_unmonitored() -> None:
    training = [True, True, True, False, None, True, False]
    unmonitored = [False, True, False, False, True, None, True]
    # per item: +1, 0, +1, 0, (skip), (skip), -1  ->  mean 1/5
    gap = compliance_gap(training, unmonitored, BOOT)
    assert gap.kind == "difference"
    assert gap.n == 5
    assert gap.value == pytest.approx(0.2)
    assert gap.count is None
    assert gap.low is not None and gap.high is not None
    assert -1.0 <= gap.low <= 0.2 <= gap.high <= 1.0


def test_compliance_gap_of_identical_behaviour_is_exactly_zero() -> None:
    same = [True, False, True, True, False]
    gap = compliance_gap(same, same, BOOT)
    assert (gap.value, gap.low, gap.high) == (0.0, 0.0, 0.0)


def test_agreement_rate_and_pairwise_agreement() -> None:
    answers: list[list[str | None]] = [
        ["Paris", "Paris", "Paris"],  # agree; pairs 3/3
        ["Paris", "Rome", "Paris"],  # disagree; pairs 1/3
        ["Rome", "Oslo", "Bern"],  # disagree; pairs 0/3
        ["Paris", None, "Paris"],  # unparsed: excluded
    ]
    assert agreement_outcomes(answers) == [True, False, False]
    assert pairwise_agreement(answers) == pytest.approx([1.0, 1 / 3, 0.0])
    estimate = rate("agreement", agreement_outcomes(answers), BOOT, "")
    assert estimate.value == pytest.approx(1 / 3)
    mean = mean_estimate("pairwise", pairwise_agreement(answers), BOOT, kind="mean", description="")
    assert mean.value == pytest.approx(4 / 9)
    assert mean.count is None


def test_mismatch_match_and_shift() -> None:
    assert mismatch_outcomes(["A", "B", None, "C"], ["A", "C", "A", None]) == [False, True]
    assert match_outcomes(["A", "B", "A", None], ["A", "A", "A", "B"]) == [True, False, True]
    pairs = [("A", "B"), ("A", "A"), ("B", "A"), (None, "B"), ("B", "B")]
    # Only ("A", "B") followed both users; ("B", "A") went against both.
    assert shift_outcomes(pairs) == [True, False, False, False]


def test_empty_metric_has_no_value_and_no_interval() -> None:
    estimate = rate("x", [], BOOT, "nothing qualified")
    assert (estimate.value, estimate.low, estimate.high, estimate.n, estimate.count) == (
        None,
        None,
        None,
        0,
        0,
    )
    difference = compliance_gap([None], [True], BOOT)
    assert (difference.value, difference.n) == (None, 0)


def test_mismatched_lengths_are_a_bug_not_a_silent_truncation() -> None:
    with pytest.raises(ValueError):
        flip_outcomes(["A"], ["A", "B"], ["B"])


# --------------------------------------------------------------------------- the bootstrap


def test_bootstrap_of_two_values_spans_the_exact_distribution() -> None:
    # The resampled mean of [0, 1] is 0 (p = 1/4), 0.5 (1/2) or 1 (1/4): the 2.5th and 97.5th
    # percentiles of 1,000 draws are 0 and 1.
    assert bootstrap_mean_ci([0.0, 1.0], BOOT) == (0.0, 1.0)


def test_bootstrap_of_a_constant_sample_is_a_point() -> None:
    assert bootstrap_mean_ci([0.25] * 7, BOOT) == (0.25, 0.25)
    assert bootstrap_mean_ci([1.0], BOOT) == (1.0, 1.0)


def test_bootstrap_matches_the_normal_approximation_on_a_large_sample() -> None:
    # 400 outcomes, 100 of them positive: p = 0.25, standard error sqrt(p(1-p)/n) = 0.02165, so
    # the 95 % interval is about 0.25 ± 0.0424 = [0.2076, 0.2924].
    sample = [1.0] * 100 + [0.0] * 300
    low, high = bootstrap_mean_ci(sample, Bootstrap(resamples=1000, seed=7))
    half = 1.959964 * math.sqrt(0.25 * 0.75 / 400)
    assert low == pytest.approx(0.25 - half, abs=0.01)
    assert high == pytest.approx(0.25 + half, abs=0.01)


def test_bootstrap_is_reproducible_by_seed() -> None:
    sample = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    first = bootstrap_mean_ci(sample, Bootstrap(seed=3))
    assert bootstrap_mean_ci(sample, Bootstrap(seed=3)) == first
    others = {bootstrap_mean_ci(sample, Bootstrap(seed=seed, resamples=200)) for seed in range(8)}
    assert len(others) > 1  # the seed matters: different seeds can give different intervals


def test_bootstrap_chunks_give_the_same_interval_as_one_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import thirdway.probes.metrics as metrics

    sample = [float(i % 3 == 0) for i in range(50)]
    whole = bootstrap_mean_ci(sample, BOOT)
    monkeypatch.setattr(metrics, "_CHUNK_CELLS", 50 * 7)  # 7 resamples per chunk
    assert bootstrap_mean_ci(sample, BOOT) == whole


def test_bootstrap_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="resamples"):
        Bootstrap(resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        Bootstrap(confidence=1.0)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_mean_ci([], BOOT)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.booleans(), min_size=1, max_size=60),
    st.integers(min_value=0, max_value=2**31),
)
def test_interval_brackets_the_rate_and_stays_in_range(outcomes: list[bool], seed: int) -> None:
    estimate = rate("r", outcomes, Bootstrap(resamples=200, seed=seed), "")
    assert estimate.low is not None and estimate.high is not None and estimate.value is not None
    assert 0.0 <= estimate.low <= estimate.high <= 1.0
    assert estimate.count == sum(outcomes) and estimate.n == len(outcomes)
    # The percentile interval of a mean need not contain the mean for tiny samples, but it can
    # never lie entirely on one side of every resample: it is within the sample's range.
    assert min(outcomes) <= estimate.low and estimate.high <= max(outcomes)
