"""The verifier's fast hash path agrees with RFC 8785 on every float an argument may hold.

Integral floats are the trap: up to 2**53 - 1 RFC 8785 writes the integer, past it the shortest
round-trip digits padded with zeros (2**60 -> 1152921504606847000), which no plain dump writes.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from thirdway.protocol.canonical import canonical_sha256
from thirdway.protocol.models import ToolCall
from thirdway.verify import api as api_module

INTEGRAL_FLOATS = st.integers(min_value=-(2**70), max_value=2**70).map(float)


@given(st.floats(allow_nan=False, allow_infinity=False) | INTEGRAL_FLOATS)
@example(9007199254740992.0)
@example(2.0**60)
@example(-9007199254740994.0)
@example(350.0)
def test_a_float_argument_hashes_as_rfc_8785_does(value: float) -> None:
    call = ToolCall(tool="send_money", args={"amount": value, "nested": [value, {"v": value}]})
    assert api_module.model_sha256(call) == canonical_sha256(call)
