"""The gatekeeper's entry encoding writes the same bytes as the model's RFC 8785 encoding."""

from __future__ import annotations

import rfc8785
from hypothesis import example, given
from hypothesis import strategies as st

from thirdway.gateway.entries import entry, entry_bytes
from thirdway.protocol.canonical import canonical_json
from thirdway.protocol.models import LogEntry

TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)))
KEYS = st.text(alphabet=st.characters(min_codepoint=0x20, exclude_categories=("Cs",)), min_size=1)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(min_value=-1e300, max_value=1e300).filter(
        lambda f: f.is_integer() is False or abs(f) < 2**53
    )
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=20,
)
IDS = st.none() | st.text(alphabet="abcxyz-0123456789", min_size=1, max_size=12)


@given(
    st.sampled_from(["observation", "proposal", "verdict", "note"]),
    IDS,
    IDS,
    st.dictionaries(KEYS, JSON, max_size=4),
)
@example("note", "s", "a", {"amount": 98.0, "x": [1.0, {"y": 0.5}], "\U0001f600": "k", "\ufb01": 1})
def test_entry_bytes_are_the_models_rfc8785_bytes(
    kind: str, session: str | None, agent: str | None, payload: dict[str, object]
) -> None:
    built = entry(kind, session, agent, payload)  # type: ignore[arg-type]
    expected = rfc8785.dumps(built.model_dump(mode="json", by_alias=True))
    assert entry_bytes(built) == expected == canonical_json(built)
    validated = LogEntry.model_validate_json(expected)
    assert entry_bytes(validated) == expected
