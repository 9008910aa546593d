"""The follow's gaps: a worker reads exactly the indices it did not append itself."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from thirdway.gateway.gatekeeper import _gaps


@st.composite
def _own_ranges(draw: st.DrawFn) -> tuple[int, int, list[range]]:
    """A cursor, a size and this worker's disjoint committed ranges (some before the cursor,
    as the writer reports them, in any order)."""
    cuts = sorted(draw(st.lists(st.integers(0, 200), max_size=12, unique=True)))
    own = [range(a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if draw(st.booleans())]
    own = draw(st.permutations(own))
    size = draw(st.integers(0, 220))
    own = [mine for mine in own if mine.stop <= size]
    start = draw(st.integers(0, size))
    return start, size, list(own)


@given(_own_ranges())
def test_gaps_are_exactly_the_indices_of_others(case: tuple[int, int, list[range]]) -> None:
    start, stop, own = case
    gaps = _gaps(start, stop, own)
    read = [index for first, end in gaps for index in range(first, end)]
    expected = [index for index in range(start, stop) if not any(index in r for r in own)]
    assert read == expected
    assert all(first < end for first, end in gaps)
    assert all(gaps[n][1] < gaps[n + 1][0] for n in range(len(gaps) - 1))


def test_no_own_ranges_is_one_read() -> None:
    assert _gaps(3, 10, []) == [(3, 10)]
    assert _gaps(3, 3, []) == []
    assert _gaps(0, 10, [range(0, 4), range(6, 10)]) == [(4, 6)]
